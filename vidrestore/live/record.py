"""RecordingSink: the live frames written to a video file (or numbered segments) with the source's timing,
and the source's audio packets copied beside them, on the same time line."""

from __future__ import annotations

import functools
import logging
import math
from collections import deque
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from vidrestore.errors import MediaError
from vidrestore.channel import CLOSED
from vidrestore.live.handoff import QueuedSink
from vidrestore.live.types import AudioTrack, LiveAudio, LiveOutput
from vidrestore.video.codecs import EncoderSettings, check_container_holds
from vidrestore.video.paths import check_output
from vidrestore.video.sink import MP4_LIKE, OtherStreams, PyAVEncoder, Target, VideoSink
from vidrestore.video.types import Frame, VideoInfo

log = logging.getLogger(__name__)

FINE_TIME_BASE = Fraction(1, 90000)  # for sources without timestamps: steps measured by arrival time
MAX_JUMP_SECONDS = 10  # a larger forward jump of the source's timestamps is a discontinuity, not a gap
DEFAULT_RATE = Fraction(25)  # frame step assumed before two frames were seen (without a rate hint)
STEP_WINDOW = 15  # frame intervals whose median is the frame step
QUEUE_FRAMES = 16  # frames waiting for the encoder before the oldest are dropped (a 1080p frame: 6 MB)
DROPS_LOGGED = {1, 10, 100, 1000, 10000}  # drop counts that get a warning
LIVE_SETTINGS = EncoderSettings(codec="libx264", preset="ultrafast", quality=23,
                                options={"tune": "zerolatency"})


def exact(seconds: float) -> Fraction:
    """Seconds as a fraction (0.2 -> 1/5), so comparisons with frame times are exact."""
    return Fraction(seconds).limit_denominator(1_000_000)


class NoOtherStreams:
    """The other streams of a file without audio: live frames come without a file whose streams could be copied."""

    copied: dict[int, int] = {}

    def copy_until(self, time: object) -> None:
        """Nothing to interleave with the video."""

    def close(self) -> None:
        """Nothing to release."""


class AudioCopier:
    """The other streams of a file with the source's audio: the packets the recorder
    placed (`add`, its thread) are muxed in time order between the video packets (the encoder's thread)."""

    def __init__(self, out: av.container.OutputContainer, track: AudioTrack, out_name: str) -> None:
        try:
            check_container_holds(out, track.codec, out_name, what="the source's audio")
            self.stream = out.add_stream_from_template(track.template)
        except MediaError as exc:
            raise MediaError(f"{exc}, or record without it (--no-audio)") from exc
        except (av.FFmpegError, ValueError) as exc:
            raise MediaError(f"{out_name}: cannot record the source's {track.codec} audio ({exc}); "
                             f"choose another container, or record without it (--no-audio)") from exc
        if out.format.name in MP4_LIKE:  # where the audio starts is kept in the movie's time scale (else 1 ms)
            out.container_options.setdefault("movie_timescale", str(track.template.codec_context.sample_rate))
        self.out = out
        self.copied = {self.stream.index: 0}
        self._waiting: deque[tuple[Fraction, LiveAudio, int]] = deque()  # (seconds in the file, packet, pts)

    def add(self, packet: LiveAudio, pts: int) -> None:
        """Queue a packet for the file at `pts` (in the packet's time base); packets come in time order."""
        self._waiting.append((pts * packet.time_base, packet, pts))

    def copy_until(self, time: Fraction | None) -> None:
        """Mux the queued packets that start at or before `time` seconds (None: all)."""
        while self._waiting and (time is None or self._waiting[0][0] <= time):
            _, packet, pts = self._waiting.popleft()
            self.out.mux(self._packet(packet, pts))
            self.copied[self.stream.index] += 1

    def _packet(self, packet: LiveAudio, pts: int) -> av.Packet:
        """The source's bytes as a packet of the file's audio stream at `pts` (decode time shifted alike)."""
        out = av.Packet(packet.data)
        out.pts = pts
        out.dts = pts if packet.dts is None or packet.pts is None else packet.dts + pts - packet.pts
        out.duration = packet.duration
        out.time_base = packet.time_base
        out.is_keyframe = packet.keyframe
        out.stream = self.stream
        return out

    def close(self) -> None:
        """Nothing to release (the packets are the recorder's)."""


