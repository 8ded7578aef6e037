"""`vidrestore qc SOURCE RESTORED`: what the restoration changed, and how stable its faces are over time.

One pass decodes both files side by side (frames paired by timestamp) and feeds every measurement;
the structure check reads only packets. Exit status 0 when the structure and the background pass,
1 with the first failure named (for batch scripts); the temporal figures are measurements, not verdicts.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the parser is built without numpy, torch or cv2; the checks import them when they run
    import numpy as np

log = logging.getLogger(__name__)

EXIT_FAILED = 1


@dataclass(frozen=True)
class QcSettings:
    """What `vidrestore qc` reads beside the two videos and how it re-detects faces."""

    tracks: Path | None = None
    plan: Path | None = None
    detector: str = "retinaface_mobile0.25"
    device: str = "auto"
    det_size: int = 640
    min_psnr: float = 35.0
    arcface: str | None = None
    lossless: bool = False  # judge the background as a lossless output's whatever the codec


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of `vidrestore qc`."""
    p.add_argument("source", help="the video that was restored")
    p.add_argument("restored", help="the restored video")
    p.add_argument("--tracks", metavar="T.json", help="face tracks of the source (`vidrestore track SOURCE --json`); "
                   "default: faces re-detected on every frame")
    p.add_argument("--json", metavar="F.json", help="write the full results as JSON")
    p.add_argument("--report", metavar="F.md", help="write a Markdown report")
    p.add_argument("--plot", metavar="F.png", help="plot the face-region flicker over time (needs matplotlib)")
    p.add_argument("--strip", metavar="F.png", help="write the worst frames, source | output, as one PNG")
    p.add_argument("--plan", metavar="plan.json", help="an archive job's plan, to mark its chunk boundaries "
                   "(default: RESTORED.archive/plan.json when it exists)")
    p.add_argument("--min-psnr", type=float, default=35.0, help="background PSNR a lossy output must reach in "
                   "every frame (default 35 dB; a lossless output must be unchanged)")
    p.add_argument("--lossless", action="store_true", help="the output is lossless whatever its codec: any changed "
                   "background pixel fails (default: judged by the codec, e.g. FFV1)")
    p.add_argument("--detector", default="retinaface_mobile0.25", help="detector name or weights path")
    p.add_argument("--det-size", type=int, default=640, help="long side the detector works at")
    p.add_argument("--device", default="auto", help="cpu, cuda or cuda:N (default: auto)")
    p.add_argument("--arcface", metavar="NAME|PATH", help="ArcFace weights for identity drift "
                   "(default: arcface_resnet18 when present; never downloaded)")


def run_cli(args: argparse.Namespace) -> int:
    """Run the checks, write what was asked, print the verdict; 0 pass, 1 fail."""
    from vidrestore.errors import VidrestoreError
    from vidrestore.video.paths import check_input

    source, restored = Path(check_input(args.source)), Path(check_input(args.restored))
    outputs = [Path(p) for p in (args.json, args.report, args.plot, args.strip) if p]
    if any(p.resolve() in (source.resolve(), restored.resolve()) for p in outputs):
        raise VidrestoreError("a report file must not be one of the two videos")
    if args.det_size < 32:
        raise VidrestoreError(f"--det-size must be at least 32, not {args.det_size}")
    if args.plot:
        check_matplotlib()
    settings = QcSettings(tracks=Path(args.tracks) if args.tracks else None, plan=Path(args.plan) if args.plan else None,
                          detector=args.detector, device=args.device, det_size=args.det_size,
                          min_psnr=args.min_psnr, arcface=args.arcface, lossless=args.lossless)
    report = run_qc(source, restored, settings)
    write_outputs(report, args)
    print(summary(report))
    if not report.ok:
        print(f"vidrestore: qc failed: {report.first_failure}", file=sys.stderr)
        return EXIT_FAILED
    return 0


def check_matplotlib() -> None:
    """--plot needs matplotlib: one clear error before the pass over the videos, not after it."""
    import importlib.util

    from vidrestore.errors import VidrestoreError

    if importlib.util.find_spec("matplotlib") is None:
        raise VidrestoreError("--plot needs matplotlib (pip install matplotlib)")


def write_outputs(report, args: argparse.Namespace) -> None:
    """The files asked for, each written atomically."""
    from vidrestore.qc.report import write_json, write_markdown, write_plot, write_strip

    plot, strip = (Path(args.plot) if args.plot else None), (Path(args.strip) if args.strip else None)
    if plot is not None:
        write_plot(report, plot)
    if strip is not None:
        write_strip(report, strip)
    if args.json:
        write_json(report, Path(args.json))
    if args.report:
        write_markdown(report, Path(args.report), plot, strip)


def summary(report) -> str:
    """The lines printed for people: verdict, background, flicker."""
    s = report.stability
    ratio = "n/a" if s.ratio is None else f"{s.ratio:.3f}"
    out = "n/a" if s.output_error is None else f"{s.output_error:.5g}"
    src = "n/a" if s.source_error is None else f"{s.source_error:.5g}"
    return "\n".join([
        f"qc {report.output.name}: {'PASS' if report.ok else 'FAIL'}",
        f"  structure: {'ok' if report.structure.ok else report.structure.first_failure.detail}",
        f"  background: {report.background.verdict}",
        f"  face warping error: output {out}, source {src}, ratio {ratio} ({len(s.frames)} frames)",
    ])


# --- the pass over both videos -------------------------------------------------------------------


@dataclass(frozen=True)
class FramePair:
    """A source frame and the output frame at its time (None when the output lacks it)."""

    index: int
    seconds: float
    source: np.ndarray
    output: np.ndarray | None


