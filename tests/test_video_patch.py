"""Writing restored regions back into the decoded picture: exact outside the regions, right inside."""

from __future__ import annotations

from fractions import Fraction

import av
import numpy as np
import pytest

from vidrestore.video.patch import patch_decoded_picture
from vidrestore.video.types import Frame


def _picture(fmt: str, width: int, height: int, seed: int = 0) -> av.VideoFrame:
    """A decoded-like picture of random RGB content in `fmt`, tagged BT.709 limited range."""
    rng = np.random.default_rng(seed)
    rgb = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    return av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format=fmt, dst_colorspace=1, dst_color_range=1)


def _planes(picture: av.VideoFrame) -> list[np.ndarray]:
    dtype = np.uint16 if picture.format.components[0].bits > 8 else np.uint8
    out = []
    for plane in picture.planes:
        itemsize = np.dtype(dtype).itemsize
        rows = np.frombuffer(plane, dtype=dtype).reshape(plane.height, plane.line_size // itemsize)
        out.append(rows[:, : plane.width].copy())
    return out


def _frame(picture: av.VideoFrame, image_format: str) -> Frame:
    return Frame(index=0, pts=0, time_base=Fraction(1, 25), _native=picture, _image_format=image_format)


@pytest.mark.parametrize("fmt,image_format,width,height", [
    ("yuv420p", "rgb24", 64, 48),
    ("yuv420p", "rgb24", 63, 47),  # odd sizes: the last chroma sample covers one column/row
    ("yuv422p", "rgb24", 64, 48),
    ("yuv444p", "rgb24", 64, 48),
    ("yuv420p10le", "rgb48le", 64, 48),
])
def test_only_the_boxes_change_and_the_decoded_picture_is_untouched(fmt, image_format, width, height) -> None:
    picture = _picture(fmt, width, height)
    original = _planes(picture)
    frame = _frame(picture, image_format)
    image = frame.image
    top = np.iinfo(image.dtype).max
    image[10:21, 13:30] = top  # a white patch, as a pasted face would be
    box = (13, 10, 30, 21)
    assert patch_decoded_picture(frame, [box])
    assert frame.native is not None and frame.native is not picture
    assert all(np.array_equal(a, b) for a, b in zip(_planes(picture), original))  # the decoder's picture
    patched = _planes(frame.native)
    luma_changed = patched[0] != original[0]
    ys, xs = np.nonzero(luma_changed)
    assert ys.min() >= 10 and ys.max() < 22 and xs.min() >= 12 and xs.max() < 30  # box grown to chroma samples
    for plane, before in zip(patched[1:], original[1:]):
        sy, sx = round(height / plane.shape[0]), round(width / plane.shape[1])
        outside = np.ones_like(plane, dtype=bool)
        outside[10 // sy: -(-22 // sy), 12 // sx: -(-30 // sx)] = False
        assert np.array_equal(plane[outside], before[outside])
    white = frame.native.to_ndarray(format=image_format)[12:19, 15:28]
    assert white.min() >= top * 0.97  # the patch reads back white


def test_formats_it_cannot_patch_keep_the_rgb_copy() -> None:
    picture = _picture("nv12", 32, 32)
    frame = _frame(picture, "rgb24")
    frame.image[:8, :8] = 0
    assert not patch_decoded_picture(frame, [(0, 0, 8, 8)])
    assert frame.native is None and frame.image[0, 0].tolist() == [0, 0, 0]  # the encoder converts the RGB copy


def test_several_boxes() -> None:
    picture = _picture("yuv420p", 80, 40, seed=1)
    original = _planes(picture)
    frame = _frame(picture, "rgb24")
    frame.image[2:8, 2:8] = 255
    frame.image[30:36, 70:76] = 0
    assert patch_decoded_picture(frame, [(2, 2, 8, 8), (70, 30, 76, 36)])
    luma = _planes(frame.native)[0]
    changed = luma != original[0]
    assert changed[2:8, 2:8].all() and changed[30:36, 70:76].all()
    changed[2:8, 2:8] = changed[30:36, 70:76] = False
    assert not changed[10:28, 10:68].any()
