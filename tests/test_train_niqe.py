"""NIQE: distribution fits, MATLAB-style resize, a face-fitted pristine model, and the niqe column of eval."""

from __future__ import annotations

import json
import logging
import math

import cv2
import numpy as np
import pytest
import torch
from scipy.stats import gennorm

from vidrestore import weights
from vidrestore.cli import main
from vidrestore.errors import VidrestoreError
from vidrestore.models import GFPGAN
from vidrestore.train.degradations import list_images, read_image
from vidrestore.train.evaluate import evaluate
from vidrestore.train.niqe import (
    NiqeModel,
    aggd_params,
    fit_niqe_model,
    ggd_params,
    imresize,
    load_niqe_model,
    niqe,
    save_niqe_model,
)

FACE_SIZE = 256
SAMPLES = 200_000


# --- distribution fits ---------------------------------------------------------------------------


@pytest.mark.parametrize(("shape", "scale"), [(0.8, 0.5), (2.0, 1.0), (3.5, 2.0)])
def test_ggd_fit_recovers_gennorm_parameters(shape: float, scale: float):
    x = gennorm.rvs(shape, scale=scale, size=SAMPLES, random_state=np.random.default_rng(0))
    est_shape, est_scale = ggd_params(x)
    assert est_shape == pytest.approx(shape, rel=0.05)
    assert est_scale == pytest.approx(scale, rel=0.03)


def _aggd_samples(shape: float, left: float, right: float, rng: np.random.Generator) -> np.ndarray:
    """AGGD draws: |GGD(shape, 1)| scaled by `left` on the negative side (chosen with p = left/(left+right))."""
    magnitude = np.abs(gennorm.rvs(shape, size=SAMPLES, random_state=rng))
    negative = rng.random(SAMPLES) < left / (left + right)
    return np.where(negative, -left * magnitude, right * magnitude)


@pytest.mark.parametrize(("shape", "left", "right"), [(0.7, 0.2, 0.6), (1.5, 1.0, 0.4), (3.0, 0.5, 0.5)])
def test_aggd_fit_recovers_asymmetric_parameters(shape: float, left: float, right: float):
    est_shape, est_left, est_right = aggd_params(_aggd_samples(shape, left, right, np.random.default_rng(1)))
    assert est_shape == pytest.approx(shape, rel=0.05)
    assert (est_left, est_right) == pytest.approx((left, right), rel=0.05)


def test_fits_run_along_the_last_axis_and_mark_one_sided_data():
    x = gennorm.rvs(2.0, size=(3, 50_000), random_state=np.random.default_rng(2))
    shapes, scales = ggd_params(x)
    assert shapes.shape == scales.shape == (3,) and np.allclose(shapes, 2.0, rtol=0.05)
    _, left, right = aggd_params(np.abs(x))
    assert np.isnan(left).all() and np.isfinite(right).all()


# --- MATLAB-style resize -------------------------------------------------------------------------


def test_imresize_half_keeps_a_constant_image_and_halves_its_size():
    out = imresize(np.full((41, 30), 7.25), 0.5)
    assert out.shape == (21, 15)
    assert np.allclose(out, 7.25, atol=1e-12)


def test_imresize_half_of_a_ramp_samples_it_between_pixel_pairs():
    ramp = np.tile(np.arange(40.0), (12, 1))
    out = imresize(ramp, 0.5)
    interior = slice(2, -2)  # the 8-tap antialiasing kernel reaches the mirrored border for the others
    assert np.allclose(out[:, interior], (2 * np.arange(20) + 0.5)[interior], atol=1e-9)
    assert np.allclose(imresize(ramp.T, 0.5), out.T, atol=1e-12)
    assert not np.allclose(out[:, 0], 0.5)  # the symmetric border bends the ramp at the edges


def test_imresize_half_spreads_a_pixel_with_matlabs_antialiased_cubic():
    """Output k samples input 2k + 0.5 with 0.5 * cubic(0.5 * d): taps 0.5*cubic(0.25, 0.75, 1.25, 1.75)."""
    impulse = np.zeros((6, 40))
    impulse[:, 20] = 1.0
    out = imresize(impulse, 0.5)[0]
    expected = np.zeros(20)
    expected[8:12] = [-0.01171875, 0.11328125, 0.43359375, -0.03515625]  # d = -3.5, -1.5, 0.5, 2.5
    assert np.allclose(out, expected, atol=1e-12)


# --- a pristine model fitted on clean faces ------------------------------------------------------


def _faces(media_dir, folder: str) -> list[np.ndarray]:
    return [read_image(path, FACE_SIZE) for path in list_images(media_dir / "faces_hq" / folder)]


@pytest.fixture(scope="module")
def face_model(media_dir) -> NiqeModel:
    return fit_niqe_model(_faces(media_dir, "celebahq"))


@pytest.fixture(scope="module")
def held_out(media_dir) -> list[np.ndarray]:
    return _faces(media_dir, "ffhq")


def _mean_score(model: NiqeModel, images: list[np.ndarray]) -> float:
    return float(np.mean([niqe(img, model) for img in images]))


def _blur(img: np.ndarray, sigma: float) -> np.ndarray:
    return cv2.GaussianBlur(img, (0, 0), sigma)


def test_fitted_model_has_the_36_feature_shape(face_model: NiqeModel):
    assert face_model.mu.shape == (36,) and face_model.cov.shape == (36, 36)
    assert np.allclose(face_model.cov, face_model.cov.T) and np.all(np.isfinite(face_model.cov))


def test_clean_faces_score_better_than_blurred_ones(face_model, held_out):
    for img in held_out:
        assert niqe(img, face_model) < niqe(_blur(img, 2.0), face_model)


