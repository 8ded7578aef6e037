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
from vidrestore.live.record import RecordingSink
from vidrestore.live.runner import LiveOptions, run_live
from vidrestore.live.source import LiveSource, SourceOptions
from vidrestore.live.types import LiveOutput, LiveStats

FPS = 25


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


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory, media_dir: Path) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("live")
    face = cv2.cvtColor(cv2.imread(str(sorted((media_dir / "faces").iterdir())[0])), cv2.COLOR_BGR2RGB)
    return {"clip": make_stamped_clip(folder / "stamped.mp4", face, frames=60, fps=FPS),
            "model": make_tiny_restorer(folder / "tiny.pth")}


def _options(work: dict[str, Path], detector: Path):
    return test_options(work["model"], detector, smoothing_lag=0, analysis_chunk=1, max_batch_frames=1)


def test_a_file_at_its_own_rate_is_restored_in_order(work, detector_weights) -> None:
    sink = Collector()
    stats = run_live(LiveSource(str(work["clip"])), [sink], _options(work, detector_weights), LiveOptions())
    out = sink.outputs
    stamps = [o["stamp"] for o in out]
    assert stamps == sorted(set(stamps)) and len(out) > 10  # in order, none twice (drops depend on the machine)
    assert stats.frames_out == len(out) and stats.frames_in == 60 and stats.frames_out + stats.dropped == 60
    assert [o["sequence"] for o in out] == [n + 1 for n in stamps]  # each output is the source frame it says
    assert all(abs(o["seconds"] - o["stamp"] / FPS) < 1e-6 for o in out)  # each frame keeps its source time
    assert {o["rate"] for o in out} == {FPS}  # and the source's frame rate reaches the sinks
    assert sum(o["faces"] > 0 for o in out) >= 0.9 * len(out) and all(o["restored"] for o in out)
    assert sink.closed and not pipeline_threads()


def test_a_source_faster_than_restoration_drops_and_stays_bounded(work, detector_weights) -> None:
    source = LiveSource(str(work["clip"]), SourceOptions(realtime=False, loop=True))  # decodes as fast as it can
    sink = Collector(source.stats)
    live = LiveOptions(max_frames=400, max_in_flight=2)
    stats = run_live(source, [sink], _options(work, detector_weights), live)
    sequences = [o["sequence"] for o in sink.outputs]
    assert sequences == sorted(set(sequences))
    assert stats.dropped > 0 and stats.frames_in > stats.frames_out
    # bounded: between source and sinks there are never more than the frames in flight (the one being
    # written included), the source's queue, and the frame the reader is handing over
    assert max(o["in_flight"] for o in sink.outputs) <= live.max_in_flight + source.options.queue_size + 1
    assert not pipeline_threads()


def test_passthrough_policy_sends_late_frames_unrestored(work, detector_weights) -> None:
    source = LiveSource(str(work["clip"]), SourceOptions(realtime=False))
    sink = Collector()
    stats = run_live(source, [sink], _options(work, detector_weights),
                     LiveOptions(policy="passthrough", max_latency=0.001))
    late = [o for o in sink.outputs if not o["restored"]]
    assert late and stats.passed_through == len(late)
    assert all(o["faces"] == 0 for o in late)
    assert [o["sequence"] for o in sink.outputs] == sorted(o["sequence"] for o in sink.outputs)


@pytest.mark.skipif(RTSP_SERVER is None, reason="rtsp-server-perl is not installed (.ci/run installs it)")
def test_rtsp_feed_that_drops_is_reopened_and_keeps_source_timing(work, detector_weights, tmp_path) -> None:
    clip = make_stamped_clip(tmp_path / "feed.mp4", _face(work), frames=200, fps=FPS)
    with RtspFeed(clip) as feed:
        source = LiveSource(feed.url, SourceOptions(transport="udp", timeout=2.0, backoff=0.2, max_backoff=1.0))
        sink = Collector()
        recording = RecordingSink(tmp_path / "recorded.mp4")
        stop = threading.Event()
        runner = threading.Thread(target=run_live, args=(source, [sink, recording], _options(work, detector_weights),
                                                         LiveOptions(idle_interval=0.2)), kwargs={"stop": stop})
        runner.start()
        try:
            _wait_for(lambda: len(sink.outputs) >= 15, 60)
            feed.restart(pause=1.5)
            _wait_for(lambda: sum(o["connection"] >= 2 for o in sink.outputs) >= 15, 60)
        finally:
            stop.set()
            runner.join(30)
    assert not runner.is_alive()
    assert source.stats.reconnects >= 1
    assert sink.idle_messages  # the sinks were told while the feed was down
    for connection in {o["connection"] for o in sink.outputs}:
        part = [o for o in sink.outputs if o["connection"] == connection]
        stamps = [o["stamp"] for o in part]
        assert all(b > a for a, b in zip(stamps, stamps[1:]))  # in order (the publisher loops at 200)
        for a, b in zip(part, part[1:]):  # the source's timestamps survive: time steps == frame-number steps / fps
            assert abs((b["seconds"] - a["seconds"]) - (b["stamp"] - a["stamp"]) / FPS) < 2e-3
    # the recording: the frames the sinks got, with the source's time steps, continued across the reconnect
    recorded = _stamps_and_seconds(tmp_path / "recorded.mp4")
    shown = [o["stamp"] for o in sink.outputs]
    assert len(recorded) >= 20 and _is_subsequence([n for n, _ in recorded], shown)
    times = [t for _, t in recorded]
    assert times[0] == 0 and all(b > a for a, b in zip(times, times[1:]))
    by_stamp = {o["stamp"]: o["connection"] for o in sink.outputs}
    for (n0, t0), (n1, t1) in zip(recorded, recorded[1:]):
        if by_stamp[n0] == by_stamp[n1] and n1 > n0:
            assert abs((t1 - t0) - (n1 - n0) / FPS) < 2e-3
    assert not pipeline_threads()


def _stamps_and_seconds(path: Path) -> list[tuple[int, float]]:
    """(stamped number, presentation time in seconds) of every frame of a video."""
    import av

    with av.open(str(path)) as c:
        return [(read_number(f.to_ndarray(format="rgb24")), float(f.pts * f.time_base)) for f in c.decode(video=0)]


def _is_subsequence(part: list[int], whole: list[int]) -> bool:
    """True when `part` appears in `whole` in the same order (gaps allowed)."""
    it = iter(whole)
    return all(any(x == y for y in it) for x in part)


def test_cli_restores_a_file_into_a_recording_and_a_preview(work, detector_weights, tmp_path) -> None:
    out = tmp_path / "live.mp4"
    args = ["live", str(work["clip"]), "--record", str(out), "--preview", "0", "--model", str(work["model"]),
            "--detector", str(detector_weights), "--device", "cpu", "--det-size", "320", "--offline", "-q"]
    assert cli.main(args) == 0
    recorded = _stamps_and_seconds(out)
    assert len(recorded) > 10 and [p.name for p in tmp_path.iterdir()] == ["live.mp4"]
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
