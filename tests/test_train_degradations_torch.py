"""Batched torch degradations: the same parameters give the CPU path's pixels, batching changes nothing."""

from __future__ import annotations

import dataclasses
import math

import cv2
import numpy as np
import pytest
import torch

from vidrestore.errors import VidrestoreError
from vidrestore.train.dataset import FaceDataset, collate_samples
from vidrestore.train.degradations import (
    DegradationConfig,
    DegradationParams,
    _jpeg,
    apply_degradation,
    list_images,
    read_image,
    sample_degradation,
    sample_rng,
)
from vidrestore.train.degradations_torch import blur_batch, degrade_batch, jpeg_batch, shrink_batch
from vidrestore.train.trainer import Trainer

from train_support import cheap_losses, tiny_config

# Every optional step switched on often, ranges wide enough to exercise all of them at 64 px.
BUSY = DegradationConfig(blur_kernel_size=15, blur_sigma=(0.1, 3.0), downsample_range=(0.8, 4.0),
                         color_jitter_prob=0.7, gray_prob=0.3, color_jitter_pt_prob=0.7)


@pytest.fixture(scope="module")
def faces(media_dir) -> np.ndarray:
    """Four real 64x64 faces, float32 BGR [0,1], (4,64,64,3)."""
    files = list_images(media_dir / "faces_hq" / "ffhq")[:4]
    return np.stack([read_image(f, 64) for f in files])


def _to_batch(bgr: np.ndarray) -> torch.Tensor:
    """(B,H,W,3) BGR -> (B,3,H,W) RGB."""
    return torch.from_numpy(np.ascontiguousarray(bgr[..., ::-1])).permute(0, 3, 1, 2)


def _to_bgr(rgb: torch.Tensor) -> np.ndarray:
    return rgb.permute(0, 2, 3, 1).numpy()[..., ::-1]


def test_blur_matches_cv2_filter2d_with_an_asymmetric_kernel(faces):
    rng = np.random.default_rng(5)
    kernels = rng.random((len(faces), 9, 9)).astype(np.float32)
    kernels /= kernels.sum(axis=(1, 2), keepdims=True)
    got = _to_bgr(blur_batch(_to_batch(faces), torch.from_numpy(kernels)))
    for image, kernel, out in zip(faces, kernels, got):
        expected = cv2.filter2D(image, -1, kernel)  # correlation, reflect-101 borders
        assert np.abs(out - expected).max() < 1e-5


def _clean_draws(count: int) -> list[DegradationParams]:
    """BUSY draws without noise (noise realisations differ between numpy and torch by design)."""
    return [dataclasses.replace(sample_degradation(sample_rng(seed, 0), BUSY), noise_sigma=0.0)
            for seed in range(count)]


def _fft_blur_tolerance(height: int, width: int) -> float:
    """A bound on the float32 error of blur + bilinear resize of [0,1] images, on both paths.

    FFT convolution (forward, product with a kernel of L1 norm 1, inverse) errs by at most about
    3 * c * u * log2(N) * ||x||_2 in L2 norm, hence per pixel, with u = 2^-24, c ~ 5 for a radix-2 FFT,
    N the padded plane's pixels and ||x||_2 <= sqrt(N); the direct filter and the 4-tap resize add ~k^2 u.
    """
    padded = (height + BUSY.blur_kernel_size) * (width + BUSY.blur_kernel_size)
    return 3 * 5 * 2.0**-24 * math.log2(padded) * math.sqrt(padded) + BUSY.blur_kernel_size**2 * 2.0**-24


