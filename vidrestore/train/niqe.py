"""NIQE, the Natural Image Quality Evaluator (Mittal, Soundararajan, Bovik, IEEE SPL 2013): a no-reference score.

NIQE is the distance between a multivariate Gaussian (MVG) fitted to an image's block features and one fitted
to pristine images: sqrt(d^T pinv((cov_p + cov_d) / 2) d) with d = mu_p - mu_d. Lower is better.

The computation follows the LIVE lab's MATLAB release as re-implemented in BasicSR's `calculate_niqe`:
the Y channel of MATLAB's rgb2ycbcr (BT.601) on the 0-255 scale, rounded; the image cropped to whole
96x96 blocks (no overlap); MSCN coefficients with a 7x7 Gaussian window (sigma 7/6, replicated borders);
per block 18 features from asymmetric generalised Gaussian (AGGD) fits of the MSCN coefficients and of
their products with the four neighbours; a second scale from MATLAB's antialiased bicubic imresize at 0.5
(48x48 blocks there), 36 features in all. Everything is computed in float64, as MATLAB does.

The official pristine model is the `niqe_pristine` weights entry (niqe_pris_params.npz, from the MATLAB
release); `fit_niqe_model` fits one on other clean images (e.g. faces) by the paper's procedure.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import cv2
import numpy as np
from scipy.special import gamma

from vidrestore.errors import VidrestoreError

log = logging.getLogger(__name__)

BLOCK = 96
MIN_BLOCKS = 2  # the image's own covariance needs two blocks
SHARPNESS_THRESHOLD = 0.75
WINDOW_SIZE, WINDOW_SIGMA = 7, 7 / 6
FEATURES = 36
NEIGHBOUR_SHIFTS = ((0, 1), (1, 0), (1, 1), (1, -1))
# MATLAB's estimateaggdparam searches the shape on this grid; the ratio below increases along it.
SHAPE_GRID = np.arange(0.2, 10.001, 0.001)
_RATIO_GRID = gamma(2 / SHAPE_GRID) ** 2 / (gamma(1 / SHAPE_GRID) * gamma(3 / SHAPE_GRID))
Y_WEIGHTS_BGR = np.array([24.966, 128.553, 65.481])  # MATLAB rgb2ycbcr, RGB in [0,1] -> Y in [16,235]
Y_OFFSET = 16.0


@dataclass(frozen=True)
class NiqeModel:
    """A pristine MVG: the mean (36,) and covariance (36, 36) of the features of clean image blocks."""

    mu: np.ndarray
    cov: np.ndarray


# --- image preparation ---------------------------------------------------------------------------


def luminance(image: np.ndarray) -> np.ndarray:
    """Rounded Y (BT.601, 0-255) of a BGR or gray image given as float [0,1] or uint8."""
    img = np.asarray(image)
    img = img / 255.0 if img.dtype == np.uint8 else img.astype(np.float64)
    if img.ndim == 3 and img.shape[2] == 3:
        return np.round(img @ Y_WEIGHTS_BGR + Y_OFFSET)
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[..., 0]
    if img.ndim != 2:
        raise VidrestoreError(f"NIQE needs a BGR or gray image, got shape {img.shape}")
    return np.round(img * 255.0)


def _cubic(x: np.ndarray) -> np.ndarray:
    """MATLAB's bicubic kernel (a = -0.5)."""
    ax = np.abs(x)
    near = (1.5 * ax**3 - 2.5 * ax**2 + 1) * (ax <= 1)
    far = (-0.5 * ax**3 + 2.5 * ax**2 - 4 * ax + 2) * ((ax > 1) & (ax <= 2))
    return near + far


def resize_matrix(in_len: int, scale: float) -> np.ndarray:
    """(out, in) weights of MATLAB's bicubic imresize along one axis, antialiased when shrinking."""
    out_len = math.ceil(in_len * scale)
    shrink = scale < 1
    width = 4 / scale if shrink else 4.0
    centre = np.arange(1, out_len + 1) / scale + 0.5 * (1 - 1 / scale)  # 1-based input coordinates
    taps = np.floor(centre - width / 2)[:, None] + np.arange(math.ceil(width) + 2)
    dist = centre[:, None] - taps
    weights = scale * _cubic(dist * scale) if shrink else _cubic(dist)
    weights /= weights.sum(axis=1, keepdims=True)
    mirrored = np.concatenate([np.arange(in_len), np.arange(in_len)[::-1]])  # symmetric borders
    cols = mirrored[np.mod(taps.astype(np.int64) - 1, 2 * in_len)]
    matrix = np.zeros((out_len, in_len))
    np.add.at(matrix, (np.repeat(np.arange(out_len), taps.shape[1]), cols.ravel()), weights.ravel())
    return matrix


