"""Frame numbers stamped into pixels as a row of black/white cells, readable after lossy coding.

Used by the live benchmark and tests to tell which source frame reached a sink, and when it was sent.
"""

from __future__ import annotations

import numpy as np

BITS = 16
CELL = 16  # cell side in pixels: large enough to survive H.264 at low bitrates and 4:2:0


def stamp_number(image: np.ndarray, number: int, bits: int = BITS, cell: int = CELL) -> np.ndarray:
    """Draw `number` (bits, most significant first) into the bottom-left corner of an RGB image, in place."""
    height = image.shape[0]
    values = (number >> np.arange(bits - 1, -1, -1)) & 1
    strip = np.repeat(np.repeat(values.astype(np.uint8) * 255, cell)[None, :], cell, axis=0)
    image[height - cell:height, : bits * cell] = strip[..., None]
    return image


def read_number(image: np.ndarray, bits: int = BITS, cell: int = CELL) -> int:
    """The number stamped by `stamp_number` (cell centres thresholded at mid-gray)."""
    height = image.shape[0]
    row = image[height - cell // 2, cell // 2: bits * cell: cell].astype(np.int32).mean(axis=-1)
    value = 0
    for bit in row > 127:
        value = (value << 1) | int(bit)
    return value
