"""Kalman smoothing of a track's 5 landmarks (filterpy), the main cure for flicker in restored video.

State: the 10 landmark coordinates and their velocities (constant-velocity model). All noise levels
are given in eye distances and scaled to the face's current size, so a 40-pixel face and a
400-pixel face are smoothed alike. Between detections the estimate moves with the optical-flow
motion of the face (`move`), otherwise with its velocity (`predict`). Everything is causal (no
look-ahead), so live mode and file mode share it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from filterpy.common import Q_discrete_white_noise
from filterpy.kalman import KalmanFilter

from vidrestore.faces.types import eye_distance

COORDS = 10


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

    def __init__(self, landmarks: np.ndarray, config: SmoothingConfig | None = None) -> None:
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
        self._release()
        return self.landmarks
