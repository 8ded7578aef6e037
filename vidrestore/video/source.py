"""VideoSource: decodes with FFmpeg frame threading, in the caller's thread or ahead in its own."""

from __future__ import annotations

import logging
import os
import threading
from typing import Any, Iterator

import av

from vidrestore.channel import CLOSED, Channel
from vidrestore.errors import MediaError, error_line
from vidrestore.video.probe import open_input, probe_container, video_stream
from vidrestore.video.types import DecodeStats, Frame, VideoInfo

log = logging.getLogger(__name__)

PIXEL_FORMATS = ("rgb24", "rgb48le", "auto")


class VideoSource:
    """The frames of a video, in order; use as a context manager.

    `frames()` decodes in the calling thread (the pipeline's decode stage, so its busy time is the
    decoding); iterating the source itself decodes ahead in a thread of its own into a bounded
    channel (`queue_size` frames), for callers that are not a pipeline.

    pixel_format: "rgb24" (uint8), "rgb48le" (uint16) or "auto" (uint16 when the source has more
    than 8 bits). passthrough=True skips the RGB conversion until a frame's `image` is read, so
    frames that are not changed are re-encoded from the decoded picture itself. `seek_ts` (a
    timestamp of the video stream) starts decoding at the last keyframe at or before it (archive chunks).
    """

    def __init__(self, path: str | os.PathLike, *, pixel_format: str = "rgb24",
                 passthrough: bool = False, queue_size: int = 8, threads: int = 0,
                 options: dict[str, str] | None = None, seek_ts: int | None = None) -> None:
        if pixel_format not in PIXEL_FORMATS:
            raise ValueError(f"pixel_format must be one of {PIXEL_FORMATS}, not {pixel_format!r}")
        self.path = str(path)
        probed = open_input(self.path, options)
        try:
            self.info: VideoInfo = probe_container(probed, self.path)
        finally:
            probed.close()
        if pixel_format == "auto":
            pixel_format = "rgb48le" if self.info.bit_depth > 8 else "rgb24"
        self.pixel_format = pixel_format
        self.passthrough = passthrough
        self.threads = threads
        self.stats = DecodeStats()
        self._options = options
        self._seek_ts = seek_ts
        self._chan: Channel[Frame] = Channel(queue_size)
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._container: av.container.InputContainer | None = None
        self._stream: av.video.stream.VideoStream | None = None
        self._finished = False
        self._end: float | None = None

    # --- lifecycle -------------------------------------------------------------------------------

    def __enter__(self) -> "VideoSource":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        """Start decoding ahead in a thread of its own (idempotent); iterating the source starts it."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._decode_ahead, daemon=True,
                                            name=f"vidrestore-decode:{os.path.basename(self.path)}")
            self._thread.start()

    def close(self) -> None:
        """Stop decoding now (early exit is fine), wait for the thread and release the file."""
        self._chan.stop.set()
        if self._thread is not None:
            self._thread.join()
        if self._container is not None:
            self._container.close()
            self._container = None

    # --- decoding in the caller's thread ---------------------------------------------------------

    def frames(self) -> Iterator[Frame]:
        """Decode the frames, in order, in the calling thread; FFmpeg errors become MediaError."""
        stream = self._open_decoder()
        try:
            for picture in self._decode(stream):
                yield self._to_frame(picture, stream)
        except av.FFmpegError as exc:
            raise MediaError(f"decoding {self.path} failed: {error_line(exc, os_reason=True)}") from exc
        self._finish()

    def _open_decoder(self) -> av.video.stream.VideoStream:
        """The video stream of the opened input, with FFmpeg's frame threading."""
        if self._stream is None:
            self._container = open_input(self.path, self._options)
            self._stream = video_stream(self._container, self.path)
            self._stream.thread_type = "AUTO"
            self._stream.codec_context.thread_count = self.threads
            if self._seek_ts is not None:
                self._container.seek(self._seek_ts, stream=self._stream, backward=True)
        return self._stream

    # --- decoding ahead in a thread of its own ---------------------------------------------------

    def __iter__(self) -> Iterator[Frame]:
        self.start()
        complete = False
        try:
            while (frame := self._chan.get()) is not CLOSED:
                yield frame
            self._thread.join()
            if self._error is not None:
                raise self._error
            complete = not self._chan.stopped
        finally:
            if not complete:
                self.close()  # the consumer stopped early or failed: end the decode thread now

    def _decode_ahead(self) -> None:
        """Thread body: decode into the channel until it is full (then wait) or stopped; errors go to the consumer."""
        try:
            for frame in self.frames():
                if not self._chan.put(frame):
                    return
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer thread
            self._error = exc
        finally:
            self._chan.close()

    # --- the decoder -----------------------------------------------------------------------------

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

    def _decode(self, stream: av.video.stream.VideoStream) -> Iterator[av.VideoFrame]:
        """Decoded frames in order; bad packets are counted and skipped, a cut-off file is flushed."""
        stats = self.stats
        packets = self._container.demux(stream)
        while True:
            try:
                packet = next(packets)
            except StopIteration:
                break
            except (av.error.InvalidDataError, av.error.EOFError, OSError) as exc:
                log.warning("%s: reading stopped early: %s", self.path, error_line(exc, os_reason=True))
                stats.truncated = True
                yield from self._flush(stream)
                break
            if packet.size:
                stats.packets += 1
            try:
                yield from packet.decode()
            except av.error.InvalidDataError as exc:
                stats.decode_errors += 1
                log.debug("%s: packet at pts %s did not decode: %s", self.path, packet.pts,
                          error_line(exc, os_reason=True))

    def _flush(self, stream: av.video.stream.VideoStream) -> Iterator[av.VideoFrame]:
        """Drain the frames the decoder still holds."""
        try:
            yield from stream.codec_context.decode(None)
        except av.FFmpegError:
            return

    def _to_frame(self, picture: av.VideoFrame, stream: av.video.stream.VideoStream) -> Frame:
        """Wrap a decoded picture in a Frame, converting to RGB here unless passthrough."""
        stats = self.stats
        frame = Frame.from_picture(picture, stats.frames, time_base=stream.time_base,
                                   pixel_format=self.pixel_format)
        stats.corrupt_frames += frame.corrupt
        if picture.pts is not None and picture.time_base:
            start = self.info.first_pts or 0
            self._end = float((picture.pts - start + (picture.duration or 0)) * picture.time_base)
        stats.frames += 1
        if not self.passthrough:
            frame.convert()  # here, in the decoding thread
        return frame


def read_frames(path: str | os.PathLike, **kwargs: Any) -> Iterator[Frame]:
    """Convenience generator: all frames of a file, the source closed however the loop ends."""
    with VideoSource(path, **kwargs) as src:
        yield from src
