"""Benchmarks that print numbers (`vidrestore bench ...`); results are kept in benchmarks/.

Each `run_cli` measures, builds a Markdown report and hands it to `publish`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, TypeVar

T = TypeVar("T")


def comma_list(text: str, kind: Callable[[str], T]) -> list[T]:
    """The items of a comma-separated option ("1,4, 16" -> [1, 4, 16]), blanks skipped."""
    return [kind(item.strip()) for item in text.split(",") if item.strip()]


def publish(report: str, output: str | None) -> int:
    """Print a benchmark's Markdown report, also write it to `output` if given; the command's exit status."""
    print(report)
    if output:
        Path(output).write_text(report if report.endswith("\n") else report + "\n")
    return 0