def test_score_grows_with_blur(face_model, held_out):
    scores = [_mean_score(face_model, [_blur(img, sigma) for img in held_out]) for sigma in (1.0, 2.0, 4.0)]
    assert _mean_score(face_model, held_out) < scores[0] < scores[1] < scores[2]


def test_score_grows_with_noise(face_model, held_out):
    rng = np.random.default_rng(3)

    def noisy(sd: float) -> list[np.ndarray]:
        return [np.clip(img + rng.normal(0, sd, img.shape), 0, 1).astype(np.float32) for img in held_out]

    scores = [_mean_score(face_model, noisy(sd)) for sd in (0.02, 0.05, 0.1)]
    assert _mean_score(face_model, held_out) < scores[0] < scores[1] < scores[2]


def test_gray_and_uint8_inputs_give_the_bgr_float_score(face_model, held_out):
    img = held_out[0]
    as_uint8 = np.round(img * 255).astype(np.uint8)
    assert niqe(as_uint8, face_model) == pytest.approx(niqe(as_uint8 / 255.0, face_model), abs=1e-9)
    gray = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
    assert math.isfinite(niqe(gray, face_model)) and niqe(gray, face_model) != niqe(img, face_model)


@pytest.mark.parametrize("size", [64, 95, 96, 150])
def test_images_without_two_blocks_are_refused(face_model, size: int):
    with pytest.raises(VidrestoreError, match=r"at least 2 block\(s\) of 96x96 pixels; this one is"):
        niqe(np.random.default_rng(0).random((size, size, 3)), face_model)


def test_crop_border_can_take_an_image_below_two_blocks(face_model, held_out):
    assert math.isfinite(niqe(held_out[0][:, :100], face_model))
    with pytest.raises(VidrestoreError, match="this one is 92x248"):
        niqe(held_out[0][:, :100], face_model, crop_border=4)


def test_model_file_round_trip_and_bad_files(face_model, tmp_path):
    path = tmp_path / "faces_niqe.npz"
    save_niqe_model(face_model, path)
    loaded = load_niqe_model(path)
    assert np.array_equal(loaded.mu, face_model.mu) and np.array_equal(loaded.cov, face_model.cov)
    with np.load(path) as data:
        assert data["mu_pris_param"].shape == (1, 36) and data["gaussian_window"].sum() == pytest.approx(1.0)
    np.savez(tmp_path / "short.npz", mu_pris_param=np.zeros(18), cov_pris_param=np.eye(18))
    with pytest.raises(VidrestoreError, match="36"):
        load_niqe_model(tmp_path / "short.npz")
    np.savez(tmp_path / "other.npz", mean=np.zeros(36))
    with pytest.raises(VidrestoreError, match="cannot read the NIQE model"):
        load_niqe_model(tmp_path / "other.npz")


# --- vidrestore eval -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def model_256(tmp_path_factory):
    """A random-weight GFPGAN with 256x256 output: faces large enough for NIQE's blocks."""
    torch.manual_seed(0)
    net = GFPGAN(out_size=FACE_SIZE, num_style_feat=32, channel_multiplier=1, num_mlp=2, narrow=0.125)
    path = tmp_path_factory.mktemp("model") / "tiny256.pth"
    torch.save({"params_ema": net.state_dict()}, path)
    return path


@pytest.fixture()
def one_face(media_dir, tmp_path):
    """A folder with one clean held-out face (eval degrades every face of its folder)."""
    folder = tmp_path / "faces"
    folder.mkdir()
    source = list_images(media_dir / "faces_hq" / "ffhq")[0]
    (folder / source.name).write_bytes(source.read_bytes())
    return folder


def test_eval_reports_niqe_with_a_given_model(model_256, face_model, one_face, tmp_path):
    npz = tmp_path / "faces_niqe.npz"
    save_niqe_model(face_model, npz)
    out = tmp_path / "report"
    assert main(["eval", "--model", str(model_256), "--data", str(one_face), "--out", str(out),
                 "--device", "cpu", "--niqe-model", str(npz)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    image = metrics["images"][0]
    assert math.isfinite(image["niqe"]) and math.isfinite(image["niqe_input"]) and "sharpness" in image
    assert metrics["mean"]["niqe"] == pytest.approx(image["niqe"]) and "niqe" not in metrics["skipped"]
    report = (out / "report.md").read_text()
    assert f"| niqe | {image['niqe']:.4f} |" in report and str(npz) in report


def test_eval_without_a_niqe_model_says_so(model_256, one_face, tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("VIDRESTORE_WEIGHTS", str(tmp_path / "empty"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(weights, "repo_weights_dir", lambda: None)
    with caplog.at_level(logging.INFO, logger="vidrestore.train.evaluate"):
        metrics = evaluate(model_256, one_face, tmp_path / "out", device="cpu")
    assert "niqe" not in metrics["mean"] and "niqe" not in metrics["images"][0]
    assert [r.message for r in caplog.records if "NIQE" in r.message] == [
        "NIQE skipped: niqe_pris_params.npz not found (vidrestore weights download niqe_pristine, "
        "or --niqe-model PATH)"]
    assert "niqe skipped: niqe_pris_params.npz not found" in (tmp_path / "out" / "report.md").read_text()


def test_eval_refuses_a_missing_explicit_niqe_model(model_256, one_face, tmp_path, capsys):
    assert main(["eval", "--model", str(model_256), "--data", str(one_face),
                 "--out", str(tmp_path / "out"), "--niqe-model", str(tmp_path / "none.npz")]) == 2
    assert "none.npz" in capsys.readouterr().err
