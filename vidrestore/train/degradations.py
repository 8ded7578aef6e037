"""The synthetic degradation model of GFP-GAN (specs/gfpgan.md 3.2), seeded and reproducible.

HQ face -> blur (random iso/aniso Gaussian kernel) -> downsample -> Gaussian noise -> JPEG -> resize back
-> colour shift (p 0.3) -> gray (p 0.01) -> brightness/contrast/saturation/hue jitter (p 0.3) -> quantise.

Every random draw comes from the `numpy.random.Generator` passed in, so one seed gives one result.
The draws are made first (`sample_degradation` -> `DegradationParams`, cheap) and the pixels are changed
after, either here on the CPU with cv2/numpy (`apply_degradation`, in the data loader workers) or for a
whole batch on the training device with torch (`vidrestore.train.degradations_torch`).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import cv2
import numpy as np
from tqdm import tqdm

from vidrestore.atomic import atomic_path
from vidrestore.errors import VidrestoreError

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")


@dataclass
class DegradationConfig:
    """Ranges and probabilities of the degradation model; defaults are the paper's numbers at 512."""

    blur_kernel_size: int = 41
    kernel_list: tuple[str, ...] = ("iso", "aniso")
    kernel_prob: tuple[float, ...] = (0.5, 0.5)
    blur_sigma: tuple[float, float] = (0.1, 10.0)
    downsample_range: tuple[float, float] = (0.8, 8.0)
    noise_range: tuple[float, float] = (0.0, 20.0)  # sigma on the 0-255 scale
    jpeg_range: tuple[float, float] = (60.0, 100.0)
    color_jitter_prob: float = 0.3
    color_jitter_shift: float = 20.0  # on the 0-255 scale
    gray_prob: float = 0.01
    color_jitter_pt_prob: float = 0.3
    brightness: tuple[float, float] = (0.5, 1.5)
    contrast: tuple[float, float] = (0.5, 1.5)
    saturation: tuple[float, float] = (0.0, 1.5)
    hue: tuple[float, float] = (-0.1, 0.1)


def gaussian_kernel(size: int, sigma_x: float, sigma_y: float, rotation: float) -> np.ndarray:
    """A normalised (size, size) Gaussian kernel with axes sigma_x, sigma_y rotated by `rotation` radians."""
    cos, sin = math.cos(rotation), math.sin(rotation)
    rot = np.array([[cos, -sin], [sin, cos]])
    cov = rot @ np.diag([sigma_x**2, sigma_y**2]) @ rot.T
    inv = np.linalg.inv(cov)
    ax = np.arange(size, dtype=np.float64) - (size - 1) / 2
    xx, yy = np.meshgrid(ax, ax)
    grid = np.stack([xx, yy], axis=-1)
    kernel = np.exp(-0.5 * np.einsum("...i,ij,...j->...", grid, inv, grid))
    return (kernel / kernel.sum()).astype(np.float32)


def random_blur_kernel(rng: np.random.Generator, cfg: DegradationConfig) -> np.ndarray:
    """An isotropic or anisotropic Gaussian kernel with random sigmas (and rotation when anisotropic)."""
    probs = np.asarray(cfg.kernel_prob, dtype=np.float64)
    kind = cfg.kernel_list[rng.choice(len(cfg.kernel_list), p=probs / probs.sum())]
    sigma_x = rng.uniform(*cfg.blur_sigma)
    if kind == "iso":
        return gaussian_kernel(cfg.blur_kernel_size, sigma_x, sigma_x, 0.0)
    if kind == "aniso":
        sigma_y = rng.uniform(*cfg.blur_sigma)
        return gaussian_kernel(cfg.blur_kernel_size, sigma_x, sigma_y, rng.uniform(-math.pi, math.pi))
    raise VidrestoreError(f"unknown blur kernel type {kind!r}; use 'iso' or 'aniso'")


def _jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    """JPEG-compress a float [0,1] BGR image and decode it again."""
    ok, buf = cv2.imencode(".jpg", np.clip(img * 255.0 + 0.5, 0, 255).astype(np.uint8), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise VidrestoreError("JPEG encoding failed during degradation")
    return cv2.imdecode(buf, cv2.IMREAD_COLOR).astype(np.float32) / 255.0


def _gray(img: np.ndarray) -> np.ndarray:
    """BGR -> gray, replicated to three channels."""
    return np.repeat(cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)[:, :, None], 3, axis=2)


def _adjust_brightness(img: np.ndarray, factor: float) -> np.ndarray:
    return np.clip(img * factor, 0, 1)


def _adjust_contrast(img: np.ndarray, factor: float) -> np.ndarray:
    mean = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY).mean()
    return np.clip((img - mean) * factor + mean, 0, 1)


def _adjust_saturation(img: np.ndarray, factor: float) -> np.ndarray:
    gray = _gray(img)
    return np.clip((img - gray) * factor + gray, 0, 1)


def _adjust_hue(img: np.ndarray, shift: float) -> np.ndarray:
    """Rotate the hue by `shift` turns (torchvision's adjust_hue convention)."""
    hsv = cv2.cvtColor(img, cv2.COLOR_BGR2HSV)  # float input: H in [0, 360)
    hsv[:, :, 0] = np.mod(hsv[:, :, 0] + shift * 360.0, 360.0)
    return np.clip(cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR), 0, 1)


JITTER_OPS = ("brightness", "contrast", "saturation", "hue")


