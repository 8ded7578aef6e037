"""Image quality metrics for evaluating restorers.

Full-reference: PSNR and SSIM (Wang et al. 2004: 11x11 Gaussian window, sigma 1.5, K1 0.01, K2 0.03,
computed per channel on the valid region and averaged), both on float images in [0,1].
LPIPS: only with the `lpips` package and its weights installed; otherwise reported as unavailable.
Identity: cosine similarity of ArcFace embeddings, only when the ArcFace weights are present.
No-reference: NIQE lives in vidrestore.train.niqe (it needs a pristine model file); here, the variance of
the Laplacian of the gray image on the 0-255 scale, a sharpness score (higher = sharper; it also rises
with noise, so read it beside the other numbers).
"""

from __future__ import annotations

import logging
import math

import cv2
import numpy as np
import torch

log = logging.getLogger(__name__)

SSIM_K1, SSIM_K2 = 0.01, 0.03


def psnr(a: np.ndarray, b: np.ndarray, max_value: float = 1.0) -> float:
    """Peak signal-to-noise ratio in dB of two same-shaped images; inf when they are identical."""
    mse = float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))
    return math.inf if mse == 0 else 10.0 * math.log10(max_value**2 / mse)


def _ssim_channel(a: np.ndarray, b: np.ndarray, max_value: float) -> float:
    c1, c2 = (SSIM_K1 * max_value) ** 2, (SSIM_K2 * max_value) ** 2
    window = cv2.getGaussianKernel(11, 1.5)
    kernel = window @ window.T

    def blur(x: np.ndarray) -> np.ndarray:
        return cv2.filter2D(x, -1, kernel)[5:-5, 5:-5]

    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a**2
    var_b = blur(b * b) - mu_b**2
    cov = blur(a * b) - mu_a * mu_b
    ssim_map = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return float(ssim_map.mean())


def ssim(a: np.ndarray, b: np.ndarray, max_value: float = 1.0) -> float:
    """Structural similarity of two (H,W) or (H,W,C) images (H, W >= 11), averaged over channels."""
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    if a.shape != b.shape:
        raise ValueError(f"images differ in shape: {a.shape} vs {b.shape}")
    if a.ndim == 2:
        return _ssim_channel(a, b, max_value)
    return float(np.mean([_ssim_channel(a[..., c], b[..., c], max_value) for c in range(a.shape[2])]))


def laplacian_sharpness(img: np.ndarray) -> float:
    """No-reference sharpness: variance of the Laplacian of the gray image (BGR or gray, [0,1]) at 0-255."""
    gray = img if img.ndim == 2 else cv2.cvtColor(np.asarray(img, np.float32), cv2.COLOR_BGR2GRAY)
    return float(cv2.Laplacian(np.asarray(gray, np.float64) * 255.0, cv2.CV_64F).var())


def load_lpips():
    """An LPIPS (VGG) scorer when the `lpips` package and its weights can be loaded offline, else None."""
    try:
        import lpips  # noqa: PLC0415 - optional dependency
    except ImportError:
        log.info("LPIPS skipped: the lpips package is not installed")
        return None
    try:
        return lpips.LPIPS(net="vgg", verbose=False).eval()
    except Exception as exc:  # its backbone weights may be missing offline
        log.info("LPIPS skipped: %s", str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        return None


def lpips_distance(scorer, out: torch.Tensor, gt: torch.Tensor) -> float:
    """LPIPS distance of (1,3,H,W) images in [-1,1]."""
    with torch.no_grad():
        return float(scorer(out.float(), gt.float()).mean())


def identity_similarity(net: torch.nn.Module, out: torch.Tensor, gt: torch.Tensor) -> float:
    """Cosine similarity of ArcFace embeddings of two (B,3,H,W) [-1,1] batches, averaged."""
    from vidrestore.train.arcface import gray_for_identity

    with torch.no_grad():
        a = net(gray_for_identity(out.float()))
        b = net(gray_for_identity(gt.float()))
    return float(torch.nn.functional.cosine_similarity(a, b, dim=1).mean())