def test_before_the_codec_the_torch_path_gives_cv2s_values(faces):
    tolerance = _fft_blur_tolerance(*faces.shape[1:3])
    assert tolerance < 0.5 / 255  # so the codec's 8-bit inputs differ by one step at most, and only on half steps
    for seed, params in enumerate(_clean_draws(12)):
        image = faces[seed % len(faces)]
        small_h, small_w = params.small_size(*image.shape[:2])
        cpu = cv2.resize(cv2.filter2D(image, -1, params.kernel), (small_w, small_h), interpolation=cv2.INTER_LINEAR)
        dev = _to_bgr(shrink_batch(_to_batch(image[None]), [params])[0][None])[0]
        assert np.abs(cpu - dev).max() <= tolerance, (seed, params)
        # Rounded for the codec, the two differ only where a value lies within the tolerance of a half
        # step: upsampling 8-bit pixels puts many exactly there, and which way they go is float noise.
        cpu_steps, dev_steps = np.floor(cpu * 255 + 0.5), np.floor(dev * 255 + 0.5)
        on_half_step = np.abs(cpu * 255 - np.floor(cpu * 255) - 0.5) <= tolerance * 255
        assert np.all((cpu_steps == dev_steps) | on_half_step), seed


def test_the_codecs_give_the_same_pixels_for_the_same_8_bit_image(faces):
    # cv2 and TorchCodec both link libjpeg-turbo and use its accurate integer DCT, the IJG tables scaled
    # by quality, 4:2:0 chroma and fancy upsampling; its SIMD paths (none, SSE2, AVX2) are bit-exact with
    # its C code for that DCT, so equality holds on any x86-64 CPU. Odd sizes exercise partial blocks.
    for size in (19, 39, 64):
        for image in faces:
            image8 = cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)
            image8 = np.round(image8 * 255).astype(np.float32) / 255
            for quality in (60, 75, 84, 95, 100):
                got = _to_bgr(torch.stack(jpeg_batch(list(_to_batch(image8[None])), [quality])))[0]
                assert np.array_equal(got, _jpeg(image8, quality)), (size, quality)


def test_a_value_on_a_half_step_goes_to_the_codec_as_the_loader_sends_it():
    # 2.5/255 * 255 is exactly 2.5 in float32: the loader's cv2 path codes it as 3, half to even would give 2
    flat = np.full((16, 16, 3), np.float32(2.5 / 255), np.float32)
    assert np.float32(flat[0, 0, 0]) * np.float32(255) == 2.5
    got = _to_bgr(torch.stack(jpeg_batch(list(_to_batch(flat[None])), [95])))[0]
    assert np.array_equal(got, _jpeg(flat, 95)) and np.all(got * 255 == 3)


