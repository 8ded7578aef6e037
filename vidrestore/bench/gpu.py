"""`vidrestore bench gpu` (or `python -m vidrestore.bench.gpu`): every GPU figure of DESIGN.md section 7 in one
run with a total time budget, written as report.md, figures.json and run.log into one folder.

The benchmarks run in order of value (restorer, pipeline, live, server, training, archive, picture, upscale),
one at a time in a worker process (vidrestore.bench.gpu_worker). Each gets a share of the time left and
checks it between its points; one that overruns its share by more than the grace is stopped by force (its
process group killed) and keeps what it recorded; one that fails is reported with its error; in both
cases the next starts in a fresh worker. A benchmark that no longer fits in the total is skipped, and the
report says so. The report is rewritten after every benchmark, so an outside time limit leaves one too.
`--quick` runs tiny models on tiny clips so that the whole run is checked on a CPU in seconds.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from vidrestore.errors import VidrestoreError

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]
SUITE_MODULE = "vidrestore.bench.gpu_suite"


@dataclass(frozen=True)
class Spec:
    """One benchmark of the run: its function in the worker and its share of the total budget."""

    name: str
    title: str
    function: str  # "package.module:function", called with a gpu_worker.Task
    share: float  # seconds out of the default 480; rescaled to the time actually left
    min_s: float = 15.0  # not started with less time than this


SUITE: tuple[Spec, ...] = (
    Spec("restorer", "Restorer throughput", f"{SUITE_MODULE}:restorer", 150, 20),
    Spec("pipeline", "Pipeline end to end, 1080p30", f"{SUITE_MODULE}:pipeline", 110, 20),
    Spec("live", "Live mode, 1080p30", f"{SUITE_MODULE}:live", 60, 15),
    Spec("server", "Server: POST /v1/images:restore", f"{SUITE_MODULE}:server", 80, 20),
    Spec("training", "Training, 512 px bf16", f"{SUITE_MODULE}:training", 60, 15),
    Spec("archive", "Archive mode, 1 vs 2 workers", f"{SUITE_MODULE}:archive", 20, 0),
    Spec("picture", "Interlaced 576i, field-correct vs progressive", f"{SUITE_MODULE}:picture", 15, 0),
    Spec("upscale", "Background upsampling 2x, 720p", f"{SUITE_MODULE}:upscale", 10, 0),
)
MACHINE = Spec("machine", "Environment", f"{SUITE_MODULE}:machine", 0, 0)
MACHINE_BUDGET_S = 60.0


@dataclass
class Outcome:
    """What became of one benchmark."""

    spec: Spec
    status: str  # ok, partial, failed, stopped, skipped
    seconds: float = 0.0
    budget_s: float = 0.0
    error: str | None = None
    records: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class RunResult:
    """The whole run: its settings, the outcomes so far and when it started."""

    settings: dict[str, Any]
    outcomes: list[Outcome] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)
    started_at: str = field(default_factory=lambda: time.strftime("%Y-%m-%d %H:%M:%S %Z"))

    def elapsed(self) -> float:
        """Seconds since the run started."""
        return time.monotonic() - self.started


class Worker:
    """The benchmark worker process, in its own session so that stopping it stops its children too."""

    def __init__(self, log_file: Any, env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "vidrestore.bench.gpu_worker"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=log_file, text=True, start_new_session=True, env=env, cwd=REPO_ROOT)
        self.answers: queue.Queue[dict[str, Any] | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.answers.put(json.loads(line))
        self.answers.put(None)  # the worker has exited

    def run(self, task: dict[str, Any], timeout: float) -> dict[str, Any] | None:
        """The worker's answer to the task; None when it did not answer within `timeout` seconds."""
        assert self.process.stdin is not None
        try:
            self.process.stdin.write(json.dumps(task) + "\n")
            self.process.stdin.flush()
        except BrokenPipeError:
            pass  # it died before the task: its answer (None) says so
        try:
            answer = self.answers.get(timeout=timeout)
        except queue.Empty:
            return None
        if answer is None:
            return {"error": f"the worker process died ({_exit_text(self.process.wait())}); see run.log"}
        return answer

    def stop(self) -> None:
        """Kill the worker and every process it started."""
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait()

    def close(self) -> None:
        """End the worker: stdin closed, then killed with its children if it does not exit by itself."""
        assert self.process.stdin is not None
        self.process.stdin.close()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass
        self.stop()


def _exit_text(code: int) -> str:
    return f"signal {-code}" if code < 0 else f"exit status {code}"


def share_of(spec: Spec, remaining: Sequence[Spec], left: float) -> float:
    """Seconds for `spec` out of `left`: its share among the benchmarks still to run (time not used rolls on)."""
    total = sum(s.share for s in remaining)
    return left * spec.share / total if total > 0 else left


def read_records(path: Path) -> list[dict[str, Any]]:
    """The records a benchmark wrote (a line cut short by a kill is dropped)."""
    if not path.is_file():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            log.warning("dropped a cut-off record line in %s", path.name)
    return records


def status_of(records: list[dict[str, Any]]) -> str:
    """ok, partial (the budget ran out before some points) or skipped (nothing but skips)."""
    kinds = {r["kind"] for r in records}
    if "skip" in kinds and not kinds & {"row", "headline"}:
        return "skipped"
    return "partial" if any(r["kind"] == "skip" and r.get("budget") for r in records) else "ok"


