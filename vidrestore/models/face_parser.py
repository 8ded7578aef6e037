"""Soft paste-back masks from face parsing (GFPGAN's use_parse=True), batched on the restorer's device.

A ParseNet labels each restored crop with the 19 CelebAMask-HQ classes; face and hair classes become
1, the rest 0 (spec 2.6: classes 1-13 and 15, so hat, necklace, neck and cloth stay the original's).
The binary mask is feathered as facexlib does: a 101x101 Gaussian blur of sigma 11, twice, then a
10-pixel border set to zero, all at the parser's 512 resolution (scaled for smaller parsers), and
resized to the crop size. Blurs run as separable convolutions on the device for the whole batch, so
the masks never leave the GPU before the paste; the paste touches only pixels where a mask is above 0.
"""

from __future__ import annotations

from functools import lru_cache

import torch
import torch.nn.functional as F

from vidrestore.models.precision import autocast

FACE_CLASSES = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 15)  # skin .. hair, and earrings
REFERENCE_SIZE = 512  # the sizes below are facexlib's, at its 512x512 parsing
BLUR_KERNEL = 101
BLUR_SIGMA = 11.0
BLUR_PASSES = 2
BORDER = 10


@lru_cache(maxsize=8)
def _gaussian_cpu(radius: int, sigma: float) -> torch.Tensor:
    """Normalised 1-D Gaussian (2*radius+1,), cv2.getGaussianKernel's values for that size and sigma."""
    x = torch.arange(-radius, radius + 1, dtype=torch.float64)
    kernel = torch.exp(-(x**2) / (2 * sigma**2))
    return (kernel / kernel.sum()).float()


def feather_sizes(mask_size: int) -> tuple[int, float, int]:
    """(blur radius, sigma, border) in pixels of a mask of this size: facexlib's 512 values scaled."""
    scale = mask_size / REFERENCE_SIZE
    radius = max(1, round((BLUR_KERNEL // 2) * scale))
    return radius, max(BLUR_SIGMA * scale, 0.5), max(1, round(BORDER * scale))


def feather(masks: torch.Tensor) -> torch.Tensor:
    """Binary masks (N,1,S,S) -> soft masks: blurred twice (reflect-101 border, as cv2), zero border."""
    radius, sigma, border = feather_sizes(masks.shape[-1])
    kernel = _gaussian_cpu(radius, sigma).to(masks.device)
    out = masks.float()
    for _ in range(BLUR_PASSES):
        out = F.conv2d(F.pad(out, (radius, radius, 0, 0), mode="reflect"), kernel.view(1, 1, 1, -1))
        out = F.conv2d(F.pad(out, (0, 0, radius, radius), mode="reflect"), kernel.view(1, 1, -1, 1))
    out[..., :border, :] = 0
    out[..., -border:, :] = 0
    out[..., :, :border] = 0
    out[..., :, -border:] = 0
    return out


class FaceParser:
    """Paste-back masks (N,1,s,s) in 0..1 for restored crops (N,3,s,s) RGB 0..255, `batch_size` crops per call."""

    def __init__(self, model: torch.nn.Module, device: torch.device, *, precision: str = "fp32",
                 batch_size: int = 16) -> None:
        self.model = model.to(device).eval().requires_grad_(False)
        self.device = device
        self.precision = precision
        self.batch_size = max(1, batch_size)
        self.size = model.config.in_size
        classes = torch.zeros(model.config.parsing_ch, dtype=torch.bool)
        classes[[c for c in FACE_CLASSES if c < model.config.parsing_ch]] = True
        self.face_classes = classes.to(device)

    @torch.inference_mode()
    def labels(self, crops: torch.Tensor) -> torch.Tensor:
        """Class of every pixel (N,S,S) at the parser's resolution, for crops (N,3,s,s) RGB 0..255."""
        x = crops.float().to(self.device)
        if x.shape[-1] != self.size:
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False)
        x = x / 127.5 - 1.0  # /255 then mean 0.5, std 0.5, as facexlib normalises
        out = []
        for chunk in x.split(self.batch_size):
            with autocast(self.device, self.precision):
                logits, _ = self.model(chunk)
            out.append(logits.float().argmax(dim=1))
        return torch.cat(out) if out else torch.zeros((0, self.size, self.size), dtype=torch.long, device=self.device)

    @torch.inference_mode()
    def masks(self, crops: torch.Tensor) -> torch.Tensor:
        """Feathered face-and-hair masks (N,1,s,s) in 0..1 on the crops' device."""
        size = crops.shape[-1]
        binary = self.face_classes[self.labels(crops)].unsqueeze(1)
        soft = feather(binary)
        if soft.shape[-1] != size:
            soft = F.interpolate(soft, size=(size, size), mode="bilinear", align_corners=False)
        return soft.clamp_(0.0, 1.0).to(crops.device)
