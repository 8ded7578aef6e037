"""Threaded stages joined by bounded channels: the skeleton of the data path.

Each stage runs in its own thread, reads items from the channel before it and writes to the channel
after it. The first stage is the source itself (it decodes in its thread) and the last the sink
(it encodes in its thread), so each stage's busy time is its own work. Channels block when full, so
a slow stage holds back the ones before it (memory stays flat). Items leave in the order they came
because each stage is one thread that emits in order. A stage that raises stops every stage (no
hang) and `Pipeline.run` re-raises the first error; Ctrl-C stops every stage and is re-raised.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator

from vidrestore.channel import CLOSED, Channel
from vidrestore.errors import JobCancelled

log = logging.getLogger(__name__)

_POLL_SECONDS = 0.1


class PipelineStopped(Exception):
    """Raised inside a stage when another stage failed or the pipeline was cancelled."""


@dataclass(frozen=True)
class StageError:
    """A stage's failure as recorded: `stage` names it, `error` is the original exception (what `run` raises)."""

    stage: str
    error: BaseException

    def __str__(self) -> str:
        return f"{self.stage} stage failed: {self.error}"


@dataclass
class StageTiming:
    """Time a stage spent working (not waiting on its channels), and how many items it emitted."""

    name: str
    busy_seconds: float = 0.0
    items: int = 0


# A stage function turns the stream of items before it into the stream after it; it may batch,
# drop nothing and must keep order. Sources take no input (an empty iterable); sinks yield nothing.
StageFn = Callable[[Iterable[Any]], Iterable[Any]]


@dataclass
class _Stage:
    name: str
    fn: StageFn
    timing: StageTiming = field(init=False)

    def __post_init__(self) -> None:
        self.timing = StageTiming(self.name)


def _received(channel: Channel[Any]) -> Iterator[Any]:
    """The items of a channel until it is closed; PipelineStopped when the pipeline stops first."""
    while (item := channel.get()) is not CLOSED:
        yield item
    if channel.stopped:
        raise PipelineStopped


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
        """Stop every stage at its next channel operation (Ctrl-C, a client going away)."""
        self._stop.set()

    def run(self, cancel: threading.Event | None = None) -> None:
        """Run all stages to completion; re-raise the first stage error, or KeyboardInterrupt.

        Setting `cancel` from another thread stops every stage and raises JobCancelled.
        """
        if not self._stages:
            return
        channels = [Channel(self.queue_size, "block", self._stop) for _ in self._stages[1:]]
        inputs: list[Channel[Any] | None] = [None, *channels]
        outputs: list[Channel[Any] | None] = [*channels, None]
        done = [threading.Event() for _ in self._stages]
        threads = [
            threading.Thread(target=self._run_stage, args=(stage, inputs[i], outputs[i], done[i]),
                             name=f"vidrestore-{stage.name}", daemon=True)
            for i, stage in enumerate(self._stages)
        ]
        for thread in threads:
            thread.start()
        try:
            # waiting on events, not in Thread.join: Ctrl-C inside a join can leave a running thread
            # marked as stopped (CPython's bpo-45274 handling), and the join after it would not wait
            for finished in done:
                while not finished.wait(_POLL_SECONDS):
                    if cancel is not None and cancel.is_set() and not self._stop.is_set():
                        self.cancel()
        except KeyboardInterrupt:
            self.cancel()
            for finished in done:
                finished.wait()
            raise
        finally:
            for thread in threads:
                thread.join()
        if self._errors:
            raise self._errors[0].error  # the original error (a MediaError stays one), with its traceback
        if self._stop.is_set() or (cancel is not None and cancel.is_set()):  # cancelled from another thread
            raise JobCancelled("the job was cancelled")

    def _run_stage(self, stage: _Stage, source: Channel[Any] | None, sink: Channel[Any] | None,
                   done: threading.Event) -> None:
        started = time.perf_counter()
        try:
            for item in stage.fn(() if source is None else _received(source)):
                stage.timing.items += 1
                if sink is not None and not sink.put(item):
                    raise PipelineStopped
            if sink is not None:
                sink.close()
        except PipelineStopped:
            pass
        except BaseException as exc:  # noqa: BLE001 - any failure must stop the whole pipeline
            with self._lock:
                self._errors.append(StageError(stage.name, exc))
            log.debug("%s", self._errors[-1], exc_info=True)
            self._stop.set()
        finally:
            waited = (source.get_wait_seconds if source is not None else 0.0) + (
                sink.put_wait_seconds if sink is not None else 0.0)
            stage.timing.busy_seconds = max(0.0, time.perf_counter() - started - waited)
            done.set()