class LiveFile:
    """One file of the recording: VideoSink (the encoder thread, the pixel conversion and the temporary
    file renamed into place when complete) for frames that come from no file, so no source streams are
    copied; with `audio`, the file has that audio stream too, for the packets given to `add_audio`."""

    def __init__(self, path: Path, info: VideoInfo, settings: EncoderSettings,
                 audio: AudioTrack | None = None) -> None:
        self.audio = audio
        self._audio_copier: AudioCopier | None = None
        self.writer = VideoSink(path, info, settings, copy_streams=False, thread_name="vidrestore-encode",
                                encoder=functools.partial(PyAVEncoder, other_streams=self._other_streams))

    def _other_streams(self, target: Target, out: av.container.OutputContainer) -> OtherStreams:
        """The streams beside the video: the source's audio, or none."""
        if self.audio is None:
            return NoOtherStreams()
        self._audio_copier = AudioCopier(out, self.audio, str(target.path))
        return self._audio_copier

    def add_audio(self, packet: LiveAudio, pts: int) -> None:
        """Queue one audio packet at `pts` (the packet's time base, from the file's start)."""
        self._audio_copier.add(packet, pts)


class CUT:
    """Queued by `idle` in segment mode: finish the open segment while the source is down."""


@dataclass
class Segment:
    """One finished (or open) file of the recording and where its time 0 lies in the whole recording."""

    path: Path
    start: Fraction  # seconds from the start of the recording to this file's first frame
    width: int
    height: int
    frames: int = 0
    audio_packets: int = 0


class AudioLine:
    """Places the source's audio packets on the recording's time line: a connection's audio is shifted
    by the same offset as its video and kept where that video runs (from the run's first frame until
    the next run begins). Packets outside, without timestamps, or that would not move time forward
    are dropped and counted; the video's own drops never drop audio."""

    def __init__(self) -> None:
        self.tracks: dict[int, AudioTrack] = {}  # the announced audio stream of each connection
        self.pending: deque[LiveAudio] = deque()  # packets not placed yet, in the source's order
        self.connection: int | None = None  # the connection of the current run of video
        self.offset: Fraction | None = None  # its recording seconds minus source seconds (None: no timestamps)
        self.start = Fraction(0)  # where the current run begins on the time line, in seconds
        self.last: Fraction | None = None  # the time of the last packet placed
        self.dropped = 0

    def follow(self, connection: int, offset: Fraction | None, start: Fraction) -> None:
        """A run of video begins at `start`: from now on `connection`'s audio is shifted by `offset`; the
        waiting audio of earlier connections lies after their video and is dropped."""
        kept = deque(p for p in self.pending if p.connection >= connection)
        self.dropped += len(self.pending) - len(kept)
        self.pending = kept
        self.tracks = {c: track for c, track in self.tracks.items() if c >= connection}
        self.connection, self.offset, self.start = connection, offset, start

    def take(self, end: Fraction) -> list[tuple[LiveAudio, Fraction]]:
        """The waiting packets of the current run that start before `end`, with their recording times."""
        taken = []
        while self.pending and self.pending[0].connection == self.connection:
            packet = self.pending[0]
            at = None if packet.seconds is None or self.offset is None else packet.seconds + self.offset
            if at is not None and at >= end:
                break
            self.pending.popleft()
            if at is None or at < self.start or (self.last is not None and at <= self.last):
                self.dropped += 1
                continue
            self.last = at
            taken.append((packet, at))
        return taken

    def tail(self) -> Fraction | None:
        """Where the waiting audio of the current run ends on the time line (None: none waits)."""
        for packet in reversed(self.pending):
            if packet.connection == self.connection and packet.seconds is not None and self.offset is not None:
                return packet.seconds + packet.duration * packet.time_base + self.offset
        return None


