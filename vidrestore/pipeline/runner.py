"""Threaded stages joined by bounded queues: the skeleton of the data path.

Each stage runs in its own thread, reads items from the queue before it and writes to the queue
after it. Queues are bounded, so a slow stage holds back the ones before it (memory stays flat).
Items leave in the order they came because each stage is one thread that emits in order.
A stage that raises stops every stage (no hang) and `Pipeline.run` re-raises its error, naming it.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator

from vidrestore.errors import JobCancelled

log = logging.getLogger(__name__)

_END = object()  # end-of-stream marker, passed down the chain after the last item
_POLL_SECONDS = 0.1


class PipelineStopped(Exception):
    """Raised inside a stage when another stage failed or the pipeline was cancelled."""


class StageError(Exception):
    """A stage failed; `stage` names it and `__cause__` is the original exception."""

    def __init__(self, stage: str, error: BaseException) -> None:
        super().__init__(f"{stage} stage failed: {error}")
        self.stage = stage
        self.error = error


@dataclass
class StageTiming:
    """Time a stage spent working (not waiting on its queues), and how many items it emitted."""

    name: str
    busy_seconds: float = 0.0
    items: int = 0


class _Channel:
    """A bounded queue whose put/get give up when the pipeline stops, so no thread blocks forever."""

    def __init__(self, maxsize: int, stop: threading.Event) -> None:
        self._queue: queue.Queue = queue.Queue(maxsize=maxsize)
        self._stop = stop
        self.get_wait_seconds = 0.0  # time the consumer spent waiting for items
        self.put_wait_seconds = 0.0  # time the producer spent waiting for room

    def put(self, item: Any) -> None:
        started = time.perf_counter()
        try:
            self._until_stopped(lambda: self._queue.put(item, timeout=_POLL_SECONDS), queue.Full)
        finally:
            self.put_wait_seconds += time.perf_counter() - started

    def get(self) -> Any:
        started = time.perf_counter()
        try:
            return self._until_stopped(lambda: self._queue.get(timeout=_POLL_SECONDS), queue.Empty)
        finally:
            self.get_wait_seconds += time.perf_counter() - started

    def _until_stopped(self, attempt: Callable[[], Any], retry_on: type[Exception]) -> Any:
        """Retry a timed queue operation until it succeeds or the pipeline stops."""
        while not self._stop.is_set():
            try:
                return attempt()
            except retry_on:
                continue
        raise PipelineStopped

    def __iter__(self) -> Iterator[Any]:
        while (item := self.get()) is not _END:
            yield item


# A stage function turns the stream of items before it into the stream after it; it may batch,
# drop nothing and must keep order. Sources take no input (None); sinks yield nothing.
StageFn = Callable[[Iterable[Any]], Iterable[Any]]


@dataclass
class _Stage:
    name: str
    fn: StageFn
    timing: StageTiming = field(init=False)

    def __post_init__(self) -> None:
        self.timing = StageTiming(self.name)


class Pipeline:
    """A chain of stages run in threads: source -> ... -> sink."""

    def __init__(self, queue_size: int = 8) -> None:
        self.queue_size = queue_size
        self._stages: list[_Stage] = []
        self._stop = threading.Event()
        self._errors: list[StageError] = []
        self._lock = threading.Lock()

    def add(self, name: str, fn: StageFn) -> "Pipeline":
        """Append a stage; the first one is the source (its input is empty)."""
        self._stages.append(_Stage(name, fn))
        return self

    @property
    def timings(self) -> list[StageTiming]:
        return [stage.timing for stage in self._stages]

    @property
    def stopping(self) -> bool:
        """True once a stage failed or the run was cancelled (for stages that wait on something else)."""
        return self._stop.is_set()

    def cancel(self) -> None:
        """Stop every stage at its next queue operation (Ctrl-C, a client going away)."""
        self._stop.set()

    def run(self, cancel: threading.Event | None = None) -> None:
        """Run all stages to completion; re-raise the first stage error, or KeyboardInterrupt.

        Setting `cancel` from another thread stops every stage and raises JobCancelled.
        """
        if not self._stages:
            return
        channels = [_Channel(self.queue_size, self._stop) for _ in range(len(self._stages) - 1)]
        inputs: list[Iterable[Any]] = [()] + channels
        outputs: list[_Channel | None] = channels + [None]
        threads = [
            threading.Thread(
                target=self._run_stage, args=(stage, inputs[i], outputs[i]), name=f"vidrestore-{stage.name}", daemon=True
            )
            for i, stage in enumerate(self._stages)
        ]
        for thread in threads:
            thread.start()
        try:
            for thread in threads:
                while thread.is_alive():
                    thread.join(timeout=_POLL_SECONDS)
                    if cancel is not None and cancel.is_set() and not self._stop.is_set():
                        self.cancel()
        except KeyboardInterrupt:
            self.cancel()
            for thread in threads:
                thread.join()
            raise
        if self._errors:
            raise self._errors[0].error  # the original error (a MediaError stays one), with its traceback
        if self._stop.is_set() or (cancel is not None and cancel.is_set()):  # cancelled from another thread
            raise JobCancelled("the job was cancelled")

    def _run_stage(self, stage: _Stage, source: Iterable[Any], sink: _Channel | None) -> None:
        started = time.perf_counter()
        try:
            for item in stage.fn(source):
                stage.timing.items += 1
                if sink is not None:
                    sink.put(item)
            if sink is not None:
                sink.put(_END)
        except PipelineStopped:
            pass
        except BaseException as exc:  # noqa: BLE001 - any failure must stop the whole pipeline
            with self._lock:
                self._errors.append(StageError(stage.name, exc))
            log.debug("stage %s failed", stage.name, exc_info=True)
            self._stop.set()
        finally:
            waited = (source.get_wait_seconds if isinstance(source, _Channel) else 0.0) + (
                sink.put_wait_seconds if sink is not None else 0.0
            )
            stage.timing.busy_seconds = max(0.0, time.perf_counter() - started - waited)
