"""Kalman smoothing of a track's 5 landmarks (filterpy), the main cure for flicker in restored video.

State: the 10 landmark coordinates and their velocities (constant-velocity model). All noise levels
are given in eye distances and scaled to the face's current size, so a 40-pixel face and a
400-pixel face are smoothed alike. Between detections the estimate moves with the optical-flow
motion of the face (`move`), otherwise with its velocity (`predict`). The filter is causal (no
look-ahead); for file mode it can record its steps (`FilterHistory`) so that `smooth_span` (a
Rauch-Tung-Striebel pass over a window of frames) gives fixed-lag smoothed landmarks.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from filterpy.common import Q_discrete_white_noise
from filterpy.kalman import KalmanFilter

from vidrestore.faces.types import eye_distance

COORDS = 10
IDENTITY = np.eye(2 * COORDS)


@dataclass(frozen=True)
class SmoothingConfig:
    """Noise levels in eye distances (detector, optical flow per frame, acceleration); correction ramp length.

    Defaults are tuned on the talking heads of the benchmark (benchmarks/faces.md): detections pull
    the estimate back from flow drift, and each correction is released over `correction_frames`
    frames instead of in one step, which would show as a jump every detection.
    """

    detection_noise: float = 0.015
    flow_noise: float = 0.01
    process_noise: float = 0.003
    size_smoothing: float = 0.1
    velocity_smoothing: float = 0.5
    correction_frames: int = 5


@dataclass
class FilterStep:
    """One frame of a filter: the transition into it (matrix, prior mean and covariance) and the posterior."""

    x: np.ndarray
    P: np.ndarray
    transition: np.ndarray | None = None
    prior_x: np.ndarray | None = None
    prior_P: np.ndarray | None = None
    gain: np.ndarray | None = field(default=None, repr=False)


class FilterHistory:
    """The steps of one filter, one per frame, addressed by absolute position; old steps can be dropped."""

    def __init__(self) -> None:
        self.start = 0
        self.steps: list[FilterStep] = []

    @property
    def end(self) -> int:
        """Absolute position one past the newest step."""
        return self.start + len(self.steps)

    def append(self, step: FilterStep) -> int:
        """Add the newest step; returns its absolute position."""
        self.steps.append(step)
        return self.end - 1

    def __getitem__(self, position: int) -> FilterStep:
        return self.steps[position - self.start]

    def drop_before(self, position: int) -> None:
        """Forget the steps before an absolute position."""
        cut = max(0, min(position - self.start, len(self.steps)))
        del self.steps[:cut]
        self.start += cut


def _smoother_gain(step: FilterStep, following: FilterStep) -> np.ndarray:
    """RTS gain P_t A^T (P_{t+1|t})^-1 of a step towards the following one (cached on the step)."""
    if step.gain is None:
        step.gain = np.linalg.solve(following.prior_P, following.transition @ step.P).T
    return step.gain


def smooth_span(history: FilterHistory, first: int, last: int) -> np.ndarray:
    """RTS-smoothed landmarks (n, 5, 2) of the steps first..last, using the observations up to `last`."""
    x = history[last].x
    smoothed = [x]
    for k in range(last - 1, first - 1, -1):
        step, following = history[k], history[k + 1]
        x = step.x + _smoother_gain(step, following) @ (x - following.prior_x)
        smoothed.append(x)
    return np.stack(smoothed[::-1])[:, :COORDS].reshape(-1, 5, 2)


def _transition() -> np.ndarray:
    """Constant-velocity transition for 10 positions followed by their 10 velocities."""
    f = np.eye(2 * COORDS)
    f[:COORDS, COORDS:] = np.eye(COORDS)
    return f


def _process_covariance(std: float) -> np.ndarray:
    """Discrete white-noise acceleration covariance for every coordinate, ordered [positions, velocities]."""
    block = Q_discrete_white_noise(dim=2, dt=1.0, var=std**2)
    q = np.zeros((2 * COORDS, 2 * COORDS))
    idx = np.arange(COORDS)
    q[idx, idx] = block[0, 0]
    q[idx, idx + COORDS] = block[0, 1]
    q[idx + COORDS, idx] = block[1, 0]
    q[idx + COORDS, idx + COORDS] = block[1, 1]
    return q


class LandmarkKalman:
    """Constant-velocity Kalman filter on the 5 landmarks (5, 2) of one track, noise scaled to face size."""

    def __init__(
        self, landmarks: np.ndarray, config: SmoothingConfig | None = None, record: bool = False
    ) -> None:
        self.config = config or SmoothingConfig()
        self.face_size = max(eye_distance(landmarks), 1.0)
        self.kf = KalmanFilter(dim_x=2 * COORDS, dim_z=COORDS)
        self.kf.F = _transition()
        self.kf.H = np.hstack([np.eye(COORDS), np.zeros((COORDS, COORDS))])
        self.kf.x = np.concatenate([np.asarray(landmarks, dtype=np.float64).reshape(-1), np.zeros(COORDS)])
        position_var = (self.config.detection_noise * self.face_size) ** 2
        velocity_var = (0.1 * self.face_size) ** 2
        self.kf.P = np.diag([position_var] * COORDS + [velocity_var] * COORDS)
        self._rescale_process_noise()
        self._pending = np.zeros(COORDS)
        self._release_step = np.zeros(COORDS)
        self.history = FilterHistory() if record else None
        if self.history is not None:
            self.history.append(FilterStep(self.kf.x.copy(), self.kf.P.copy()))

    def _record_transition(self, transition: np.ndarray) -> None:
        """Remember a frame's transition and prior (also its posterior until an update replaces it)."""
        if self.history is not None:
            x, p = self.kf.x.copy(), self.kf.P.copy()
            self.history.append(FilterStep(x, p, transition, x, p))

    def _record_update(self) -> None:
        """Replace the newest step's posterior with the corrected estimate."""
        if self.history is not None:
            step = self.history[self.history.end - 1]
            step.x, step.P = self.kf.x.copy(), self.kf.P.copy()

    @property
    def position(self) -> int:
        """Absolute position of the newest recorded step (-1 when not recording)."""
        return self.history.end - 1 if self.history is not None else -1

    def _rescale_process_noise(self) -> None:
        """Process noise for the current face size."""
        self.kf.Q = _process_covariance(self.config.process_noise * self.face_size)

    @property
    def landmarks(self) -> np.ndarray:
        """The landmarks to align with (5, 2): the estimate less the part of recent corrections not yet released."""
        return (self.kf.x[:COORDS] - self._pending).reshape(5, 2).copy()

    @property
    def estimate(self) -> np.ndarray:
        """The filter's own current estimate (5, 2), corrections fully applied."""
        return self.kf.x[:COORDS].reshape(5, 2).copy()

    def _release(self) -> None:
        """Let one frame's share of the pending correction through."""
        self._pending -= np.sign(self._pending) * np.minimum(self._release_step, np.abs(self._pending))

    @property
    def uncertainty(self) -> float:
        """Position standard deviation, in eye distances (RMS over the 10 coordinates)."""
        variances = np.diag(self.kf.P)[:COORDS]
        return float(np.sqrt(variances.mean()) / self.face_size)

    def predict(self) -> np.ndarray:
        """Advance one frame; returns the predicted landmarks."""
        self.kf.predict()
        self._record_transition(self.kf.F)
        self._release()
        return self.landmarks

    def update(self, landmarks: np.ndarray, noise: float) -> np.ndarray:
        """Correct with measured landmarks whose std is `noise` eye distances; returns the estimate."""
        measured = np.asarray(landmarks, dtype=np.float64)
        rate = self.config.size_smoothing
        self.face_size = (1 - rate) * self.face_size + rate * max(eye_distance(measured), 1.0)
        self._rescale_process_noise()
        before = self.kf.x[:COORDS].copy()
        self.kf.update(measured.reshape(-1), R=np.eye(COORDS) * (noise * self.face_size) ** 2)
        if self.config.correction_frames > 1:
            self._pending += self.kf.x[:COORDS] - before
            self._release_step = np.abs(self._pending) / self.config.correction_frames
        self._record_update()
        return self.landmarks

    def move(self, displacement: np.ndarray) -> np.ndarray:
        """Advance one frame by a measured displacement (5, 2) (optical flow) instead of the velocity model.

        Flow measures motion, not position: the estimate moves with it and its uncertainty grows by
        the flow noise, so the next detection can still pull a drifting estimate back.
        """
        step = np.asarray(displacement, dtype=np.float64).reshape(-1)
        rate = self.config.velocity_smoothing
        self.kf.x[:COORDS] += step
        self.kf.x[COORDS:] = (1 - rate) * self.kf.x[COORDS:] + rate * step
        flow_var = (self.config.flow_noise * self.face_size) ** 2
        self.kf.P = self.kf.P + self.kf.Q + np.diag([flow_var] * COORDS + [0.0] * COORDS)
        self._record_transition(IDENTITY)
        self._release()
        return self.landmarks
