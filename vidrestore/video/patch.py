"""Write changed regions of a frame back into its decoded picture, so the rest stays bit-exact.

A frame whose faces were restored has an RGB copy that differs from the decoded picture only where
the paste's feathered mask is above zero. Converting RGB back to YUV would round every other pixel
again (off by a few levels); instead the regions alone are converted (with the picture's own matrix
and range), and of those only the samples whose pixels the paste changed are copied into a new
picture that is otherwise the decoded one, plane by plane: every other sample stays bit-identical.
The decoded picture itself is never written to: the decoder may still use it as a reference.
"""

from __future__ import annotations

import logging
from typing import Sequence

import av
import cv2
import numpy as np

from vidrestore.video.codecs import SWS_MATRIX
from vidrestore.video.types import Frame

log = logging.getLogger(__name__)

# Planar YUV and grey layouts whose planes can be patched independently (8 bit, and 10/12 bit little-endian);
# yuv411p is NTSC DV's (one chroma sample per 4x1 pixels).
PATCHABLE_FORMATS = {
    "gray", "gray10le", "gray12le", "yuv420p", "yuvj420p", "yuv422p", "yuvj422p", "yuv444p", "yuvj444p", "yuv411p",
    "yuv420p10le", "yuv422p10le", "yuv444p10le", "yuv420p12le", "yuv422p12le", "yuv444p12le",
}

Box = Sequence[int]  # x0, y0, x1, y1 in frame pixels (x1, y1 exclusive)


def can_patch(native: av.VideoFrame | None) -> bool:
    """True when the decoded picture's pixel format is one `patch_decoded_picture` handles."""
    return native is not None and native.format.name in PATCHABLE_FORMATS


def patch_decoded_picture(frame: Frame, boxes: Sequence[Box],
                          originals: Sequence[np.ndarray] | None = None, *, luma_only: bool = False) -> bool:
    """Make the frame's decoded picture carry its RGB pixels inside `boxes` and nothing else changed.

    `originals[n]` is the RGB of box n (inside the frame) as it was before the paste: then only the
    samples covering a pixel that differs from it are rewritten (where the mask was zero, none is);
    without it every sample of the boxes is. On success the frame encodes from the new picture (no
    full-frame colour conversion) and True is returned; frames of other pixel formats are left as
    they are (the encoder converts the RGB copy). With `luma_only` only the luma plane is written:
    the chroma planes stay the decoded picture's, sample for sample (`--colour source`).
    """
    native = frame.decoded
    if not can_patch(native) or not frame.has_rgb or not len(boxes):
        return False
    image = frame.image
    patched = copy_picture(native)
    steps = _chroma_steps(native)
    for n, box in enumerate(boxes):
        aligned = _align_box(box, steps, native.width, native.height)
        x0, y0, x1, y1 = aligned
        changed = None if originals is None else _changed_pixels(image, box, originals[n], aligned)
        if x1 > x0 and y1 > y0 and (changed is None or changed.any()):
            _paste_region(patched, _convert_region(image[y0:y1, x0:x1], native), x0, y0, steps, changed,
                          planes=1 if luma_only else None)
    frame.set_picture(patched)
    return True


