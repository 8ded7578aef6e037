"""LiveSource: frames from a camera, a network feed or a file played at its own rate, newest first.

A reader thread decodes continuously into a short queue; when the consumer (restoration) is behind,
the oldest queued frame is dropped and counted, so what waits is never more than `queue_size`
frames old. A source that stops or breaks is reopened with exponential backoff; a file ends the run
(or starts over with `loop`). The source's audio packets, when a sink wants them, are handed on as
demuxed (copied, never decoded) and never dropped with the frames.
"""

from __future__ import annotations

import io
import logging
import os
import re
import sys
import threading
import time
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Iterator

import av

from vidrestore.channel import CLOSED, Channel
from vidrestore.errors import MediaError, error_line
from vidrestore.live.types import AudioSink, AudioTrack, LiveAudio, LiveFrame, LiveStats
from vidrestore.video.paths import check_input, is_url
from vidrestore.video.probe import video_stream

log = logging.getLogger(__name__)

NETWORK_SCHEMES = ("rtsp", "rtsps", "rtmp", "rtmps", "http", "https", "udp", "tcp", "srt", "rtp")


@dataclass(frozen=True)
class SourceOptions:
    """How to open and keep a live source."""

    transport: str = "tcp"  # RTSP transport: tcp (default, firewall-friendly) or udp
    timeout: float = 5.0  # seconds without data before the source counts as broken
    input_format: str | None = None  # FFmpeg input format (v4l2, dshow, avfoundation, ...); guessed when None
    input_options: dict[str, str] = field(default_factory=dict)  # extra FFmpeg options (video_size, framerate, ...)
    realtime: bool | None = None  # play files at their own rate; default: True for files
    loop: bool = False  # files: start over at the end instead of ending the run
    queue_size: int = 1  # decoded frames waiting for restoration at most (older ones are dropped)
    backoff: float = 0.5  # first wait before reopening; doubles on each failure
    max_backoff: float = 10.0
    max_retries: int | None = None  # reopen attempts in a row before giving up (None: forever)
    audio: bool = True  # hand the source's audio to the sinks that record it (False: video only)


def classify(source: str) -> str:
    """'camera', 'network' or 'file' for a SOURCE argument."""
    if re.fullmatch(r"\d+", source) or source.startswith("/dev/video"):
        return "camera"
    if is_url(source):
        return "network"
    return "file"


def camera_input(source: str, input_format: str | None) -> tuple[str, str | None]:
    """The FFmpeg input name and format of a webcam given as an index or a device path."""
    if re.fullmatch(r"\d+", source):
        if sys.platform.startswith("linux"):
            return f"/dev/video{source}", input_format or "v4l2"
        if sys.platform == "darwin":
            return source, input_format or "avfoundation"
        return f"video={source}", input_format or "dshow"
    return source, input_format or ("v4l2" if sys.platform.startswith("linux") else None)


def open_options(source: str, kind: str, options: SourceOptions) -> tuple[str, str | None, dict[str, str]]:
    """(name, format, FFmpeg options) to open the source with."""
    name, fmt = (camera_input(source, options.input_format) if kind == "camera" else (source, options.input_format))
    ffmpeg_options: dict[str, str] = {}
    if source.lower().startswith(("rtsp://", "rtsps://")):
        ffmpeg_options["rtsp_transport"] = options.transport
    if kind == "network":
        ffmpeg_options["fflags"] = "nobuffer"  # hand frames over as soon as they are decoded
    ffmpeg_options.update(options.input_options)
    return name, fmt, ffmpeg_options


def audio_track(stream: av.audio.stream.AudioStream, connection: int) -> AudioTrack:
    """The audio stream's codec parameters, copied into a stream of an in-memory container that is never
    written, so that they outlive the source's own container (closed at a reconnect)."""
    holder = av.open(io.BytesIO(), "w", format="nut")  # nut takes any codec FFmpeg knows
    template = holder.add_stream_from_template(stream)  # the stream keeps its container alive
    return AudioTrack(connection, template, Fraction(stream.time_base))


def first_audio_stream(container: av.container.InputContainer) -> av.audio.stream.AudioStream | None:
    """The source's first audio stream with a known codec, or None."""
    for s in container.streams.audio:
        if s.codec_context is not None and s.codec_context.name:
            return s
    return None


