"""`vidrestore bench pipeline`: end-to-end fps of the main job and time in each stage, on 720p and
1080p clips made from the sample, beside (same run, same files, same encoder settings):

- a plain PyAV decode + encode of the file (the floor `--model none` is measured against);
- a per-frame baseline doing what GFPGAN's own inference does: detect on every frame at full
  resolution, restore one face at a time, cv2.warpAffine crop and paste on the CPU, same model.
"""

from __future__ import annotations

import argparse
import datetime
import logging
import tempfile
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import torch

from vidrestore.bench import comma_list, publish
from vidrestore.bench.model import bench_checkpoints, machine_description
from vidrestore.bench.video import SIZES, machine
from vidrestore.device import resolve_device
from vidrestore.faces.align import estimate_similarity, face_template
from vidrestore.faces.detector import DetectorConfig, FaceDetector
from vidrestore.models.restorer import BatchRestorer
from vidrestore.pipeline.job import restore_video
from vidrestore.pipeline.options import RestoreOptions

log = logging.getLogger(__name__)

SAMPLE = Path(__file__).resolve().parents[2] / "samples" / "astronaut.mp4"


@dataclass(frozen=True)
class Row:
    """One measured line: what ran, on which clip, how fast, and where the time went."""

    size: str
    what: str
    frames: int
    seconds: float
    stages: str = ""
    reference_fps: float | None = None

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    def markdown(self) -> str:
        ratio = f"{self.fps / self.reference_fps:.2f}x" if self.reference_fps else ""
        return f"| {self.size} | {self.what} | {self.frames} | {self.fps:.1f} | {ratio} | {self.stages} |"


def make_clip(path: Path, size: tuple[int, int], seconds: float, source: Path = SAMPLE) -> int:
    """The sample's frames upscaled to `size` (looped to `seconds`), H.264; returns the frame count."""
    with av.open(str(source)) as inp:
        pictures = [f.to_ndarray(format="rgb24") for f in inp.decode(video=0)]
    count = max(1, int(seconds * 25))
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=25, options={"crf": "18", "preset": "ultrafast"})
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
        for i in range(count):
            image = cv2.resize(pictures[i % len(pictures)], size, interpolation=cv2.INTER_CUBIC)
            vf = av.VideoFrame.from_ndarray(image, format="rgb24")
            vf.pts, vf.time_base = i, Fraction(1, 25)
            out.mux(stream.encode(vf))
        out.mux(stream.encode(None))
    return count


def plain_transcode(src: Path, dst: Path, preset: str) -> int:
    """A plain PyAV decode + encode loop (no threads of ours, no conversion); returns frames."""
    frames = 0
    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
        vin = inp.streams.video[0]
        vin.thread_type = "AUTO"
        stream = out.add_stream("libx264", rate=vin.average_rate, options={"crf": "18", "preset": preset})
        stream.width, stream.height, stream.pix_fmt = vin.width, vin.height, "yuv420p"
        for frame in inp.decode(vin):
            frame.pict_type = av.video.frame.PictureType.NONE
            out.mux(stream.encode(frame))
            frames += 1
        out.mux(stream.encode(None))
    return frames


