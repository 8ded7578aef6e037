"""The `vidrestore track` job: decode a video, track its faces, write the track JSON, optionally draw them.

Frames are read with a small PyAV loop of its own (exact PTS and time base), so face tracking does
not depend on the pipeline's video stage. The JSON is the format of DESIGN.md section 6 and is
written atomically (temporary file, then os.replace).
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import av
import cv2
import numpy as np
from tqdm import tqdm

from vidrestore.errors import MediaError
from vidrestore.faces.detector import DetectorConfig, FaceDetector
from vidrestore.faces.tracker import FaceTracker, TrackerConfig, analyze_frames
from vidrestore.faces.types import FrameFaces

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class VideoInfo:
    """What the track JSON says about the video."""

    width: int
    height: int
    time_base: Fraction
    frames: int
    rate: Fraction | None


@dataclass(frozen=True)
class DecodedFrame:
    """One decoded frame: its index, PTS (in time_base units) and RGB pixels."""

    index: int
    pts: int | None
    rgb: np.ndarray


def probe_video(path: Path) -> VideoInfo:
    """Size, time base, frame count (from the stream header) and rate of the first video stream."""
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            return VideoInfo(stream.width, stream.height, stream.time_base, stream.frames, stream.average_rate)
    except (av.FFmpegError, IndexError, OSError) as exc:
        raise MediaError(f"cannot open video {path}: {exc}") from None


def read_video(path: Path, limit: int | None = None) -> Iterator[DecodedFrame]:
    """Decoded RGB frames of the first video stream, in order, with their PTS."""
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            for index, frame in enumerate(container.decode(stream)):
                if limit is not None and index >= limit:
                    return
                yield DecodedFrame(index, frame.pts, frame.to_ndarray(format="rgb24"))
    except (av.FFmpegError, IndexError, OSError) as exc:
        raise MediaError(f"cannot decode video {path}: {exc}") from None


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
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(document, handle, separators=(",", ":"))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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


class DrawWriter:
    """Writes the annotated frames to a video file (H.264 when available, else MPEG-4), atomically."""

    def __init__(self, path: Path, info: VideoInfo) -> None:
        self.path = path
        self.tmp = path.with_name(f".{path.stem}.partial{path.suffix}")
        self.container = av.open(str(self.tmp), mode="w")
        rate = info.rate or Fraction(25)
        try:
            self.stream = self.container.add_stream("libx264", rate=rate)
        except (av.FFmpegError, ValueError):
            self.stream = self.container.add_stream("mpeg4", rate=rate)
        self.stream.width, self.stream.height = info.width - info.width % 2, info.height - info.height % 2
        self.stream.pix_fmt = "yuv420p"
        self.stream.time_base = info.time_base

    def write(self, rgb: np.ndarray, pts: int | None) -> None:
        """Encode one annotated frame at its source PTS."""
        frame = av.VideoFrame.from_ndarray(rgb[: self.stream.height, : self.stream.width], format="rgb24")
        frame.pts, frame.time_base = pts, self.stream.time_base
        for packet in self.stream.encode(frame):
            self.container.mux(packet)

    def close(self) -> None:
        """Flush the encoder and move the file into place."""
        for packet in self.stream.encode():
            self.container.mux(packet)
        self.container.close()
        os.replace(self.tmp, self.path)

    def abort(self) -> None:
        """Drop the partial file."""
        self.container.close()
        self.tmp.unlink(missing_ok=True)


def build_tracker(
    detector: str | Path, device: str, det_size: int, detect_every: int, conf_threshold: float
) -> FaceTracker:
    """A FaceTracker with its detector, from command-line settings."""
    det_config = DetectorConfig(det_size=det_size, conf_threshold=conf_threshold)
    return FaceTracker(FaceDetector(detector, device, det_config), TrackerConfig(detect_every=detect_every))


def run_track(
    source: Path,
    json_path: Path,
    tracker: FaceTracker,
    draw_path: Path | None = None,
    limit: int | None = None,
    progress: bool = True,
) -> dict:
    """Track the faces of a video and write the JSON (and the drawn video); returns the JSON document."""
    info = probe_video(source)
    pts: list[int | None] = []
    decoded: dict[int, DecodedFrame] = {}
    writer = DrawWriter(draw_path, info) if draw_path else None

    def frames() -> Iterator[np.ndarray]:
        for item in read_video(source, limit):
            pts.append(item.pts)
            if writer:
                decoded[item.index] = item
            yield item.rgb

    results: list[FrameFaces] = []
    try:
        total = min(info.frames or 0, limit or info.frames or 0) or None
        for result in tqdm(analyze_frames(frames(), tracker), total=total, unit="frame", disable=not progress):
            results.append(result)
            if writer:
                item = decoded.pop(result.index)
                writer.write(draw_faces(item.rgb, result), item.pts)
        if writer:
            writer.close()
    except BaseException:
        if writer:
            writer.abort()
        raise
    document = tracks_document(info, pts, results)
    write_json_atomic(document, json_path)
    log.info(
        "%d frames, detector ran on %d, %d track(s)",
        len(results),
        tracker.detected_frames,
        len({f.track_id for r in results for f in r.faces}),
    )
    return document
