"""VideoSink: encodes frames in its own thread with the timing they came with, copies the other
streams packet by packet, and writes to a temp file that is renamed into place only when complete."""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np

from vidrestore.errors import MediaError
from vidrestore.video.codecs import PRESETS, EncoderSettings, check_codec
from vidrestore.video.paths import check_output, commit_temp, make_temp, remove_quietly
from vidrestore.video.pipe import END, Channel, raise_if_failure
from vidrestore.video.probe import _reason
from vidrestore.video.remux import StreamCopier, packet_time, set_video_tags
from vidrestore.video.types import Frame, VideoInfo

log = logging.getLogger(__name__)

# AVColorSpace -> swscale colourspace (SWS_CS_*), for RGB -> YUV conversion with the source's matrix.
SWS_MATRIX = {1: 1, 4: 4, 5: 5, 6: 5, 7: 7, 9: 9, 10: 9}
MP4_LIKE = {"mp4", "mov", "mov,mp4,m4a,3gp,3g2,mj2", "ipod", "3gp"}
# Encoder parameters without which the same frames do not always encode the same. libx264 picks its
# AVX-512 MB-tree kernel on CPUs that have it, and that kernel reads memory nothing wrote (x264 core
# 165): the output then changes from run to run. cpu-independent puts the C version in its place
# (the rest of x264's assembly stays), which also makes the output the same on every CPU.
REPRODUCIBLE_PARAMS = {"libx264": ("x264-params", "cpu-independent", "1")}


@dataclass
class SinkStats:
    """What was written: video frames, copied packets per source stream, frames whose pts was fixed."""

    frames: int = 0
    copied_packets: dict[int, int] = field(default_factory=dict)
    retimed: int = 0


def reproducible_options(settings: EncoderSettings) -> dict[str, str]:
    """The encoder options of (resolved) `settings`, plus the parameters that make the output a
    function of the input alone; a parameter the user set is left as it is."""
    options = settings.encoder_options()
    if settings.codec in REPRODUCIBLE_PARAMS:
        option, name, value = REPRODUCIBLE_PARAMS[settings.codec]
        params = options.get(option, "")
        if name not in {item.split("=")[0] for item in params.split(":")}:
            options[option] = f"{params}:{name}={value}" if params else f"{name}={value}"
    return options


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


