"""Degradation model and training dataset: shapes, ranges, reproducibility, component boxes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vidrestore.errors import VidrestoreError
from vidrestore.train.dataset import FaceDataset, IterationBatchSampler, PairedFaces, boxes_for, TEMPLATE_COMPONENTS_512
from vidrestore.train.degradations import DegradationConfig, degrade, degrade_folder, gaussian_kernel, sample_rng

SMALL = DegradationConfig(blur_kernel_size=7, blur_sigma=(0.1, 1.0), downsample_range=(0.8, 2.0))


@pytest.fixture(scope="module")
def ffhq(media_dir):
    return media_dir / "faces_hq" / "ffhq"


def test_gaussian_kernel_is_normalised_and_rotated():
    iso = gaussian_kernel(21, 2.0, 2.0, 0.0)
    assert iso.shape == (21, 21) and abs(iso.sum() - 1) < 1e-5
    assert np.allclose(iso, iso.T, atol=1e-7)
    aniso = gaussian_kernel(21, 4.0, 1.0, np.pi / 2)
    assert np.allclose(aniso, gaussian_kernel(21, 1.0, 4.0, 0.0), atol=1e-6)


def test_degrade_is_seeded_and_stays_in_range():
    hq = np.random.default_rng(1).random((32, 32, 3), dtype=np.float32)
    a = degrade(hq, sample_rng(0, 3, 1), SMALL)
    b = degrade(hq, sample_rng(0, 3, 1), SMALL)
    c = degrade(hq, sample_rng(0, 3, 2), SMALL)
    assert a.shape == hq.shape and a.dtype == np.float32
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert a.min() >= 0 and a.max() <= 1
    assert np.allclose(a * 255, np.round(a * 255), atol=1e-3)  # quantised to 8 bits


def test_every_probability_on_still_gives_a_valid_image():
    cfg = DegradationConfig(blur_kernel_size=7, color_jitter_prob=1, gray_prob=1, color_jitter_pt_prob=1)
    lq = degrade(np.full((32, 32, 3), 0.5, np.float32), sample_rng(0, 0), cfg)
    assert lq.shape == (32, 32, 3) and np.isfinite(lq).all()
    assert np.allclose(lq[..., 0], lq[..., 1], atol=0.02)  # gray stays (nearly) gray through the jitter


def test_dataset_sample_shapes_and_reproducibility(ffhq):
    ds = FaceDataset(ffhq, out_size=32, degradation=SMALL, seed=5, cache=True)
    assert len(ds) == 10
    s1, s2 = ds[(4, 1)], ds[(4, 1)]
    assert s1["gt"].shape == s1["lq"].shape == (3, 32, 32)
    assert s1["gt"].min() >= -1 and s1["gt"].max() <= 1
    assert torch.equal(s1["lq"], s2["lq"])
    for name in ("loc_left_eye", "loc_right_eye", "loc_mouth"):
        assert s1[name].shape == (4,)
        x1, y1, x2, y2 = s1[name].tolist()
        assert 0 <= x1 < x2 <= 32 and 0 <= y1 < y2 <= 32


def test_flip_mirrors_boxes_and_swaps_eyes():
    plain = boxes_for(TEMPLATE_COMPONENTS_512, 512, flipped=False)
    flipped = boxes_for(TEMPLATE_COMPONENTS_512, 512, flipped=True)
    # the flipped left eye is the mirror image of the unflipped right eye
    right = plain["loc_right_eye"]
    left_mirrored = flipped["loc_left_eye"]
    assert left_mirrored[0] < plain["loc_left_eye"][2] + 10  # it sits on the image's left half
    assert torch.allclose((left_mirrored[0] + left_mirrored[2]) / 2, 512 - (right[0] + right[2]) / 2 + 1, atol=1e-3)
    half = boxes_for(TEMPLATE_COMPONENTS_512, 64, flipped=False)
    assert torch.allclose(half["loc_mouth"], plain["loc_mouth"] / 8)


def test_list_file_and_batch_sampler(ffhq, tmp_path):
    files = sorted(ffhq.glob("*.png"))[:3]
    listing = tmp_path / "train.txt"
    listing.write_text("".join(f"{f}\n" for f in files))
    ds = FaceDataset(listing, out_size=16, degradation=SMALL)
    assert len(ds) == 3
    sampler = IterationBatchSampler(3, 2, seed=0, start=0, stop=6)
    batches = list(sampler)
    assert IterationBatchSampler(3, 2, seed=0, start=3, stop=6).batch(3) == batches[3]
    seen = [index for batch in batches[:3] for index, _ in batch]
    assert sorted(seen[:3]) == [0, 1, 2] and sorted(seen[3:6]) == [0, 1, 2]  # each epoch covers every image


def test_missing_data_is_a_user_error(tmp_path):
    with pytest.raises(VidrestoreError):
        FaceDataset(tmp_path / "nope")


def test_degrade_folder_writes_reproducible_pngs(ffhq, tmp_path):
    files = sorted(ffhq.glob("*.png"))[:2]
    out_a = degrade_folder(ffhq, tmp_path / "a", seed=3, size=32, cfg=SMALL, files=files)
    out_b = degrade_folder(ffhq, tmp_path / "b", seed=3, size=32, cfg=SMALL, files=files)
    assert [p.name for p in out_a] == [f"{f.stem}.png" for f in files]
    assert all(a.read_bytes() == b.read_bytes() for a, b in zip(out_a, out_b))
    pairs = PairedFaces(ffhq, 32, lq_dir=tmp_path / "a")
    assert len(pairs) == 2 and pairs[0]["lq"].shape == (3, 32, 32)
