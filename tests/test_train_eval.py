"""Metrics on known pairs, the eval report, and the train/eval/degrade command lines."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from vidrestore.cli import main
from vidrestore.train.evaluate import evaluate
from vidrestore.train.metrics import laplacian_sharpness, psnr, ssim
from vidrestore.train.trainer import TrainConfig

from train_support import REPO_ROOT, save_tiny_restorer


def test_psnr_of_identical_images_is_infinite():
    img = np.random.default_rng(0).random((16, 16, 3))
    assert psnr(img, img) == math.inf


def test_psnr_of_a_known_error_level():
    img = np.random.default_rng(0).random((32, 32, 3)) * 0.8
    # every pixel off by exactly 0.1 (half up, half down): MSE = 0.01 -> 20 dB
    signs = np.where(np.arange(img.size).reshape(img.shape) % 2 == 0, 1.0, -1.0)
    assert psnr(img + 0.1 * signs, img) == pytest.approx(20.0, abs=1e-9)
    # uniform noise on [-a, a] has MSE a^2/3: PSNR -> 10 log10(3 / a^2)
    a = 0.05
    noise = np.random.default_rng(1).uniform(-a, a, (256, 256, 3))
    assert psnr(img[:1, :1] + noise, np.broadcast_to(img[:1, :1], noise.shape)) == pytest.approx(
        10 * math.log10(3 / a**2), abs=0.05)
    assert psnr(np.full((4, 4), 200.0), np.full((4, 4), 190.0), max_value=255) == pytest.approx(
        10 * math.log10(255**2 / 100))


def test_ssim_identical_is_one_and_noise_lowers_it():
    img = np.random.default_rng(0).random((32, 32, 3))
    assert ssim(img, img) == pytest.approx(1.0)
    noisy = np.clip(img + np.random.default_rng(1).normal(0, 0.2, img.shape), 0, 1)
    assert 0 < ssim(noisy, img) < 0.95


def test_sharpness_prefers_detail():
    flat = np.full((32, 32, 3), 0.5, np.float32)
    checker = (np.indices((32, 32)).sum(0) % 2).astype(np.float32)[..., None].repeat(3, 2)
    assert laplacian_sharpness(flat) == 0 and laplacian_sharpness(checker) > 0


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    return save_tiny_restorer(tmp_path_factory.mktemp("model") / "tiny.pth")


def test_evaluate_on_paired_folders_writes_reports(tiny_model, media_dir, tmp_path):
    gt_dir, lq_dir = tmp_path / "data" / "gt", tmp_path / "data" / "lq"
    assert main(["degrade", str(media_dir / "faces_hq" / "celebahq"), str(lq_dir), "--size", "32", "--seed", "1"]) == 0
    gt_dir.mkdir()
    for lq in sorted(lq_dir.iterdir())[:3]:  # ground truth for three of them; evaluate only those
        (gt_dir / lq.name).write_bytes(lq.read_bytes())
    for extra in sorted(lq_dir.iterdir())[3:]:
        extra.unlink()
    metrics = evaluate(tiny_model, tmp_path / "data", tmp_path / "out", device="cpu")
    assert metrics["count"] == 3
    assert metrics["mean"]["psnr_input"] == math.inf  # LQ identical to GT here
    assert 0 < metrics["mean"]["psnr"] < math.inf and -1 <= metrics["mean"]["ssim"] <= 1
    saved = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert saved["mean"]["psnr_input"] == "inf" and "lpips" in saved["skipped"]


def test_eval_cli_degrades_clean_faces_and_writes_json_markdown_grid(tiny_model, media_dir, tmp_path):
    out = tmp_path / "report"
    code = main(["eval", "--model", str(tiny_model), "--data", str(media_dir / "faces_hq" / "ffhq"),
                 "--out", str(out), "--limit", "2", "--device", "cpu"])
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["count"] == 2 and set(metrics["images"][0]) >= {"psnr", "ssim", "sharpness"}
    assert "| psnr |" in (out / "report.md").read_text()
    import cv2

    grid = cv2.imread(str(out / "grid.png"))
    assert grid.shape == (2 * 32 + 2, 3 * 32 + 2 * 2, 3)


def test_eval_cli_missing_folder_is_a_user_error(tiny_model, tmp_path, capsys):
    assert main(["eval", "--model", str(tiny_model), "--data", str(tmp_path / "nope")]) == 2
    assert "not found" in capsys.readouterr().err


def test_paper_config_holds_the_recipe():
    cfg = TrainConfig.from_yaml(REPO_ROOT / "configs" / "train_gfpgan.yaml")
    assert cfg.network_g.out_size == 512 and cfg.network_g.fix_decoder
    assert cfg.degradation.blur_sigma == (0.1, 10) and cfg.degradation.jpeg_range == (60, 100)
    assert (cfg.losses.style_weight, cfg.losses.component_style_weight, cfg.losses.identity_weight) == (50, 200, 10)
    assert cfg.optim.ema_decay == pytest.approx(0.5 ** (32 / 10000))
    assert cfg.optim.milestones == (600000, 700000) and cfg.run.total_iter == 800000


def test_train_cli_runs_the_small_config(media_dir, tmp_path):
    config = tmp_path / "small.yaml"
    text = (REPO_ROOT / "configs" / "train_small.yaml").read_text()
    text = text.replace("../shared/media/faces_hq/ffhq", str(media_dir / "faces_hq" / "ffhq"))
    config.write_text(text + "\n")
    assert main(["train", str(config), "--iterations", "1", "--out-dir", str(tmp_path / "run")]) == 0
    assert (tmp_path / "run" / "latest.pth").is_file()


def test_degrade_cli_takes_the_degradation_of_a_training_config(media_dir, tmp_path):
    import cv2

    from vidrestore.train.degradations import degrade_folder

    faces = media_dir / "faces_hq" / "ffhq"
    small = REPO_ROOT / "configs" / "train_small.yaml"
    assert main(["degrade", str(faces), str(tmp_path / "cli"), "--size", "32", "--seed", "4",
                 "--degradation", str(small)]) == 0
    expected = degrade_folder(faces, tmp_path / "api", seed=4, size=32, cfg=TrainConfig.from_yaml(small).degradation)
    paper = degrade_folder(faces, tmp_path / "paper", seed=4, size=32)
    got = [cv2.imread(str(tmp_path / "cli" / p.name)) for p in expected]
    assert all(np.array_equal(g, cv2.imread(str(p))) for g, p in zip(got, expected))
    assert not all(np.array_equal(g, cv2.imread(str(p))) for g, p in zip(got, paper))
