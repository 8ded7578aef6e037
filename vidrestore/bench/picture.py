"""`vidrestore bench picture`: the cost of field-correct restoration on an interlaced source.

The same 576i clip (720x576, 25 frames/s of two fields, top field first, H.264 with interlaced coding,
the sample's face moving at field rate) restored three ways with the small random-weight model:
field-correct (the default: fields split with bwdif, faces restored on twice the pictures, woven
back), --deinterlace (the fields written as progressive frames at 50 fps), and progressive (the
frame seen as one picture, what --field-order progressive does). fps counts source frames.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np

from vidrestore.bench import publish
from vidrestore.bench.model import bench_checkpoints
from vidrestore.bench.pipeline import SAMPLE, Row
from vidrestore.bench.video import machine
from vidrestore.video.fields import FieldTagger

log = logging.getLogger(__name__)

PAL = (720, 576)
SIZE = f"{PAL[0]}x{PAL[1]}i"
FIELD_STEP = 4  # pixels the face moves between fields


def make_interlaced_clip(path: Path, seconds: float, source: Path = SAMPLE) -> int:
    """A 576i clip (tff, interlaced H.264) whose fields are 50 fps pictures of the sample moving
    sideways; returns its frame count."""
    with av.open(str(source)) as inp:
        face = cv2.resize(next(inp.decode(video=0)).to_ndarray(format="rgb24"), (PAL[1], PAL[1]))
    frames = max(2, int(seconds * 25))
    canvas = np.zeros((PAL[1], PAL[0] + 2 * frames * FIELD_STEP, 3), dtype=np.uint8)
    canvas[:, : PAL[1]] = face
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=25, options={"crf": "18", "preset": "ultrafast",
                                                              "flags": "+ildct+ilme", "x264-params": "tff=1"})
        stream.width, stream.height, stream.pix_fmt = PAL[0], PAL[1], "yuv420p"
        stream.codec_context.field_order = 2  # AV_FIELD_TT
        tagger = FieldTagger("tff", Fraction(1, 25))  # flagged interlaced, as x264 reads the field order
        for k in range(frames):
            picture = np.empty((PAL[1], PAL[0], 3), dtype=np.uint8)
            for parity in (0, 1):  # the top field first in time
                shift = (2 * k + parity) * FIELD_STEP
                picture[parity::2] = canvas[parity::2, shift:shift + PAL[0]]
            frame = av.VideoFrame.from_ndarray(picture, format="rgb24").reformat(format="yuv420p")
            frame.pts, frame.time_base = k, Fraction(1, 25)
            out.mux(stream.encode(tagger.tag(frame)))
        out.mux(stream.encode(None))
    return frames


def time_run(clip: Path, out: Path, options: Any) -> tuple[float, str]:
    """Seconds of `vidrestore IN OUT` with these options, and the busy time per stage."""
    from vidrestore.pipeline.job import restore_video

    started = time.perf_counter()
    report = restore_video(clip, out, options, progress=False)
    seconds = time.perf_counter() - started
    return seconds, ", ".join(f"{t.name} {t.busy_seconds:.1f}s" for t in report.stages if t.busy_seconds >= 0.05)


def measure(work: Path, args: argparse.Namespace, model: Path) -> list[Row]:
    """Field-correct, --deinterlace and progressive runs on the same clip (field-correct first, then
    each against it)."""
    from vidrestore.pipeline.options import RestoreOptions

    clip = work / "576i.mp4"
    frames = make_interlaced_clip(clip, args.seconds)
    base = RestoreOptions(model=str(model), detector=args.detector, device=args.device, preset="veryfast")
    runs = [("field-correct (fields restored, woven back)", {}),
            ("--deinterlace (fields as 50p frames)", {"deinterlace": True}),
            ("progressive (each frame one picture)", {"field_order": "progressive"})]
    rows: list[Row] = []
    for n, (what, overrides) in enumerate(runs):
        seconds, stages = time_run(clip, work / f"out{n}.mp4", base.with_overrides(overrides))
        rows.append(Row(SIZE, what, frames, seconds, stages, reference_fps=rows[0].fps if rows else None))
    return rows


def report_markdown(rows: list[Row], args: argparse.Namespace) -> str:
    """The Markdown table `vidrestore bench picture` prints."""
    field, progressive = rows[0], rows[-1]
    return "\n".join([
        f"# vidrestore bench picture ({machine()}, device {args.device}, {SIZE} tff, {args.seconds:g} s, "
        "small random-weight model)", "",
        "| size | run | frames | fps | vs field-correct | stage busy time |", "|---|---|---|---|---|---|",
        *[row.markdown() for row in rows], "",
        f"- field-correct restoration costs {progressive.fps / field.fps:.2f}x the time of progressive "
        "(twice the pictures to analyse and restore, plus the split and the weave)"])


def run_cli(args: argparse.Namespace) -> int:
    """Entry point of `vidrestore bench picture`."""
    with tempfile.TemporaryDirectory(prefix="vidrestore-bench-picture-") as tmp:
        work = Path(tmp)
        rows = measure(work, args, next(iter(bench_checkpoints(work, False).values())))
    return publish(report_markdown(rows, args), args.output)


def gpu_benchmark(task: Any) -> None:
    """The picture rows of `vidrestore bench gpu`: field-correct vs --deinterlace vs progressive on 576i."""
    quick = bool(task.options.get("quick"))
    args = argparse.Namespace(device=str(task.options.get("device", "cuda")), detector=task.options["detector"],
                              seconds=0.08 if quick else 2.0, output=None)
    task.recorder.doing("576i: field-correct vs progressive")
    with tempfile.TemporaryDirectory(prefix="vidrestore-bench-picture-") as tmp:
        work = Path(tmp)
        rows = measure(work, args, next(iter(bench_checkpoints(work, False).values())))
    for row in rows:
        task.recorder.row("picture", {"run": row.what, "frames": row.frames, "seconds": row.seconds, "fps": row.fps,
                                      "vs_field_correct": row.fps / row.reference_fps if row.reference_fps else None})
    task.recorder.note(f"576i field-correct restoration: {rows[-1].fps / rows[0].fps:.2f}x the time of progressive")
