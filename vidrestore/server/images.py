"""Image files in and out of the API: size checked from the header before decoding, then decoded with Pillow.

Only JPEG, PNG, WebP, BMP and TIFF are opened (Pillow's other readers are never reached). The pixel
count is read from the file header and refused above the limit before any pixel is decoded, so a
small file that would decode into gigabytes (a decompression bomb) costs nothing. A truncated or
corrupt file fails to decode completely and is refused too (no partial pictures).
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from vidrestore.errors import error_line
from vidrestore.pipeline.image_io import upright_pixels
from vidrestore.server.errors import ApiError

log = logging.getLogger(__name__)

# Pillow format name -> (API name, media type)
FORMATS = {
    "JPEG": ("jpeg", "image/jpeg"),
    "PNG": ("png", "image/png"),
    "WEBP": ("webp", "image/webp"),
    "BMP": ("bmp", "image/bmp"),
    "TIFF": ("tiff", "image/tiff"),
}
API_FORMATS = {api: pil for pil, (api, _) in FORMATS.items()}
FORMAT_ALIASES = {"MPO": "JPEG"}  # camera JPEGs with extra pictures open as MPO


@dataclass(frozen=True)
class DecodedImage:
    """The pixels of an uploaded image (upright RGB), its alpha channel if any, and its Pillow format."""

    rgb: np.ndarray
    alpha: Image.Image | None
    format: str


def too_many_pixels(width: int, height: int, limit: int) -> ApiError:
    """The 413 error for a picture over the pixel limit."""
    return ApiError(413, "too_many_pixels", f"{width}x{height} is {width * height} pixels; the limit is {limit}")


def decode_image(path: Path, max_pixels: int) -> DecodedImage:
    """Open, check the size of, and fully decode an image file; 400 or 413 ApiError when it cannot be used."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our own limit decides
            image = Image.open(path, formats=list(FORMATS))
    except Image.DecompressionBombError:
        raise ApiError(413, "too_many_pixels", f"the image has more pixels than the limit of {max_pixels}") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        raise ApiError(400, "not_an_image", "the upload is not a JPEG, PNG, WebP, BMP or TIFF image") from None
    with image:
        width, height = image.size
        if width * height > max_pixels:
            raise too_many_pixels(width, height, max_pixels)
        if width < 1 or height < 1:
            raise ApiError(400, "bad_image", "the image has no pixels")
        fmt = FORMAT_ALIASES.get(image.format or "", image.format or "")
        fmt = fmt if fmt in FORMATS else "PNG"
        try:
            pixels = upright_pixels(image)
        except Exception as exc:  # noqa: BLE001 - any failure to decode client bytes is bad input, not a server error
            log.debug("cannot decode an uploaded %s image", fmt, exc_info=True)
            raise ApiError(400, "bad_image",
                           f"cannot decode the {fmt} image: truncated or corrupt ({error_line(exc, 120)})") from None
    return DecodedImage(pixels.rgb, pixels.alpha, fmt)


def media_type(fmt: str) -> str:
    """The media type of a Pillow format name."""
    return FORMATS[fmt][1]
