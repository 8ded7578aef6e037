"""VideoSink: the one threaded atomic writer of video files, with the encoder composed into it.

    VideoSink (the output checks, the temporary file renamed into place only when complete, the
    frame count, and a writer thread for callers that `write`)
      -> an Encoder (PyAVEncoder here; the ffmpeg binary's in ffmpeg_backend.py): encodes frames with
         the timing they came with and muxes them with the other streams (OtherStreams: the source's,
         copied packet by packet, or a live recording's audio)

The pipeline's encode stage calls `encode` and `finish` in its own thread (its busy time is the
encoding); other callers `write`, and a thread of the sink's own encodes behind a bounded channel.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Callable, Protocol

import av
import numpy as np

from vidrestore.channel import CLOSED, Channel
from vidrestore.errors import MediaError, error_line
from vidrestore.video.codecs import PRESETS, SWS_MATRIX, EncoderSettings, check_codec
from vidrestore.video.fields import FieldTagger
from vidrestore.video.paths import check_output, commit_temp, make_temp, remove_quietly
from vidrestore.video.remux import StreamCopier, packet_time, set_video_tags
from vidrestore.video.types import Frame, VideoInfo

log = logging.getLogger(__name__)

MP4_LIKE = {"mp4", "mov", "mov,mp4,m4a,3gp,3g2,mj2", "ipod", "3gp"}


@dataclass
class SinkStats:
    """What was written: video frames, copied packets per source stream, frames whose pts was fixed."""

    frames: int = 0
    copied_packets: dict[int, int] = field(default_factory=dict)
    retimed: int = 0


class TimingGuard:
    """Keeps output PTS strictly increasing without inventing timing for well-formed input."""

    def __init__(self, info: VideoInfo) -> None:
        self.info = info
        self.last: int | None = None
        self.last_duration: int | None = None
        self.retimed = 0

    def step(self) -> int:
        """One frame's duration in time-base units, for a frame with no PTS."""
        if self.last_duration:
            return self.last_duration
        rate = self.info.average_rate or Fraction(25)
        return max(1, round(1 / (rate * self.info.time_base)))

    def fix(self, frame: Frame) -> int:
        """The PTS to write for this frame (its own unless missing or not increasing)."""
        pts = frame.pts
        if pts is not None and frame.time_base != self.info.time_base:
            pts = round(pts * frame.time_base / self.info.time_base)
        if pts is None or (self.last is not None and pts <= self.last):
            new = 0 if self.last is None else self.last + (self.step() if pts is None else 1)
            if self.retimed == 0:
                log.warning("frame %d has %s PTS %s; writing %d", frame.index,
                            "no" if pts is None else "a non-increasing", pts, new)
            self.retimed += 1
            pts = new
        if frame.duration:
            self.last_duration = frame.duration
        self.last = pts
        return pts


@dataclass(frozen=True)
class Target:
    """What an encoder writes: the temporary file, the output it becomes (for messages), what the
    frames are and how to encode them, and whether the source's other streams are copied."""

    temp: Path
    path: Path
    info: VideoInfo
    settings: EncoderSettings
    copy_streams: bool = True


class OtherStreams(Protocol):
    """The streams muxed between the video packets: the source's, copied, or a recording's audio."""

    copied: dict[int, int]  # packets written per stream

    def copy_until(self, time: Fraction | None) -> None:
        """Mux the packets that start at or before `time` seconds (None: all that are left)."""

    def close(self) -> None:
        """Release what the streams hold."""


class Encoder(Protocol):
    """One output file's encoder and muxer, driven by VideoSink (from one thread at a time)."""

    guard: TimingGuard
    copied: dict[int, int]  # packets copied per other stream, once finished

    def encode(self, frame: Frame) -> None:
        """Encode one frame and mux what comes out."""

    def finish(self) -> None:
        """Flush the encoder, mux what is left, write the trailer."""

    def release(self) -> None:
        """Close whatever is open without finishing it (after a failure)."""


EncoderFactory = Callable[[Target], Encoder]


def copied_source_streams(target: Target, out: av.container.OutputContainer) -> OtherStreams:
    """The source's audio, subtitle and data streams, copied packet by packet (none without copy_streams)."""
    return StreamCopier(target.info, out, str(target.path), target.copy_streams)