def _identity_kernel() -> np.ndarray:
    kernel = np.zeros((BUSY.blur_kernel_size,) * 2, np.float32)
    kernel[BUSY.blur_kernel_size // 2, BUSY.blur_kernel_size // 2] = 1.0
    return kernel


def test_after_the_codec_the_paths_agree_within_one_step(faces):
    # With no blur and no downsampling the codec gets the 8-bit face itself on both paths (the FFT's
    # float noise is far below half a step), so both decode the same pixels (test above). What follows
    # (resize to the same size, colour shift, gray, jitter) is float32 arithmetic on both paths, off by
    # far less than a step, so the final 8-bit rounding differs by one step at most (+ float32 of k/255).
    for seed, params in enumerate(_clean_draws(24)):
        params = dataclasses.replace(params, kernel=_identity_kernel(), scale=1.0)
        image = faces[seed % len(faces)]
        cpu = apply_degradation(image, params)
        dev = _to_bgr(degrade_batch(_to_batch(image[None]), [params]))[0]
        assert np.abs(cpu - dev).max() <= 1 / 255 + 1e-6, (seed, params)


def test_noise_has_the_drawn_level_on_both_paths(faces):
    cfg = DegradationConfig(blur_sigma=(0.1, 0.1), blur_kernel_size=3, downsample_range=(1.0, 1.0),
                            noise_range=(12.0, 12.0), jpeg_range=(100.0, 100.0), color_jitter_prob=0.0,
                            gray_prob=0.0, color_jitter_pt_prob=0.0)
    params = sample_degradation(sample_rng(0, 0), cfg)
    clean = dataclasses.replace(params, noise_sigma=0.0)
    image = faces[0]
    cpu_noise = apply_degradation(image, params) - apply_degradation(image, clean)
    batch = _to_batch(image[None])
    dev_noise = (degrade_batch(batch, [params]) - degrade_batch(batch, [clean])).numpy()
    assert np.abs(cpu_noise.mean()) < 2e-3 and np.abs(dev_noise.mean()) < 2e-3
    assert dev_noise.std() == pytest.approx(cpu_noise.std(), rel=0.1)
    assert cpu_noise.std() > 0.5 * params.noise_sigma  # JPEG smooths some chroma noise, not most of it


def test_a_batch_gives_each_sample_what_it_gives_alone_and_repeats(faces):
    params = [sample_degradation(sample_rng(3, i), BUSY) for i in range(len(faces))]
    batch = _to_batch(faces)
    together = degrade_batch(batch, params)
    alone = torch.cat([degrade_batch(batch[i : i + 1], [p]) for i, p in enumerate(params)])
    assert torch.equal(together, alone)
    assert torch.equal(together, degrade_batch(batch, params))
    assert together.shape == batch.shape and 0 <= float(together.min()) and float(together.max()) <= 1
    assert torch.equal(torch.round(together * 255), together * 255)  # 8-bit steps
    with pytest.raises(ValueError):
        degrade_batch(batch, params[:2])


def test_trainer_degrades_on_its_device_with_the_loaders_draws(media_dir, tmp_path):
    ffhq = media_dir / "faces_hq" / "ffhq"
    cfg = tiny_config(ffhq, tmp_path, **cheap_losses(), use_components=False)
    # No noise, blur or downsampling: then both paths hand the codec the same 8-bit face, and the two LQs
    # differ by the final rounding alone (see test_after_the_codec_the_paths_agree_within_one_step).
    # The draws that remain (JPEG quality, colour shift, gray, jitter) differ per sample: a sample
    # degraded with other draws than the loader's would be many steps off.
    cfg.degradation.noise_range = (0.0, 0.0)
    cfg.degradation.blur_sigma = (0.1, 0.1)  # a kernel whose centre weight is 1.0 in float32
    cfg.degradation.downsample_range = (1.0, 1.0)
    cfg.data.degrade_on = "device"
    cfg.run.total_iter, cfg.run.save_every, cfg.run.val_every = 2, 0, 0
    trainer = Trainer(cfg, device="cpu")
    on_device = trainer.train_dataset()
    in_loader = FaceDataset(ffhq, 32, cfg.degradation, seed=cfg.run.seed)
    batch = collate_samples([on_device[(i, 0)] for i in range(2)])
    assert "lq" not in batch and len(batch["degradation"]) == 2
    lq = trainer._degrade_on_device(batch["gt"], batch["degradation"])
    expected = torch.stack([in_loader[(i, 0)]["lq"] for i in range(2)])
    assert (lq - expected).abs().max() <= 2 * (1 / 255 + 1e-6)  # [-1,1] scale: one 8-bit step
    trainer.fit(2)
    assert trainer.iteration == 2

    cfg.data.degrade_on = "gpu"
    with pytest.raises(VidrestoreError, match="degrade_on"):
        Trainer(cfg, device="cpu")


def test_bench_degrade_reports_both_paths_beside_an_iteration(media_dir, tmp_path):
    from vidrestore.cli import main
    from train_support import SMALL_CONFIG

    out = tmp_path / "degrade.md"
    assert main(["-q", "bench", "degrade", str(SMALL_CONFIG), "--data", str(media_dir / "faces_hq" / "ffhq"),
                 "--device", "cpu", "--images", "2", "--batches", "1", "--steps", "1", "--output", str(out)]) == 0
    text = out.read_text()
    assert "loader path (cv2, one worker)" in text and "device path (torch on cpu)" in text
    assert "one training iteration" in text and ("keeps up with" in text or "is slower than" in text)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine where the CUDA codec cannot run")
def test_a_failing_device_codec_falls_back_to_the_cpu_codec(faces, monkeypatch, caplog):
    import vidrestore.train.degradations_torch as dt

    monkeypatch.setattr(dt, "_device_codec_failed", False)
    images = list(_to_batch(faces[:2]))
    expected = dt.jpeg_batch(images, [70, 90])
    with caplog.at_level("WARNING"):
        got = dt.jpeg_batch(images, [70, 90], codec_device=torch.device("cuda"))
    assert all(torch.equal(a, b) for a, b in zip(got, expected))
    assert "on the CPU from now on" in caplog.text and dt._device_codec_failed
