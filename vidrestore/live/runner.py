"""The live job: the main job's stages under a latency policy, fanned out to live sinks.

    LiveSource -> source -> analyse -> policy -> restore -> composite -> deliver -> SinkHub -> sinks
                 (LiveFrame: arrival, sequence, connection ride with the frame through every record)
    LiveSource (audio packets, copied) ------------------------------------------------> audio sinks

Same stages as the file pipeline (causal tracking: no look-ahead), with queues of one item, one frame
per restoration batch, and late frames handled by policy: "drop" (frames are dropped at the source,
newest kept; what is restored is always recent) or "passthrough" (frames that waited longer than
`max_latency` go out unrestored). Frames never leave out of order.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, Sequence

from vidrestore.channel import CLOSED, Channel
from vidrestore.device import resolve_device
from vidrestore.errors import JobCancelled, VidrestoreError
from vidrestore.faces.tracker import FaceTracker, TrackerConfig
from vidrestore.live import POLICIES
from vidrestore.live.source import LiveSource
from vidrestore.live.types import AudioSink, LiveFrame, LiveOutput, LiveSink, LiveStats
from vidrestore.pipeline.job import add_restoration
from vidrestore.pipeline.options import RestoreOptions
from vidrestore.pipeline.restorer_api import (
    background_for,
    load_crop_restorer,
    load_detector,
    load_upsampler,
)
from vidrestore.pipeline.runner import Pipeline
from vidrestore.pipeline.stages import (
    AnalysedFrame,
    JobCounters,
    OutputFrame,
    StageFn,
    analyse_stage,
)

log = logging.getLogger(__name__)

POLL_SECONDS = 0.25


@dataclass(frozen=True)
class LiveOptions:
    """The live policy and when a run ends."""

    policy: str = "drop"  # drop: drop at the source when behind; passthrough: late frames go out unrestored
    max_latency: float = 0.2  # passthrough: seconds a frame may wait before it skips restoration
    duration: float | None = None  # stop after this many seconds (None: until the source ends or Ctrl-C)
    max_frames: int | None = None  # stop after this many source frames
    max_in_flight: int = 3  # frames between the source and the sinks at most (bounds the added latency)
    stats_interval: float = 5.0  # seconds between statistics lines in the log
    idle_interval: float = 1.0  # seconds between 'no signal' refreshes of the sinks while the source is down

    def __post_init__(self) -> None:
        if self.policy not in POLICIES:
            raise VidrestoreError(f"unknown policy {self.policy!r} (choose {' or '.join(POLICIES)})")
        if self.max_latency <= 0:
            raise VidrestoreError(f"max-latency must be positive, not {self.max_latency}")
        if self.max_in_flight < 1:
            raise VidrestoreError(f"max-in-flight must be at least 1, not {self.max_in_flight}")


class SinkHub:
    """Hands finished frames to every sink from one thread; refreshes them with 'no signal' while the source is down."""

    def __init__(self, sinks: Sequence[LiveSink], stats: LiveStats, source: LiveSource,
                 idle_interval: float = 1.0) -> None:
        self.sinks = list(sinks)
        self.stats = stats
        self.source = source
        self.idle_interval = idle_interval
        self._queue: Channel[tuple[LiveOutput, Callable[[], None] | None]] = Channel(1)
        self._thread = threading.Thread(target=self._run, name="vidrestore-live-sinks", daemon=True)
        self._error: BaseException | None = None
        self._thread.start()

    def put(self, output: LiveOutput, done: Callable[[], None] | None = None) -> None:
        """Queue a frame for the sinks (they return quickly, so this waits little); `done()` runs once they have it."""
        if self._error is not None:
            raise self._error
        self._queue.put((output, done))

    def close(self) -> None:
        """Deliver what is queued, then close every sink."""
        self._queue.close()
        self._thread.join()
        _close_all(self.sinks)
        if self._error is not None:
            raise self._error

    def _run(self) -> None:
        last_write = time.monotonic()
        while (item := self._queue.get(timeout=self.idle_interval)) is not CLOSED:
            if item is None:
                if not self.stats.source_up and time.monotonic() - last_write >= self.idle_interval:
                    self._each(lambda sink: sink.idle(self.source.last_problem or "no signal"))
                continue
            output, done = item
            self._each(lambda sink: sink.write(output))
            self.stats.frame_out(output, time.monotonic())
            if done is not None:
                done()
            last_write = time.monotonic()

    def _each(self, call: Callable[[LiveSink], None]) -> None:
        """Call every sink; a failing sink stops the run with its error."""
        for sink in self.sinks:
            try:
                call(sink)
            except BaseException as exc:  # noqa: BLE001 - reported to the pipeline
                if self._error is None:
                    self._error = exc
                log.error("the %s sink failed: %s", sink.name, exc)


class InFlight:
    """Counts the frames between the source and the sinks; their number is what bounds latency."""

    def __init__(self) -> None:
        self._count = 0
        self._cond = threading.Condition()

    def enter(self) -> None:
        """A frame left the source."""
        with self._cond:
            self._count += 1

    def leave(self) -> None:
        """A frame reached the sinks."""
        with self._cond:
            self._count -= 1
            self._cond.notify_all()

    def wait_below(self, limit: int, timeout: float) -> bool:
        """Wait until fewer than `limit` frames are in flight; False after `timeout` seconds."""
        with self._cond:
            return self._cond.wait_for(lambda: self._count < limit, timeout)


def source_stage(source: LiveSource, inflight: InFlight, options: LiveOptions,
                 halted: Callable[[], bool]) -> StageFn:
    """Frames from the live source until it ends, the duration or frame budget is spent, or the run halts."""

    def frames(_: Iterable[None]) -> Iterator[LiveFrame]:
        started = time.monotonic()
        count = 0
        while not halted():
            if options.duration is not None and time.monotonic() - started >= options.duration:
                return
            if not inflight.wait_below(options.max_in_flight, POLL_SECONDS):
                continue  # restoration is behind: the source keeps only its newest frame meanwhile
            live = source.next(timeout=POLL_SECONDS)
            if live is None:
                if source.ended:
                    return
                continue  # the source is down or slow: look at the clock and the halt flag again
            inflight.enter()
            yield live
            count += 1
            if options.max_frames is not None and count >= options.max_frames:
                return

    return frames


def policy_stage(options: LiveOptions) -> StageFn:
    """Passthrough policy: a frame that waited longer than max_latency is sent on without restoring it
    (a new record, its frame marked late and no faces to restore)."""

    def policy(items: Iterable[AnalysedFrame]) -> Iterator[AnalysedFrame]:
        for item in items:
            frame: LiveFrame = item.frame
            late = time.monotonic() - frame.arrival > options.max_latency
            if options.policy == "passthrough" and item.faces and late:
                item = AnalysedFrame(frame.sent_late(), [], item.detected)
            yield item

    return policy


def deliver_stage(hub: SinkHub, inflight: InFlight) -> StageFn:
    """Sink stage: the finished frames, with their source timing, to the sink hub."""

    def deliver(items: Iterable[OutputFrame]) -> Iterator[None]:
        for item in items:
            frame: LiveFrame = item.frame
            output = LiveOutput(image=frame.image, pts=frame.pts, time_base=frame.time_base, arrival=frame.arrival,
                                sequence=frame.sequence, connection=frame.connection, faces=item.faces,
                                restored=not frame.late, rate=frame.rate)
            hub.put(output, done=inflight.leave)  # in flight until the sinks have it
        yield from ()

    return deliver


class _StatsLogger:
    """Logs the statistics line every `interval` seconds until stopped."""

    def __init__(self, stats: LiveStats, interval: float) -> None:
        self.stats = stats
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="vidrestore-live-stats", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            log.info("%s", self.stats.line())

    def close(self) -> None:
        self._stop.set()
        self._thread.join()


def _load_models(options: RestoreOptions) -> tuple:
    """The restoration core, a causal face tracker (no look-ahead) and the output-size background."""
    if options.matrix != "keep":  # live sinks show and send RGB pictures without colour tags
        raise VidrestoreError("--matrix is not available in live mode (its outputs carry no colour tags)")
    device = resolve_device(options.device)
    engine = load_crop_restorer(options, device)
    tracker = None
    if options.tracks:
        tracker = FaceTracker(load_detector(options, device), TrackerConfig(detect_every=options.detect_every, lag=0))
    return engine, tracker, background_for(options, load_upsampler(options, device))


def _close_all(sinks: Sequence[LiveSink]) -> None:
    """Close sinks, logging (not raising) what fails."""
    for sink in sinks:
        try:
            sink.close()
        except Exception as exc:  # noqa: BLE001 - every sink gets closed
            log.warning("closing the %s sink failed: %s", sink.name, exc)


def run_live(source: LiveSource, sinks: Sequence[LiveSink], options: RestoreOptions | None = None,
             live: LiveOptions | None = None, *, stop: threading.Event | None = None) -> LiveStats:
    """Restore a live source into the sinks until it ends, the duration is spent, `stop` is set or Ctrl-C.

    Returns the run's statistics. A stop request ends the run normally (not an error). The sinks that
    take audio (the recording) get the source's audio packets straight from the source, not restored.
    """
    options = options or RestoreOptions()
    live = live or LiveOptions()
    try:
        engine, tracker, background = _load_models(options)
    except BaseException:
        _close_all(sinks)  # the sinks are ours from the start: nothing is left running on failure
        raise
    stats = source.stats
    inflight = InFlight()
    hub = SinkHub(sinks, stats, source, live.idle_interval)
    logger = _StatsLogger(stats, live.stats_interval)
    analysed = (
        Pipeline(queue_size=1)
        .add("source", source_stage(source, inflight, live, lambda: pipeline.stopping))
        .add("analyse", analyse_stage(tracker, 1, only_center=options.only_center_face, largest=options.largest_face,
                                      long_side=options.det_size))
        .add("policy", policy_stage(live))
    )
    pipeline = (add_restoration(analysed, engine, background, JobCounters(), 1, write_back=False)
                .add("deliver", deliver_stage(hub, inflight)))
    for sink in sinks:
        if isinstance(sink, AudioSink):
            source.add_audio_sink(sink)
    source.start()
    try:
        pipeline.run(stop)
    except JobCancelled:
        log.info("live run stopped on request")
    finally:
        source.stop()
        logger.close()
        try:
            hub.close()
        finally:
            source.join(timeout=2 * source.options.timeout)
    log.info("live run ended: %s", stats.line())
    return stats
