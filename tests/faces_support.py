"""Helpers shared by the face-analysis tests: reading photos and the first frames of a video."""

from __future__ import annotations

from pathlib import Path

import av
import cv2
import numpy as np


def read_rgb(path: Path) -> np.ndarray:
    """A photo as an RGB uint8 (H, W, 3) array (alpha dropped)."""
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert bgr is not None, f"cannot read {path}"
    return np.ascontiguousarray(bgr[:, :, ::-1])


def read_frames(path: Path, count: int, start: int = 0) -> list[np.ndarray]:
    """Frames start..start+count-1 of a video as RGB uint8 arrays (decodes only what is needed)."""
    frames: list[np.ndarray] = []
    with av.open(str(path)) as container:
        for index, frame in enumerate(container.decode(video=0)):
            if index >= start:
                frames.append(frame.to_ndarray(format="rgb24"))
            if len(frames) >= count:
                break
    return frames
