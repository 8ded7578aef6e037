"""`vidrestore bench faces`: detection reuse, faces lost, landmark jitter raw vs smoothed, analysis time.

For every video of a folder: per-frame detection (the reference) and the tracker run on the same
frames. Tracked faces are paired with per-frame detections by IoU; jitter is the mean magnitude of
the second difference of a track's landmarks over consecutive frames, in eye distances, computed on
the same frame triples for the raw (per-frame detection) and the smoothed (tracker) landmarks.
"""

from __future__ import annotations

import argparse
import datetime
import logging
import platform
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from vidrestore.bench import publish
from vidrestore.faces.detector import DetectorConfig, FaceDetector
from vidrestore.faces.tracker import FaceTracker, TrackerConfig, analyze_frames, box_iou
from vidrestore.faces.types import Detection, FrameFaces
from vidrestore.pipeline.track import read_video

log = logging.getLogger(__name__)

DEFAULT_MEDIA = Path(__file__).resolve().parents[2].parent / "shared" / "media" / "videos"
PAIR_IOU = 0.3
TALKING_HEADS = ("livepo_", "retalking_", "sadtalker_")


@dataclass
class VideoResult:
    """Benchmark numbers of one video."""

    name: str
    frames: int
    detect_rate: float
    raw_faces: int
    lost: int
    raw_jitter: float
    smooth_jitter: float
    offset: float
    ms_per_frame: float
    ms_per_frame_raw: float

    @property
    def reduction(self) -> float:
        """Jitter reduction in percent."""
        return 100.0 * (1.0 - self.smooth_jitter / self.raw_jitter) if self.raw_jitter > 0 else 0.0


def _pair(faces: FrameFaces, detections: list[Detection]) -> dict[int, Detection]:
    """Per-frame detection paired with each tracked face (by track id), greedy on IoU."""
    if not faces.faces or not detections:
        return {}
    iou = box_iou(np.stack([f.box for f in faces.faces]), np.stack([d.box for d in detections]))
    pairs: dict[int, Detection] = {}
    for flat in np.argsort(-iou, axis=None):
        t, d = np.unravel_index(flat, iou.shape)
        if iou[t, d] < PAIR_IOU:
            break
        track_id = faces.faces[t].track_id
        if track_id not in pairs and all(p is not detections[d] for p in pairs.values()):
            pairs[track_id] = detections[d]
    return pairs


def _second_differences(series: dict[int, np.ndarray], sizes: dict[int, float]) -> list[float]:
    """Mean point magnitude of L[t+1] - 2 L[t] + L[t-1] over eye distance, for every full frame triple."""
    values = []
    for t in sorted(series):
        if t - 1 in series and t + 1 in series:
            second = series[t + 1] - 2 * series[t] + series[t - 1]
            values.append(float(np.linalg.norm(second, axis=1).mean() / sizes[t]))
    return values


def landmark_metrics(results: list[FrameFaces], raw: list[list[Detection]]) -> tuple[int, int, float, float, float]:
    """Raw faces, faces lost, raw jitter, smoothed jitter and mean smoothed-to-raw offset (eye distances)."""
    raw_series: dict[int, dict[int, np.ndarray]] = {}
    smooth_series: dict[int, dict[int, np.ndarray]] = {}
    sizes: dict[int, dict[int, float]] = {}
    offsets, lost = [], 0
    for result, detections in zip(results, raw):
        pairs = _pair(result, detections)
        lost += len(detections) - len(pairs)
        for face in result.faces:
            if face.track_id not in pairs:
                continue
            det = pairs[face.track_id]
            size = max(det.eye_distance, 1.0)
            raw_series.setdefault(face.track_id, {})[result.index] = det.landmarks
            smooth_series.setdefault(face.track_id, {})[result.index] = face.landmarks
            sizes.setdefault(face.track_id, {})[result.index] = size
            offsets.append(float(np.linalg.norm(face.landmarks - det.landmarks, axis=1).mean() / size))
    raw_j = [v for k in raw_series for v in _second_differences(raw_series[k], sizes[k])]
    smooth_j = [v for k in smooth_series for v in _second_differences(smooth_series[k], sizes[k])]
    count = sum(len(d) for d in raw)
    mean = lambda xs: float(np.mean(xs)) if xs else float("nan")  # noqa: E731
    return count, lost, mean(raw_j), mean(smooth_j), mean(offsets)


