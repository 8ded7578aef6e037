"""The background check of `vidrestore qc`: outside the face regions the output must be the source.

A lossless output (LOSSLESS_CODECS, or `--lossless`) must be bit-identical there: any changed pixel fails
and the verdict reads "unchanged" otherwise. A lossy output is re-encoded everywhere, so it passes when
every frame's background PSNR is at least `min_psnr`. Pixels are compared as decoded RGB at 8 bits, so a
change below the 8-bit step of a high-bit-depth picture is not seen here; a change of pixel format or
bit depth fails the structure check instead.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

LOSSLESS_CODECS = frozenset({"ffv1", "huffyuv", "ffvhuff", "utvideo", "rawvideo", "png", "magicyuv", "qtrle",
                             "r210", "v210", "v308", "v408", "v410"})
DEFAULT_MIN_PSNR = 35.0  # dB: x264 at CRF 18 measures well above it on every frame


def psnr_of(sse: float, values: int) -> float:
    """PSNR (dB, 8-bit peak) of a sum of squared errors over `values` samples; inf when nothing differs."""
    if values == 0 or sse == 0:
        return math.inf
    return 10.0 * math.log10(255.0**2 * values / sse)


@dataclass
class BackgroundCheck:
    """Accumulates the background's changed pixels and squared error frame by frame, and judges them."""

    lossless: bool
    min_psnr: float = DEFAULT_MIN_PSNR
    frames: int = 0
    pixels: int = 0
    changed: int = 0
    sse: float = 0.0
    worst_psnr: float = math.inf
    failure: str | None = None

    def add(self, index: int, seconds: float, source: np.ndarray, output: np.ndarray, faces: np.ndarray) -> None:
        """One frame pair (H,W,3 uint8) and its face mask (H,W bool): count what differs outside the faces."""
        background = ~faces
        diff = output.astype(np.int16) - source.astype(np.int16)
        differs = np.any(diff != 0, axis=2) & background
        count = int(differs.sum())
        sse = float(np.square(diff[background].astype(np.float64)).sum())
        pixels = int(background.sum())
        frame_psnr = psnr_of(sse, 3 * pixels)
        self.frames += 1
        self.pixels += pixels
        self.changed += count
        self.sse += sse
        self.worst_psnr = min(self.worst_psnr, frame_psnr)
        if self.failure is None:
            self.failure = self._frame_failure(index, seconds, differs, count, frame_psnr)

    def _frame_failure(self, index: int, seconds: float, differs: np.ndarray, count: int, frame_psnr: float) -> str | None:
        """What fails in this frame, or None."""
        where = f"frame {index} (t={seconds:.3f} s)"
        if self.lossless and count:
            y, x = np.argwhere(differs)[0]
            return f"{where}: {count} pixel(s) outside the faces differ from the source, the first at x={x}, y={y}"
        if not self.lossless and frame_psnr < self.min_psnr:
            return f"{where}: background PSNR {frame_psnr:.2f} dB is below {self.min_psnr:g} dB"
        return None

    @property
    def psnr(self) -> float:
        """PSNR of the whole background over all frames (dB; inf when unchanged)."""
        return psnr_of(self.sse, 3 * self.pixels)

    @property
    def changed_share(self) -> float:
        """Share of background pixels (over all frames) with any channel changed."""
        return self.changed / self.pixels if self.pixels else 0.0

    @property
    def ok(self) -> bool:
        return self.failure is None and self.frames > 0

    @property
    def verdict(self) -> str:
        """"unchanged", "re-encoded" (lossy, within the PSNR bound), "changed", or "no frames compared"."""
        if self.frames == 0:
            return "no frames compared"
        if self.changed == 0:
            return "unchanged"
        return "changed" if not self.ok else "re-encoded"

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "verdict": self.verdict, "lossless_output": self.lossless, "frames": self.frames,
                "psnr_db": _finite(self.psnr), "worst_frame_psnr_db": _finite(self.worst_psnr),
                "changed_share": self.changed_share, "min_psnr_db": None if self.lossless else self.min_psnr,
                "first_failure": self.failure if self.frames else "no frames compared"}


def _finite(value: float) -> float | str:
    """JSON has no infinity: an infinite PSNR is written as the string "inf"."""
    return "inf" if math.isinf(value) else round(value, 3)
