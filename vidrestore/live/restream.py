"""RestreamSink: the live frames sent on as low-latency H.264 to an RTSP/RTMP server or a UDP/SRT address."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from fractions import Fraction
from typing import Any
from urllib.parse import urlsplit

import av
import numpy as np

from vidrestore.channel import CLOSED
from vidrestore.errors import MediaError, VidrestoreError, error_line
from vidrestore.live.handoff import QueuedSink
from vidrestore.live.overlay import no_signal_picture
from vidrestore.live.types import LiveOutput
from vidrestore.video.codecs import EncoderSettings

log = logging.getLogger(__name__)

SCHEME_FORMATS = {"rtsp": "rtsp", "rtsps": "rtsp", "rtmp": "flv", "rtmps": "flv", "udp": "mpegts",
                  "srt": "mpegts", "tcp": "mpegts"}
FORMAT_OPTIONS = {"rtsp": {"rtsp_transport": "tcp", "timeout": "5000000"}}  # muxer defaults; timeout in µs
TIME_BASE = Fraction(1, 90000)  # pts from the frames' arrival times
DEFAULT_RATE = Fraction(25)
QUEUE_FRAMES = 2  # frames waiting to be sent; older ones are dropped
BACKOFF_FIRST_S = 0.5
BACKOFF_MAX_S = 10.0
WAITING_SIZE = (640, 360)  # the 'no signal' picture's size before any frame was seen
PERMANENT = (av.error.ProtocolNotFoundError, av.error.MuxerNotFoundError, av.error.EncoderNotFoundError,
             av.error.OptionNotFoundError, MediaError)  # retrying cannot fix these


def stream_settings(rate: Fraction) -> EncoderSettings:
    """libx264 for live viewing: fastest preset, no look-ahead or B-frames, a keyframe every second."""
    gop = str(max(1, round(rate)))
    return EncoderSettings(codec="libx264", preset="ultrafast", quality=23,
                           options={"tune": "zerolatency", "g": gop, "bf": "0"})


def format_for(url: str) -> str | None:
    """The muxer for a URL's scheme (rtsp, flv for rtmp, mpegts for udp/srt/tcp); None lets FFmpeg guess."""
    return SCHEME_FORMATS.get(urlsplit(url).scheme.lower())


@dataclass
class Idle:
    """Queued by `idle`: send the 'no signal' picture."""

    message: str
    arrival: float


