"""report.md and figures.json of `vidrestore bench gpu`, made from the records each benchmark wrote.

Every section is present whatever happened: a benchmark that was skipped, failed or stopped says so
in its own section, and the Skipped section lists every measurement not made, with the reason.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vidrestore.atomic import atomic_path

if TYPE_CHECKING:
    from vidrestore.bench.gpu import Outcome, RunResult

DASH = "—"


def cell(value: Any) -> str:
    """A table cell: numbers at a precision that suits their size, None as a dash, booleans as yes/no."""
    if value is None:
        return DASH
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        size = abs(value)
        return f"{value:.0f}" if size >= 100 else f"{value:.1f}" if size >= 10 else f"{value:.3g}"
    return str(value).replace("|", "\\|")


def markdown_table(rows: list[dict[str, Any]]) -> list[str]:
    """Rows of dicts as a Markdown table; the columns are every key, in order of first appearance."""
    columns: list[str] = []
    for row in rows:
        columns += [key for key in row if key not in columns]
    lines = ["| " + " | ".join(c.replace("_", " ") for c in columns) + " |", "|" + "---|" * len(columns)]
    return lines + ["| " + " | ".join(cell(row.get(c)) for c in columns) + " |" for row in rows]


def tables(records: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """The rows of each table, tables in order of their first row."""
    found: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        if r["kind"] == "row":
            found.setdefault(r["table"], []).append(r["values"])
    return found


def of_kind(records: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    """The records of one kind, without their kind field."""
    return [{k: v for k, v in r.items() if k != "kind"} for r in records if r["kind"] == kind]


def skipped(result: RunResult) -> list[dict[str, Any]]:
    """Every measurement not made: whole benchmarks and single points, with the reason."""
    rows = []
    for o in result.outcomes:
        if o.status in ("skipped", "failed", "stopped") and o.error:
            rows.append({"benchmark": o.spec.name, "what": "the rest of the benchmark" if o.records else "all of it",
                         "why": f"{o.status}: {o.error}"})
        rows += [{"benchmark": o.spec.name, "what": s["what"], "why": s["why"]} for s in of_kind(o.records, "skip")]
    return rows


def benchmark_figures(o: Outcome) -> dict[str, Any]:
    """One benchmark's part of figures.json."""
    return {"title": o.spec.title, "status": o.status, "seconds": round(o.seconds, 2), "budget_s": round(o.budget_s, 1),
            "error": o.error, "tables": tables(o.records), "headlines": of_kind(o.records, "headline"),
            "notes": [n["text"] for n in of_kind(o.records, "note")],
            "skipped": [{"what": s["what"], "why": s["why"]} for s in of_kind(o.records, "skip")]}


def figures(result: RunResult) -> dict[str, Any]:
    """Everything the run measured, as one JSON document."""
    machine = next((o for o in result.outcomes if o.spec.name == "machine"), None)
    benchmarks = [o for o in result.outcomes if o.spec.name != "machine"]
    run = {**{k: v for k, v in result.settings.items() if k != "work"}, "started": result.started_at,
           "used_s": round(result.elapsed(), 1)}
    return {
        "run": run,
        "machine": {r["item"]: r["value"] for r in tables(machine.records).get("machine", [])} if machine else {},
        "targets": [h for o in benchmarks for h in of_kind(o.records, "headline")],
        "benchmarks": {o.spec.name: benchmark_figures(o) for o in benchmarks},
        "skipped": skipped(result),
    }


def _header(result: RunResult) -> list[str]:
    s = result.settings
    mode = ("quick (tiny models and clips: checks the run; the figures are not the targets' conditions)"
            if s.get("quick") else "full (GFPGAN v1.4 configuration, random weights)")
    return ["# GPU benchmark run (`python -m vidrestore.bench.gpu`)", "",
            f"- mode: {mode}; device {s.get('device')}; detector {s.get('detector')}",
            f"- started {result.started_at}; budget {s.get('budget_s', 0):.0f} s, used {result.elapsed():.0f} s",
            f"- command: `{s.get('command', '')}`", ""]


def _section(o: Outcome) -> list[str]:
    lines = [f"## {o.spec.title}", "", f"Status: {o.status} ({o.seconds:.1f} s of {o.budget_s:.0f} s)"
             + (f": {o.error}" if o.error else "."), ""]
    lines += [f"- {n['text']}" for n in of_kind(o.records, "note")]
    if of_kind(o.records, "note"):
        lines.append("")
    for name, rows in tables(o.records).items():
        lines += [f"### {name}", "", *markdown_table(rows), ""]
    return lines


def report(result: RunResult, pending: list[str] | None = None) -> str:
    """The Markdown report: header, environment, targets, status per benchmark, one section each, skips."""
    data = figures(result)
    machine = [{"item": k, "value": v} for k, v in data["machine"].items()]
    targets = [{"figure": h["figure"], "measured": h["value"], "unit": h["unit"], "target": h["target"] or DASH,
                "met": h["met"]} for h in data["targets"]]
    status = [{"benchmark": o.spec.name, "status": o.status, "seconds": o.seconds, "budget_s": o.budget_s,
               "error": o.error} for o in result.outcomes if o.spec.name != "machine"]
    status += [{"benchmark": name, "status": "not run yet"} for name in pending or []]
    lines = _header(result)
    lines += ["## Environment", "", *(markdown_table(machine) if machine else ["(not read)"]), ""]
    lines += ["## Targets (DESIGN.md section 7)", "", *(markdown_table(targets) if targets else ["(none measured)"]), ""]
    lines += ["## Benchmarks", "", *markdown_table(status), ""]
    for o in result.outcomes:
        if o.spec.name != "machine":
            lines += _section(o)
    lines += ["## Skipped", "", *(markdown_table(data["skipped"]) if data["skipped"] else ["Nothing was skipped."]), ""]
    return "\n".join(lines)


def write_outputs(result: RunResult, out: Path, pending: list[str] | None = None) -> None:
    """report.md and figures.json in `out`, each replaced whole (a reader never sees half a file)."""
    with atomic_path(out / "figures.json") as tmp:
        tmp.write_text(json.dumps(figures(result), indent=1) + "\n")
    with atomic_path(out / "report.md") as tmp:
        tmp.write_text(report(result, pending))
