"""Fixed-lag smoothing for file mode: each frame's landmarks use the observations of the next `lag` frames.

The tracker's filters record their steps (`FilterHistory`); this buffer holds each analysed frame
until `lag` later frames are in (or the stream ends, or a scene cut starts a new set of tracks).
Then every face's landmarks are recomputed from the steps of its own track: a Rauch-Tung-Striebel
pass over the window from a few frames back up to `lag` frames ahead, followed by a centred
Gaussian over the smoothed positions (radius at most `lag`), which also evens out the head's own
frame-to-frame acceleration that optical flow passes on. A track's steps never cross a cut or
another track, so neither does the smoothing. Frames come out in order, all of them, ids unchanged.
"""

from __future__ import annotations

import dataclasses
import math
from collections import deque
from dataclasses import dataclass

import numpy as np

from vidrestore.faces.smoothing import FilterHistory, smooth_span
from vidrestore.faces.types import FrameFaces, TrackedFace, landmark_frame

FILE_MODE_LAG = 8  # frames; the file-mode default, measured in benchmarks/faces.md


def carry_box(box: np.ndarray, old: np.ndarray, new: np.ndarray) -> np.ndarray:
    """The box moved and scaled with its face from landmarks `old` to landmarks `new`."""
    (c_old, r_old), (c_new, r_new) = landmark_frame(old), landmark_frame(new)
    corners = (np.asarray(box, dtype=np.float64).reshape(2, 2) - c_old) / r_old
    return (corners * r_new + c_new).reshape(-1)


def gaussian_radius(lag: int, sigma: float) -> int:
    """Half-width of the centred Gaussian: 3 sigma, but no more than the look-ahead."""
    return min(lag, math.ceil(3 * sigma)) if sigma > 0 else 0


def smooth_at(history: FilterHistory, position: int, lag: int, sigma: float) -> np.ndarray:
    """Fixed-lag landmarks (5, 2) of the step at `position`: RTS up to `lag` ahead, then the centred Gaussian."""
    radius = gaussian_radius(lag, sigma)
    first, last = max(position - radius, history.start), min(position + lag, history.end - 1)
    span = smooth_span(history, first, last)
    offsets = np.arange(first, min(position + radius, last) + 1) - position
    weights = np.exp(-0.5 * (offsets / sigma) ** 2) if radius else np.ones(1)
    return np.tensordot(weights / weights.sum(), span[: len(offsets)], axes=1)


@dataclass
class PendingFrame:
    """An analysed frame waiting for its look-ahead: the result and, per face, its filter steps and position."""

    result: FrameFaces
    steps: list[tuple[FilterHistory, int]]


class FixedLagBuffer:
    """Holds analysed frames `lag` frames back and releases them smoothed, in order."""

    def __init__(self, lag: int, sigma: float = 0.0) -> None:
        self.lag = lag
        self.sigma = sigma
        self.pending: deque[PendingFrame] = deque()

    def push(self, result: FrameFaces, steps: list[tuple[FilterHistory, int]]) -> list[FrameFaces]:
        """Add the newest frame (steps: one per face, in face order); returns the frames now complete."""
        self.pending.append(PendingFrame(result, steps))
        ready = []
        while self.pending and self.pending[0].result.index <= result.index - self.lag:
            ready.append(self._release(self.pending.popleft()))
        return ready

    def flush(self) -> list[FrameFaces]:
        """Release every held frame (end of stream or scene cut: no later frame can change them)."""
        ready = [self._release(item) for item in self.pending]
        self.pending.clear()
        return ready

    def _release(self, item: PendingFrame) -> FrameFaces:
        """The frame with every face's landmarks smoothed over its own track's steps."""
        faces = [self._smoothed_face(face, history, position) for face, (history, position) in
                 zip(item.result.faces, item.steps)]
        keep = gaussian_radius(self.lag, self.sigma)
        for history, position in item.steps:
            history.drop_before(position + 1 - keep)
        return dataclasses.replace(item.result, faces=faces)

    def _smoothed_face(self, face: TrackedFace, history: FilterHistory, position: int) -> TrackedFace:
        """One face with smoothed landmarks and its box carried along."""
        landmarks = smooth_at(history, position, self.lag, self.sigma)
        return dataclasses.replace(face, landmarks=landmarks, box=carry_box(face.box, face.landmarks, landmarks))
