"""Second sink backend: pipes raw RGB frames to the ffmpeg binary through ffmpeg-python (for
encoders PyAV's build lacks, such as NVENC), then remuxes with PyAV to put back the exact PTS,
tags and copied streams: the same guarantees as the PyAV sink."""

from __future__ import annotations

import functools
import logging
import os
import shutil
import subprocess
import tempfile
from fractions import Fraction
from typing import Any

import av
import ffmpeg
import numpy as np

from vidrestore.errors import MediaError, error_line
from vidrestore.video.codecs import PRESETS, EncoderSettings, check_codec
from vidrestore.video.paths import make_temp, remove_quietly
from vidrestore.video.remux import StreamCopier, set_video_tags
from vidrestore.video.sink import (
    MP4_LIKE,
    Target,
    TimingGuard,
    VideoSink,
    check_frame_size,
)
from vidrestore.video.types import Frame, VideoInfo

log = logging.getLogger(__name__)

# FFmpeg colour enum values -> the names the scale and setparams filters take.
SCALE_MATRIX = {1: "bt709", 4: "fcc", 5: "bt601", 6: "smpte170m", 7: "smpte240m", 9: "bt2020"}
RANGES = {1: "tv", 2: "pc"}
PRIMARIES = {1: "bt709", 4: "bt470m", 5: "bt470bg", 6: "smpte170m", 7: "smpte240m", 8: "film",
             9: "bt2020", 10: "smpte428", 11: "smpte431", 12: "smpte432", 22: "jedec-p22"}
TRANSFERS = {1: "bt709", 4: "bt470m", 5: "bt470bg", 6: "smpte170m", 7: "smpte240m", 8: "linear",
             13: "iec61966-2-1", 14: "bt2020-10", 15: "bt2020-12", 16: "smpte2084",
             18: "arib-std-b67"}
MATRICES = {0: "gbr", 1: "bt709", 4: "fcc", 5: "bt470bg", 6: "smpte170m", 7: "smpte240m",
            8: "ycgco", 9: "bt2020nc", 10: "bt2020c"}
MAX_PIPE_RATE = 1000  # the intermediate file counts milliseconds; each frame needs its own


def ffmpeg_exe() -> str:
    """The ffmpeg binary: the system's if there is one, else the one imageio-ffmpeg ships."""
    exe = shutil.which("ffmpeg")
    if exe:
        return exe
    try:
        import imageio_ffmpeg
    except ImportError as exc:
        raise MediaError("no ffmpeg binary found (install ffmpeg or imageio-ffmpeg)") from exc
    return imageio_ffmpeg.get_ffmpeg_exe()


@functools.lru_cache(maxsize=4)
def binary_encoders(exe: str) -> frozenset[str]:
    """Names of the video encoders the ffmpeg binary has."""
    out = subprocess.run([exe, "-hide_banner", "-encoders"], capture_output=True, text=True,
                         check=False).stdout
    names = set()
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0].startswith("V") and len(parts[0]) == 6:
            names.add(parts[1])
    return frozenset(names)


def _present(**kwargs: str | None) -> dict[str, str]:
    """The keyword arguments that have a value."""
    return {k: v for k, v in kwargs.items() if v}


def decode_timestamps(pts_in_decode_order: list[int], out_pts: list[int]) -> tuple[list[int], list[int]]:
    """Map encoded packets back to the source timing.

    Returns, per packet in decode order, its presentation index and a DTS on the source timeline:
    DTS_j = out_pts[j - d] with d the reorder delay (extrapolated before the first frame), which
    is strictly increasing and never after the packet's PTS.
    """
    order = {p: k for k, p in enumerate(sorted(pts_in_decode_order))}
    ranks = [order[p] for p in pts_in_decode_order]
    delay = max([0] + [j - r for j, r in enumerate(ranks)])
    step = out_pts[1] - out_pts[0] if len(out_pts) > 1 else 1
    dts = [out_pts[j - delay] if j >= delay else out_pts[0] - (delay - j) * step
           for j in range(len(ranks))]
    return ranks, dts


