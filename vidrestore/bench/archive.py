"""`vidrestore bench archive`: archive mode against file mode on the same clip (made from the sample).

- fps of file mode, archive with 1 and 2 worker processes, and Ray local with 2 actors, with the ratio to
  one worker (target >= 0.9 N per added worker where cores or GPUs allow);
- the overhead of planning and joining: archive with one worker against file mode (target <= 5%);
- peak RSS of a one-worker archive run (its process tree) on the clip and on a clip 10x longer (flat).
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from vidrestore.bench import publish
from vidrestore.bench.model import bench_checkpoints
from vidrestore.bench.pipeline import Row, make_clip
from vidrestore.bench.video import machine

log = logging.getLogger(__name__)

CLIP_SIZE = (320, 240)
SIZE = f"{CLIP_SIZE[0]}x{CLIP_SIZE[1]}"


def bench_options(model: Path, detector: str, device: str, preset: str) -> Any:
    """The RestoreOptions every run shares (only workers differ)."""
    from vidrestore.pipeline.options import RestoreOptions

    return RestoreOptions(model=str(model), detector=detector, device=device, preset=preset)


def time_file_mode(clip: Path, out: Path, options: Any) -> float:
    """Seconds of `vidrestore IN OUT` (in this process)."""
    from vidrestore.pipeline.job import restore_file

    started = time.perf_counter()
    restore_file(clip, out, options, progress=False)
    return time.perf_counter() - started


def time_archive(clip: Path, out: Path, options: Any, devices: tuple[str | None, ...], ray: bool,
                 chunk_seconds: float) -> tuple[float, dict[str, float]]:
    """Seconds of a fresh archive job (plan, chunks, join) with these workers, and of each of its phases."""
    from vidrestore.archive.job import ArchiveSettings, archive_video

    settings = ArchiveSettings(chunk_seconds=chunk_seconds, devices=devices, ray=ray, fresh=True, progress=False)
    started = time.perf_counter()
    report = archive_video(clip, out, options, settings)
    return time.perf_counter() - started, report.phases


def peak_rss_mib(clip: Path, out: Path, options: Any, chunk_seconds: float) -> float:
    """Peak RSS (MiB) of `vidrestore archive` with one worker, over its process tree (wait4's ru_maxrss)."""
    argv = [sys.executable, "-c", "import sys; from vidrestore.cli import main; sys.exit(main(sys.argv[1:]))",
            "archive", str(clip), str(out), "--model", options.model, "--detector", options.detector,
            "--device", options.device, "--preset", options.preset, "--chunk-seconds", str(chunk_seconds),
            "--fresh", "--no-progress"]
    child = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        raise RuntimeError(f"archive run failed: {child.stderr.read().decode(errors='replace').strip()[-300:]}")
    return usage.ru_maxrss / 1024


def measure(work: Path, args: argparse.Namespace, model: Path) -> tuple[list[Row], dict[str, float]]:
    """Every row and figure of the report, on a clip of args.seconds and one 10x longer."""
    options = bench_options(model, args.detector, args.device, args.preset)
    clip = work / "clip.mp4"
    frames = make_clip(clip, CLIP_SIZE, args.seconds)
    chunk = args.chunk_seconds or args.seconds / 4  # default four chunks: two workers stay busy
    device = args.device if args.device != "auto" else None
    file_s = time_file_mode(clip, work / "file.mp4", options)
    one_s, phases = time_archive(clip, work / "one.mp4", options, (device,), False, chunk)
    rows = [Row(SIZE, "file mode (vidrestore IN OUT)", frames, file_s), Row(SIZE, "archive, 1 worker", frames, one_s)]
    two_s, _ = time_archive(clip, work / "two.mp4", options, (device, device), False, chunk)
    rows.append(Row(SIZE, "archive, 2 workers", frames, two_s, reference_fps=frames / one_s))
    if importlib.util.find_spec("ray") is not None:
        ray_s, _ = time_archive(clip, work / "ray.mp4", options, (device, device), True, chunk)
        rows.append(Row(SIZE, "archive, Ray local, 2 actors", frames, ray_s, reference_fps=frames / one_s))
    short_clip, long_clip = work / "short.mp4", work / "long.mp4"
    make_clip(short_clip, CLIP_SIZE, args.rss_seconds)
    make_clip(long_clip, CLIP_SIZE, args.rss_seconds * 10)
    figures = {"overhead_pct": 100 * (one_s - file_s) / file_s, "chunk_seconds": chunk,
               **{f"{name}_s": seconds for name, seconds in phases.items()},
               "rss_mib": peak_rss_mib(short_clip, work / "rss.mp4", options, args.rss_seconds / 4),
               "rss_10x_mib": peak_rss_mib(long_clip, work / "rss10.mp4", options, args.rss_seconds / 4)}
    return rows, figures


def report_markdown(rows: list[Row], figures: dict[str, float], args: argparse.Namespace) -> str:
    """The Markdown table and figures `vidrestore bench archive` prints."""
    lines = [f"# vidrestore bench archive ({machine()}, device {args.device}, {CLIP_SIZE[0]}x{CLIP_SIZE[1]}, "
             f"{args.seconds:g} s clip in {figures['chunk_seconds']:g} s chunks, small random-weight model)", "",
             "| size | run | frames | fps | vs 1 worker | |", "|---|---|---|---|---|---|",
             *[row.markdown() for row in rows], "",
             f"- planning + joining overhead (archive 1 worker vs file mode): {figures['overhead_pct']:+.1f}% "
             "(target <= 5%)",
             f"- archive 1 worker by phase: plan {figures['plan_s']:.1f} s, chunks {figures['chunks_s']:.1f} s "
             f"(worker start and model load included), join {figures['join_s']:.1f} s, verify "
             f"{figures['verify_s']:.1f} s",
             f"- peak RSS, archive 1 worker: {figures['rss_mib']:.0f} MiB on a {args.rss_seconds:g} s clip, "
             f"{figures['rss_10x_mib']:.0f} MiB on one 10x longer (target: flat)",
             "- target for N workers: >= 0.9 N x one worker where cores or GPUs allow"]
    return "\n".join(lines)


def run_cli(args: argparse.Namespace) -> int:
    """Entry point of `vidrestore bench archive`."""
    with tempfile.TemporaryDirectory(prefix="vidrestore-bench-archive-") as tmp:
        work = Path(tmp)
        model = next(iter(bench_checkpoints(work, False).values()))
        rows, figures = measure(work, args, model)
    return publish(report_markdown(rows, figures, args), args.output)


def gpu_benchmark(task: Any) -> None:
    """The archive rows of `vidrestore bench gpu`: 1 vs 2 workers (and Ray) on the one GPU, overhead, RSS."""
    quick = bool(task.options.get("quick"))
    args = argparse.Namespace(device=str(task.options.get("device", "cuda")), detector=task.options["detector"],
                              preset="veryfast", seconds=2.0 if quick else 8.0, chunk_seconds=None,
                              rss_seconds=1.0 if quick else 2.0, output=None)
    task.recorder.doing("archive mode, 1 vs 2 workers on the one GPU")
    with tempfile.TemporaryDirectory(prefix="vidrestore-bench-archive-") as tmp:
        work = Path(tmp)
        rows, figures = measure(work, args, next(iter(bench_checkpoints(work, False).values())))
    for row in rows:
        task.recorder.row("archive", {"run": row.what, "frames": row.frames, "seconds": row.seconds, "fps": row.fps,
                                      "vs_one_worker": row.fps / row.reference_fps if row.reference_fps else None})
    task.recorder.headline("archive planning + joining overhead", figures["overhead_pct"], "%", "<= 5%")
    task.recorder.note(f"archive peak RSS {figures['rss_mib']:.0f} MiB, {figures['rss_10x_mib']:.0f} MiB "
                       "on a clip 10x longer")
