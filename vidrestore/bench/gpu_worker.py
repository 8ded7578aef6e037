"""The worker process of `vidrestore bench gpu`: runs one benchmark function at a time for the orchestrator.

Protocol: one JSON task per line on stdin (`{"function": "module:name", "records": path, "budget_s": s,
"options": {...}}`), one JSON answer per line on the original stdout (`{"error": null}` or the error in
one line). Everything the benchmarks print goes to stderr, the run's log: stdout belongs to the protocol.
Each record a benchmark makes (a table row, a headline figure, a skip, a note, what it is doing) is
appended to the task's records file at once, so a benchmark stopped at its budget keeps what it measured.
This module imports only the standard library: a benchmark's own imports happen when it runs.
"""

from __future__ import annotations

import gc
import importlib
import json
import logging
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

log = logging.getLogger("vidrestore.bench.gpu_worker")  # also when run as __main__


class Budget:
    """A benchmark's time budget: a deadline on the monotonic clock."""

    def __init__(self, seconds: float) -> None:
        self.deadline = time.monotonic() + seconds

    def left(self) -> float:
        """Seconds until the deadline (negative once it has passed)."""
        return self.deadline - time.monotonic()

    def allows(self, seconds: float = 0.0) -> bool:
        """Whether `seconds` of work still fit before the deadline."""
        return self.left() >= seconds


class Recorder:
    """Appends a benchmark's records to its JSON-lines file, one flushed line each."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def _write(self, kind: str, **values: Any) -> None:
        with self.path.open("a") as f:
            f.write(json.dumps({"kind": kind, **values}) + "\n")

    def row(self, table: str, values: dict[str, Any]) -> None:
        """One row of a named table: label columns (text) and figures (numbers, None where not applicable)."""
        self._write("row", table=table, values=values)

    def headline(self, figure: str, value: float | None, unit: str, target: str | None = None,
                 met: bool | None = None) -> None:
        """A figure the product is built to reach (DESIGN.md section 7), with its target when it has one."""
        self._write("headline", figure=figure, value=value, unit=unit, target=target, met=met)

    def skip(self, what: str, why: str, budget: bool = False) -> None:
        """A measurement not made, and why (budget=True: the budget ran out before it)."""
        self._write("skip", what=what, why=why, budget=budget)

    def note(self, text: str) -> None:
        """A sentence for the report: a setting, a reading of the figures."""
        self._write("note", text=text)

    def doing(self, what: str) -> None:
        """What the benchmark starts now: a benchmark stopped by force is reported as stopped while doing it."""
        self._write("doing", what=what)
        log.info("%s", what)


@dataclass
class Task:
    """What a benchmark function gets: its recorder, its budget and the run's options."""

    recorder: Recorder
    budget: Budget
    options: dict[str, Any] = field(default_factory=dict)


def resolve(name: str) -> Callable[[Task], None]:
    """The function named "package.module:function"."""
    module, _, function = name.partition(":")
    return getattr(importlib.import_module(module), function)


def one_line(exc: BaseException) -> str:
    """An exception as one line: its type and the first line of its message."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def run_task(spec: dict[str, Any]) -> dict[str, Any]:
    """Run one task; the answer names the error when the benchmark failed (the traceback goes to the log)."""
    task = Task(Recorder(Path(spec["records"])), Budget(float(spec["budget_s"])), spec.get("options", {}))
    try:
        resolve(spec["function"])(task)
        return {"error": None}
    except (Exception, SystemExit) as exc:  # noqa: BLE001 - any failure is reported and the run goes on
        log.exception("%s failed", spec["function"])
        return {"error": one_line(exc)}
    finally:
        _release_memory()


def _release_memory() -> None:
    """Free what the last benchmark left: Python objects, then cached GPU memory if torch is in use."""
    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


def main() -> int:
    """Serve tasks from stdin until it closes."""
    protocol = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # prints of benchmark code and native libraries go to the log, not into the protocol
    sys.stdout = sys.stderr
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s worker %(name)s: %(message)s")
    for line in sys.stdin:
        if line.strip():
            protocol.write(json.dumps(run_task(json.loads(line))) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