class FfmpegEncoder:
    """Encodes with the ffmpeg binary into an intermediate Matroska file, then remuxes it into the
    temporary output with the source PTS and copied streams; same checks and timing as PyAVEncoder."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self.info = target.info
        self.guard = TimingGuard(target.info)
        self.copied: dict[int, int] = {}
        name = str(target.path)
        self._exe = ffmpeg_exe()
        if target.settings.codec not in binary_encoders(self._exe):
            raise MediaError(f"encoder {target.settings.codec!r} is not available in {self._exe}")
        self._proc: subprocess.Popen[bytes] | None = None
        self._log = tempfile.TemporaryFile()
        self._pts: list[int] = []
        self._durations: list[int | None] = []
        self._inter = make_temp(target.path, suffix=".mkv")
        try:
            self.pix_fmt = self._check_output(name)
        except BaseException:
            self.release()
            raise

    def _check_output(self, name: str) -> str:
        """Check codec, container and copied streams now, so errors come before any work; the pixel format."""
        try:
            probe_out = av.open(str(self.target.temp), "w")
        except (av.FFmpegError, ValueError) as exc:
            raise MediaError(f"cannot write {name}: no muxer for {self.target.path.suffix!r}") from exc
        try:
            pix_fmt = check_codec(self.target.settings, self.info, probe_out, name, require_encoder=False)
            StreamCopier(self.info, probe_out, name, self.target.copy_streams).close()
        finally:
            probe_out.close()
        os.truncate(self.target.temp, 0)  # emptied, not deleted and remade: the file keeps this run's lock
        return pix_fmt

    def _command(self, image: np.ndarray) -> list[str]:
        """The ffmpeg command line: raw RGB on stdin, the chosen encoder, a Matroska file out."""
        info, s = self.info, self.target.settings
        rate = info.average_rate if info.average_rate and info.average_rate <= MAX_PIPE_RATE else Fraction(25)
        rate = rate.limit_denominator(1001)
        stream = ffmpeg.input("pipe:", format="rawvideo",
                              pix_fmt="rgb48le" if image.dtype == np.uint16 else "rgb24",
                              s=f"{info.width}x{info.height}", framerate=f"{rate.numerator}/{rate.denominator}")
        c = info.color
        scale = _present(out_color_matrix=SCALE_MATRIX.get(c.matrix), out_range=RANGES.get(c.range))
        if scale:
            stream = stream.filter("scale", **scale)
        tags = _present(color_primaries=PRIMARIES.get(c.primaries), color_trc=TRANSFERS.get(c.transfer),
                        colorspace=MATRICES.get(c.matrix), range=RANGES.get(c.range))
        if tags:
            stream = stream.filter("setparams", **tags)
        if info.interlaced:
            stream = stream.filter("setfield", info.field_order)
        out_opts: dict[str, str | int] = {"vcodec": s.codec, "pix_fmt": self.pix_fmt, "threads": s.threads,
                                          "fps_mode": "passthrough", "f": "matroska"}
        out_opts.update(s.encoder_options())
        return (stream.output(str(self._inter), **out_opts)
                .global_args("-hide_banner", "-nostdin", "-loglevel", "error", "-an", "-sn", "-dn")
                .overwrite_output().compile(cmd=self._exe))

    def encode(self, frame: Frame) -> None:
        """Write one frame's pixels to ffmpeg; remember its timing for the remux."""
        image = frame.image
        check_frame_size(image, self.info)
        if self._proc is None:
            cmd = self._command(image)
            log.debug("running %s", " ".join(cmd))
            self._proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                          stderr=self._log)
        self._pts.append(self.guard.fix(frame))
        self._durations.append(frame.duration)
        try:
            self._proc.stdin.write(memoryview(np.ascontiguousarray(image)).cast("B"))
        except (BrokenPipeError, OSError) as exc:
            raise MediaError(f"ffmpeg stopped while writing {self.target.path}: {self._stderr()}") from exc

    def _stderr(self) -> str:
        """The last line ffmpeg logged, or its exit status."""
        if self._proc is not None:
            self._proc.wait()
        self._log.seek(0)
        lines = self._log.read().decode("utf-8", "replace").strip().splitlines()
        code = self._proc.returncode if self._proc else None
        return lines[-1] if lines else f"exit status {code}"

    def finish(self) -> None:
        """Close ffmpeg's input, wait for it, remux with the source timing and streams, drop the intermediate file."""
        try:
            if self._proc is not None:
                self._proc.stdin.close()
                if self._proc.wait() != 0:
                    raise MediaError(f"ffmpeg failed writing {self.target.path}: {self._stderr()}")
                self._remux()
        finally:
            self._log.close()
            remove_quietly(self._inter)

    def _remux(self) -> None:
        """Copy the encoded packets into the output with the source PTS, plus copied streams."""
        name = str(self.target.path)
        with av.open(str(self._inter)) as inter:
            ist = inter.streams.video[0]
            order = [p.pts for p in inter.demux(ist) if p.size]
        if len(order) != len(self._pts) or None in order:
            raise MediaError(f"{name}: ffmpeg wrote {len(order)} frames for {len(self._pts)} given")
        ranks, dts = decode_timestamps(order, self._pts)
        with av.open(str(self.target.temp), "w") as out, av.open(str(self._inter)) as inter:
            try:
                ist = inter.streams.video[0]
                ost = out.add_stream_from_template(ist)
                ost.time_base = self.info.time_base
                set_video_tags(ost, self.info)
                tag = PRESETS.get(self.target.settings.codec)
                if tag and tag.mp4_tag and out.format.name in MP4_LIKE:
                    ost.codec_tag = tag.mp4_tag
                copier = StreamCopier(self.info, out, name, self.target.copy_streams)
                try:
                    self._mux_video(inter.demux(ist), out, ost, ranks, dts, copier)
                    self.copied = dict(copier.copied)
                finally:
                    copier.close()  # the source input it reads from, also when muxing fails
            except av.FFmpegError as exc:
                raise MediaError(f"remuxing {name} failed: {error_line(exc, os_reason=True)}") from exc

    def _mux_video(self, packets, out, ost, ranks, dts, copier: StreamCopier) -> None:
        """The encoded packets with the source's timestamps, interleaved with the copied streams."""
        tb = self.info.time_base
        for j, pkt in enumerate(p for p in packets if p.size):
            k = ranks[j]
            pkt.time_base = tb
            pkt.pts, pkt.dts = self._pts[k], dts[j]
            pkt.duration = self._durations[k] or 0
            pkt.stream = ost
            copier.copy_until(dts[j] * tb)
            out.mux(pkt)
        copier.copy_until(None)

    def release(self) -> None:
        """Stop ffmpeg if it still runs, close files, delete the intermediate file."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()
        self._log.close()
        remove_quietly(self._inter)


def FfmpegSink(path: str | os.PathLike, info: VideoInfo, settings: EncoderSettings | None = None,  # noqa: N802
               **kwargs: Any) -> VideoSink:
    """A VideoSink that encodes with the ffmpeg binary; same checks, timing, streams and atomicity."""
    return VideoSink(path, info, settings, encoder=FfmpegEncoder, thread_name="vidrestore-encode-ffmpeg", **kwargs)