def bench_video(path: Path, detector: FaceDetector, config: TrackerConfig, limit: int | None = None) -> VideoResult:
    """Per-frame detection and tracking of one video, and their comparison."""
    frames = [item.image for item in read_video(path, limit)]
    start = time.perf_counter()
    raw = detector.detect(frames)
    raw_ms = 1000 * (time.perf_counter() - start) / max(len(frames), 1)
    tracker = FaceTracker(detector, config)
    start = time.perf_counter()
    results = list(analyze_frames(frames, tracker))
    ms = 1000 * (time.perf_counter() - start) / max(len(frames), 1)
    count, lost, raw_j, smooth_j, offset = landmark_metrics(results, raw)
    rate = tracker.detected_frames / max(len(frames), 1)
    return VideoResult(path.name, len(frames), rate, count, lost, raw_j, smooth_j, offset, ms, raw_ms)


def time_1080p(path: Path, detector: FaceDetector, config: TrackerConfig, frames: int = 60) -> tuple[float, float]:
    """Milliseconds per 1080p frame: tracker analysis and per-frame detection (a clip upscaled to 1920x1080)."""
    clip = [cv2.resize(item.image, (1920, 1080), interpolation=cv2.INTER_LINEAR) for item in read_video(path, frames)]
    tracker = FaceTracker(detector, config)
    start = time.perf_counter()
    list(analyze_frames(clip, tracker))
    tracked = 1000 * (time.perf_counter() - start) / len(clip)
    start = time.perf_counter()
    detector.detect(clip)
    per_frame = 1000 * (time.perf_counter() - start) / len(clip)
    return tracked, per_frame


def markdown_table(results: list[VideoResult]) -> str:
    """The results as a Markdown table."""
    head = (
        "| video | frames | detector calls/frame | faces (per-frame det.) | lost | raw jitter | smoothed jitter "
        "| reduction | smoothed-raw / eye dist. | ms/frame tracked | ms/frame per-frame det. |\n"
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n"
    )
    rows = [
        f"| {r.name} | {r.frames} | {r.detect_rate:.3f} | {r.raw_faces} | {r.lost} | {r.raw_jitter:.4f} "
        f"| {r.smooth_jitter:.4f} | {r.reduction:.1f}% | {r.offset:.4f} | {r.ms_per_frame:.1f} "
        f"| {r.ms_per_frame_raw:.1f} |"
        for r in results
    ]
    return head + "\n".join(rows) + "\n"


def machine_description() -> str:
    """CPU model name and core count (from lscpu when available)."""
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        model = next((ln.split(":", 1)[1].strip() for ln in text.splitlines() if ln.startswith("Model name")), "")
    except OSError:
        model = ""
    import os

    return f"{model or platform.processor() or 'unknown CPU'}, {os.cpu_count()} cores"


def run_cli(args: argparse.Namespace) -> int:
    """Run the face-analysis benchmark and print (and optionally write) the Markdown report."""
    from vidrestore.errors import VidrestoreError

    media = Path(args.media) if args.media else DEFAULT_MEDIA
    videos = sorted(media.glob("*.mp4"))
    if not videos:
        raise VidrestoreError(f"no .mp4 videos in {media}")
    detector = FaceDetector(args.detector, args.device, DetectorConfig(det_size=args.det_size))
    config = TrackerConfig(detect_every=args.detect_every, lag=args.lag)
    results = []
    for path in videos:
        log.info("benchmarking %s", path.name)
        results.append(bench_video(path, detector, config, args.limit))
    tracked, per_frame = time_1080p(videos[0] if not args.hd_clip else Path(args.hd_clip), detector, config)
    report = (
        f"Machine: {machine_description()}, device {detector.device}; {datetime.date.today().isoformat()}.\n"
        f"Detector {detector.weights_path.name}, det-size {args.det_size}, detect every {args.detect_every}, "
        f"smoothing lag {args.lag} frame(s).\n\n"
        + markdown_table(results)
        + f"\n1080p analysis: {tracked:.1f} ms/frame tracked, {per_frame:.1f} ms/frame per-frame detection "
        f"({detector.device}).\n"
    )
    return publish(report, args.output)