@dataclass(frozen=True)
class DegradationParams:
    """Every random draw of one sample's degradation: what the CPU and the GPU paths both apply."""

    kernel: np.ndarray  # (k, k) float32, sums to 1
    scale: float  # downsampling factor
    noise_sigma: float  # on the [0,1] scale
    noise_seed: int  # seeds the noise field (numpy on the CPU, torch on the device)
    jpeg_quality: int
    color_shift: tuple[float, float, float] | None  # per channel, BGR order, [0,1] scale
    gray: bool
    jitter: tuple[tuple[str, float], ...]  # (op, factor) in the order they are applied; () for none

    def small_size(self, height: int, width: int) -> tuple[int, int]:
        """(height, width) after the random downsampling."""
        return max(1, int(height // self.scale)), max(1, int(width // self.scale))


def sample_degradation(rng: np.random.Generator, cfg: DegradationConfig | None = None) -> DegradationParams:
    """Draw one sample's degradation parameters, always in the same order, from `rng`."""
    cfg = cfg or DegradationConfig()
    kernel = random_blur_kernel(rng, cfg)
    scale = float(rng.uniform(*cfg.downsample_range))
    noise_sigma = float(rng.uniform(*cfg.noise_range)) / 255.0
    noise_seed = int(rng.integers(2**62))
    quality = int(rng.uniform(*cfg.jpeg_range))
    shift = None
    if rng.uniform() < cfg.color_jitter_prob:
        values = rng.uniform(-cfg.color_jitter_shift, cfg.color_jitter_shift, size=3) / 255.0
        shift = (float(values[0]), float(values[1]), float(values[2]))
    gray = bool(rng.uniform() < cfg.gray_prob)
    jitter: tuple[tuple[str, float], ...] = ()
    if rng.uniform() < cfg.color_jitter_pt_prob:
        ranges = {"brightness": cfg.brightness, "contrast": cfg.contrast, "saturation": cfg.saturation, "hue": cfg.hue}
        jitter = tuple((JITTER_OPS[i], float(rng.uniform(*ranges[JITTER_OPS[i]]))) for i in rng.permutation(4))
    return DegradationParams(kernel, scale, noise_sigma, noise_seed, quality, shift, gray, jitter)


_ADJUST = {"brightness": _adjust_brightness, "contrast": _adjust_contrast,
           "saturation": _adjust_saturation, "hue": _adjust_hue}


def apply_degradation(hq: np.ndarray, params: DegradationParams) -> np.ndarray:
    """The LQ version of a float32 BGR [0,1] HQ face of shape (H,W,3), same size, quantised to 8 bits."""
    h, w = hq.shape[:2]
    img = cv2.filter2D(hq.astype(np.float32), -1, params.kernel)
    small_h, small_w = params.small_size(h, w)
    img = cv2.resize(img, (small_w, small_h), interpolation=cv2.INTER_LINEAR)
    noise = np.random.default_rng(params.noise_seed).standard_normal(img.shape).astype(np.float32)
    img = np.clip(img + noise * params.noise_sigma, 0, 1)
    img = _jpeg(img, params.jpeg_quality)
    img = cv2.resize(img, (w, h), interpolation=cv2.INTER_LINEAR)
    if params.color_shift is not None:
        img = np.clip(img + np.asarray(params.color_shift, np.float32), 0, 1)
    if params.gray:
        img = _gray(img)
    for op, factor in params.jitter:
        img = _ADJUST[op](img, factor)
    return (np.clip(np.round(img * 255.0), 0, 255) / 255.0).astype(np.float32)


def degrade(hq: np.ndarray, rng: np.random.Generator, cfg: DegradationConfig | None = None) -> np.ndarray:
    """Draw a degradation from `rng` and apply it on the CPU (see apply_degradation)."""
    return apply_degradation(hq, sample_degradation(rng, cfg))


def sample_rng(seed: int, index: int, epoch: int = 0) -> np.random.Generator:
    """The random generator of one sample: a function of (seed, index, epoch) only, so runs repeat."""
    return np.random.default_rng([seed, index, epoch])


def list_images(folder: Path) -> list[Path]:
    """Image files directly in `folder`, sorted by name."""
    return sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def read_image(path: Path, size: int | None = None) -> np.ndarray:
    """Read an image as float32 BGR [0,1], resized (area) to size x size when given."""
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise VidrestoreError(f"cannot read image {path}")
    if size is not None and img.shape[:2] != (size, size):
        img = cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)
    return img.astype(np.float32) / 255.0


def write_image(path: Path, img: np.ndarray) -> None:
    """Write a float [0,1] BGR image atomically (temporary file, then rename)."""
    with atomic_path(path) as tmp:
        if not cv2.imwrite(str(tmp), np.clip(np.round(img * 255.0), 0, 255).astype(np.uint8)):
            raise VidrestoreError(f"cannot write image {path}")


def degrade_folder(
    src: Path,
    dst: Path,
    seed: int = 0,
    size: int | None = None,
    cfg: DegradationConfig | None = None,
    files: Iterable[Path] | None = None,
) -> list[Path]:
    """Write a degraded PNG copy of every image of `src` into `dst` (same stem); returns the written paths."""
    files = list(files) if files is not None else list_images(Path(src))
    if not files:
        raise VidrestoreError(f"no images found in {src}")
    dst = Path(dst)
    dst.mkdir(parents=True, exist_ok=True)
    written = []
    for index, path in enumerate(tqdm(files, desc="degrade", unit="img", disable=len(files) < 2)):
        lq = degrade(read_image(path, size), sample_rng(seed, index), cfg)
        out = dst / f"{path.stem}.png"
        write_image(out, lq)
        written.append(out)
    log.info("wrote %d degraded images to %s", len(written), dst)
    return written