def stopped_error(records: list[dict[str, Any]], budget: float, grace: float) -> str:
    """The error of a benchmark stopped by force: its budget and what it was doing."""
    doing = next((r["what"] for r in reversed(records) if r["kind"] == "doing"), None)
    text = f"stopped at its budget ({budget:.0f} s + {grace:.0f} s grace)"
    return text + (f" while: {doing}" if doing else "")


class Runner:
    """Runs the specs one by one in a worker, within the total budget, and keeps the outcomes."""

    def __init__(self, settings: dict[str, Any], work: Path, log_path: Path, grace: float) -> None:
        self.result = RunResult(settings)
        self.work = work
        self.grace = grace
        self.log_file = log_path.open("a")
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", "VIDRESTORE_OFFLINE": "1",
                    "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))}
        self.worker: Worker | None = None

    def run(self, spec: Spec, budget: float) -> Outcome:
        """One benchmark in the worker (a fresh one after a failure or a stop)."""
        records_path = self.work / f"{spec.name}.records.jsonl"
        self.worker = self.worker or Worker(self.log_file, self.env)
        task = {"function": spec.function, "records": str(records_path), "budget_s": budget,
                "options": self.result.settings}
        started = time.monotonic()
        log.info("%s: started with %.0f s", spec.name, budget)
        answer = self.worker.run(task, budget + self.grace)
        records = read_records(records_path)
        outcome = Outcome(spec, status_of(records), time.monotonic() - started, budget, records=records)
        if answer is None or answer["error"]:
            self.worker.stop()
            self.worker = None
            outcome.status = "stopped" if answer is None else "failed"
            outcome.error = stopped_error(records, budget, self.grace) if answer is None else answer["error"]
        log.info("%s: %s in %.1f s%s", spec.name, outcome.status, outcome.seconds,
                 f" ({outcome.error})" if outcome.error else "")
        return outcome

    def close(self, kill: bool = False) -> None:
        """End the worker (at once when `kill`, e.g. on Ctrl-C) and close the log."""
        if self.worker is not None and kill:
            self.worker.stop()
        elif self.worker is not None:
            self.worker.close()
        self.log_file.close()


def run_suite(specs: Sequence[Spec], settings: dict[str, Any], out: Path, grace: float,
              machine: Spec | None = MACHINE) -> RunResult:
    """Every spec in order within settings["budget_s"]; report.md and figures.json rewritten after each."""
    from vidrestore.bench.gpu_report import write_outputs

    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="vidrestore-gpu-"))
    settings = {**settings, "work": str(work)}
    runner = Runner(settings, work, out / "run.log", grace)
    result = runner.result
    try:
        if machine is not None:
            result.outcomes.append(runner.run(machine, MACHINE_BUDGET_S))
        for index, spec in enumerate(specs):
            left = settings["budget_s"] - result.elapsed()
            budget = share_of(spec, specs[index:], left)
            if budget < spec.min_s or left <= 0:
                why = f"total budget spent: {max(left, 0):.0f} s left, {spec.min_s:.0f} s needed"
                result.outcomes.append(Outcome(spec, "skipped", error=why))
            else:
                result.outcomes.append(runner.run(spec, budget))
            write_outputs(result, out, [s.name for s in specs[index + 1:]])
    except BaseException:
        runner.close(kill=True)
        raise
    else:
        runner.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    write_outputs(result, out)
    return result


def selected(only: str | None) -> tuple[Spec, ...]:
    """The suite, or the named benchmarks of it in the suite's order."""
    if not only:
        return SUITE
    names = [n.strip() for n in only.split(",") if n.strip()]
    unknown = sorted(set(names) - {s.name for s in SUITE})
    if unknown:
        raise VidrestoreError(f"unknown benchmark(s): {', '.join(unknown)} (known: {', '.join(s.name for s in SUITE)})")
    return tuple(s for s in SUITE if s.name in names)


def command_text(args: argparse.Namespace) -> str:
    """The command that repeats this run."""
    words = ["python -m vidrestore.bench.gpu", f"--budget {args.budget:g}", f"--out {args.out}",
             f"--device {args.device}", f"--detector {args.detector}", f"--grace {args.grace:g}"]
    words += (["--quick"] if args.quick else []) + ([f"--only {args.only}"] if args.only else [])
    return " ".join(words)


def run_cli(args: argparse.Namespace) -> int:
    """Entry point of `vidrestore bench gpu`: 0 when no benchmark failed (the report says what happened)."""
    if args.budget <= 0:
        raise VidrestoreError(f"--budget must be positive, not {args.budget:g}")
    specs = selected(args.only)
    settings = {"budget_s": args.budget, "quick": args.quick, "device": args.device, "detector": args.detector,
                "command": command_text(args)}
    out = Path(args.out)
    result = run_suite(specs, settings, out, args.grace)
    print((out / "report.md").read_text())
    return 1 if any(o.status == "failed" for o in result.outcomes) else 0


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m vidrestore.bench.gpu ARGS` is `vidrestore bench gpu ARGS`."""
    from vidrestore import cli

    return cli.main(["bench", "gpu", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
