"""LPIPS in `vidrestore eval`: the lpips package's AlexNet scorer on a backbone file found by the weights manager.

The backbone here is a seeded random torchvision AlexNet (its `features.*` tensors only), saved where
$VIDRESTORE_WEIGHTS points; nothing is downloaded.
"""

from __future__ import annotations

import logging
import math
import shutil
import sys
from pathlib import Path

import pytest
import torch
import torchvision

from vidrestore import weights
from vidrestore.errors import CheckpointError
from vidrestore.train.dataset import to_tensor
from vidrestore.train.degradations import list_images, read_image
from vidrestore.train.evaluate import evaluate
from vidrestore.train.metrics import build_lpips, load_lpips, lpips_distance

from train_support import save_tiny_restorer

BACKBONE = weights.KNOWN["alexnet"].filename


@pytest.fixture(scope="module")
def alexnet_features(tmp_path_factory) -> Path:
    """A random-weight torchvision AlexNet checkpoint holding only its `features.*` tensors."""
    torch.manual_seed(0)
    state = {k: v for k, v in torchvision.models.alexnet().state_dict().items() if k.startswith("features.")}
    path = tmp_path_factory.mktemp("alexnet") / BACKBONE
    torch.save(state, path)
    return path


@pytest.fixture
def weights_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty $VIDRESTORE_WEIGHTS folder, the only place looked in; downloads off."""
    folder = tmp_path / "weights"
    folder.mkdir()
    monkeypatch.setenv("VIDRESTORE_WEIGHTS", str(folder))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("VIDRESTORE_OFFLINE", "1")
    monkeypatch.setattr(weights, "repo_weights_dir", lambda: None)
    return folder


@pytest.fixture
def with_backbone(weights_dir: Path, alexnet_features: Path) -> Path:
    """The weights folder holding the AlexNet checkpoint under its manifest file name."""
    shutil.copyfile(alexnet_features, weights_dir / BACKBONE)
    return weights_dir / BACKBONE


@pytest.fixture(scope="module")
def face(media_dir: Path) -> torch.Tensor:
    """A real FFHQ face, (1,3,128,128) RGB in [-1,1]."""
    first = list_images(media_dir / "faces_hq" / "ffhq")[0]
    return to_tensor(read_image(first, 128)).unsqueeze(0)


def test_scorer_loads_the_backbone_file_found_by_the_weights_manager(with_backbone, alexnet_features):
    scorer = load_lpips("cpu")
    assert scorer is not None and not scorer.training
    saved = torch.load(alexnet_features, weights_only=True)
    # lpips's slices keep torchvision's indices: features.10 is the last conv, in slice5
    assert torch.equal(scorer.net.slice5[0].weight, saved["features.10.weight"])
    assert torch.equal(scorer.net.slice1[0].bias, saved["features.0.bias"])
    for name, tensor in scorer.net.state_dict().items():
        assert torch.equal(tensor, saved[f"features.{name.split('.', 1)[1]}"]), name


def test_a_full_alexnet_state_dict_is_accepted_too(alexnet_features, tmp_path):
    full = dict(torch.load(alexnet_features, weights_only=True))
    full["classifier.6.bias"] = torch.zeros(1000)  # a classifier key too (the whole head is over 200 MB)
    path = tmp_path / "full.pth"
    torch.save(full, path)
    assert torch.equal(build_lpips(path).net.slice4[0].weight, full["features.8.weight"])


def test_lpips_of_an_image_with_itself_is_zero(with_backbone, face):
    assert lpips_distance(load_lpips("cpu"), face, face.clone()) == pytest.approx(0.0, abs=1e-6)


def test_lpips_grows_with_noise_on_a_real_face(with_backbone, face):
    scorer = load_lpips("cpu")
    generator = torch.Generator().manual_seed(0)
    noise = torch.randn(face.shape, generator=generator)
    # sigma on the [0,1] scale; the images are in [-1,1]
    small, large = ((face + 2 * sigma * noise).clamp(-1, 1) for sigma in (0.05, 0.2))
    d_small, d_large = lpips_distance(scorer, small, face), lpips_distance(scorer, large, face)
    assert 0 < d_small < d_large


def test_a_batch_scores_the_mean_of_its_images(with_backbone, face):
    scorer = load_lpips("cpu")
    noisy = (face + 0.3 * torch.randn(face.shape, generator=torch.Generator().manual_seed(1))).clamp(-1, 1)
    batch = lpips_distance(scorer, torch.cat([face, noisy]), torch.cat([face, face]))
    assert batch == pytest.approx(lpips_distance(scorer, noisy, face) / 2, rel=1e-4)


def test_the_state_dict_of_another_network_is_a_clear_error(weights_dir):
    state = torchvision.models.squeezenet1_1().state_dict()  # features.0 is a 3x3 conv, AlexNet's is 11x11
    torch.save(state, weights_dir / BACKBONE)
    with pytest.raises(CheckpointError, match=r"not a torchvision AlexNet checkpoint \(features\.0\.weight has shape"):
        load_lpips("cpu")


def test_a_checkpoint_without_the_features_is_a_clear_error(tmp_path):
    path = tmp_path / "other.pth"
    torch.save({"conv.weight": torch.zeros(64, 3, 11, 11)}, path)
    with pytest.raises(CheckpointError, match=r"features\.0\.weight is missing.*vidrestore weights download alexnet"):
        build_lpips(path)


def test_junk_bytes_are_a_clear_error(tmp_path):
    path = tmp_path / BACKBONE
    path.write_bytes(b"not a checkpoint" * 100)
    with pytest.raises(CheckpointError) as err:
        build_lpips(path)
    assert str(path) in str(err.value)


def test_without_the_backbone_file_lpips_is_unavailable_and_says_why(weights_dir, caplog):
    with caplog.at_level(logging.INFO, logger="vidrestore.train.metrics"):
        assert load_lpips("cpu") is None
    assert [r.getMessage() for r in caplog.records] == [
        f"LPIPS skipped: {BACKBONE} (alexnet) not found locally (vidrestore weights download alexnet)"]


def test_without_the_package_lpips_is_unavailable_and_says_why(with_backbone, monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "lpips", None)  # `import lpips` raises ImportError
    with caplog.at_level(logging.INFO, logger="vidrestore.train.metrics"):
        assert load_lpips("cpu") is None
    assert len(caplog.records) == 1 and "lpips package is not installed" in caplog.records[0].getMessage()


@pytest.fixture(scope="module")
def eval_inputs(media_dir, tmp_path_factory) -> tuple[Path, Path]:
    """A tiny 32-pixel restorer and a folder of two clean faces."""
    root = tmp_path_factory.mktemp("lpips_eval")
    faces = root / "faces"
    faces.mkdir()
    for src in list_images(media_dir / "faces_hq" / "ffhq")[:2]:
        shutil.copyfile(src, faces / src.name)
    return save_tiny_restorer(root / "tiny.pth"), faces


def test_eval_reports_lpips_per_image_and_in_the_mean_with_the_backbone(with_backbone, eval_inputs, tmp_path):
    model, faces = eval_inputs
    metrics = evaluate(model, faces, tmp_path / "out", device="cpu")
    per_image = [row["lpips"] for row in metrics["images"]]
    assert len(per_image) == 2 and all(math.isfinite(d) and d > 0 for d in per_image)
    assert metrics["mean"]["lpips"] == pytest.approx(sum(per_image) / 2)
    assert "lpips" not in metrics["skipped"]
    assert "| lpips |" in (tmp_path / "out" / "report.md").read_text()


def test_eval_reports_lpips_as_unavailable_without_the_backbone(weights_dir, eval_inputs, tmp_path):
    model, faces = eval_inputs
    metrics = evaluate(model, faces, tmp_path / "out", device="cpu")
    assert all(row["lpips"] is None for row in metrics["images"])
    assert metrics["mean"]["lpips"] is None
    assert "vidrestore weights download alexnet" in metrics["skipped"]["lpips"]
