"""Image pixels in and out with Pillow: upright RGB for the restorer, the alpha channel kept beside it.

Shared by the command line's image path and the HTTP API, so that both read pictures the same way
(EXIF orientation applied, 16-bit and float grey scaled) and both put the alpha channel back into
formats that keep one (PNG, WebP, TIFF).
"""

from __future__ import annotations

import io
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from vidrestore.errors import MediaError
from vidrestore.video.paths import check_input, check_output, commit_temp, make_temp, remove_quietly

IMAGE_FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "TIFF")  # the only Pillow readers and writers used
ALPHA_FORMATS = {"PNG", "WEBP", "TIFF"}
SAVE_OPTIONS: dict[str, dict[str, object]] = {
    "JPEG": {"quality": 95}, "WEBP": {"quality": 95}, "PNG": {"compress_level": 3}}


@dataclass(frozen=True)
class ImagePixels:
    """A picture as upright RGB uint8 (H, W, 3) and its alpha channel (None when it has none)."""

    rgb: np.ndarray
    alpha: Image.Image | None


def rgb_array(image: Image.Image) -> np.ndarray:
    """The picture as RGB uint8; 16-bit and 32-bit grey (PNG, TIFF) and float pictures scaled, not clipped."""
    if image.mode.startswith("I") or image.mode == "F":
        grey = np.asarray(image, dtype=np.float64)
        peak = float(np.nanmax(grey)) if grey.size else 0.0
        if image.mode == "F" and peak <= 1.0:
            grey = grey * 255.0  # float pictures in 0..1
        elif image.mode.startswith("I;16") or (image.mode == "I" and peak > 255):
            grey = grey / 257.0  # 16-bit range (what PNG and TIFF store in these modes)
        grey = np.clip(np.nan_to_num(grey), 0, 255).round().astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=2)
    return np.asarray(image.convert("RGB"), dtype=np.uint8)


def alpha_channel(image: Image.Image) -> Image.Image | None:
    """The alpha channel of a picture that has one (including palette transparency), else None."""
    if "A" in image.getbands() or "transparency" in image.info:
        return image.convert("RGBA").getchannel("A")
    return None


def upright_pixels(image: Image.Image) -> ImagePixels:
    """Decode an opened picture completely (a truncated file raises) and turn it upright (EXIF orientation)."""
    image.load()
    upright = ImageOps.exif_transpose(image)
    return ImagePixels(np.ascontiguousarray(rgb_array(upright)), alpha_channel(upright))


def encode_image(rgb: np.ndarray, alpha: Image.Image | None, fmt: str) -> bytes:
    """The picture encoded in a Pillow format (alpha put back where the format keeps it)."""
    out = Image.fromarray(rgb, "RGB")
    if alpha is not None and fmt in ALPHA_FORMATS and alpha.size == out.size:
        out.putalpha(alpha)
    buffer = io.BytesIO()
    out.save(buffer, format=fmt, **SAVE_OPTIONS.get(fmt, {}))
    return buffer.getvalue()


def read_image_file(path: str | os.PathLike) -> ImagePixels:
    """An image file's upright RGB pixels and alpha; MediaError naming the file when it cannot be read."""
    check_input(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)  # refuse, never a stray warning
            with Image.open(path, formats=list(IMAGE_FORMATS)) as image:
                return upright_pixels(image)
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
        raise MediaError(f"cannot read image {path}: {exc}") from None
    except UnidentifiedImageError:
        raise MediaError(f"cannot read image {path}: not a JPEG, PNG, WebP, BMP or TIFF image") from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise MediaError(f"cannot read image {path}: truncated or corrupt ({exc})") from None


def image_format(path: Path) -> str:
    """The Pillow format an output file name asks for (by its extension); MediaError for others."""
    Image.init()
    fmt = Image.registered_extensions().get(path.suffix.lower())
    if fmt not in IMAGE_FORMATS:
        raise MediaError(f"cannot write an image as {path.suffix or 'a file without extension'}: {path} "
                         "(use .jpg, .png, .webp, .bmp or .tif)")
    return fmt


def check_image_output(path: str | os.PathLike, input_path: str | os.PathLike | None = None) -> Path:
    """Fail early, naming the file, if the output cannot be written or is not an image format."""
    out = check_output(path, input_path)
    image_format(out)
    return out


def write_image_file(path: str | os.PathLike, pixels: ImagePixels,
                     input_path: str | os.PathLike | None = None) -> Path:
    """Write a picture atomically (temporary file, then rename) in the format of its extension, alpha kept."""
    out = check_image_output(path, input_path)
    data = encode_image(pixels.rgb, pixels.alpha, image_format(out))
    tmp = make_temp(out)
    try:
        tmp.write_bytes(data)
        commit_temp(tmp, out)
    except BaseException:
        remove_quietly(tmp)
        raise
    return out
