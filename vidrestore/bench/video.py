"""`vidrestore bench video`: decode, encode and pass-through frames per second of our video I/O,
beside the ffmpeg binary doing the same work on the same file in the same run."""

from __future__ import annotations

import argparse
import datetime
import logging
import os
import platform
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import av

from vidrestore.bench import comma_list, publish
from vidrestore.errors import MediaError
from vidrestore.video import EncoderSettings, VideoSink, VideoSource, passthrough
from vidrestore.video.ffmpeg_backend import ffmpeg_exe

log = logging.getLogger(__name__)

SIZES = {"720p": (1280, 720), "1080p": (1920, 1080)}


@dataclass(frozen=True)
class Row:
    """One measured line of the table."""

    size: str
    task: str
    frames: int
    ours_s: float
    ffmpeg_s: float | None

    def cells(self) -> list[str]:
        """Markdown cells: fps of ours, of ffmpeg, and the ratio."""
        ours = self.frames / self.ours_s
        if self.ffmpeg_s is None:
            return [self.size, self.task, f"{ours:.1f}", "—", "—"]
        ref = self.frames / self.ffmpeg_s
        return [self.size, self.task, f"{ours:.1f}", f"{ref:.1f}", f"{ours / ref:.2f}"]


def make_clip(path: Path, size: tuple[int, int], seconds: float) -> None:
    """A test clip: testsrc2 at 30 fps, H.264 (CRF 20) with AAC audio."""
    w, h = size
    cmd = [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y",
           "-f", "lavfi", "-i", f"testsrc2=size={w}x{h}:rate=30",
           "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
           "-t", str(seconds), "-c:v", "libx264", "-preset", "veryfast", "-crf", "20",
           "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest", str(path)]
    subprocess.run(cmd, check=True)


def timed(fn: Callable[[], object]) -> float:
    """Wall-clock seconds one call takes."""
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def ffmpeg_cmd(*args: str) -> Callable[[], object]:
    """A callable running the ffmpeg binary quietly."""
    cmd = [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", "-nostdin", *args]
    return lambda: subprocess.run(cmd, check=True)


def x264_args(settings: EncoderSettings) -> list[str]:
    """The ffmpeg options that match our encoder settings exactly."""
    args = ["-c:v", settings.codec, "-threads", str(settings.threads), "-pix_fmt", "yuv420p"]
    for k, v in settings.encoder_options().items():
        args += [f"-{k}", v]
    return args


def measure(size_name: str, clip: Path, work: Path, settings: EncoderSettings) -> list[Row]:
    """All rows for one clip."""
    with VideoSource(clip, passthrough=True) as src:
        frames = list(src)
        info = src.info
    n = len(frames)

    def decode_native() -> None:
        with VideoSource(clip, passthrough=True) as s:
            for _ in s:
                pass

    def decode_rgb() -> None:
        with VideoSource(clip) as s:
            for _ in s:
                pass

    def encode_only() -> None:
        with VideoSink(work / "enc.mp4", info, settings) as sink:
            for f in frames:
                sink.write(f)

    rows = []
    ff_decode = timed(ffmpeg_cmd("-i", str(clip), "-map", "0:v", "-f", "null", "-"))
    rows.append(Row(size_name, "decode", n, timed(decode_native), ff_decode))
    rows.append(Row(size_name, "decode to RGB (model input)", n, timed(decode_rgb), None))
    rows.append(Row(size_name, "encode (frames in memory)", n, timed(encode_only), None))
    frames.clear()  # free the decoded clip before the transcodes (encode_only is done with it)
    ff_transcode = timed(ffmpeg_cmd("-i", str(clip), "-map", "0", *x264_args(settings),
                                    "-c:a", "copy", "-fps_mode", "passthrough", str(work / "ff.mp4")))
    ours = timed(lambda: passthrough(clip, work / "ours.mp4", settings))
    rows.append(Row(size_name, "decode + encode (pass-through)", n, ours, ff_transcode))
    ours_rgb = timed(lambda: passthrough(clip, work / "rgb.mp4", settings, native=False))
    rows.append(Row(size_name, "decode + RGB + encode", n, ours_rgb, ff_transcode))
    ours_ff = timed(lambda: passthrough(clip, work / "ffb.mp4", settings, backend="ffmpeg"))
    rows.append(Row(size_name, "decode + RGB + encode, ffmpeg backend", n, ours_ff, ff_transcode))
    return rows


def decode_seconds(path: Path, hwaccel: str | None = None, keep_on_device: bool = False) -> tuple[int, float]:
    """(frames, wall seconds) to decode the first video stream with PyAV into RGB arrays.

    With `hwaccel` (e.g. "cuda": NVDEC) the hardware decoder must take the stream (no software fallback);
    `keep_on_device` leaves its frames on the GPU (no download, no conversion), the ceiling of that path.
    """
    from av.codec.hwaccel import HWAccel

    accel = HWAccel(hwaccel, allow_software_fallback=False, is_hw_owned=keep_on_device) if hwaccel else None
    frames = 0
    started = time.perf_counter()
    with av.open(str(path), hwaccel=accel) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        if hwaccel and not stream.codec_context.is_hwaccel:
            raise MediaError(f"the {hwaccel} decoder did not take the {stream.codec_context.name} stream")
        for frame in container.decode(stream):
            if not keep_on_device:
                frame.to_ndarray(format="rgb24")
            frames += 1
    return frames, time.perf_counter() - started


def machine() -> str:
    """CPU model and core count, from lscpu where available."""
    model = platform.processor() or "unknown CPU"
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
    except OSError:
        pass
    return f"{os.cpu_count()}-core CPU ({model})"


def table(rows: list[Row], settings: EncoderSettings, seconds: float) -> str:
    """The Markdown report."""
    head = ["size", "task", "vidrestore fps", "ffmpeg fps", "ratio"]
    lines = [f"Machine: {machine()}; date {datetime.date.today().isoformat()}.",
             f"Clips: testsrc2 30 fps, {seconds:g} s, H.264 + AAC. Encoder: {settings.codec} "
             f"{' '.join(f'{k}={v}' for k, v in settings.encoder_options().items())}, "
             f"threads={settings.threads or 'auto'} (ffmpeg given the same options).", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(r.cells()) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def run_cli(args: argparse.Namespace) -> int:
    """Entry point of `vidrestore bench video`."""
    settings = EncoderSettings(codec=args.codec, preset=args.preset, threads=args.threads)
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="vidrestore-bench-") as tmp:
        work = Path(tmp)
        for name in comma_list(args.sizes, str):
            size = SIZES.get(name) or tuple(int(x) for x in name.split("x"))
            clip = work / f"clip_{name}.mp4"
            make_clip(clip, size, args.seconds)  # type: ignore[arg-type]
            log.info("measuring %s", name)
            rows += measure(name, clip, work, settings)
    report = table(rows, settings, args.seconds)
    return publish(report, args.output)
