"""Typed records of face analysis: detections, tracked faces and per-frame results."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


def _array_to_list(values: np.ndarray | None, digits: int = 2) -> list | None:
    """A numpy array as nested lists of rounded floats (JSON-friendly), None stays None."""
    if values is None:
        return None
    return np.round(np.asarray(values, dtype=np.float64), digits).tolist()


def eye_distance(landmarks: np.ndarray) -> float:
    """Distance between the two eye landmarks: the face-size unit used across analysis."""
    return float(np.linalg.norm(landmarks[0] - landmarks[1]))


def landmark_frame(landmarks: np.ndarray) -> tuple[np.ndarray, float]:
    """Centre and RMS radius of the landmarks: the face's own position and scale."""
    center = landmarks.mean(axis=0)
    return center, float(np.sqrt(((landmarks - center) ** 2).sum(axis=1).mean())) + 1e-6


@dataclass(frozen=True)
class Detection:
    """One face found by the detector: box [x1,y1,x2,y2], confidence, 5 landmarks (5,2) in pixels."""

    box: np.ndarray
    score: float
    landmarks: np.ndarray

    @property
    def eye_distance(self) -> float:
        """Eye distance in pixels."""
        return eye_distance(self.landmarks)


@dataclass(frozen=True)
class TrackedFace:
    """A face in one frame, with the id of its track; landmarks are the smoothed ones used for alignment."""

    track_id: int
    box: np.ndarray
    score: float
    landmarks: np.ndarray
    raw_landmarks: np.ndarray | None = None

    def to_dict(self) -> dict:
        """The face in the track JSON format of DESIGN.md section 6."""
        return {
            "track": int(self.track_id),
            "box": _array_to_list(self.box),
            "score": round(float(self.score), 4),
            "landmarks": _array_to_list(self.landmarks),
            "raw_landmarks": _array_to_list(self.raw_landmarks),
        }


@dataclass(frozen=True)
class FrameFaces:
    """All tracked faces of one frame, and whether the detector ran on it."""

    index: int
    detected: bool
    faces: list[TrackedFace] = field(default_factory=list)