def plane_array(plane: av.video.plane.VideoPlane, dtype: np.dtype) -> np.ndarray:
    """A writable (height, width) view of one plane's pixels (line padding cut off)."""
    itemsize = np.dtype(dtype).itemsize
    rows = np.frombuffer(plane, dtype=dtype).reshape(plane.height, plane.line_size // itemsize)
    return rows[:, : plane.width]


def sample_dtype(picture: av.VideoFrame) -> np.dtype:
    """uint8 for 8-bit formats, uint16 for deeper ones."""
    return np.dtype(np.uint16) if picture.format.components[0].bits > 8 else np.dtype(np.uint8)


def copy_picture(native: av.VideoFrame) -> av.VideoFrame:
    """A new picture with the same format, size, colour tags and pixels as `native`."""
    copy = av.VideoFrame(native.width, native.height, native.format.name)
    copy.colorspace = native.colorspace
    copy.color_range = native.color_range
    dtype = sample_dtype(native)
    for src, dst in zip(native.planes, copy.planes):
        plane_array(dst, dtype)[:] = plane_array(src, dtype)
    return copy


def _chroma_steps(native: av.VideoFrame) -> tuple[int, int]:
    """Horizontal and vertical chroma subsampling factors (2, 2 for 4:2:0)."""
    if len(native.planes) == 1:  # grey
        return 1, 1
    luma, chroma = native.planes[0], native.planes[1]
    return max(1, round(luma.width / chroma.width)), max(1, round(luma.height / chroma.height))


def _align_box(box: Box, steps: tuple[int, int], width: int, height: int) -> tuple[int, int, int, int]:
    """The box grown to whole chroma samples and clipped to the frame."""
    sx, sy = steps
    x0, y0, x1, y1 = (int(v) for v in box[:4])
    x0, y0 = max(0, x0 - x0 % sx), max(0, y0 - y0 % sy)
    x1, y1 = min(width, x1 + (-x1) % sx), min(height, y1 + (-y1) % sy)
    return x0, y0, x1, y1


def _changed_pixels(image: np.ndarray, box: Box, original: np.ndarray,
                    aligned: tuple[int, int, int, int]) -> np.ndarray:
    """(h, w) of the aligned box: True where the pixel differs from its value before the paste."""
    ax0, ay0, ax1, ay1 = aligned
    bx0, by0 = int(box[0]), int(box[1])
    h, w = original.shape[:2]
    changed = np.zeros((ay1 - ay0, ax1 - ax0), dtype=bool)
    differs = np.any(image[by0:by0 + h, bx0:bx0 + w] != original, axis=-1)
    changed[by0 - ay0:by0 - ay0 + h, bx0 - ax0:bx0 - ax0 + w] = differs
    return changed


def _any_per_sample(changed: np.ndarray, steps: tuple[int, int]) -> np.ndarray:
    """The changed-pixel mask at a plane's resolution: a sample changes when any pixel it covers does."""
    sx, sy = steps
    if (sx, sy) == (1, 1):
        return changed
    h, w = changed.shape
    padded = np.zeros((-(-h // sy) * sy, -(-w // sx) * sx), dtype=bool)
    padded[:h, :w] = changed
    return padded.reshape(padded.shape[0] // sy, sy, padded.shape[1] // sx, sx).any(axis=(1, 3))


def _convert_region(region: np.ndarray, native: av.VideoFrame) -> av.VideoFrame:
    """An RGB region converted to the picture's format with its own matrix and range."""
    fmt = "rgb48le" if region.dtype == np.uint16 else "rgb24"
    rgb = av.VideoFrame.from_ndarray(np.ascontiguousarray(region), format=fmt)
    # one swscale thread: regions are small, and threaded high-bit-depth conversion was seen to leave
    # whole rows unconverted now and then (PyAV 18 / FFmpeg's sws_scale_frame)
    return rgb.reformat(format=native.format.name, dst_colorspace=SWS_MATRIX.get(native.colorspace),
                        dst_color_range=native.color_range or None, threads=1)


def _paste_region(picture: av.VideoFrame, region: av.VideoFrame, x0: int, y0: int, steps: tuple[int, int],
                  changed: np.ndarray | None, planes: int | None = None) -> None:
    """Copy the first `planes` planes (None: all) of `region` into `picture` at (x0, y0) (chroma at the
    subsampled place): all of each plane, or with `changed` only the samples covering a changed pixel."""
    dtype = sample_dtype(picture)
    for k, (dst, src) in enumerate(list(zip(picture.planes, region.planes))[:planes]):
        plane_steps = (1, 1) if k == 0 else steps
        px, py = x0 // plane_steps[0], y0 // plane_steps[1]
        values = plane_array(src, dtype)
        target = plane_array(dst, dtype)
        h = min(values.shape[0], target.shape[0] - py)
        w = min(values.shape[1], target.shape[1] - px)
        window, values = target[py:py + h, px:px + w], values[:h, :w]
        if changed is None:
            window[:] = values
        else:
            touched = _any_per_sample(changed, plane_steps)[:h, :w]
            window[touched] = values[touched]


def keep_chroma_rgb(restored: np.ndarray, original: np.ndarray) -> np.ndarray:
    """RGB pixels with the luma of `restored` and the chroma of `original` (BT.601 YCbCr), for pictures
    the planes of which cannot be written separately (RGB formats, images). A grey original stays grey."""
    luma = cv2.cvtColor(np.ascontiguousarray(restored), cv2.COLOR_RGB2YCrCb)[..., 0]
    ycc = cv2.cvtColor(np.ascontiguousarray(original), cv2.COLOR_RGB2YCrCb)
    ycc[..., 0] = luma
    return cv2.cvtColor(ycc, cv2.COLOR_YCrCb2RGB)


def is_grey_rgb(image: np.ndarray) -> bool:
    """True for an RGB picture whose three channels are equal everywhere (a monochrome image)."""
    return bool(np.array_equal(image[..., 0], image[..., 1]) and np.array_equal(image[..., 1], image[..., 2]))


def keep_chroma_where_changed(image: np.ndarray, original: np.ndarray) -> None:
    """In place: the pixels of `image` that differ from `original` take the original's chroma (their own luma)."""
    changed = np.any(image != original, axis=-1)
    if changed.any():
        image[changed] = keep_chroma_rgb(image, original)[changed]
