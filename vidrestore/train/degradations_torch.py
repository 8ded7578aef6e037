"""The degradation model applied to a whole batch on the training device with torch.

Same parameters (`DegradationParams`, drawn on the CPU by `sample_degradation`) and the same steps as
`apply_degradation`, so a GPU does the pixel work when the data loader workers cannot keep up:

  (B,3,H,W) RGB [0,1] -> blur (FFT, one call for the batch) -> downsample (per sample: sizes differ)
  -> noise (per-sample seeded generators) -> JPEG (TorchCodec: nvJPEG on CUDA) -> resize back
  -> colour shift / gray / jitter (masks and per-sample factors) -> quantise to 8 bits.

How close the two paths are (tested step by step): before the codec they differ by float32 rounding
only (FFT vs direct blur, two bilinear kernels); the codecs (libjpeg-turbo in cv2 and in TorchCodec,
accurate integer DCT) give the same pixels for the same 8-bit image; after the codec the paths differ
by float rounding again. Pixels lying on a half step before the codec (upsampling 8-bit values makes
many) may still round differently on the two paths or CPUs, and JPEG can turn such a one-step
difference into several steps in that 8x8 block: the paths agree per step, not pixel for pixel, and
the noise realisations differ (numpy vs torch generators).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
import torchvision.transforms.v2.functional as TF

from vidrestore.errors import VidrestoreError, error_line
from vidrestore.train.degradations import DegradationParams

log = logging.getLogger(__name__)

GRAY_WEIGHTS = (0.299, 0.587, 0.114)  # R, G, B: cv2's BGR2GRAY
_device_codec_failed = False  # set once the device's JPEG codec has failed in this process


def blur_batch(images: torch.Tensor, kernels: torch.Tensor) -> torch.Tensor:
    """Correlate each image (B,C,H,W) with its own kernel (B,k,k), reflect-101 borders (cv2.filter2D)."""
    b, _, h, w = images.shape
    k = kernels.shape[-1]
    r = k // 2
    padded = F.pad(images, (r, r, r, r), mode="reflect")  # (B,C,H+2r,W+2r)
    hp, wp = padded.shape[-2:]
    # Circular convolution with the flipped kernel centred on (0,0) is correlation on the padded image;
    # the border of width r that wraps around is cut away afterwards.
    placed = torch.zeros(b, hp, wp, device=images.device, dtype=torch.float32)
    placed[:, :k, :k] = torch.flip(kernels, dims=(-2, -1))
    placed = torch.roll(placed, shifts=(-r, -r), dims=(-2, -1))
    spectrum = torch.fft.rfft2(padded.float()) * torch.fft.rfft2(placed)[:, None]
    return torch.fft.irfft2(spectrum, s=(hp, wp))[..., r : r + h, r : r + w]


def gray_batch(images: torch.Tensor) -> torch.Tensor:
    """(B,3,H,W) RGB -> (B,1,H,W) luma with cv2's weights."""
    weights = images.new_tensor(GRAY_WEIGHTS).view(1, 3, 1, 1)
    return (images * weights).sum(dim=1, keepdim=True)


def _to_uint8(image: torch.Tensor) -> torch.Tensor:
    """[0,1] -> 8 bits for the codec, halves rounded up as the loader's cv2 path does (`_jpeg`).

    Upsampling 8-bit values puts many pixels exactly on a half step; torch.round would send them down
    (half to even) where the loader sends them up, and JPEG turns one such step into several.
    """
    return torch.floor(image * 255.0 + 0.5).clamp_(0, 255).to(torch.uint8)


def _jpeg_codec() -> tuple[Callable[..., Any], Callable[..., torch.Tensor]]:
    """TorchCodec's JPEG encoder and decoder (imported on first use: only device degradation needs them)."""
    try:
        from torchcodec.decoders import decode_jpeg
        from torchcodec.encoders import JpegEncoder
    except (ImportError, OSError) as exc:
        raise VidrestoreError(f"degrading on the device needs torchcodec's JPEG codec: {exc}") from None
    return JpegEncoder, decode_jpeg


def jpeg_batch(images: Sequence[torch.Tensor], qualities: Sequence[int],
               codec_device: torch.device | None = None) -> list[torch.Tensor]:
    """JPEG-compress and decode each (3,h,w) [0,1] image at its quality, on the images' device (CPU or CUDA).

    When the device's codec fails (e.g. no nvJPEG for this build), it warns once and uses the CPU codec.
    """
    global _device_codec_failed
    encoder, decode_jpeg = _jpeg_codec()
    if codec_device is None:
        codec_device = images[0].device if images[0].device.type == "cuda" else torch.device("cpu")
    if codec_device.type != "cpu" and not _device_codec_failed:
        try:
            return [_jpeg_one(image, quality, codec_device, encoder, decode_jpeg)
                    for image, quality in zip(images, qualities)]
        except RuntimeError as exc:
            _device_codec_failed = True
            log.warning("JPEG on %s failed (%s); degrading JPEG on the CPU from now on",
                        codec_device, error_line(exc))
    cpu = torch.device("cpu")
    return [_jpeg_one(image, quality, cpu, encoder, decode_jpeg) for image, quality in zip(images, qualities)]


