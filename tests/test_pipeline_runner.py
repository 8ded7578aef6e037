"""The threaded stage runner: order, backpressure, error propagation, no hang, no leftover threads."""

from __future__ import annotations

import threading
import time

import pytest

from vidrestore.errors import JobCancelled
from vidrestore.pipeline.runner import Pipeline, StageError


def _source(n, produced=None):
    def fn(_):
        for i in range(n):
            if produced is not None:
                produced.append(i)
            yield i
    return fn


def _collect(into):
    def fn(items):
        for item in items:
            into.append(item)
        return ()
    return fn


def _vidrestore_threads():
    return [t for t in threading.enumerate() if t.name.startswith("vidrestore-")]


def test_items_leave_in_order_through_batching_stages():
    out = []

    def batch_and_unbatch(items):
        batch = []
        for item in items:
            batch.append(item * 2)
            if len(batch) == 7:
                yield from batch
                batch = []
        yield from batch

    Pipeline(queue_size=3).add("src", _source(1000)).add("batch", batch_and_unbatch).add("sink", _collect(out)).run()
    assert out == [2 * i for i in range(1000)]
    assert _vidrestore_threads() == []


def test_backpressure_bounds_items_in_flight():
    produced, consumed = [], []
    max_in_flight = []

    def slow_sink(items):
        for item in items:
            consumed.append(item)
            max_in_flight.append(len(produced) - len(consumed))
            time.sleep(0.001)
        return ()

    Pipeline(queue_size=4).add("src", _source(300, produced)).add("sink", slow_sink).run()
    assert consumed == list(range(300))
    # queue of 4 + the item being put + the one being consumed
    assert max(max_in_flight) <= 4 + 2


def test_error_in_a_middle_stage_stops_everything_and_is_raised():
    def explode(items):
        for item in items:
            if item == 50:
                raise ValueError("bad frame 50")
            yield item

    out = []
    pipeline = Pipeline(queue_size=2).add("src", _source(10**9)).add("restore", explode).add("sink", _collect(out))
    with pytest.raises(ValueError, match="bad frame 50"):
        pipeline.run()
    assert out == list(range(len(out))) and len(out) <= 50
    assert _vidrestore_threads() == []


def test_error_in_the_sink_stops_an_endless_source():
    def failing_sink(items):
        for item in items:
            if item == 3:
                raise OSError("disk full")
        return ()

    with pytest.raises(OSError, match="disk full"):
        Pipeline(queue_size=2).add("src", _source(10**9)).add("sink", failing_sink).run()
    assert _vidrestore_threads() == []


def test_cancel_from_another_thread_stops_the_run():
    pipeline = Pipeline(queue_size=2).add("src", _source(10**9)).add("sink", _collect([]))
    timer = threading.Timer(0.3, pipeline.cancel)
    timer.start()
    with pytest.raises(JobCancelled):  # raised once every stage saw the stop
        pipeline.run()
    timer.join()
    assert _vidrestore_threads() == []


def test_cancel_event_stops_the_run():
    cancel = threading.Event()
    pipeline = Pipeline(queue_size=2).add("src", _source(10**9)).add("sink", _collect([]))
    timer = threading.Timer(0.3, cancel.set)
    timer.start()
    with pytest.raises(JobCancelled, match="cancelled"):
        pipeline.run(cancel)
    timer.join()
    assert _vidrestore_threads() == []


def test_timings_count_items_per_stage():
    pipeline = Pipeline().add("src", _source(20)).add("double", lambda xs: (x * 2 for x in xs)).add("sink", _collect([]))
    pipeline.run()
    assert [(t.name, t.items) for t in pipeline.timings] == [("src", 20), ("double", 20), ("sink", 0)]
    assert all(t.busy_seconds >= 0 for t in pipeline.timings)


def test_stage_error_type_names_the_stage():
    error = StageError("encode", OSError("x"))
    assert "encode stage failed" in str(error)
