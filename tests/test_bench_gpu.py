"""`vidrestore bench gpu`: the quick run writes the whole report layout, and the orchestrator keeps going
when a benchmark fails, overruns its budget or no longer fits (fake benchmarks, run in the real worker)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from vidrestore.bench.gpu import SUITE, Spec, run_suite, share_of, status_of
from vidrestore.bench.gpu_worker import Task

TESTS = Path(__file__).resolve().parent
SECTIONS = ["# GPU benchmark run", "## Environment", "## Targets (DESIGN.md section 7)", "## Benchmarks",
            *[f"## {spec.title}" for spec in SUITE], "## Skipped"]
# a figure that each benchmark's main table must carry as a number
FIGURES = {"restorer": ("restorer points", "faces_per_s"), "pipeline": ("end to end", "fps"),
           "live": ("live", "p95_ms"), "server": ("server", "images_per_s"),
           "training": ("iterations", "iterations_per_s"), "archive": ("archive", "fps"),
           "picture": ("picture", "fps"),
           "upscale": ("upscale", "fps")}


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory, shared_dir) -> Path:
    """One quick run on the CPU (tiny models and clips), in a subprocess as on a GPU machine."""
    out = tmp_path_factory.mktemp("gpu-quick")
    detector = shared_dir / "weights" / "detection_mobilenet0.25_Final.pth"
    # a budget no machine reaches: the figures, not this machine's speed, are under test (budgets: below)
    result = subprocess.run([sys.executable, "-m", "vidrestore.bench.gpu", "--quick", "--device", "cpu",
                             "--budget", "1e6", "--detector", str(detector), "--out", str(out)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "## Skipped" in result.stdout  # the report is printed too
    return out


def test_quick_run_report_has_every_section(quick_run):
    text = (quick_run / "report.md").read_text()
    positions = [text.index(section) for section in SECTIONS]
    assert positions == sorted(positions)
    assert (quick_run / "run.log").read_text().strip()


def test_quick_run_figures_have_the_expected_keys_and_numbers(quick_run):
    data = json.loads((quick_run / "figures.json").read_text())
    assert set(data) == {"run", "machine", "targets", "benchmarks", "skipped"}
    assert data["run"]["quick"] is True and "python" in data["machine"]
    assert list(data["benchmarks"]) == [spec.name for spec in SUITE]
    for name, (table, key) in FIGURES.items():
        bench = data["benchmarks"][name]
        assert bench["status"] == "ok", (name, bench["error"])
        rows = bench["tables"][table]
        assert rows and all(_number(row[key]) for row in rows), (name, rows)
    assert data["targets"] and all(_number(h["value"]) for h in data["targets"])
    whys = {(s["benchmark"], s["why"]) for s in data["skipped"]}
    assert not any(name == "archive" for name, _ in whys)  # archive mode exists and runs in the quick run
    assert ("restorer", "CUDA graphs need a CUDA device") in whys


# --- the orchestrator, with fake benchmarks ---------------------------------------------------------


def fake_ok(task: Task) -> None:
    task.recorder.row("numbers", {"what": "one", "value": 1.5})
    task.recorder.headline("a figure", 2.0, "units", ">= 1", True)


def fake_fails(task: Task) -> None:
    task.recorder.row("numbers", {"what": "before the failure", "value": 1.0})
    raise RuntimeError("it broke\nsecond line")


def fake_overruns(task: Task) -> None:
    task.recorder.row("numbers", {"what": "before the stop", "value": 3.0})
    task.recorder.doing("sleeping past the budget")
    time.sleep(120)


def _spec(name: str, function: str, share: float = 1.0, min_s: float = 0.0) -> Spec:
    return Spec(name, name.title(), f"test_bench_gpu:{function}", share, min_s)


def test_failures_stops_and_spent_budget_are_reported_and_the_run_goes_on(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(TESTS))
    specs = (_spec("fails", "fake_fails"), _spec("overruns", "fake_overruns"), _spec("after", "fake_ok"),
             _spec("toolate", "fake_ok", min_s=1000))
    result = run_suite(specs, {"budget_s": 12.0}, tmp_path, grace=1.0, machine=None)
    outcomes = {o.spec.name: o for o in result.outcomes}
    assert outcomes["fails"].status == "failed" and outcomes["fails"].error == "RuntimeError: it broke"
    assert outcomes["overruns"].status == "stopped"
    assert "while: sleeping past the budget" in outcomes["overruns"].error
    assert outcomes["after"].status == "ok"
    assert outcomes["toolate"].status == "skipped" and "total budget spent" in outcomes["toolate"].error
    data = json.loads((tmp_path / "figures.json").read_text())
    assert data["benchmarks"]["overruns"]["tables"]["numbers"][0]["value"] == 3.0  # kept what it measured
    assert {s["benchmark"] for s in data["skipped"]} == {"fails", "overruns", "toolate"}
    report = (tmp_path / "report.md").read_text()
    assert "## Fails" in report and "## Toolate" in report and "RuntimeError: it broke" in report


def test_time_left_is_shared_in_proportion_to_the_benchmarks_still_to_run():
    specs = [_spec("a", "fake_ok", 3), _spec("b", "fake_ok", 1)]
    assert share_of(specs[0], specs, 100) == 75
    assert share_of(specs[1], specs[1:], 40) == 40


def test_status_comes_from_the_records():
    row = {"kind": "row", "table": "t", "values": {}}
    assert status_of([row]) == "ok"
    assert status_of([row, {"kind": "skip", "what": "x", "why": "y", "budget": True}]) == "partial"
    assert status_of([{"kind": "skip", "what": "x", "why": "y", "budget": False}]) == "skipped"


def test_unknown_benchmark_is_one_line_error(tmp_path):
    result = subprocess.run([sys.executable, "-m", "vidrestore.bench.gpu", "--only", "nope", "--out", str(tmp_path)],
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert "unknown benchmark(s): nope" in result.stderr and "Traceback" not in result.stderr
