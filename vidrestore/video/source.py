"""VideoSource: decodes in its own thread with FFmpeg frame threading into a bounded queue."""

from __future__ import annotations

import logging
import os
import threading
from typing import Any, Iterator

import av

from vidrestore.errors import MediaError
from vidrestore.video.pipe import END, Channel, raise_if_failure
from vidrestore.video.probe import _reason, open_input, probe_container, video_stream
from vidrestore.video.types import DecodeStats, Frame, VideoInfo

log = logging.getLogger(__name__)

PIXEL_FORMATS = ("rgb24", "rgb48le", "auto")


class VideoSource:
    """Iterate the frames of a video, decoded ahead in a worker thread; use as a context manager.

    pixel_format: "rgb24" (uint8), "rgb48le" (uint16) or "auto" (uint16 when the source has more
    than 8 bits). passthrough=True skips the RGB conversion until a frame's `image` is read, so
    frames that are not changed are re-encoded from the decoded picture itself.
    """

    def __init__(self, path: str | os.PathLike, *, pixel_format: str = "rgb24",
                 passthrough: bool = False, queue_size: int = 8, threads: int = 0,
                 options: dict[str, str] | None = None) -> None:
        if pixel_format not in PIXEL_FORMATS:
            raise ValueError(f"pixel_format must be one of {PIXEL_FORMATS}, not {pixel_format!r}")
        self.path = str(path)
        probe_container_ = open_input(self.path, options)
        try:
            self.info: VideoInfo = probe_container(probe_container_, self.path)
        finally:
            probe_container_.close()
        if pixel_format == "auto":
            pixel_format = "rgb48le" if self.info.bit_depth > 8 else "rgb24"
        self.pixel_format = pixel_format
        self.passthrough = passthrough
        self.threads = threads
        self.stats = DecodeStats()
        self._options = options
        self._chan = Channel(queue_size)
        self._thread: threading.Thread | None = None
        self._container: Any = None
        self._finished = False
        self._end: float | None = None

    # --- lifecycle -------------------------------------------------------------------------------

    def __enter__(self) -> "VideoSource":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        """Open the decoder and start the decode thread (idempotent)."""
        if self._thread is not None:
            return
        self._container = open_input(self.path, self._options)
        stream = video_stream(self._container, self.path)
        stream.thread_type = "AUTO"
        stream.codec_context.thread_count = self.threads
        self._thread = threading.Thread(target=self._run, args=(stream,), daemon=True,
                                        name=f"vidrestore-decode:{os.path.basename(self.path)}")
        self._thread.start()

    def close(self) -> None:
        """Stop decoding now (early exit is fine), wait for the thread and release the file."""
        self._chan.stop.set()
        self._chan.drain()
        if self._thread is not None:
            self._thread.join()
        if self._container is not None:
            self._container.close()
            self._container = None

    # --- consumer side ---------------------------------------------------------------------------

    def __iter__(self) -> Iterator[Frame]:
        self.start()
        try:
            while True:
                item = self._chan.get(alive=self._thread)
                if item is END:
                    break
                raise_if_failure(item)
                yield item
            self._finish()
        finally:
            if not self._finished:
                self.close()  # the consumer stopped early or failed: end the decode thread now

    def _finish(self) -> None:
        """Log what was lost once the whole file has been read."""
        if self._finished:
            return
        self._finished = True
        s = self.stats
        expected, rate = self.info.duration, self.info.average_rate
        if expected is not None and self._end is not None:
            tolerance = max(0.25, float(3 / rate) if rate else 0.25)
            if self._end + tolerance < expected:
                s.truncated = True
                log.warning("%s: video ends at %.2f s but the file says %.2f s",
                            self.path, self._end, expected)
        if s.lost_frames or s.corrupt_frames or s.truncated:
            log.warning("%s: %d frame(s) could not be decoded, %d decoded with damage%s",
                        self.path, s.lost_frames, s.corrupt_frames,
                        ", file ends early" if s.truncated else "")

    # --- decode thread ---------------------------------------------------------------------------

    def _run(self, stream: Any) -> None:
        """Thread body: demux, decode, convert, queue; errors go to the consumer."""
        try:
            for frame in self._decode(stream):
                if not self._chan.put(self._to_frame(frame, stream)):
                    return
            self._chan.put(END)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer thread
            if not isinstance(exc, MediaError):
                exc = _as_media_error(exc, self.path)
            self._chan.fail(exc)

    def _decode(self, stream: Any) -> Iterator[Any]:
        """Decoded frames in order; bad packets are counted and skipped, a cut-off file is flushed."""
        stats = self.stats
        packets = self._container.demux(stream)
        while not self._chan.stop.is_set():
            try:
                packet = next(packets)
            except StopIteration:
                break
            except (av.error.InvalidDataError, av.error.EOFError, OSError) as exc:
                log.warning("%s: reading stopped early: %s", self.path, _reason(exc))
                stats.truncated = True
                yield from self._flush(stream)
                break
            if packet.size:
                stats.packets += 1
            try:
                yield from packet.decode()
            except av.error.InvalidDataError as exc:
                stats.decode_errors += 1
                log.debug("%s: packet at pts %s did not decode: %s", self.path, packet.pts, _reason(exc))

    def _flush(self, stream: Any) -> Iterator[Any]:
        """Drain the frames the decoder still holds."""
        try:
            yield from stream.codec_context.decode(None)
        except av.FFmpegError:
            return

    def _to_frame(self, vf: Any, stream: Any) -> Frame:
        """Wrap a decoded av.VideoFrame in a Frame, converting to RGB here unless passthrough."""
        stats = self.stats
        corrupt = bool(vf.is_corrupt)
        stats.corrupt_frames += corrupt
        if vf.pts is not None and vf.time_base:
            start = self.info.first_pts or 0
            self._end = float((vf.pts - start + (vf.duration or 0)) * vf.time_base)
        frame = Frame(index=stats.frames, pts=vf.pts, time_base=vf.time_base or stream.time_base,
                      duration=vf.duration or None, key_frame=bool(vf.key_frame), corrupt=corrupt,
                      _native=vf, _image_format=self.pixel_format)
        stats.frames += 1
        if not self.passthrough:
            frame.image  # noqa: B018 - convert here, in the decode thread
            frame._native = None
        return frame


def _as_media_error(exc: BaseException, path: str) -> BaseException:
    """FFmpeg errors become MediaError naming the file; anything else passes unchanged."""
    if isinstance(exc, av.FFmpegError):
        err = MediaError(f"decoding {path} failed: {_reason(exc)}")
        err.__cause__ = exc
        return err
    return exc


def read_frames(path: str | os.PathLike, **kwargs: Any) -> Iterator[Frame]:
    """Convenience generator: all frames of a file, the source closed however the loop ends."""
    with VideoSource(path, **kwargs) as src:
        yield from src
