"""Batched torch degradations: the same parameters give the CPU path's pixels, batching changes nothing."""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import pytest
import torch

from vidrestore.errors import VidrestoreError
from vidrestore.train.dataset import FaceDataset, collate_samples
from vidrestore.train.degradations import (
    DegradationConfig,
    apply_degradation,
    list_images,
    read_image,
    sample_degradation,
    sample_rng,
)
from vidrestore.train.degradations_torch import blur_batch, degrade_batch
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


def test_without_noise_the_torch_path_gives_the_cpu_pixels(faces):
    for seed in range(12):
        params = dataclasses.replace(sample_degradation(sample_rng(seed, 0), BUSY), noise_sigma=0.0)
        image = faces[seed % len(faces)]
        cpu = apply_degradation(image, params)
        dev = _to_bgr(degrade_batch(_to_batch(image[None]), [params]))[0]
        diff = np.abs(cpu - dev)
        assert diff.mean() < 2e-3, (seed, params)
        assert diff.max() <= 3 / 255 + 1e-6, (seed, params)


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
    cfg.degradation.noise_range = (0.0, 0.0)
    cfg.data.degrade_on = "device"
    cfg.run.total_iter, cfg.run.save_every, cfg.run.val_every = 2, 0, 0
    trainer = Trainer(cfg, device="cpu")
    on_device = trainer.train_dataset()
    in_loader = FaceDataset(ffhq, 32, cfg.degradation, seed=cfg.run.seed)
    batch = collate_samples([on_device[(i, 0)] for i in range(2)])
    assert "lq" not in batch and len(batch["degradation"]) == 2
    lq = trainer._degrade_on_device(batch["gt"], batch["degradation"])
    expected = torch.stack([in_loader[(i, 0)]["lq"] for i in range(2)])
    assert (lq - expected).abs().max() <= 2 * 3 / 255 + 1e-6  # [-1,1] scale: a few 8-bit steps
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