def _paste_one(frame: np.ndarray, face: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """GFPGAN-style paste: inverse-warp the face and a mask to the whole frame on the CPU, blend."""
    h, w = frame.shape[:2]
    inverse = cv2.invertAffineTransform(matrix)
    warped = cv2.warpAffine(face, inverse, (w, h)).astype(np.float32)
    mask = cv2.warpAffine(np.ones(face.shape[:2], np.float32), inverse, (w, h))[..., None]
    return (mask * warped + (1 - mask) * frame).round().astype(np.uint8)


def per_frame_baseline(src: Path, dst: Path, model_path: Path, detector: str, device: torch.device,
                       preset: str, limit: int | None) -> int:
    """Detect every frame at full resolution, restore one face at a time, CPU warp and paste; returns frames."""
    restorer = BatchRestorer(_load(model_path), device, batch_size=1)
    size = restorer.face_size
    frames = 0
    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
        vin = inp.streams.video[0]
        det = FaceDetector(detector, device, DetectorConfig(det_size=max(vin.width, vin.height), batch_size=1))
        stream = out.add_stream("libx264", rate=vin.average_rate, options={"crf": "18", "preset": preset})
        stream.width, stream.height, stream.pix_fmt = vin.width, vin.height, "yuv420p"
        for vf in inp.decode(vin):
            if limit is not None and frames >= limit:
                break
            image = vf.to_ndarray(format="rgb24")
            for face in det.detect_one(image):
                matrix = estimate_similarity(face.landmarks[None], face_template(size))[0]
                crop = cv2.warpAffine(image, matrix, (size, size), borderValue=(135, 133, 132))
                tensor = torch.from_numpy(crop).permute(2, 0, 1)[None].to(device)
                restored = (restorer.restore(tensor)[0].permute(1, 2, 0) * 255).round().byte().cpu().numpy()
                image = _paste_one(image, restored, matrix)
            out.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
            frames += 1
        out.mux(stream.encode(None))
    return frames


def _load(path: Path):
    from vidrestore.models.loading import load_restorer

    return load_restorer(path)


def timed(fn) -> tuple[object, float]:
    """fn's result and the wall seconds it took."""
    started = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - started


def stage_seconds(report) -> dict[str, float]:
    """Busy seconds of each stage of a JobReport, by stage name (where the job's time went)."""
    return {t.name: t.busy_seconds for t in report.stages}


def _stage_text(report) -> str:
    return ", ".join(f"{name} {seconds:.2f}s" for name, seconds in stage_seconds(report).items())


def measure_size(size_name: str, work: Path, args: argparse.Namespace, models: dict[str, Path],
                 device: torch.device) -> list[Row]:
    """All rows for one clip size."""
    clip = work / f"clip_{size_name}.mp4"
    make_clip(clip, SIZES[size_name], args.seconds)
    frames, plain = timed(lambda: plain_transcode(clip, work / "plain.mp4", args.preset))
    rows = [Row(size_name, "plain PyAV decode + encode", frames, plain)]
    base = RestoreOptions(model="none", detector=args.detector, device=str(device), preset=args.preset, crf=18,
                          offline=True)
    io_only = RestoreOptions(**{**base.__dict__, "detector": "none"})
    for what, options in (("`--model none` (whole pipeline, faces tracked)", base),
                          ("`--model none --detector none` (I/O only)", io_only)):
        report, seconds = timed(lambda: restore_video(clip, work / "none.mp4", options, progress=False))
        rows.append(Row(size_name, what, report.frames, seconds, _stage_text(report), rows[0].fps))
    for name, path in models.items():
        options = RestoreOptions(**{**base.__dict__, "model": str(path), "batch_size": args.batch_size})
        report, seconds = timed(lambda: restore_video(clip, work / "out.mp4", options, progress=False))
        pipeline_row = Row(size_name, f"pipeline, {name} restorer", report.frames, seconds, _stage_text(report))
        frames, seconds = timed(lambda: per_frame_baseline(clip, work / "base.mp4", path, args.detector, device,
                                                          args.preset, args.baseline_frames))
        baseline_row = Row(size_name, f"per-frame baseline, {name} restorer", frames, seconds)
        rows += [Row(**{**pipeline_row.__dict__, "reference_fps": baseline_row.fps}), baseline_row]
    return rows


def report_markdown(rows: list[Row], device: torch.device, args: argparse.Namespace) -> str:
    """The Markdown report: machine, date, settings, then the table."""
    head = [
        "# Pipeline benchmark (`vidrestore bench pipeline`)",
        "",
        f"- machine: {machine()}; torch device {machine_description(device)}",
        f"- date: {datetime.date.today().isoformat()}",
        f"- clips: samples/astronaut.mp4 upscaled, {args.seconds:g} s at 25 fps, one face; encoder libx264 "
        f"crf 18 preset {args.preset} everywhere; detector {args.detector}",
        "- ratio: `--model none` against the plain decode+encode (target >= 0.8 on a 2-core CPU); a pipeline "
        "row against the per-frame baseline below it (target >= 10x on an H200 with the full model)",
        "",
        "| clip | what | frames | fps | ratio | busy seconds per stage |",
        "|---|---|---|---|---|---|",
    ]
    return "\n".join(head + [row.markdown() for row in rows]) + "\n"


def run_cli(args: argparse.Namespace) -> int:
    """Entry point of `vidrestore bench pipeline`."""
    device = resolve_device(args.device)
    torch.set_grad_enabled(False)
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="vidrestore-bench-") as tmp:
        work = Path(tmp)
        models = bench_checkpoints(work, args.full)
        for size_name in comma_list(args.sizes, str):
            rows += measure_size(size_name, work, args, models, device)
            log.info("%s done", size_name)
    text = report_markdown(rows, device, args)
    return publish(text, args.output)
