"""The `vidrestore track` job: decode a video, track its faces, write the track JSON, optionally draw them.

Frames come from the video stage's threaded VideoSource (exact PTS and time base); the drawn video
goes through VideoSink (same timing, atomic). The JSON is the format of DESIGN.md section 6 and is
written atomically (temporary file, then os.replace).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np
from tqdm import tqdm

from vidrestore.atomic import atomic_path
from vidrestore.video import EncoderSettings, Frame, VideoInfo, VideoSink, probe, read_frames
from vidrestore.faces.detector import DetectorConfig, FaceDetector
from vidrestore.faces.tracker import FaceTracker, TrackerConfig, analyze_frames
from vidrestore.faces.types import FrameFaces

log = logging.getLogger(__name__)

DRAW_SETTINGS = EncoderSettings(codec="libx264", quality=23, preset="veryfast")


def read_video(path: Path, limit: int | None = None) -> Iterator[Frame]:
    """Decoded RGB frames of the video, in order, with their timing; at most `limit` of them."""
    frames = read_frames(path)
    return frames if limit is None else itertools.islice(frames, limit)


def tracks_document(info: VideoInfo, pts: list[int | None], results: list[FrameFaces]) -> dict:
    """The track JSON document (DESIGN.md section 6)."""
    frames = [
        {"index": r.index, "pts": p, "detected": r.detected, "faces": [f.to_dict() for f in r.faces]}
        for p, r in zip(pts, results)
    ]
    video = {"width": info.width, "height": info.height, "time_base": str(info.time_base), "frames": len(frames)}
    return {"video": video, "frames": frames}


def write_json_atomic(document: dict, path: Path) -> None:
    """Write JSON to a temporary file beside `path`, then rename it into place."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(document, separators=(",", ":")))


def _track_color(track_id: int) -> tuple[int, int, int]:
    """A stable, distinct RGB colour per track id."""
    hue = (track_id * 47) % 180
    bgr = cv2.cvtColor(np.uint8([[[hue, 220, 255]]]), cv2.COLOR_HSV2RGB)[0, 0]
    return int(bgr[0]), int(bgr[1]), int(bgr[2])


def draw_faces(rgb: np.ndarray, result: FrameFaces) -> np.ndarray:
    """A copy of the frame with boxes, smoothed landmarks (dots), raw landmarks (crosses) and ids."""
    out = np.ascontiguousarray(rgb.copy())
    for face in result.faces:
        color = _track_color(face.track_id)
        x1, y1, x2, y2 = (int(round(v)) for v in face.box)
        cv2.rectangle(out, (x1, y1), (x2, y2), color, 2)
        cv2.putText(out, str(face.track_id), (x1, max(12, y1 - 4)), cv2.FONT_HERSHEY_SIMPLEX, 0.6, color, 2)
        for x, y in face.landmarks:
            cv2.circle(out, (int(round(x)), int(round(y))), 2, color, -1)
        for x, y in face.raw_landmarks if face.raw_landmarks is not None else ():
            cv2.drawMarker(out, (int(round(x)), int(round(y))), (255, 255, 255), cv2.MARKER_CROSS, 6, 1)
    if result.detected:
        cv2.putText(out, "D", (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 0, 0), 2)
    return out


def build_tracker(
    detector: str | Path, device: str, det_size: int, detect_every: int, conf_threshold: float, lag: int = 0
) -> FaceTracker:
    """A FaceTracker with its detector, from command-line settings (lag: frames of landmark look-ahead)."""
    det_config = DetectorConfig(det_size=det_size, conf_threshold=conf_threshold)
    config = TrackerConfig(detect_every=detect_every, lag=lag)
    return FaceTracker(FaceDetector(detector, device, det_config), config)


def run_track(
    source: Path,
    json_path: Path,
    tracker: FaceTracker,
    draw_path: Path | None = None,
    limit: int | None = None,
    progress: bool = True,
) -> dict:
    """Track the faces of a video and write the JSON (and the drawn video); returns the JSON document."""
    info = probe(source)
    pts: list[int | None] = []
    decoded: dict[int, Frame] = {}
    drawing = VideoSink(draw_path, info, DRAW_SETTINGS, copy_streams=False) if draw_path else None

    def frames() -> Iterator[np.ndarray]:
        for frame in read_video(source, limit):
            pts.append(frame.pts)
            if drawing:
                decoded[frame.index] = frame
            yield frame.image

    results: list[FrameFaces] = []
    with drawing or contextlib.nullcontext():
        for result in tqdm(analyze_frames(frames(), tracker), unit="frame", disable=not progress):
            results.append(result)
            if drawing:
                frame = decoded.pop(result.index)
                frame.image = draw_faces(frame.image, result)
                drawing.write(frame)
    document = tracks_document(info, pts, results)
    write_json_atomic(document, json_path)
    log.info(
        "%d frames, detector ran on %d, %d track(s)",
        len(results),
        tracker.detected_frames,
        len({f.track_id for r in results for f in r.faces}),
    )
    return document