class PyAVEncoder:
    """Encodes in-process with PyAV: the source's size, time base, colour, rotation and SAR; frames
    nothing changed are encoded from their decoded picture, the others converted from RGB with the
    source's matrix and range. Everything that can be checked is checked here, before any frame."""

    def __init__(self, target: Target,
                 other_streams: Callable[[Target, av.container.OutputContainer], OtherStreams] = copied_source_streams,
                 ) -> None:
        self.target = target
        self.info = target.info
        self.guard = TimingGuard(target.info)
        self.copied: dict[int, int] = {}
        name = str(target.path)
        try:
            self._out = av.open(str(target.temp), "w")
        except (av.FFmpegError, ValueError) as exc:
            raise MediaError(f"cannot write {name}: no muxer for {target.path.suffix!r} "
                             f"({error_line(exc, os_reason=True)})") from exc
        self._streams: OtherStreams | None = None
        try:
            self.pix_fmt = check_codec(target.settings, self.info, self._out, name)
            self._stream = self._add_video_stream()
            self._fields = FieldTagger(self.info.field_order, self.info.time_base) if self.info.interlaced else None
            self._streams = other_streams(target, self._out)
            self._out.start_encoding()
        except av.FFmpegError as exc:
            self.release()
            raise MediaError(f"cannot write {name} with {target.settings.codec}: "
                             f"{error_line(exc, os_reason=True)}") from exc
        except BaseException:
            self.release()
            raise

    def _add_video_stream(self) -> av.video.stream.VideoStream:
        """The encoder stream: source size, time base, colour, rotation, SAR; the codec's preset."""
        info, s = self.info, self.target.settings
        try:
            stream = self._out.add_stream(s.codec, rate=info.average_rate or None,
                                          options=s.encoder_options())
        except (av.FFmpegError, ValueError) as exc:
            raise MediaError(f"cannot set up encoder {s.codec}: {error_line(exc, os_reason=True)}") from exc
        stream.width, stream.height, stream.pix_fmt = info.width, info.height, self.pix_fmt
        stream.time_base = info.time_base
        cc = stream.codec_context
        cc.time_base = info.time_base
        cc.thread_count = s.threads
        cc.thread_type = "AUTO"
        set_video_tags(stream, info)
        preset = PRESETS.get(s.codec)
        if preset and preset.mp4_tag and self._out.format.name in MP4_LIKE:
            cc.codec_tag = preset.mp4_tag
        return stream

    def encode(self, frame: Frame | None) -> None:
        """Encode one frame (None flushes) and mux what comes out, interleaved with the other streams."""
        picture = None if frame is None else self._to_av(frame)
        for packet in self._stream.encode(picture):
            self._streams.copy_until(packet_time(packet))
            self._out.mux(packet)

    def finish(self) -> None:
        """Flush the encoder, mux the other streams' remaining packets, write the trailer."""
        self.encode(None)
        self._streams.copy_until(None)
        self.copied = dict(self._streams.copied)
        self._streams.close()
        self._out.close()

    def release(self) -> None:
        """Close whatever is open without finishing it (after a failure)."""
        for closer in (self._streams, self._out):
            if closer is not None:
                try:
                    closer.close()
                except Exception as exc:  # noqa: BLE001 - cleanup must go on
                    log.debug("closing after failure: %s", exc)

    def _to_av(self, frame: Frame) -> av.VideoFrame:
        """The picture to encode: the decoded picture itself when untouched, else from RGB."""
        picture = frame.native
        if picture is None or picture.width != self.info.width or picture.height != self.info.height:
            picture = rgb_picture(frame.image, self.info, self.pix_fmt)
        else:
            picture.pict_type = av.video.frame.PictureType.NONE  # never force the source's frame types
        picture.pts = self.guard.fix(frame)
        picture.time_base = self.info.time_base
        if frame.duration:
            picture.duration = round(frame.duration * frame.time_base / self.info.time_base)
        return picture if self._fields is None else self._fields.tag(picture)


def check_frame_size(image: np.ndarray, info: VideoInfo) -> None:
    """MediaError when an RGB frame is not of the video's size."""
    if image.shape != (info.height, info.width, 3):
        raise MediaError(f"frame of shape {image.shape} does not match the video "
                         f"({info.height}x{info.width}x3)")


def rgb_picture(image: np.ndarray, info: VideoInfo, pix_fmt: str) -> av.VideoFrame:
    """RGB array -> picture in the output pixel format, using the source's matrix and range."""
    check_frame_size(image, info)
    fmt = "rgb48le" if image.dtype == np.uint16 else "rgb24"
    picture = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format=fmt)
    c = info.color
    return picture.reformat(format=pix_fmt, dst_colorspace=SWS_MATRIX.get(c.matrix),
                            dst_color_range=c.range or None)


