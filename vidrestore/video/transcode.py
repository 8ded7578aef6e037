"""Pass-through transcode: every frame decoded and re-encoded unchanged (the `--model none` path)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from vidrestore.video.codecs import EncoderSettings
from vidrestore.video.sink import SinkStats, VideoSink
from vidrestore.video.source import VideoSource
from vidrestore.video.types import DecodeStats, VideoInfo


@dataclass(frozen=True)
class TranscodeResult:
    """What a pass-through did: the output, the probe of the input, decode and encode counts."""

    output: Path
    info: VideoInfo
    decoded: DecodeStats
    written: SinkStats


def open_sink(path: str | os.PathLike, info: VideoInfo, settings: EncoderSettings | None = None,
              *, backend: str = "pyav", **kwargs: object) -> VideoSink:
    """A VideoSink for the backend named: "pyav" (in-process) or "ffmpeg" (the ffmpeg binary)."""
    if backend == "pyav":
        return VideoSink(path, info, settings, **kwargs)  # type: ignore[arg-type]
    if backend == "ffmpeg":
        from vidrestore.video.ffmpeg_backend import FfmpegSink

        return FfmpegSink(path, info, settings, **kwargs)  # type: ignore[arg-type]
    from vidrestore.errors import MediaError

    raise MediaError(f"unknown video backend {backend!r} (use pyav or ffmpeg)")


def passthrough(src: str | os.PathLike, dst: str | os.PathLike,
                settings: EncoderSettings | None = None, *, backend: str = "pyav",
                native: bool = True) -> TranscodeResult:
    """Decode `src` and re-encode every frame unchanged into `dst`, keeping timing and streams.

    native=True hands decoded pictures straight to the encoder (no RGB round trip).
    """
    with VideoSource(src, passthrough=native) as source:
        with open_sink(dst, source.info, settings, backend=backend) as sink:
            for frame in source:
                sink.write(frame)
        return TranscodeResult(Path(dst), source.info, source.stats, sink.stats)
