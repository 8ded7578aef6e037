"""Face regions for `vidrestore qc`: the frame boxes the restoration may change, per source frame.

A face's region is the footprint of its aligned crop in the frame (faces/align.paste_regions): paste-back
changes no pixel outside it. With a track file (`vidrestore track SOURCE --json T.json`, the landmarks the
main job aligned with) the regions are those footprints, grown by REGION_MARGIN pixels for the chroma
of 4:2:0 pixels that straddle the edge. Without one, faces are re-detected with RetinaFace on every
source frame; detected landmarks differ from the job's smoothed ones by their jitter, and a face the
detector misses in one frame was still restored there, so each footprint is also grown by
REDETECTED_GROWTH of its side and a frame's regions include the previous frame's.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vidrestore.errors import VidrestoreError
from vidrestore.faces.align import estimate_similarity, face_template, paste_regions
from vidrestore.faces.types import Detection

log = logging.getLogger(__name__)

FOOTPRINT_SIZE = 512  # any crop size gives the same footprint in frame pixels; 512 is the released models'
REGION_MARGIN = 4  # pixels
REDETECTED_GROWTH = 0.1  # of the footprint's side, on every side


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


def footprints(frame_shape: tuple[int, ...], landmarks: np.ndarray, growth: float = 0.0) -> np.ndarray:
    """Boxes (F,4) x0,y0,x1,y1 of the crops' footprints of faces with landmarks (F,5,2), grown, clipped."""
    landmarks = np.asarray(landmarks, np.float64).reshape(-1, 5, 2)
    if len(landmarks) == 0:
        return np.zeros((0, 4), np.int64)
    matrices = estimate_similarity(landmarks, face_template(FOOTPRINT_SIZE))
    shape_only = np.broadcast_to(np.zeros(1, np.uint8), frame_shape[:2] + (1,))
    boxes = paste_regions([shape_only], np.zeros(len(landmarks), np.int64), matrices, FOOTPRINT_SIZE).astype(np.float64)
    grow = growth * (boxes[:, 2:] - boxes[:, :2]) + REGION_MARGIN
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


class FaceRegions:
    """The face-region boxes of each source frame, from a track file or from detections of the source."""

    def __init__(self, tracks: TrackFile | None) -> None:
        self.tracks = tracks
        self._previous = np.zeros((0, 4), np.int64)

    @property
    def source(self) -> str:
        return "tracks" if self.tracks is not None else "re-detected"

    def boxes(self, index: int, frame_shape: tuple[int, ...], detections: list[Detection]) -> np.ndarray:
        """Region boxes (F,4) of source frame `index` (its detections are used without a track file)."""
        if self.tracks is not None:
            return footprints(frame_shape, self.tracks.faces(index))
        current = footprints(frame_shape, np.asarray([d.landmarks for d in detections]).reshape(-1, 5, 2),
                             REDETECTED_GROWTH)
        boxes = np.concatenate([current, self._previous])
        self._previous = current
        return boxes