class VideoSink:
    """Write frames to `path` with `info`'s timing, tags and other streams; a context manager.

    Everything that can be checked is checked in the constructor (output folder, output != input,
    codec, container); errors then surface as MediaError before any frame is encoded.
    """

    thread_name = "vidrestore-encode"

    def __init__(self, path: str | os.PathLike, info: VideoInfo,
                 settings: EncoderSettings | None = None, *, copy_streams: bool = True,
                 queue_size: int = 8) -> None:
        self.info = info
        self.settings = (settings or EncoderSettings()).resolved()
        self.out_path = check_output(path, info.path)
        self.copy_streams = copy_streams
        self.stats = SinkStats()
        self._chan = Channel(queue_size)
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._closed = False
        self._guard = TimingGuard(info)
        self._tmp = make_temp(self.out_path)
        try:
            self._open()
        except BaseException:
            self._cleanup()
            raise

    # --- backend hooks (PyAV) --------------------------------------------------------------------

    def _open(self) -> None:
        """Open the output, add the video and copied streams, write the header: all before work."""
        name = str(self.out_path)
        try:
            self._out = av.open(str(self._tmp), "w")
        except (av.FFmpegError, ValueError) as exc:
            raise MediaError(f"cannot write {name}: no muxer for {self.out_path.suffix!r} "
                             f"({_reason(exc)})") from exc
        self.pix_fmt = check_codec(self.settings, self.info, self._out, name)
        self._stream = self._add_video_stream()
        self._copier = StreamCopier(self.info, self._out, name, self.copy_streams)
        try:
            self._out.start_encoding()
        except av.FFmpegError as exc:
            raise MediaError(f"cannot write {name} with {self.settings.codec}: {_reason(exc)}") from exc

    def _add_video_stream(self) -> Any:
        """The encoder stream: source size, time base, colour, rotation, SAR; the codec's preset."""
        info, s = self.info, self.settings
        try:
            stream = self._out.add_stream(s.codec, rate=info.average_rate or None,
                                          options=reproducible_options(s))
        except (av.FFmpegError, ValueError) as exc:
            raise MediaError(f"cannot set up encoder {s.codec}: {_reason(exc)}") from exc
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

    def _encode(self, frame: Frame | None) -> None:
        """Encode one frame (None flushes) and mux what comes out, interleaved with copied packets."""
        vf = None if frame is None else self._to_av(frame)
        for packet in self._stream.encode(vf):
            self._copier.copy_until(packet_time(packet))
            self._out.mux(packet)

    def _finish(self) -> None:
        """Flush the encoder, copy the remaining packets, write the trailer."""
        self._encode(None)
        self._copier.copy_until(None)
        self.stats.copied_packets = dict(self._copier.copied)
        self._copier.close()
        self._out.close()

    def _release(self) -> None:
        """Close whatever is open without finishing it (after a failure)."""
        for closer in (getattr(self, "_copier", None), getattr(self, "_out", None)):
            if closer is not None:
                try:
                    closer.close()
                except Exception as exc:  # noqa: BLE001 - cleanup must go on
                    log.debug("closing after failure: %s", exc)

    def _to_av(self, frame: Frame) -> Any:
        """The av.VideoFrame to encode: the decoded picture itself when untouched, else from RGB."""
        vf = frame.native
        if vf is None or vf.width != self.info.width or vf.height != self.info.height:
            vf = self._from_image(frame.image)
        else:
            vf.pict_type = av.video.frame.PictureType.NONE  # never force the source's frame types
        vf.pts = self._guard.fix(frame)
        vf.time_base = self.info.time_base
        if frame.duration:
            vf.duration = frame.duration
        return vf

    def _from_image(self, image: np.ndarray) -> Any:
        """RGB array -> frame in the output pixel format, using the source's matrix and range."""
        if image.shape != (self.info.height, self.info.width, 3):
            raise MediaError(f"frame of shape {image.shape} does not match the video "
                             f"({self.info.height}x{self.info.width}x3)")
        fmt = "rgb48le" if image.dtype == np.uint16 else "rgb24"
        vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format=fmt)
        c = self.info.color
        return vf.reformat(format=self.pix_fmt, dst_colorspace=SWS_MATRIX.get(c.matrix),
                           dst_color_range=c.range or None)

    # --- thread and lifecycle --------------------------------------------------------------------

    def __enter__(self) -> "VideoSink":
        self.start()
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def start(self) -> None:
        """Start the encode thread (idempotent)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, daemon=True, name=self.thread_name)
            self._thread.start()

    def write(self, frame: Frame) -> None:
        """Queue a frame for encoding (blocks when the queue is full); raises the encoder's error."""
        self.start()
        if self._error is not None or not self._thread.is_alive():
            self._raise()
        if not self._chan.put(frame):
            self._raise()

    def _run(self) -> None:
        """Thread body: encode until END; the first error stops it and is kept for the caller."""
        try:
            while True:
                item = self._chan.get()
                if item is END:
                    break
                raise_if_failure(item)
                if self._chan.stop.is_set():
                    return
                self._encode(item)
                self.stats.frames += 1
            if not self._chan.stop.is_set():
                self._finish()
        except BaseException as exc:  # noqa: BLE001 - handed to the caller
            self._error = exc
            self._chan.stop.set()
            self._chan.drain()

    def _raise(self) -> None:
        """Re-raise the encode thread's error as MediaError naming the output."""
        exc = self._error
        if exc is None:
            raise MediaError(f"writing {self.out_path} stopped")
        if isinstance(exc, (MediaError, KeyboardInterrupt)):
            raise exc
        raise MediaError(f"writing {self.out_path} failed: {_reason(exc)}") from exc

    def close(self) -> Path:
        """Finish the file and rename it into place; on any error nothing is left behind."""
        if self._closed:
            return self.out_path
        try:
            self.start()
            self._chan.put(END)
            self._thread.join()
            if self._error is not None:
                self._raise()
            self._check_complete()
            commit_temp(self._tmp, self.out_path)
        except BaseException:
            self._cleanup()
            raise
        self._closed = True
        self.stats.retimed = self._guard.retimed
        log.info("wrote %s: %d frames", self.out_path, self.stats.frames)
        return self.out_path

    def _check_complete(self) -> None:
        """MediaError when nothing was written (an empty video is not a finished output)."""
        if self.stats.frames == 0:
            raise MediaError(f"no frames were written to {self.out_path}")

    def abort(self) -> None:
        """Stop encoding and remove the temporary file: nothing that looks finished is left."""
        self._chan.stop.set()
        self._chan.drain()
        if self._thread is not None:
            self._thread.join()
        self._cleanup()

    def _cleanup(self) -> None:
        """Release files and delete temporaries (idempotent)."""
        self._closed = True
        self._release()
        remove_quietly(self._tmp)