class SourceEnded(Exception):
    """The source ended for good (a file without loop, or retries exhausted)."""


class LiveSource:
    """Iterate LiveFrames of a live source; reconnects by itself; `stop()` ends the iteration."""

    def __init__(self, source: str, options: SourceOptions | None = None, stats: LiveStats | None = None) -> None:
        self.source = str(source)
        self.options = options or SourceOptions()
        self.stats = stats or LiveStats()
        self.kind = classify(self.source)
        if self.kind == "file":
            check_input(self.source)
        self.realtime = self.options.realtime if self.options.realtime is not None else self.kind == "file"
        self._stop = threading.Event()
        self._frames: Channel[LiveFrame] = Channel(self.options.queue_size, "newest", self._stop)
        self._ended = False
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None
        self._sequence = 0
        self.connection = 0
        self.rate: Fraction | None = None  # nominal frame rate of the open stream, when it declares one
        self.last_problem = ""
        self._audio_sinks: list[AudioSink] = []

    # --- lifecycle -------------------------------------------------------------------------------

    def add_audio_sink(self, sink: AudioSink) -> None:
        """Hand the source's audio (unless `options.audio` is off) to `sink` as well; call before start()."""
        self._audio_sinks.append(sink)

    def start(self) -> None:
        """Start the reader thread (idempotent)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="vidrestore-live-source", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stop reading; the iteration ends at once and the frames still queued are dropped."""
        self._stop.set()

    def join(self, timeout: float | None = None) -> None:
        """Wait for the reader thread (it notices a stop within the read timeout)."""
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def ended(self) -> bool:
        """True when no frame will come any more (the source ended or was stopped) and none is queued."""
        return (self._ended or self._stop.is_set()) and not len(self._frames)

    # --- consumer side ---------------------------------------------------------------------------

    def __iter__(self) -> Iterator[LiveFrame]:
        self.start()
        while True:
            item = self.next(timeout=None)
            if item is None:
                return
            yield item

    def next(self, timeout: float | None) -> LiveFrame | None:
        """The oldest queued frame; None at the end (or after `timeout` seconds without a frame)."""
        frame = self._frames.get(timeout)
        if frame is CLOSED:
            if self._error is not None:
                raise self._error
            return None
        return frame

    # --- reader thread ---------------------------------------------------------------------------

    def _push(self, picture: av.VideoFrame, stream: av.video.stream.VideoStream) -> None:
        """Queue a frame, dropping the oldest when restoration is behind."""
        now = time.monotonic()
        self._sequence += 1
        frame = LiveFrame.from_picture(picture, self._sequence, time_base=stream.time_base, arrival=now,
                                       sequence=self._sequence, connection=self.connection, rate=self.rate)
        if not self._frames.put(frame) and not self._stop.is_set():
            self.stats.drop()
        self.stats.frame_in(now)

    def _run(self) -> None:
        failures = 0
        try:
            while not self._stop.is_set():
                try:
                    delivered = self._read_once()
                except (av.FFmpegError, OSError, MediaError) as exc:
                    delivered = False
                    self._set_down(f"{describe(self.source)}: {error_line(exc, os_reason=True)}")
                if self._stop.is_set():
                    break
                if self.kind == "file" and not self.options.loop and self.connection and not self.last_problem:
                    break  # a file played to its end
                failures = 0 if delivered else failures + 1
                if self.options.max_retries is not None and failures > self.options.max_retries:
                    raise SourceEnded(f"giving up on {describe(self.source)} after {failures} failed attempt(s): "
                                      f"{self.last_problem or 'no frames'}")
                if self.kind != "file" or self.last_problem:
                    self._wait_before_reopen(failures)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            self._error = exc if isinstance(exc, (SourceEnded, MediaError)) else MediaError(str(exc))
        finally:
            self.stats.source_up = False
            self._ended = True
            self._frames.close()

    def _wait_before_reopen(self, failures: int) -> None:
        """Exponential backoff (capped), interrupted by stop()."""
        delay = min(self.options.max_backoff, self.options.backoff * (2 ** max(0, failures - 1)))
        log.info("reopening %s in %.1f s", describe(self.source), delay)
        self._stop.wait(delay)

    def _set_down(self, problem: str) -> None:
        """Note that the source broke, once per outage in the log."""
        if self.stats.source_up or problem != self.last_problem:
            log.warning("source lost: %s", problem)
        self.stats.source_up = False
        self.last_problem = problem

    def _read_once(self) -> bool:
        """Open the source and push its frames until it ends or breaks; True if any frame came."""
        name, fmt, ffmpeg_options = open_options(self.source, self.kind, self.options)
        container = av.open(name, "r", format=fmt, options=ffmpeg_options,
                            timeout=(self.options.timeout, self.options.timeout))
        delivered = False
        try:
            stream, audio = self._connect(container)
            clock = _PlaybackClock() if self.realtime else None
            for picture in self._decode(container, stream, audio):
                if self._stop.is_set():
                    break
                if clock is not None:
                    clock.wait(presentation_seconds(picture, stream), self._stop)
                self._push(picture, stream)
                delivered = True
        finally:
            container.close()
        if self.kind != "file" and not self._stop.is_set():
            self._set_down(f"{describe(self.source)}: the stream ended")
        return delivered

    def _connect(self, container: av.container.InputContainer,
                 ) -> tuple[av.video.stream.VideoStream, av.audio.stream.AudioStream | None]:
        """A new connection: its video stream, and its audio stream when a sink wants it (announced to them)."""
        stream = video_stream(container, self.source)
        stream.thread_type = "AUTO" if self.kind == "file" else "SLICE"  # frame threading adds delay
        audio = first_audio_stream(container) if self.options.audio and self._audio_sinks else None
        self.connection += 1
        self.rate = stream.average_rate or stream.guessed_rate or None
        if self.connection > 1 and self.kind != "file":
            self.stats.reconnects += 1
        log.info("source up: %s (%dx%d%s, connection %d)", describe(self.source), stream.codec_context.width,
                 stream.codec_context.height, f", {audio.codec_context.name} audio" if audio else "",
                 self.connection)
        self.last_problem = ""
        self.stats.source_up = True
        if audio is not None:
            track = audio_track(audio, self.connection)
            for sink in self._audio_sinks:
                sink.audio_track(track)
        return stream, audio

    def _decode(self, container: av.container.InputContainer, stream: av.video.stream.VideoStream,
                audio: av.audio.stream.AudioStream | None) -> Iterator[av.VideoFrame]:
        """The decoded video frames; the audio packets met on the way go to the audio sinks as they are."""
        if audio is None:
            yield from container.decode(stream)
            return
        for packet in container.demux(stream, audio):
            if packet.stream.index == stream.index:
                yield from packet.decode()
            elif packet.size:  # not the demuxer's end-of-stream marker
                self._push_audio(packet)

    def _push_audio(self, packet: av.Packet) -> None:
        """Hand one audio packet, copied, to every audio sink (they never block)."""
        item = LiveAudio(bytes(packet), packet.pts, packet.dts, packet.duration or 0, Fraction(packet.time_base),
                         self.connection, packet.is_keyframe)
        for sink in self._audio_sinks:
            sink.write_audio(item)


def presentation_seconds(picture: av.VideoFrame, stream: av.video.stream.VideoStream) -> float | None:
    """When a decoded picture is to be shown, in seconds of the stream's time line (None without a pts)."""
    return None if picture.pts is None else float(picture.pts * (picture.time_base or stream.time_base))


class _PlaybackClock:
    """Sleeps so that frames come out at their presentation times (a file played in real time)."""

    def __init__(self) -> None:
        self.start_wall: float | None = None
        self.start_pts: float | None = None

    def wait(self, seconds: float | None, stop: threading.Event) -> None:
        if seconds is None:
            return
        now = time.monotonic()
        if self.start_wall is None or self.start_pts is None or seconds < self.start_pts:
            self.start_wall, self.start_pts = now, seconds  # first frame, or the file looped
            return
        delay = self.start_wall + (seconds - self.start_pts) - now
        if delay > 0:
            stop.wait(delay)


def describe(source: str) -> str:
    """The source for messages (a URL's password hidden)."""
    return re.sub(r"(//[^:/@]+:)[^@]+@", r"\1***@", source) if "@" in source else os.fspath(source)


