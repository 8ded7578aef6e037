"""The output's geometry and colour tags when it is upscaled: size, sample aspect ratio, YUV matrix.

`--upscale N` writes N times the stored size with the source's sample aspect ratio, so the picture
keeps its display shape; `--square-pixels` folds the SAR into the width instead (720x576 at SAR 64:45,
a 16:9 PAL frame, upscaled 2x becomes 2048x1152 with square pixels). Sides made by a factor or a SAR are
rounded to even, as 4:2:0 needs (1.5 x 270 lines is 404, not 405).

Colour: a frame is turned into RGB with its own matrix, and RGB into YUV with the output's. Players
guess an untagged matrix from the size (BT.601 below 720 lines, BT.709 from there), so an untagged SD
source upscaled to HD would be shown with the wrong one; its output is tagged with the BT.601 matrix
its pixels were converted with. `--matrix bt709` converts to the BT.709 matrix instead (and tags it).
Primaries and transfer describe the RGB, which does not change, so they stay the source's.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from fractions import Fraction

from vidrestore.errors import VidrestoreError
from vidrestore.video.types import ColorInfo, VideoInfo

HD_MIN_HEIGHT = 720  # from here on players assume BT.709 for an untagged matrix
MATRIX_UNSPECIFIED = 2
MATRIX_BT709 = 1
MATRIX_BT470BG = 5  # BT.601, 625-line (PAL) flavour
MATRIX_SMPTE170M = 6  # BT.601, 525-line (NTSC) flavour
PAL_HEIGHTS = (288, 576)
MATRICES = ("keep", "bt709")  # --matrix: keep the source's (tagged), or convert to BT.709
MAX_UPSCALE = 8.0  # the largest factor: 8x already makes 5760x4608 of a PAL frame


def is_hd(height: int) -> bool:
    """True for a picture players treat as HD (BT.709 when untagged)."""
    return height >= HD_MIN_HEIGHT


@dataclass(frozen=True)
class Upscale:
    """How much larger the output is: a factor of the stored size, and whether SAR is folded into the width."""

    factor: float = 1.0
    square_pixels: bool = False

    def __post_init__(self) -> None:
        if not (math.isfinite(self.factor) and 1.0 <= self.factor <= MAX_UPSCALE):
            raise VidrestoreError(f"upscale must be between 1 and {MAX_UPSCALE:g}, not {self.factor}")

    @property
    def changes_size(self) -> bool:
        """False when the output is the stored size (no resize at all)."""
        return self.factor != 1.0 or self.square_pixels

    def size(self, width: int, height: int, sar: Fraction | None = None) -> tuple[int, int]:
        """Output (width, height) for a picture of this stored size and sample aspect ratio: a side the
        factor or the SAR changes is rounded to even (4:2:0 needs it; an odd side makes the encoder 4:4:4)."""
        stretch = sar if self.square_pixels and sar else Fraction(1)
        out_w = _even(width * self.factor * float(stretch)) if stretch != 1 or self.factor != 1 else width
        out_h = _even(height * self.factor) if self.factor != 1 else height
        return out_w, out_h


def _even(side: float) -> int:
    """The even number of pixels nearest to `side` (at least 2)."""
    return max(2, 2 * round(side / 2))


def output_color(color: ColorInfo, in_height: int, out_height: int, matrix: str = "keep") -> ColorInfo:
    """The output's colour tags: BT.709 when asked, the BT.601 the pixels used when SD becomes HD untagged."""
    if matrix not in MATRICES:
        raise VidrestoreError(f"unknown matrix {matrix!r}: use {' or '.join(MATRICES)}")
    if matrix == "bt709":
        return dataclasses.replace(color, matrix=MATRIX_BT709)
    if color.matrix == MATRIX_UNSPECIFIED and not is_hd(in_height) and is_hd(out_height):
        bt601 = MATRIX_BT470BG if in_height in PAL_HEIGHTS else MATRIX_SMPTE170M
        return dataclasses.replace(color, matrix=bt601)
    return color


def output_info(info: VideoInfo, upscale: Upscale, matrix: str = "keep") -> VideoInfo:
    """What the encoder writes for a source: its size upscaled, SAR kept (or 1:1), colour tagged."""
    if not upscale.changes_size and matrix == "keep":
        return info
    width, height = upscale.size(info.width, info.height, info.sample_aspect_ratio)
    sar = Fraction(1) if upscale.square_pixels and info.sample_aspect_ratio else info.sample_aspect_ratio
    return dataclasses.replace(info, width=width, height=height, sample_aspect_ratio=sar,
                               color=output_color(info.color, info.height, height, matrix))
