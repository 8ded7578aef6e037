"""Temporal stability inside the faces: the warping error of Lai et al. ("Learning Blind Video Temporal
Consistency", ECCV 2018), with OpenCV's DIS optical flow in place of FlowNet2 (no weights needed).

For consecutive source frames t-1, t: the backward flow b (t -> t-1) and the forward flow f (t-1 -> t)
are computed on the source, never on the output, so a flickering output cannot hide its flicker in the
flow. A pixel x of frame t is non-occluded when the round trip returns (Sundaram et al.'s check):
|b(x) + f(x + b(x))|^2 < 0.01 (|b(x)|^2 + |f(x + b(x))|^2) + 0.5, and x + b(x) lies inside the frame.
The error of a video V at t is the mean, over the non-occluded pixels of the face regions of frame t,
of the squared RGB difference (values in [0, 1], summed over channels, as Lai's code does) between
V_t and V_{t-1} warped onto t along b. The same flow and pixels give the output's and the source's
error, so their ratio says how much flicker the restoration adds. Frame pairs across a scene cut,
and frames without faces, are left out.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import cv2
import numpy as np

FLOW_LONG_SIDE = 640  # flow runs on a copy at most this large (then scaled up): the cost stays bounded
OCCLUSION_ALPHA = 0.01
OCCLUSION_BETA = 0.5


@dataclass(frozen=True)
class FrameFlicker:
    """The warping error of one frame (against the one before) in the face regions, output and source."""

    index: int
    seconds: float
    output: float
    source: float
    pixels: int


def _gray_for_flow(rgb: np.ndarray) -> tuple[np.ndarray, float]:
    """The gray image flow is computed on (downscaled to FLOW_LONG_SIDE) and the factor back to frame pixels."""
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    h, w = gray.shape
    scale = max(h, w) / FLOW_LONG_SIDE
    if scale <= 1:
        return gray, 1.0
    small = cv2.resize(gray, (round(w / scale), round(h / scale)), interpolation=cv2.INTER_AREA)
    return small, scale


class FlowEstimator:
    """DIS optical flow (medium preset) between frames, at bounded resolution, in frame pixels."""

    def __init__(self) -> None:
        self._dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)

    def flow(self, a: np.ndarray, b: np.ndarray, shape: tuple[int, int], scale: float) -> np.ndarray:
        """Flow (H,W,2) float32 from gray `a` to gray `b`: a(x) ~ b(x + flow(x)), at frame size `shape`."""
        flow = self._dis.calc(a, b, None)
        if scale != 1.0:
            flow = cv2.resize(flow, (shape[1], shape[0]), interpolation=cv2.INTER_LINEAR) * scale
        return flow


@lru_cache(maxsize=4)
def pixel_grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """The x and y coordinates (H,W float32 each) of every pixel, made once per frame size (read-only)."""
    grid_x, grid_y = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    grid_x.flags.writeable = grid_y.flags.writeable = False
    return grid_x, grid_y


def backward_map(back: np.ndarray, forward: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sampling maps x + b(x) (H,W float32 each) and the non-occluded mask (H,W bool) of the check above."""
    h, w = back.shape[:2]
    grid_x, grid_y = pixel_grid(h, w)
    map_x, map_y = grid_x + back[..., 0], grid_y + back[..., 1]
    forward_there = cv2.remap(forward, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    round_trip = np.square(back + forward_there).sum(axis=2)
    bound = OCCLUSION_ALPHA * (np.square(back).sum(axis=2) + np.square(forward_there).sum(axis=2)) + OCCLUSION_BETA
    inside = (map_x >= 0) & (map_x <= w - 1) & (map_y >= 0) & (map_y <= h - 1)
    return map_x, map_y, (round_trip < bound) & inside


def warping_error(current: np.ndarray, previous: np.ndarray, map_x: np.ndarray, map_y: np.ndarray,
                  mask: np.ndarray) -> float:
    """Mean over `mask` of the squared RGB difference (in [0,1], channels summed) of `current` and the warp of `previous`."""
    warped = cv2.remap(previous, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    diff = (current.astype(np.float32) - warped.astype(np.float32)) / 255.0
    return float(np.square(diff).sum(axis=2)[mask].mean())


@dataclass
class TemporalStability:
    """Frame by frame warping errors of output and source in the face regions (see the module's docstring)."""

    frames: list[FrameFlicker] = field(default_factory=list)
    _flow: FlowEstimator = field(default_factory=FlowEstimator, repr=False)
    _previous: tuple[np.ndarray, np.ndarray, np.ndarray, float] | None = field(default=None, repr=False)

    def add(self, index: int, seconds: float, source: np.ndarray, output: np.ndarray,
            faces: np.ndarray) -> FrameFlicker | None:
        """The next frame pair (H,W,3 uint8) with its face mask (H,W bool); its FrameFlicker when one is measured."""
        gray, scale = _gray_for_flow(source)
        previous, self._previous = self._previous, (source, output, gray, scale)
        if previous is None or not faces.any():
            return None
        prev_source, prev_output, prev_gray, _ = previous
        shape = source.shape[:2]
        back = self._flow.flow(gray, prev_gray, shape, scale)
        forward = self._flow.flow(prev_gray, gray, shape, scale)
        map_x, map_y, valid = backward_map(back, forward)
        mask = valid & faces
        if not mask.any():
            return None
        record = FrameFlicker(index, seconds, warping_error(output, prev_output, map_x, map_y, mask),
                              warping_error(source, prev_source, map_x, map_y, mask), int(mask.sum()))
        self.frames.append(record)
        return record

    def reset(self) -> None:
        """Forget the previous frame (a scene cut, or a frame the output lacks): no error across it."""
        self._previous = None

    @property
    def output_error(self) -> float | None:
        """Mean warping error of the output over the measured frames."""
        return float(np.mean([f.output for f in self.frames])) if self.frames else None

    @property
    def source_error(self) -> float | None:
        """Mean warping error of the source over the same frames and pixels."""
        return float(np.mean([f.source for f in self.frames])) if self.frames else None

    @property
    def ratio(self) -> float | None:
        """Output's error over the source's: 1 when the output flickers as much as the source does."""
        out, src = self.output_error, self.source_error
        if out is None or src is None:
            return None
        if src == 0:
            return 1.0 if out == 0 else float("inf")
        return out / src
