"""Face regions for `vidrestore qc`: the frame boxes the restoration may change, per source frame.

A face's footprint is the one of its aligned crop in the frame (faces/align.paste_regions): paste-back
changes no pixel outside it. Flicker is measured inside the footprints as they are (a grown box would add a
band where output and source are the same pixels and dilute the ratio toward 1). The background check
leaves out more, so that it never counts restored pixels as background: with a track file (`vidrestore
track SOURCE --json T.json`, the landmarks the main job aligned with) the footprints grown by REGION_MARGIN
pixels for the chroma of 4:2:0 pixels that straddle the edge. Without one, faces are re-detected with
RetinaFace on every source frame; detected landmarks differ from the job's smoothed ones by their jitter,
so each footprint is also grown by REDETECTED_GROWTH of its side, and a face the detector misses for a few
frames was still restored there by the job's tracker (which detects every 5 frames by default), so each
frame's background regions also hold the boxes of the HOLD_FRAMES frames before and after it (HeldRegions).
"""

from __future__ import annotations

import json
import logging
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vidrestore.errors import VidrestoreError
from vidrestore.faces.align import estimate_similarity, face_template, paste_regions
from vidrestore.faces.types import Detection

log = logging.getLogger(__name__)

FOOTPRINT_SIZE = 512  # any crop size gives the same footprint in frame pixels; 512 is the released models'
REGION_MARGIN = 4  # pixels
REDETECTED_GROWTH = 0.1  # of the footprint's side, on every side
HOLD_FRAMES = 5  # the job's default detect_every: how long its tracker may restore a face the detector misses


@dataclass(frozen=True)
class TrackFile:
    """Landmarks per source frame from a track file: frame index -> (faces, 5, 2)."""

    landmarks: dict[int, np.ndarray]

    def faces(self, index: int) -> np.ndarray:
        """Landmarks (F,5,2) of frame `index` (F may be 0)."""
        return self.landmarks.get(index, np.zeros((0, 5, 2)))


def read_track_file(path: Path, frames: int | None = None) -> TrackFile:
    """The landmarks of a `vidrestore track` JSON file; VidrestoreError for a file that is not one."""
    try:
        document = json.loads(Path(path).read_text())
        records = document["frames"]
        landmarks = {int(r["index"]): np.asarray([f["landmarks"] for f in r["faces"]], np.float64).reshape(-1, 5, 2)
                     for r in records}
    except FileNotFoundError:
        raise VidrestoreError(f"--tracks: {path} does not exist") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise VidrestoreError(f"--tracks: {path} is not a track file of `vidrestore track` ({exc})") from None
    if frames is not None and len(records) != frames:
        raise VidrestoreError(f"--tracks: {path} describes {len(records)} frames, the source has {frames}")
    return TrackFile(landmarks)


def footprints(frame_shape: tuple[int, ...], landmarks: np.ndarray, growth: float = 0.0,
               margin: int = REGION_MARGIN) -> np.ndarray:
    """Boxes (F,4) x0,y0,x1,y1 of the crops' footprints of faces with landmarks (F,5,2), grown by `growth` of
    their side plus `margin` pixels, clipped."""
    landmarks = np.asarray(landmarks, np.float64).reshape(-1, 5, 2)
    if len(landmarks) == 0:
        return np.zeros((0, 4), np.int64)
    matrices = estimate_similarity(landmarks, face_template(FOOTPRINT_SIZE))
    shape_only = np.broadcast_to(np.zeros(1, np.uint8), frame_shape[:2] + (1,))
    boxes = paste_regions([shape_only], np.zeros(len(landmarks), np.int64), matrices, FOOTPRINT_SIZE).astype(np.float64)
    grow = growth * (boxes[:, 2:] - boxes[:, :2]) + margin
    grown = np.concatenate([boxes[:, :2] - grow, boxes[:, 2:] + grow], axis=1)
    h, w = frame_shape[:2]
    return np.clip(np.round(grown), 0, [w, h, w, h]).astype(np.int64)


def region_mask(frame_shape: tuple[int, ...], boxes: np.ndarray) -> np.ndarray:
    """Boolean (H,W) mask of the union of boxes (x0,y0,x1,y1), by broadcasting (no loop over pixels)."""
    h, w = frame_shape[:2]
    if len(boxes) == 0:
        return np.zeros((h, w), bool)
    ys, xs = np.arange(h), np.arange(w)
    inside_y = (ys[None, :] >= boxes[:, 1:2]) & (ys[None, :] < boxes[:, 3:4])  # (F,H)
    inside_x = (xs[None, :] >= boxes[:, 0:1]) & (xs[None, :] < boxes[:, 2:3])  # (F,W)
    return np.einsum("fh,fw->hw", inside_y.astype(np.int32), inside_x.astype(np.int32)) > 0


@dataclass(frozen=True)
class FrameRegions:
    """The boxes (F,4) x0,y0,x1,y1 of one source frame: the faces' footprints (where flicker is measured) and
    the grown boxes the background check leaves out (before HeldRegions adds its neighbours')."""

    faces: np.ndarray
    background: np.ndarray


class FaceRegions:
    """The face-region boxes of each source frame, from a track file or from detections of the source."""

    def __init__(self, tracks: TrackFile | None) -> None:
        self.tracks = tracks

    @property
    def source(self) -> str:
        return "tracks" if self.tracks is not None else "re-detected"

    @property
    def hold(self) -> int:
        """Frames before and after each frame whose background boxes it also leaves out (0 with a track file)."""
        return 0 if self.tracks is not None else HOLD_FRAMES

    def boxes(self, index: int, frame_shape: tuple[int, ...], detections: list[Detection]) -> FrameRegions:
        """The regions of source frame `index` (its detections are used without a track file)."""
        if self.tracks is not None:
            landmarks, growth = self.tracks.faces(index), 0.0
        else:
            landmarks = np.asarray([d.landmarks for d in detections]).reshape(-1, 5, 2)
            growth = REDETECTED_GROWTH
        return FrameRegions(footprints(frame_shape, landmarks, margin=0), footprints(frame_shape, landmarks, growth))


class HeldRegions:
    """Frames with their background boxes, released in order once `hold` later frames are in, each with the
    union of the boxes of the frames at most `hold` before or after it (the rest at `flush`)."""

    def __init__(self, hold: int) -> None:
        self.hold = hold
        self._count = 0
        self._boxes: deque[tuple[int, np.ndarray]] = deque()
        self._waiting: deque[tuple[int, Any]] = deque()

    def push(self, payload: Any, boxes: np.ndarray) -> Iterator[tuple[Any, np.ndarray]]:
        """Add the next frame's payload and boxes (F,4); yields the frames now complete."""
        self._boxes.append((self._count, boxes))
        self._waiting.append((self._count, payload))
        self._count += 1
        while self._waiting and self._waiting[0][0] <= self._count - 1 - self.hold:
            yield self._release()

    def flush(self) -> Iterator[tuple[Any, np.ndarray]]:
        """The frames still waiting (the last `hold`), with the boxes there are."""
        while self._waiting:
            yield self._release()

    def _release(self) -> tuple[Any, np.ndarray]:
        n, payload = self._waiting.popleft()
        while self._boxes[0][0] < n - self.hold:
            self._boxes.popleft()
        near = [b for m, b in self._boxes if m <= n + self.hold]
        return payload, np.concatenate(near)
