"""The records of live mode: frames with their arrival time, the outputs the sinks get, the statistics.

    LiveSource --(LiveFrame)--> analyse -> policy -> restore -> composite --(LiveOutput)--> sinks
    LiveSource --(AudioTrack, LiveAudio)--> the sinks that record audio (`AudioSink`: the recording)

Every sink implements `LiveSink`: `write` must return quickly (a slow sink drops frames of its own,
it never holds back the others), `idle` is called while the source is down. The source's audio
packets are copied, never decoded nor restored, and go straight from the source's reader thread to
the sinks that implement `AudioSink`.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Protocol, runtime_checkable

import numpy as np

from vidrestore.video.types import Frame


@dataclass(eq=False)
class LiveFrame(Frame):
    """A decoded frame of the live source with what the stages after need to know about it: when it
    was taken from the source (time.monotonic()), its sequence and connection. It rides through the
    stages as the frame of their records, so nothing is looked up on the side."""

    arrival: float = 0.0
    sequence: int = 0  # frames the source delivered since the start, across reconnects
    connection: int = 0  # 1 for the first connection, +1 at each reconnect (timestamps restart)
    rate: Fraction | None = None  # the source's nominal frame rate, when its stream declares one
    late: bool = False  # sent on unrestored by the passthrough policy

    def sent_late(self) -> "LiveFrame":
        """The same frame marked as sent on unrestored (a new record: this one is left as it is)."""
        return dataclasses.replace(self, late=True)


@dataclass(eq=False)
class LiveOutput:
    """A finished frame for the sinks: RGB pixels, the source's timing and how it was handled."""

    image: np.ndarray  # H x W x 3 RGB uint8 (restored, or passed through)
    pts: int | None  # the source's pts for this frame
    time_base: object  # fractions.Fraction of the pts
    arrival: float  # time.monotonic() when the source delivered the frame
    sequence: int
    connection: int
    faces: int  # faces restored in this frame
    restored: bool  # False when passed through unrestored (policy "passthrough" while behind)
    rate: Fraction | None = None  # the source's nominal frame rate, when its stream declares one

    @property
    def seconds(self) -> float | None:
        """Presentation time in seconds from the source's timestamps."""
        return None if self.pts is None else float(self.pts * self.time_base)


@dataclass(frozen=True, eq=False)
class AudioTrack:
    """The source's audio stream on one connection: what a recording needs to copy its packets."""

    connection: int
    template: Any  # an av stream with the source stream's codec parameters, in a container never written
    time_base: Fraction

    @property
    def codec(self) -> str:
        """The codec's FFmpeg name (aac, pcm_mulaw, opus, ...)."""
        return self.template.codec_context.name

    @property
    def signature(self) -> tuple:
        """What must stay the same for packets of two connections to go on in one file."""
        cc = self.template.codec_context
        return cc.name, cc.sample_rate, cc.channels, bytes(cc.extradata or b""), self.time_base


@dataclass(frozen=True, eq=False)
class LiveAudio:
    """One audio packet of the source as demuxed: its bytes and timing (in `time_base`), copied as is."""

    data: bytes
    pts: int | None
    dts: int | None
    duration: int
    time_base: Fraction
    connection: int
    keyframe: bool = True

    @property
    def seconds(self) -> Fraction | None:
        """Presentation time in seconds from the source's timestamps (exact)."""
        return None if self.pts is None else self.pts * self.time_base


@runtime_checkable
class AudioSink(Protocol):
    """A sink that also takes the source's audio (called from the source's reader thread: never blocks)."""

    def audio_track(self, track: AudioTrack) -> None:
        """A connection's audio stream, announced before any of that connection's frames or packets."""

    def write_audio(self, packet: LiveAudio) -> None:
        """Take one audio packet; must neither block nor raise (a failure surfaces at the next `write`)."""


class LiveSink(Protocol):
    """Where live frames go: a window, a recording, an MJPEG preview, a re-stream."""

    name: str

    def write(self, output: LiveOutput) -> None:
        """Take one frame; must not block for long (drop instead)."""

    def idle(self, message: str) -> None:
        """The source is down: show the last frame or a 'no signal' picture with `message`."""

    def close(self) -> None:
        """Finish (a recording is finalised) and release everything; called once."""


LATENCY_WINDOW = 600  # latencies kept for the percentiles (the most recent ones)


@dataclass
class LiveStats:
    """Counters of a live run, shared by the source, the stages and the sinks (thread-safe snapshot)."""

    started: float = field(default_factory=time.monotonic)
    frames_in: int = 0  # frames the source delivered
    frames_out: int = 0  # frames that reached the sinks
    dropped: int = 0  # frames dropped at the source because restoration was behind
    passed_through: int = 0  # frames sent on unrestored (policy "passthrough")
    faces: int = 0
    reconnects: int = 0
    source_up: bool = False
    latencies: deque = field(default_factory=lambda: deque(maxlen=LATENCY_WINDOW))
    _in_times: deque = field(default_factory=lambda: deque(maxlen=120))
    _out_times: deque = field(default_factory=lambda: deque(maxlen=120))
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def frame_in(self, now: float) -> None:
        with self._lock:
            self.frames_in += 1
            self._in_times.append(now)

    def frame_out(self, output: LiveOutput, now: float) -> None:
        with self._lock:
            self.frames_out += 1
            self.faces += output.faces
            self.passed_through += not output.restored
            self.latencies.append(now - output.arrival)
            self._out_times.append(now)

    def drop(self, count: int = 1) -> None:
        with self._lock:
            self.dropped += count

    def snapshot(self) -> dict[str, float | int | bool]:
        """The numbers for the log and the preview: fps in/out, drops, faces, latency p50/p95 (ms)."""
        with self._lock:
            latencies = np.array(self.latencies, dtype=np.float64)
            return {
                "uptime_s": round(time.monotonic() - self.started, 1),
                "source_up": self.source_up,
                "fps_in": round(_rate(self._in_times), 2),
                "fps_out": round(_rate(self._out_times), 2),
                "frames_in": self.frames_in,
                "frames_out": self.frames_out,
                "dropped": self.dropped,
                "passed_through": self.passed_through,
                "faces": self.faces,
                "reconnects": self.reconnects,
                "latency_p50_ms": round(float(np.percentile(latencies, 50)) * 1000, 1) if len(latencies) else None,
                "latency_p95_ms": round(float(np.percentile(latencies, 95)) * 1000, 1) if len(latencies) else None,
            }

    def line(self) -> str:
        """One log line of the snapshot."""
        s = self.snapshot()
        p50 = "-" if s["latency_p50_ms"] is None else f"{s['latency_p50_ms']:.0f}"
        p95 = "-" if s["latency_p95_ms"] is None else f"{s['latency_p95_ms']:.0f}"
        return (f"in {s['fps_in']:.1f} fps, out {s['fps_out']:.1f} fps, dropped {s['dropped']}, "
                f"unrestored {s['passed_through']}, faces {s['faces']}, latency p50 {p50} ms p95 {p95} ms"
                + ("" if s["source_up"] else ", source down"))


def _rate(times: deque) -> float:
    """Events per second over the recent timestamps."""
    if len(times) < 2 or times[-1] <= times[0]:
        return 0.0
    return (len(times) - 1) / (times[-1] - times[0])