class VideoSink:
    """Write frames to `path` with `info`'s timing, tags and other streams; a context manager.

    Everything that can be checked is checked in the constructor (output folder, output != input,
    codec, container); errors then surface as MediaError before any frame is encoded. `encoder`
    makes the encoder for the temporary file (PyAV by default).
    """

    def __init__(self, path: str | os.PathLike, info: VideoInfo,
                 settings: EncoderSettings | None = None, *, copy_streams: bool = True,
                 queue_size: int = 8, encoder: EncoderFactory = PyAVEncoder,
                 thread_name: str = "vidrestore-encode") -> None:
        self.info = info
        self.settings = (settings or EncoderSettings()).for_source(info)
        self.out_path = check_output(path, info.path)
        self.copy_streams = copy_streams
        self.stats = SinkStats()
        self._chan: Channel[Frame] = Channel(queue_size)
        self._thread_name = thread_name
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._finished = False
        self._closed = False
        self._encoder: Encoder | None = None
        self._tmp = make_temp(self.out_path)
        try:
            self._encoder = encoder(Target(self._tmp, self.out_path, info, self.settings, copy_streams))
        except BaseException:
            self._cleanup()
            raise

    def __enter__(self) -> "VideoSink":
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    # --- encoding in the caller's thread (the pipeline's encode stage) ---------------------------

    def encode(self, frame: Frame) -> None:
        """Encode one frame now, in the calling thread; errors are MediaError naming the output."""
        try:
            self._encoder.encode(frame)
        except BaseException as exc:
            self._raise(exc)
        self.stats.frames += 1

    def finish(self) -> None:
        """Flush the encoder and write the trailer into the temporary file (`close` renames it into place)."""
        if self._finished:
            return
        self._finished = True
        try:
            self._encoder.finish()
        except BaseException as exc:
            self._raise(exc)

    # --- encoding in a thread of the sink's own --------------------------------------------------

    def write(self, frame: Frame) -> None:
        """Queue a frame for the writer thread (blocks when the queue is full); raises the encoder's error."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._encode_queued, daemon=True, name=self._thread_name)
            self._thread.start()
        if self._error is not None or not self._chan.put(frame):
            self._raise(self._error)

    def _encode_queued(self) -> None:
        """Thread body: encode until the channel closes; the first error stops it and is kept for the caller."""
        try:
            while (frame := self._chan.get()) is not CLOSED:
                self._encoder.encode(frame)
                self.stats.frames += 1
        except BaseException as exc:  # noqa: BLE001 - handed to the caller
            self._error = exc
            self._chan.stop.set()

    def _raise(self, exc: BaseException | None) -> None:
        """Raise the encoder's error as MediaError naming the output (a MediaError or Ctrl-C as it is)."""
        if exc is None:
            raise MediaError(f"writing {self.out_path} stopped")
        if isinstance(exc, (MediaError, KeyboardInterrupt)):
            raise exc
        raise MediaError(f"writing {self.out_path} failed: {error_line(exc, os_reason=True)}") from exc

    # --- the file --------------------------------------------------------------------------------

    def close(self) -> Path:
        """Finish the file and rename it into place; on any error nothing is left behind."""
        if self._closed:
            return self.out_path
        try:
            if self._thread is not None:
                self._chan.close()
                self._thread.join()
                if self._error is not None:
                    self._raise(self._error)
            self._check_complete()
            self.finish()
            commit_temp(self._tmp, self.out_path)
        except BaseException:
            self._cleanup()
            raise
        self._closed = True
        self.stats.copied_packets = dict(self._encoder.copied)
        self.stats.retimed = self._encoder.guard.retimed
        log.info("wrote %s: %d frames", self.out_path, self.stats.frames)
        return self.out_path

    def _check_complete(self) -> None:
        """MediaError when nothing was written (an empty video is not a finished output)."""
        if self.stats.frames == 0:
            raise MediaError(f"no frames were written to {self.out_path}")

    def abort(self) -> None:
        """Stop encoding and remove the temporary file: nothing that looks finished is left."""
        self._chan.stop.set()
        if self._thread is not None:
            self._thread.join()
        self._cleanup()

    def _cleanup(self) -> None:
        """Release the encoder and delete the temporary file (idempotent)."""
        self._closed = True
        if self._encoder is not None:
            self._encoder.release()
        remove_quietly(self._tmp)