def imresize(image: np.ndarray, scale: float = 0.5) -> np.ndarray:
    """MATLAB imresize(image, scale) of a 2-D image: bicubic, antialiased, as two matrix products."""
    h, w = image.shape
    return resize_matrix(h, scale) @ np.asarray(image, np.float64) @ resize_matrix(w, scale).T


def gaussian_window() -> np.ndarray:
    """The 7x7 Gaussian window (sigma 7/6, sum 1) of MATLAB's fspecial used for the MSCN statistics."""
    column = cv2.getGaussianKernel(WINDOW_SIZE, WINDOW_SIGMA, cv2.CV_64F)
    return column @ column.T


def mscn(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean-subtracted contrast-normalised coefficients (paper eq. 1) and the local deviation sigma."""
    img = np.asarray(image, np.float64)
    window = gaussian_window()
    mu = cv2.filter2D(img, cv2.CV_64F, window, borderType=cv2.BORDER_REPLICATE)
    var = cv2.filter2D(img * img, cv2.CV_64F, window, borderType=cv2.BORDER_REPLICATE) - mu * mu
    sigma = np.sqrt(np.abs(var))
    return (img - mu) / (sigma + 1), sigma


# --- distribution fits ---------------------------------------------------------------------------


def _shape_for_ratio(ratio: np.ndarray) -> np.ndarray:
    """The grid shape whose (E|x|)^2 / E[x^2] is nearest to `ratio`; NaN gives the first grid value, as in MATLAB."""
    ratio = np.asarray(ratio, np.float64)
    upper = np.clip(np.searchsorted(_RATIO_GRID, np.nan_to_num(ratio, nan=-np.inf)), 1, len(_RATIO_GRID) - 1)
    lower = upper - 1
    take_lower = (ratio - _RATIO_GRID[lower]) ** 2 <= (_RATIO_GRID[upper] - ratio) ** 2
    index = np.where(take_lower | np.isnan(ratio), lower, upper)
    return SHAPE_GRID[index]


def _scale_for_rms(rms: np.ndarray, shape: np.ndarray) -> np.ndarray:
    """The generalised Gaussian scale with this root mean square and shape."""
    return rms * np.sqrt(gamma(1 / shape) / gamma(3 / shape))


def _rms(x: np.ndarray, where: np.ndarray | None = None) -> np.ndarray:
    """Root mean square along the last axis (of the entries in `where`); NaN when there are none."""
    squares = x * x if where is None else np.where(where, x * x, 0.0)
    count = x.shape[-1] if where is None else where.sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.sqrt(squares.sum(axis=-1) / count)


def ggd_params(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Moment-matched (shape, scale) of a zero-mean generalised Gaussian (scipy's gennorm) along the last axis."""
    x = np.asarray(x, np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        shape = _shape_for_ratio(np.mean(np.abs(x), axis=-1) ** 2 / np.mean(x * x, axis=-1))
    return shape, _scale_for_rms(_rms(x), shape)


def aggd_params(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Moment-matched (shape, left scale, right scale) of an asymmetric generalised Gaussian along the last axis."""
    x = np.asarray(x, np.float64)
    left, right = _rms(x, x < 0), _rms(x, x > 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        skew = left / right
        ratio = np.mean(np.abs(x), axis=-1) ** 2 / np.mean(x * x, axis=-1)
        shape = _shape_for_ratio(ratio * (skew**3 + 1) * (skew + 1) / (skew**2 + 1) ** 2)
    return shape, _scale_for_rms(left, shape), _scale_for_rms(right, shape)


# --- features ------------------------------------------------------------------------------------


def block_features(blocks: np.ndarray) -> np.ndarray:
    """(n, 18) features of (n, b, b) MSCN blocks: AGGD fits of the coefficients and of 4 neighbour products."""
    flat = blocks.reshape(len(blocks), -1)
    shape, left, right = aggd_params(flat)
    columns = [shape, (left + right) / 2]
    for shift in NEIGHBOUR_SHIFTS:
        products = (blocks * np.roll(blocks, shift, axis=(1, 2))).reshape(len(blocks), -1)
        shape, left, right = aggd_params(products)
        columns += [shape, (right - left) * gamma(2 / shape) / gamma(1 / shape), left, right]
    return np.stack(columns, axis=1)


def _blocks(image: np.ndarray, size: int) -> np.ndarray:
    """(n, size, size) non-overlapping blocks of an image whose sides are multiples of size, row by row."""
    h, w = image.shape
    return image.reshape(h // size, size, w // size, size).swapaxes(1, 2).reshape(-1, size, size)


def block_count(height: int, width: int) -> int:
    """How many whole 96x96 blocks NIQE takes from an image of this size."""
    return (height // BLOCK) * (width // BLOCK)


def _check_size(image: np.ndarray, blocks: int) -> None:
    """Refuse an image with fewer than `blocks` whole 96x96 blocks, saying its size."""
    h, w = image.shape
    if block_count(h, w) < blocks:
        raise VidrestoreError(
            f"NIQE needs an image of at least {blocks} block(s) of {BLOCK}x{BLOCK} pixels; this one is {w}x{h}")


def image_features(y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(n, 36) two-scale features of the 96x96 blocks of a 0-255 luminance image, and each block's sharpness."""
    _check_size(y, 1)
    h, w = y.shape
    img = np.asarray(y, np.float64)[: h // BLOCK * BLOCK, : w // BLOCK * BLOCK]
    coeffs, sigma = mscn(img)
    sharpness = _blocks(sigma, BLOCK).mean(axis=(1, 2))
    fine = block_features(_blocks(coeffs, BLOCK))
    coarse = block_features(_blocks(mscn(imresize(img, 0.5))[0], BLOCK // 2))
    return np.concatenate([fine, coarse], axis=1), sharpness


def _mvg(features: np.ndarray) -> NiqeModel:
    """Mean (ignoring NaN) and covariance (of the rows without NaN) of feature rows, like nanmean/nancov."""
    complete = features[~np.isnan(features).any(axis=1)]
    if len(complete) < MIN_BLOCKS:
        raise VidrestoreError(
            f"NIQE needs at least {MIN_BLOCKS} blocks with texture; {len(complete)} of {len(features)} have it")
    return NiqeModel(mu=np.nanmean(features, axis=0), cov=np.cov(complete, rowvar=False))


# --- score, model files and fitting --------------------------------------------------------------


def _crop(image: np.ndarray, border: int) -> np.ndarray:
    """The image without `border` pixels on each side."""
    return image[border:-border, border:-border] if border > 0 else image


def niqe(image: np.ndarray, model: NiqeModel, crop_border: int = 0) -> float:
    """NIQE of a BGR or gray image (float [0,1] or uint8) against a pristine model; lower is better."""
    y = _crop(luminance(image), crop_border)
    _check_size(y, MIN_BLOCKS)
    test = _mvg(image_features(y)[0])
    diff = model.mu - test.mu
    quality = diff @ np.linalg.pinv((model.cov + test.cov) / 2) @ diff
    return math.sqrt(max(float(quality), 0.0))


def _check_model(model: NiqeModel, source: object) -> NiqeModel:
    """The model, if its mean and covariance have the shapes of 36 features."""
    if model.mu.shape != (FEATURES,) or model.cov.shape != (FEATURES, FEATURES):
        raise VidrestoreError(
            f"{source}: a NIQE model has a mean of {FEATURES} and a {FEATURES}x{FEATURES} covariance, "
            f"got {model.mu.shape} and {model.cov.shape}")
    return model


def load_niqe_model(path: str | Path) -> NiqeModel:
    """A pristine model from an npz with BasicSR's keys mu_pris_param (1, 36) and cov_pris_param (36, 36)."""
    try:
        with np.load(Path(path)) as data:
            mu, cov = data["mu_pris_param"], data["cov_pris_param"]
    except (OSError, ValueError, KeyError) as exc:
        raise VidrestoreError(f"cannot read the NIQE model {path}: {exc}") from exc
    model = NiqeModel(mu=np.asarray(mu, np.float64).reshape(-1), cov=np.asarray(cov, np.float64))
    return _check_model(model, path)


def save_niqe_model(model: NiqeModel, path: str | Path) -> None:
    """Write a model in BasicSR's npz layout (with the Gaussian window), readable by load_niqe_model."""
    with Path(path).open("wb") as f:
        np.savez(f, mu_pris_param=model.mu[None, :], cov_pris_param=model.cov, gaussian_window=gaussian_window())


def fit_niqe_model(
    images: Iterable[np.ndarray], threshold: float = SHARPNESS_THRESHOLD, crop_border: int = 0
) -> NiqeModel:
    """A pristine MVG from clean BGR/gray images: the blocks of each sharper than threshold x its sharpest."""
    selected = []
    for image in images:
        features, sharpness = image_features(_crop(luminance(image), crop_border))
        selected.append(features[sharpness > threshold * sharpness.max()])
    if not selected:
        raise VidrestoreError("fitting a NIQE model needs at least one image")
    rows = np.concatenate(selected)
    log.info("NIQE model fitted on %d blocks of %d images", len(rows), len(selected))
    return _mvg(rows)