def paired_frames(source: Path, output: Path) -> Iterator[FramePair]:
    """Source frames in order, each with the output frame at the same time (video/timestamps.time_tolerance)."""
    from vidrestore.video.timestamps import time_tolerance
    from vidrestore.video.source import read_frames

    outputs = read_frames(output)
    pending = next(outputs, None)
    for frame in read_frames(source):
        t = _time(frame)
        match = None
        while pending is not None:
            step = time_tolerance(frame.time_base, pending.time_base)
            u = _time(pending)
            if u <= t - step:
                pending = next(outputs, None)  # an output frame with no source frame: the structure check names it
                continue
            if abs(u - t) < step:
                match, pending = pending.image, next(outputs, None)
            break
        yield FramePair(frame.index, float(t), frame.image, match)


def _time(frame) -> Fraction:
    return Fraction(frame.pts or 0) * frame.time_base


def chunk_boundaries(source: Path, restored: Path, plan: Path | None) -> list[int]:
    """Inner chunk boundaries (frame indices) of the archive job that wrote `restored`, when its plan is found
    (--plan, else the job's default work folder) and is the plan of `source`."""
    from vidrestore.archive.job import ArchiveSettings, work_folder
    from vidrestore.archive.plan import load_plan
    from vidrestore.errors import VidrestoreError

    path = plan or work_folder(restored, ArchiveSettings()).plan_path
    if plan is not None and not plan.is_file():
        raise VidrestoreError(f"--plan: {plan} does not exist")
    loaded = load_plan(path) if path.is_file() else None
    if plan is not None and loaded is None:
        raise VidrestoreError(f"--plan: {plan} is not an archive plan")
    if loaded is None:
        return []
    if Path(loaded.input).resolve() != source.resolve():
        log.warning("%s is the plan of %s, not of %s: chunk boundaries not marked", path, loaded.input, source)
        return []
    return list(loaded.boundaries[1:-1])


def judge_background(background, released: Iterator[tuple[FramePair, np.ndarray]]) -> None:
    """Feed the frames HeldRegions released, each with its held background boxes, to the background check."""
    from vidrestore.qc.regions import region_mask

    for pair, grown in released:
        background.add(pair.index, pair.seconds, pair.source, pair.output, region_mask(pair.source.shape, grown))


def run_qc(source: Path, restored: Path, settings: QcSettings | None = None):
    """Every check and measurement of `restored` against `source`: a QcReport."""
    from vidrestore.archive.plan import read_frame_index
    from vidrestore.device import resolve_device
    from vidrestore.faces.detector import DetectorConfig, FaceDetector
    from vidrestore.faces.tracker import TrackerConfig, frame_thumbnail, is_scene_cut
    from vidrestore.qc.background import LOSSLESS_CODECS, BackgroundCheck
    from vidrestore.qc.flicker import TemporalStability
    from vidrestore.qc.identity import ABSENT, IdentityDrift, LandmarkJitter
    from vidrestore.qc.regions import FaceRegions, HeldRegions, read_track_file, region_mask
    from vidrestore.qc.report import QcReport, WorstFrames
    from vidrestore.qc.structure import check_structure
    from vidrestore.train.arcface import find_identity_net
    from vidrestore.video.probe import probe

    settings = settings or QcSettings()
    structure = check_structure(source, restored)
    boundaries = chunk_boundaries(source, restored, settings.plan)
    device = resolve_device(settings.device)
    detector = FaceDetector(settings.detector, device, DetectorConfig(det_size=settings.det_size))
    tracks = read_track_file(settings.tracks, frames=read_frame_index(source).frames) if settings.tracks else None
    regions = FaceRegions(tracks)
    held = HeldRegions(regions.hold)
    net = find_identity_net(settings.arcface, device)
    drift = IdentityDrift(net) if net is not None else None
    lossless = settings.lossless or probe(restored).codec in LOSSLESS_CODECS
    background = BackgroundCheck(lossless=lossless, min_psnr=settings.min_psnr)
    stability, worst = TemporalStability(), WorstFrames()
    out_jitter, src_jitter = LandmarkJitter(), LandmarkJitter()
    times: list[float] = []
    cuts: list[int] = []
    thumb = None
    for pair in paired_frames(source, restored):
        times.append(pair.seconds)
        previous_thumb, thumb = thumb, frame_thumbnail(pair.source)
        cut = is_scene_cut(previous_thumb, thumb, TrackerConfig.scene_cut_threshold)
        if cut:
            cuts.append(pair.index)
        if cut or pair.output is None or pair.output.shape != pair.source.shape:
            for chain in (out_jitter, src_jitter, drift, stability):
                if chain is not None:
                    chain.reset()
            if pair.output is None or pair.output.shape != pair.source.shape:
                continue
        src_faces, out_faces = detector.detect([pair.source, pair.output])
        boxes = regions.boxes(pair.index, pair.source.shape, src_faces)
        judge_background(background, held.push(pair, boxes.background))
        measured = stability.add(pair.index, pair.seconds, pair.source, pair.output,
                                 region_mask(pair.source.shape, boxes.faces))
        if measured is not None:
            worst.offer(measured.output, pair.index, pair.source, pair.output, boxes.faces)
        links = out_jitter.add(out_faces)
        src_jitter.add(src_faces)
        if drift is not None:
            drift.add(pair.source, pair.output, out_faces, links)
    judge_background(background, held.flush())
    at = lambda frames: [(i, times[i]) for i in frames if i < len(times)]
    report = QcReport(source, restored, structure, background, stability, regions.source, out_jitter.jitter,
                      src_jitter.jitter, drift.to_json() if drift is not None else dict(ABSENT), at(cuts),
                      at(boundaries), worst)
    return report