def _jpeg_one(image: torch.Tensor, quality: int, codec_device: torch.device, encoder: Callable[..., Any],
              decode_jpeg: Callable[..., torch.Tensor]) -> torch.Tensor:
    """Encode and decode one image on codec_device; the result goes back to the image's device."""
    data = encoder(_to_uint8(image).to(codec_device)).to_tensor(quality=int(quality))
    picture = decode_jpeg(data.cpu(), mode="RGB", device=codec_device)
    return picture.to(image.device).float() / 255.0


def _seeded_noise(shape: torch.Size, seed: int, device: torch.device) -> torch.Tensor:
    generator = torch.Generator(device=device).manual_seed(seed)
    return torch.randn(shape, generator=generator, device=device)


def _adjust(images: torch.Tensor, op: str, factors: torch.Tensor) -> torch.Tensor:
    """One jitter op on (n,3,H,W) RGB [0,1] with per-image factors (n,), as the CPU path does it."""
    f = factors.view(-1, 1, 1, 1)
    if op == "brightness":
        return (images * f).clamp(0, 1)
    if op == "contrast":
        mean = gray_batch(images).mean(dim=(1, 2, 3), keepdim=True)
        return ((images - mean) * f + mean).clamp(0, 1)
    if op == "saturation":
        gray = gray_batch(images)
        return ((images - gray) * f + gray).clamp(0, 1)
    return torch.stack([TF.adjust_hue(image, float(shift)) for image, shift in zip(images, factors)])


def jitter_batch(images: torch.Tensor, params: Sequence[DegradationParams]) -> torch.Tensor:
    """Brightness/contrast/saturation/hue in each sample's own order: per slot, one op call per kind."""
    images = images.clone()
    for slot in range(4):
        by_op: dict[str, list[int]] = defaultdict(list)
        factors: dict[str, list[float]] = defaultdict(list)
        for index, p in enumerate(params):
            if p.jitter:
                op, factor = p.jitter[slot]
                by_op[op].append(index)
                factors[op].append(factor)
        for op, indices in by_op.items():
            rows = torch.tensor(indices, device=images.device)
            images[rows] = _adjust(images[rows], op, images.new_tensor(factors[op]))
    return images


def shrink_batch(hq: torch.Tensor, params: Sequence[DegradationParams]) -> list[torch.Tensor]:
    """Blur, downsample and noise: each sample's (3,h,w) [0,1] image as the JPEG codec gets it (before 8 bits)."""
    kernels = torch.from_numpy(np.stack([p.kernel for p in params])).to(hq.device)
    blurred = blur_batch(hq.float(), kernels)  # (B,3,H,W)
    small = []
    for image, p in zip(blurred, params):
        shrunk = F.interpolate(image[None], size=p.small_size(*hq.shape[-2:]), mode="bilinear",
                               align_corners=False)[0]
        noise = _seeded_noise(shrunk.shape, p.noise_seed, hq.device) if p.noise_sigma > 0 else 0.0
        small.append((shrunk + noise * p.noise_sigma).clamp(0, 1))
    return small


def degrade_batch(hq: torch.Tensor, params: Sequence[DegradationParams]) -> torch.Tensor:
    """The LQ batch of (B,3,H,W) RGB [0,1] HQ faces on any device: same shape and device, 8-bit steps."""
    if hq.ndim != 4 or hq.shape[1] != 3 or hq.shape[0] != len(params):
        raise ValueError(f"expected (B,3,H,W) with B = {len(params)} parameter sets, got {tuple(hq.shape)}")
    device = hq.device
    h, w = hq.shape[-2:]
    decoded = jpeg_batch(shrink_batch(hq, params), [p.jpeg_quality for p in params])
    lq = torch.cat([F.interpolate(image[None], size=(h, w), mode="bilinear", align_corners=False)
                    for image in decoded])
    shifts = [p.color_shift[::-1] if p.color_shift is not None else (0.0, 0.0, 0.0) for p in params]  # BGR -> RGB
    if any(p.color_shift is not None for p in params):
        lq = (lq + lq.new_tensor(shifts).view(-1, 3, 1, 1)).clamp(0, 1)
    gray = torch.tensor([p.gray for p in params], device=device).view(-1, 1, 1, 1)
    if bool(gray.any()):
        lq = torch.where(gray, gray_batch(lq).expand_as(lq), lq)
    if any(p.jitter for p in params):
        lq = jitter_batch(lq, params)
    return (lq * 255.0).round().clamp(0, 255) / 255.0