class RestreamSink(QueuedSink):
    """Send the frames to `url` as H.264 (libx264 ultrafast, zerolatency, 1 s GOP) through PyAV.

    Encoding and sending run in the sink's own thread behind a queue of QUEUE_FRAMES (the newest kept).
    The stream keeps the first frame's size (rounded down to even); later frames are scaled to it. The
    connection is opened by that thread and reopened after a failure with backoff (0.5 s doubling to
    10 s; frames meanwhile are dropped); errors that retrying cannot fix (no such protocol or muxer in
    this FFmpeg build) are raised by the next `write`. Timestamps come from the frames' arrival times:
    monotonic across reconnects. `idle` sends the last frame darkened with the message.

    `options` are the muxer's (e.g. rtsp_transport: tcp or udp); protocol options go in the URL
    (`udp://host:port?pkt_size=1316`).
    """

    name = "restream"
    thread_name = "vidrestore-live-restream"

    def __init__(self, url: str, *, format: str | None = None, options: dict[str, str] | None = None,
                 settings: EncoderSettings | None = None, rate: Fraction | None = None) -> None:
        self.url = url
        self.format = format or format_for(url)
        if self.format is not None and self.format not in av.formats_available:
            raise VidrestoreError(f"cannot re-stream to {url}: FFmpeg has no {self.format!r} muxer")
        self.options = {**FORMAT_OPTIONS.get(self.format or "", {}), **(options or {})}
        self.rate = Fraction(rate) if rate else DEFAULT_RATE
        self._follow_source_rate = rate is None and settings is None  # until the first connection
        self.settings = (settings or stream_settings(self.rate)).resolved()
        check_encoder(self.settings)
        self.sent = 0  # frames sent
        self.connections = 0  # connections opened
        self._size: tuple[int, int] | None = None  # the stream's width and height, fixed by the first frame
        self._sized_by_frame = False
        self._last_image: np.ndarray | None = None
        self._out: Any = None
        self._stream: Any = None
        self._last_pts = -1
        self._start: float | None = None
        self._backoff = BACKOFF_FIRST_S
        self._retry_at = 0.0
        self._start_worker(QUEUE_FRAMES)

    # --- the caller's side -----------------------------------------------------------------------

    def write(self, output: LiveOutput) -> None:
        """Queue a frame to send (the oldest waiting one is dropped when sending is behind)."""
        self._enqueue(output)

    def idle(self, message: str) -> None:
        """Send the last frame darkened (or a gray card) with `message`, so viewers see why it stopped."""
        self._enqueue(Idle(message, time.monotonic()))

    def close(self) -> None:
        """Send what is queued, flush the encoder, close the connection and join the thread."""
        self._stop_worker()
        log.info("re-streamed %d frames to %s (%d dropped, %d connection(s))", self.sent, self.url,
                 self.dropped, self.connections)

    def _describe(self, exc: BaseException) -> BaseException:
        """The sending thread's error as one line naming the URL."""
        return VidrestoreError(f"cannot re-stream to {self.url}: {error_line(exc, os_reason=True)}")

    # --- the sending thread ----------------------------------------------------------------------

    def _work(self) -> None:
        """Thread body: send every queued picture; reconnect with backoff after a failure."""
        while (item := self._queue.get()) is not CLOSED:
            picture, arrival = self._picture(item)
            self._fix_size(picture, isinstance(item, Idle))
            if self._out is None and time.monotonic() < self._retry_at:
                continue  # waiting to reconnect: this frame is dropped
            try:
                if self._out is None:
                    self._connect()
                self._send(picture, arrival)
            except PERMANENT as exc:
                log.error("re-streaming to %s stopped: %s", self.url, error_line(exc, os_reason=True))
                self._fail(exc)
            except (av.FFmpegError, OSError) as exc:
                self._schedule_retry(exc)
        self._flush()

    def _picture(self, item: LiveOutput | Idle) -> tuple[np.ndarray, float]:
        """The picture to send for a queued item and when it arrived."""
        if isinstance(item, Idle):
            height, width = (self._last_image.shape[:2] if self._last_image is not None
                             else WAITING_SIZE[::-1])
            return no_signal_picture(width, height, item.message, self._last_image), item.arrival
        self._last_image = item.image
        if self._follow_source_rate and item.rate and self.connections == 0:
            self.rate = Fraction(item.rate)
            self.settings = stream_settings(self.rate).resolved()  # a keyframe every second of the source
            self._follow_source_rate = False
        return item.image, item.arrival

    def _fix_size(self, picture: np.ndarray, idle: bool) -> None:
        """The stream's size: the first frame's (a stream begun on the 'no signal' card restarts at it)."""
        if self._sized_by_frame:
            return
        size = even_size(picture)
        if not idle:
            self._sized_by_frame = True
            if self._size not in (None, size):
                self._disconnect()
        if self._size is None or not idle:
            self._size = size

    def _connect(self) -> None:
        """Open the output and its encoder; the header (the RTSP/RTMP handshake) goes out with the first frame."""
        self.connections += 1
        self._out = av.open(self.url, "w", format=self.format, container_options=self.options)
        stream = self._out.add_stream(self.settings.codec, rate=self.rate,
                                      options=self.settings.encoder_options())
        stream.width, stream.height = self._size
        stream.pix_fmt = "yuv420p"
        stream.time_base = stream.codec_context.time_base = TIME_BASE
        stream.codec_context.thread_count = self.settings.threads
        self._stream = stream

    def _send(self, picture: np.ndarray, arrival: float) -> None:
        """Encode one picture at its arrival time and send the packets."""
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(picture), format="rgb24")
        width, height = self._size
        frame = frame.reformat(width=width, height=height, format="yuv420p")
        frame.pts = self._pts(arrival)
        frame.time_base = TIME_BASE
        self._out.mux(self._stream.encode(frame))
        self.sent += 1
        if self._backoff != BACKOFF_FIRST_S:
            log.info("re-streaming to %s again", self.url)
            self._backoff = BACKOFF_FIRST_S

    def _pts(self, arrival: float) -> int:
        """Arrival time since the first frame, in TIME_BASE ticks, always after the previous frame's."""
        if self._start is None:
            self._start = arrival
        pts = max(round((arrival - self._start) / TIME_BASE), self._last_pts + 1)
        self._last_pts = pts
        return pts

    def _schedule_retry(self, exc: BaseException) -> None:
        """Drop the connection and try again after the backoff delay (doubling up to BACKOFF_MAX_S)."""
        self._disconnect()
        log.warning("re-streaming to %s failed (%s); retrying in %.1f s", self.url,
                    error_line(exc, os_reason=True), self._backoff)
        self._retry_at = time.monotonic() + self._backoff
        self._backoff = min(self._backoff * 2, BACKOFF_MAX_S)

    def _flush(self) -> None:
        """At the end: the encoder's last packets and the trailer, then close."""
        if self._out is not None:
            try:
                self._out.mux(self._stream.encode(None))
            except (av.FFmpegError, OSError) as exc:
                log.warning("re-streaming to %s: the last frames were not sent (%s)", self.url,
                            error_line(exc, os_reason=True))
        self._disconnect()

    def _disconnect(self) -> None:
        """Close the output, whatever state it is in."""
        out, self._out, self._stream = self._out, None, None
        if out is not None:
            try:
                out.close()
            except (av.FFmpegError, OSError) as exc:
                log.debug("closing the re-stream to %s: %s", self.url, exc)


def check_encoder(settings: EncoderSettings) -> None:
    """VidrestoreError now, not in the sending thread, when the encoder or its options are unusable."""
    try:
        ctx = av.CodecContext.create(settings.codec, "w")
        ctx.width, ctx.height, ctx.pix_fmt = 64, 64, "yuv420p"
        ctx.time_base = TIME_BASE
        ctx.options = settings.encoder_options()
        ctx.open()
    except (av.FFmpegError, ValueError) as exc:
        raise VidrestoreError(f"cannot re-stream with {settings.codec}: {error_line(exc, os_reason=True)}") from exc


def even_size(picture: np.ndarray) -> tuple[int, int]:
    """Width and height rounded down to even numbers (4:2:0 needs them), at least 2."""
    height, width = picture.shape[:2]
    return max(2, width - width % 2), max(2, height - height % 2)
