"""Live mode end to end: files at their own rate, a source faster than restoration, a real RTSP feed
that drops and comes back. A collecting sink records what reached the sinks and when."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from live_feed import RTSP_SERVER, RtspFeed, make_stamped_clip
from pipeline_support import make_tiny_restorer, pipeline_threads, test_options
from vidrestore import cli
from vidrestore.bench.stamp import read_number
from vidrestore.live import source as live_source
from vidrestore.live.record import QUEUE_FRAMES, RecordingSink
from vidrestore.live.runner import LiveOptions, run_live
from vidrestore.live.source import LiveSource, SourceOptions
from vidrestore.live.types import LiveOutput, LiveStats

FPS = 25
CLIP_FRAMES = 60  # frames of the module's clip
FEED_FRAMES = 200  # frames of the RTSP test's clip, which the publisher plays in a loop
WAIT_S = 60.0  # the longest a test waits for something to happen (a failure guard; it takes far less)


class Collector:
    """A sink that keeps what it was given: stamp, timing, faces, and the frames in flight at that moment."""

    name = "collector"

    def __init__(self, stats: LiveStats | None = None) -> None:
        self.stats = stats
        self.outputs: list[dict] = []
        self.idle_messages: list[str] = []
        self.closed = False

    def write(self, output: LiveOutput) -> None:
        in_flight = None
        if self.stats is not None:
            s = self.stats
            in_flight = s.frames_in - s.frames_out - s.dropped
        self.outputs.append({"stamp": read_number(output.image), "seconds": output.seconds, "faces": output.faces,
                             "restored": output.restored, "sequence": output.sequence,
                             "connection": output.connection, "in_flight": in_flight, "shape": output.image.shape,
                             "rate": output.rate})

    def idle(self, message: str) -> None:
        self.idle_messages.append(message)

    def close(self) -> None:
        self.closed = True


class Counter:
    """A count that threads can wait on (frames that reached the source's queue, or the sinks)."""

    def __init__(self) -> None:
        self.value = 0
        self.last_time: float | None = None  # time.monotonic() of the last count, when given
        self._cond = threading.Condition()

    def add(self, now: float | None = None) -> None:
        with self._cond:
            self.value += 1
            self.last_time = now
            self._cond.notify_all()

    def reached(self, target: int, timeout: float = WAIT_S) -> bool:
        """Wait until the count is at least `target`; False after `timeout` seconds (a failure guard)."""
        with self._cond:
            return self._cond.wait_for(lambda: self.value >= target, timeout)


class WatchedStats(LiveStats):
    """The source's statistics, with a Counter of the frames it delivered (and when the last one came)."""

    def __init__(self) -> None:
        super().__init__()
        self.arrived = Counter()

    def frame_in(self, now: float) -> None:
        super().frame_in(now)
        self.arrived.add(now)


class HeldCollector(Collector):
    """A Collector whose first write waits until `hold()` returns: restoration falls behind by construction."""

    def __init__(self, stats: LiveStats, hold) -> None:
        super().__init__(stats)
        self.hold = hold

    def write(self, output: LiveOutput) -> None:
        if self.hold is not None:
            hold, self.hold = self.hold, None
            hold()
        super().write(output)


@pytest.fixture
def paced_by_the_sinks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Files play at their own rate, but no frame leaves the file before the sinks have every earlier one:
    restoration is never behind, so no frame is dropped on a slow, loaded or fast machine alike."""
    delivered = Counter()
    frame_out = LiveStats.frame_out

    def counted_frame_out(self: LiveStats, output: LiveOutput, now: float) -> None:
        frame_out(self, output, now)
        delivered.add()

    class SinksFirstClock(live_source._PlaybackClock):
        played = 0  # frames this clock let out of the file

        def wait(self, seconds: float | None, stop: threading.Event) -> None:
            super().wait(seconds, stop)
            while not stop.is_set() and not delivered.reached(SinksFirstClock.played, timeout=0.05):
                pass
            SinksFirstClock.played += 1

    monkeypatch.setattr(LiveStats, "frame_out", counted_frame_out)
    monkeypatch.setattr(live_source, "_PlaybackClock", SinksFirstClock)


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory, media_dir: Path) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("live")
    face = cv2.cvtColor(cv2.imread(str(sorted((media_dir / "faces").iterdir())[0])), cv2.COLOR_BGR2RGB)
    return {"clip": make_stamped_clip(folder / "stamped.mp4", face, frames=CLIP_FRAMES, fps=FPS),
            "model": make_tiny_restorer(folder / "tiny.pth")}


def _options(work: dict[str, Path], detector: Path):
    return test_options(work["model"], detector, smoothing_lag=0, analysis_chunk=1, max_batch_frames=1)


def test_a_file_at_its_own_rate_is_restored_in_order(work, detector_weights, paced_by_the_sinks) -> None:
    sink = Collector()
    stats = run_live(LiveSource(str(work["clip"])), [sink], _options(work, detector_weights), LiveOptions())
    out = sink.outputs
    stamps = [o["stamp"] for o in out]
    assert stamps == list(range(CLIP_FRAMES))  # every frame, in order, once
    assert stats.frames_out == stats.frames_in == CLIP_FRAMES and stats.dropped == 0
    assert [o["sequence"] for o in out] == [n + 1 for n in stamps]  # each output is the source frame it says
    assert all(abs(o["seconds"] - o["stamp"] / FPS) < 1e-6 for o in out)  # each frame keeps its source time
    assert {o["rate"] for o in out} == {FPS}  # and the source's frame rate reaches the sinks
    assert sum(o["faces"] > 0 for o in out) >= 0.9 * len(out) and all(o["restored"] for o in out)
    assert sink.closed and not pipeline_threads()


def test_a_source_faster_than_restoration_drops_and_stays_bounded(work, detector_weights) -> None:
    stats = WatchedStats()
    source = LiveSource(str(work["clip"]), SourceOptions(realtime=False, loop=True), stats)  # decodes at full speed
    live = LiveOptions(max_frames=20, max_in_flight=2)
    # bounded: between source and sinks there are never more than the frames in flight (the one being
    # written included), the source's queue, and the frame the reader is handing over
    bound = live.max_in_flight + source.options.queue_size + 1

    def until_the_source_has_run_ahead() -> None:  # more frames came than fit: some must have been dropped
        assert stats.arrived.reached(bound + 1), "the source did not deliver frames while the sinks were held"

    sink = HeldCollector(stats, until_the_source_has_run_ahead)
    run_live(source, [sink], _options(work, detector_weights), live)
    sequences = [o["sequence"] for o in sink.outputs]
    assert sequences == sorted(set(sequences)) and len(sequences) == live.max_frames
    assert stats.dropped > 0 and stats.frames_in > stats.frames_out
    assert max(o["in_flight"] for o in sink.outputs) <= bound
    assert not pipeline_threads()


def test_passthrough_policy_sends_late_frames_unrestored(work, detector_weights) -> None:
    stats = WatchedStats()
    source = LiveSource(str(work["clip"]), SourceOptions(realtime=False), stats)
    live = LiveOptions(policy="passthrough", max_latency=0.05)

    def until_the_last_frame_is_late() -> None:
        # the whole file read: the source's queue holds its last frame, which restoration has not seen yet
        assert stats.arrived.reached(CLIP_FRAMES), "the source did not read the file while the sinks were held"
        while time.monotonic() <= stats.arrived.last_time + live.max_latency:
            time.sleep(live.max_latency / 4)

    sink = HeldCollector(stats, until_the_last_frame_is_late)
    run_live(source, [sink], _options(work, detector_weights), live)
    late = [o for o in sink.outputs if not o["restored"]]
    assert late and stats.passed_through == len(late)
    assert sink.outputs[-1]["stamp"] == CLIP_FRAMES - 1 and not sink.outputs[-1]["restored"]  # the one held back
    assert all(o["faces"] == 0 for o in late)
    assert [o["sequence"] for o in sink.outputs] == sorted(o["sequence"] for o in sink.outputs)


@pytest.mark.skipif(RTSP_SERVER is None, reason="rtsp-server-perl is not installed (.ci/run installs it)")
def test_rtsp_feed_that_drops_is_reopened_and_keeps_source_timing(work, detector_weights, tmp_path) -> None:
    clip = make_stamped_clip(tmp_path / "feed.mp4", _face(work), frames=FEED_FRAMES, fps=FPS)
    with RtspFeed(clip) as feed:
        source = LiveSource(feed.url, SourceOptions(transport="udp", timeout=2.0, backoff=0.2, max_backoff=1.0))
        sink = Collector()
        recording = RecordingSink(tmp_path / "recorded.mp4")
        stop = threading.Event()
        runner = threading.Thread(target=run_live, args=(source, [sink, recording], _options(work, detector_weights),
                                                         LiveOptions(idle_interval=0.2)), kwargs={"stop": stop})
        runner.start()
        try:
            _wait_for(lambda: len(sink.outputs) >= 15, WAIT_S)
            feed.restart(pause=1.5)
            _wait_for(lambda: sum(o["connection"] >= 2 for o in sink.outputs) >= 15, WAIT_S)
        finally:
            stop.set()
            runner.join(30)
    assert not runner.is_alive()
    assert source.stats.reconnects >= 1
    assert sink.idle_messages  # the sinks were told while the feed was down
    for connection in {o["connection"] for o in sink.outputs}:
        part = [o for o in sink.outputs if o["connection"] == connection]
        for a, b in zip(part, part[1:]):  # in order, and the source's timestamps survive: each time step is
            steps = round((b["seconds"] - a["seconds"]) * FPS)  # whole frames, those the stamps count
            assert steps >= 1 and abs((b["seconds"] - a["seconds"]) - steps / FPS) < 2e-3
            assert (b["stamp"] - a["stamp"]) % FEED_FRAMES == steps % FEED_FRAMES  # (the publisher loops)
    # the recording: the frames the sinks got, with the source's time steps, continued across the reconnect
    recorded = _stamps_and_seconds(tmp_path / "recorded.mp4")
    matched = _align([n for n, _ in recorded], sink.outputs)
    assert matched is not None, "the recording holds frames the sinks never got, or out of order"
    # a recorder that falls behind drops its oldest queued frames: the newest queue's worth is always there
    assert len(recorded) == recording.frames and recording.frames + recording.dropped == len(sink.outputs)
    assert len(recorded) >= min(QUEUE_FRAMES, len(sink.outputs))
    times = [t for _, t in recorded]
    assert times[0] == 0 and all(b > a for a, b in zip(times, times[1:]))
    for (t0, a), (t1, b) in zip(zip(times, matched), zip(times[1:], matched[1:])):
        if a["connection"] == b["connection"]:
            assert abs((t1 - t0) - (b["seconds"] - a["seconds"])) < 2e-3
    assert not pipeline_threads()


def _stamps_and_seconds(path: Path) -> list[tuple[int, float]]:
    """(stamped number, presentation time in seconds) of every frame of a video."""
    import av

    with av.open(str(path)) as c:
        return [(read_number(f.to_ndarray(format="rgb24")), float(f.pts * f.time_base)) for f in c.decode(video=0)]


def _align(stamps: list[int], outputs: list[dict]) -> list[dict] | None:
    """The outputs that `stamps` show, matched in order (gaps allowed); None when they do not all match."""
    matched: list[dict] = []
    it = iter(outputs)
    for stamp in stamps:
        found = next((o for o in it if o["stamp"] == stamp), None)
        if found is None:
            return None
        matched.append(found)
    return matched


def test_cli_restores_a_file_into_a_recording_and_a_preview(work, detector_weights, tmp_path,
                                                             paced_by_the_sinks) -> None:
    out = tmp_path / "live.mp4"
    args = ["live", str(work["clip"]), "--record", str(out), "--preview", "0", "--model", str(work["model"]),
            "--detector", str(detector_weights), "--device", "cpu", "--det-size", "320", "--offline", "-q"]
    assert cli.main(args) == 0
    recorded = _stamps_and_seconds(out)
    # every frame reached the sinks (paced); a recorder that falls behind drops its oldest queued frames,
    # so at least its queue's worth of the newest, the last included, is always recorded
    assert len(recorded) >= min(QUEUE_FRAMES, CLIP_FRAMES) and recorded[-1][0] == CLIP_FRAMES - 1
    assert [p.name for p in tmp_path.iterdir()] == ["live.mp4"]
    assert all(b[0] > a[0] for a, b in zip(recorded, recorded[1:]))
    assert all(abs((t - recorded[0][1]) - (n - recorded[0][0]) / FPS) < 2e-3 for n, t in recorded)
    assert not pipeline_threads()


def _face(work: dict[str, Path]) -> np.ndarray:
    """The face picture of the stamped clips (first frame of the module clip, top part)."""
    import av

    with av.open(str(work["clip"])) as c:
        frame = next(c.decode(video=0)).to_ndarray(format="rgb24")
    return frame[:120, 100:220]


def _wait_for(condition, timeout: float) -> None:
    """Poll until `condition()` holds; fail with a clear message after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(0.1)


def test_cli_needs_a_sink_and_a_readable_source(tmp_path, capsys) -> None:
    assert cli.main(["live", str(tmp_path / "missing.mp4"), "--record", str(tmp_path / "x.mp4")]) == 2
    assert "input not found" in capsys.readouterr().err
    assert cli.main(["live", "rtsp://127.0.0.1:9/x"]) == 2
    assert "at least one sink" in capsys.readouterr().err
    assert cli.main(["live", "0", "--preview", "not-a-port"]) == 2
    assert "[HOST:]PORT" in capsys.readouterr().err
