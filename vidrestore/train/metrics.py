"""Image quality metrics for evaluating restorers.

Full-reference: PSNR and SSIM (Wang et al. 2004: 11x11 Gaussian window, sigma 1.5, K1 0.01, K2 0.03,
computed per channel on the valid region and averaged), both on float images in [0,1].
LPIPS (Zhang et al. 2018, lower is better): the reference `lpips` package (the `train` extra) with its
AlexNet variant: its packaged linear layers (v0.1) on a torchvision AlexNet backbone read from the
`alexnet` weights file, looked up offline (`vidrestore weights download alexnet`); without the package or
the file it is reported as unavailable.
Identity: cosine similarity of ArcFace embeddings, only when the ArcFace weights are present.
No-reference: NIQE lives in vidrestore.train.niqe (it needs a pristine model file); here, the variance of
the Laplacian of the gray image on the 0-255 scale, a sharpness score (higher = sharper; it also rises
with noise, so read it beside the other numbers).
"""

from __future__ import annotations

import logging
import math
import warnings
from pathlib import Path

import cv2
import numpy as np
import torch

from vidrestore.errors import CheckpointError

log = logging.getLogger(__name__)

LPIPS_BACKBONE = "alexnet"  # the weights manager's name for the torchvision AlexNet checkpoint
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


def build_lpips(backbone: str | Path) -> torch.nn.Module:
    """The LPIPS (AlexNet, v0.1) scorer with its backbone read from a torchvision AlexNet checkpoint.

    The scorer is built without a download (random backbone, the package's linear layers), then the
    `features.<i>.*` tensors of the checkpoint (a full AlexNet state dict, or its `features.*` part only)
    are copied into lpips's slices, whose modules keep torchvision's indices. Needs the `lpips` package.
    """
    import lpips  # noqa: PLC0415 - optional dependency (the `train` extra)

    with warnings.catch_warnings():  # lpips asks torchvision for `pretrained=False`, a deprecated spelling
        warnings.simplefilter("ignore", UserWarning)
        scorer = lpips.LPIPS(net="alex", pnet_rand=True, verbose=False)
    _load_alexnet_features(scorer.net, Path(backbone))
    scorer.eval()
    for param in scorer.parameters():
        param.requires_grad = False
    return scorer


def _load_alexnet_features(net: torch.nn.Module, path: Path) -> None:
    """Copy `features.<i>.weight/bias` of a torchvision AlexNet checkpoint into lpips's `slice<k>.<i>.*`."""
    from vidrestore.models.state_dict import read_state_dict

    state = read_state_dict(path, nested=())
    picked = {}
    for name, own in net.state_dict().items():
        _slice, index, kind = name.split(".")
        key = f"features.{index}.{kind}"
        found = state.get(key)
        if found is None or found.shape != own.shape:
            what = "is missing" if found is None else f"has shape {tuple(found.shape)}, not {tuple(own.shape)}"
            raise CheckpointError(
                f"{path} is not a torchvision AlexNet checkpoint ({key} {what}); LPIPS needs the "
                f"{LPIPS_BACKBONE} weights file (vidrestore weights download {LPIPS_BACKBONE})"
            )
        picked[name] = found
    net.load_state_dict(picked, strict=True)


def load_lpips(device: torch.device | str = "cpu") -> torch.nn.Module | None:
    """The LPIPS scorer on `device` when the `lpips` package and the `alexnet` file are present, else None.

    The file is looked up offline; one that is found but does not fit raises CheckpointError.
    """
    from vidrestore.weights import find_weights, locate, spec_for

    try:
        import lpips  # noqa: F401, PLC0415 - optional dependency (the `train` extra)
    except ImportError:
        log.info("LPIPS skipped: the lpips package is not installed (pip install -e \".[train]\")")
        return None
    spec = spec_for(LPIPS_BACKBONE)
    if locate(spec) is None:
        log.info("LPIPS skipped: %s (%s) not found locally (vidrestore weights download %s)",
                 spec.filename, spec.name, spec.name)
        return None
    return build_lpips(find_weights(spec.name, offline=True)).to(device)


def lpips_distance(scorer: torch.nn.Module, out: torch.Tensor, gt: torch.Tensor) -> float:
    """LPIPS distance of two (B,3,H,W) batches in [-1,1] (H, W >= 31 for AlexNet), averaged over the batch."""
    device = next(scorer.parameters()).device
    with torch.no_grad():
        return float(scorer(out.float().to(device), gt.float().to(device)).mean())


def identity_similarity(net: torch.nn.Module, out: torch.Tensor, gt: torch.Tensor) -> float:
    """Cosine similarity of ArcFace embeddings of two (B,3,H,W) [-1,1] batches, averaged."""
    from vidrestore.train.arcface import gray_for_identity

    with torch.no_grad():
        a = net(gray_for_identity(out.float()))
        b = net(gray_for_identity(gt.float()))
    return float(torch.nn.functional.cosine_similarity(a, b, dim=1).mean())