class Timeline:
    """Places frames on the recording's time line, in `time_base` ticks: it starts at 0 and follows the
    source's timestamps; where they restart (a reconnect), go back or jump ahead by more than
    MAX_JUMP_SECONDS, it continues one frame step after the last frame (or later, where `hold` says
    the previous run's audio ends later); frames without timestamps are spaced by their arrival times.
    Time never goes back."""

    def __init__(self, time_base: Fraction, rate_hint: Fraction | None) -> None:
        self.time_base = time_base
        self.nominal_step = max(1, round(1 / ((rate_hint or DEFAULT_RATE) * time_base)))
        self.intervals: deque[int] = deque(maxlen=STEP_WINDOW)  # recent frame intervals in one run
        self.max_jump = round(MAX_JUMP_SECONDS / time_base)
        self.last: int | None = None
        self.last_arrival = 0.0
        self.offset: int | None = None  # recording ticks minus source ticks in the current run
        self.connection: int | None = None
        self.discontinuities = 0  # timestamps that went back or jumped within one connection
        self.resume_at = 0  # the earliest time of a frame that begins a new run, in ticks

    def place(self, output: LiveOutput) -> int:
        """The recording time of `output` in ticks (strictly after the previous frame's)."""
        source = self._source_ticks(output)
        ticks = self._follow(source) if output.connection == self.connection else None
        if ticks is not None:
            self.intervals.append(ticks - self.last)
        elif self.last is None:
            ticks = 0
        elif source is None:
            arrived = max(1, round((output.arrival - self.last_arrival) / self.time_base))
            ticks = max(self.resume_at, self.last + arrived)
        else:
            ticks = max(self.resume_at, self.last + self.step)
        self.offset = None if source is None else ticks - source
        self.last, self.last_arrival, self.connection = ticks, output.arrival, output.connection
        return ticks

    @property
    def step(self) -> int:
        """One frame's duration: the median of the recent intervals, else the rate hint's."""
        return int(np.median(self.intervals)) if self.intervals else self.nominal_step

    @property
    def end(self) -> Fraction:
        """Where the last frame placed ends, in seconds (0 before the first)."""
        return Fraction(0) if self.last is None else (self.last + self.step) * self.time_base

    def hold(self, seconds: Fraction) -> None:
        """The next run of frames begins no earlier than `seconds` (where the current run's audio ends)."""
        self.resume_at = max(self.resume_at, math.ceil(seconds / self.time_base))

    @property
    def offset_seconds(self) -> Fraction | None:
        """The current run's offset (recording minus source time) in seconds; None without timestamps."""
        return None if self.offset is None else self.offset * self.time_base

    def _follow(self, source: int | None) -> int | None:
        """The time the source's timestamp gives within the current run; None where it cannot be followed."""
        if source is None or self.offset is None or self.last is None:
            return None
        ticks = source + self.offset
        if not 0 < ticks - self.last <= self.max_jump:
            self.discontinuities += 1
            log.info("recording: the source's timestamps %s; the time line continues after the last frame",
                     "jumped ahead" if ticks > self.last else "went back")
            return None
        return ticks

    def _source_ticks(self, output: LiveOutput) -> int | None:
        """The frame's pts in this time line's time base, or None without one."""
        if output.pts is None:
            return None
        return round(output.pts * Fraction(output.time_base) / self.time_base)


class RecordingSink(QueuedSink):
    """Record live frames to `path` with the source's timing; encoding runs in its own thread.

    Timing: the recording starts at 0 and follows the source's timestamps. When they restart (the
    source reconnected: `connection` changed), go back, or jump more than MAX_JUMP_SECONDS ahead, the
    time line continues one frame step after the last frame written, so an outage is cut out rather
    than shown and time never goes back; frames without timestamps are spaced by their arrival times.
    `idle` writes nothing.

    Audio (`audio_track`, `write_audio`: the source's packets, copied): each file gets an audio stream
    with the source's codec parameters and the packets that start within its time span, shifted by
    the offset of the video they came with (so across reconnects and segments too). Audio packets are
    never dropped when the encoder is behind; the audio kept for each run of video starts at or after
    its first frame (within one audio frame of it) and ends with its last. A change of the source's
    audio stream (codec, rate, channels) starts a new file, as a change of frame size does.

    Segments (`segment_seconds`): the recording is split into `name_00000.mp4`, `name_00001.mp4`, ...
    each a complete file that starts with a keyframe and plays alone. Every segment's timestamps start
    at 0; `segments[i].start` says where it lies on the recording's time line (which runs on across
    segments as described above), so played back to back they give the whole recording. A segment is
    finalised (renamed from its temporary name) when the next begins, and while the source is down, so
    a crash loses at most the open segment.

    A change of frame size starts a new file: the next segment, or without segments `name_00001.mp4`,
    `name_00002.mp4`, ... beside `path`. When the encoder falls behind, queued frames are dropped
    (oldest first: at most `queue_frames` wait) and counted in `dropped`; `write` never waits for
    the encoder.
    """

    name = "record"
    thread_name = "vidrestore-live-record"

    def __init__(self, path: Path, *, segment_seconds: float | None = None,
                 settings: EncoderSettings | None = None, rate_hint: Fraction | None = None,
                 queue_frames: int = QUEUE_FRAMES) -> None:
        if segment_seconds is not None and segment_seconds <= 0:
            raise MediaError(f"segment length must be positive, not {segment_seconds}")
        self.path = check_output(path)
        self.segment_seconds = None if segment_seconds is None else exact(segment_seconds)
        self.settings = settings or LIVE_SETTINGS
        self.rate_hint = rate_hint
        self.segments: list[Segment] = []
        self.frames = 0
        self._timeline: Timeline | None = None
        self._audio = AudioLine()
        self._video: LiveFile | None = None
        self._check_encoder()
        self._start_worker(queue_frames)

    # --- the caller's side -----------------------------------------------------------------------

    def write(self, output: LiveOutput) -> None:
        """Queue a frame for the encoder (the oldest queued one is dropped when it is behind)."""
        if not self._enqueue(output) and self.dropped in DROPS_LOGGED:
            log.warning("recording %s is behind: %d frames dropped so far", self.path, self.dropped)

    def audio_track(self, track: AudioTrack) -> None:
        """The source's audio stream on a new connection (queued in order; never dropped)."""
        self._queue.put(track, keep=True)

    def write_audio(self, packet: LiveAudio) -> None:
        """Queue an audio packet (never dropped, never waits; a failure surfaces at the next `write`)."""
        self._queue.put(packet, keep=True)

    @property
    def audio_packets(self) -> int:
        """Audio packets recorded so far, in all files."""
        return sum(s.audio_packets for s in self.segments)

    def idle(self, message: str) -> None:
        """The source is down: nothing is recorded; in segment mode the open segment is finalised."""
        if self.segment_seconds is not None:
            self._enqueue(CUT)

    def close(self) -> None:
        """Encode what is queued, finalise the open file and stop the thread."""
        self._stop_worker()
        if not self._reported:
            self._raise_failure()
        log.info("recorded %d frames and %d audio packets into %d file(s) (%d frames dropped, %d audio packets "
                 "outside the video left out)", self.frames, self.audio_packets, len(self.segments), self.dropped,
                 self._audio.dropped)

    def _describe(self, exc: BaseException) -> BaseException:
        """The encoder thread's error as a MediaError naming the recording."""
        return exc if isinstance(exc, MediaError) else MediaError(f"recording {self.path} failed: {exc}")

    def _check_encoder(self) -> None:
        """MediaError now, not at the first frame, when this container or encoder cannot be written."""
        LiveFile(self.path, self._video_info(64, 64), self.settings).writer.abort()

    # --- the encoder thread ----------------------------------------------------------------------

    def _work(self) -> None:
        """Thread body: place every frame and audio packet on the time line and write it to the right file."""
        try:
            while (item := self._queue.get()) is not CLOSED:
                if item is CUT:
                    self._end_file()
                elif isinstance(item, AudioTrack):
                    self._audio.tracks[item.connection] = item
                elif isinstance(item, LiveAudio):
                    self._audio.pending.append(item)
                else:
                    self._record(item)
            self._end_file()
        except BaseException as exc:  # noqa: BLE001 - handed to the caller
            log.error("recording %s failed: %s", self.path, exc)
            self._fail(exc)
            self._abort_file()

    def _record(self, output: LiveOutput) -> None:
        """Write one frame, starting a new file first when the segment is full or the size changed."""
        if self._timeline is None:
            self.rate_hint = self.rate_hint or output.rate  # the source's rate, unless one was given
            base = Fraction(output.time_base) if output.pts is not None else FINE_TIME_BASE
            self._timeline = Timeline(base, self.rate_hint)
        if output.connection != self._timeline.connection and self._timeline.last is not None:
            self._timeline.hold(self._run_end())  # the previous connection's audio plays out first
        ticks = self._timeline.place(output)
        at = ticks * self._timeline.time_base
        self._follow_audio(output.connection, at)
        height, width = output.image.shape[:2]
        track = self._audio.tracks.get(output.connection)
        if self._needs_new_file(ticks, width, height, track):
            self._pass_audio(at)
            self._finish_file()
            self._start_file(ticks, width, height, track)
        self._pass_audio(at)
        segment = self.segments[-1]
        base = self._timeline.time_base
        pts = ticks - round(segment.start / base)
        self._video.writer.write(Frame.from_rgb(output.image, segment.frames, pts, base))
        segment.frames += 1
        self.frames += 1

    def _follow_audio(self, connection: int, at: Fraction) -> None:
        """Where a new run of video begins at `at` (a reconnect, a jump), the audio before it goes to the
        open file, and the audio after it is shifted by the new run's offset."""
        offset = self._timeline.offset_seconds
        if (connection, offset) != (self._audio.connection, self._audio.offset):
            self._pass_audio(at)
            self._audio.follow(connection, offset, at)

    def _pass_audio(self, end: Fraction) -> None:
        """Hand the audio placed before `end` to the open file, at its time from the file's start."""
        for packet, at in self._audio.take(end):
            if self._video is None or self._video.audio is None:
                self._audio.dropped += 1
                continue
            segment = self.segments[-1]
            self._video.add_audio(packet, math.ceil((at - segment.start) / packet.time_base))
            segment.audio_packets += 1

    def _needs_new_file(self, ticks: int, width: int, height: int, track: AudioTrack | None) -> bool:
        """True before the first frame of a file: none open, a full segment, another frame size or audio stream."""
        if self._video is None:
            return True
        segment = self.segments[-1]
        if (width, height) != (segment.width, segment.height):
            log.info("frame size changed to %dx%d: starting a new file", width, height)
            return True
        if _signature(track) != _signature(self._video.audio):
            log.info("the source's audio stream changed: starting a new file")
            return True
        return (self.segment_seconds is not None
                and ticks * self._timeline.time_base - segment.start >= self.segment_seconds)

    def _start_file(self, ticks: int, width: int, height: int, track: AudioTrack | None) -> None:
        """Open the encoder for the next file (with `track`'s audio stream); its time 0 is the frame at `ticks`."""
        index = len(self.segments)
        path = self._file_path(index)
        self._video = LiveFile(path, self._video_info(width, height), self.settings, audio=track)
        self.segments.append(Segment(path, ticks * self._timeline.time_base, width, height))

    def _file_path(self, index: int) -> Path:
        """`path` itself for the only file, else `name_00000.ext`, `name_00001.ext`, ..."""
        if self.segment_seconds is None and index == 0:
            return self.path
        return self.path.with_name(f"{self.path.stem}_{index:05d}{self.path.suffix}")

    def _video_info(self, width: int, height: int) -> VideoInfo:
        """What VideoSink needs to know about the frames of one file."""
        time_base = self._timeline.time_base if self._timeline else FINE_TIME_BASE
        return VideoInfo(path="live://", container="live", codec="rawvideo", width=width,
                         height=height, time_base=time_base, pix_fmt="yuv420p", bit_depth=8,
                         average_rate=self.rate_hint)

    def _run_end(self) -> Fraction:
        """Where the current run ends: after its last frame, or its last audio packet if that ends later."""
        tail = self._audio.tail()
        return self._timeline.end if tail is None else max(self._timeline.end, tail)

    def _end_file(self) -> None:
        """Finalise the open file with the current run's audio played out (the next run begins after it)."""
        if self._video is not None:
            end = self._run_end()
            self._pass_audio(end)
            self._timeline.hold(end)
        self._finish_file()

    def _finish_file(self) -> None:
        """Finalise the open file (flush, trailer, rename into place)."""
        video, self._video = self._video, None
        if video is not None:
            video.writer.close()
            segment = self.segments[-1]
            log.info("recorded %s: %d frames and %d audio packets from %.2f s", segment.path, segment.frames,
                     segment.audio_packets, segment.start)

    def _abort_file(self) -> None:
        """Drop the open file after a failure (its temporary file is removed)."""
        video, self._video = self._video, None
        if video is not None:
            video.writer.abort()


def _signature(track: AudioTrack | None) -> tuple | None:
    """What distinguishes one audio stream from another (None: no audio)."""
    return None if track is None else track.signature
