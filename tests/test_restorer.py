"""BatchRestorer: same output whatever the chunking, correct ranges, fixed noise, clear shape errors."""

from __future__ import annotations

import pytest
import torch

from vidrestore.errors import VidrestoreError
from vidrestore.models import GFPGAN
from vidrestore.models.restorer import BatchRestorer


@pytest.fixture(scope="module")
def small_model():
    torch.manual_seed(0)
    return GFPGAN(out_size=32, num_style_feat=32, channel_multiplier=1, num_mlp=1, narrow=0.125)


def test_output_independent_of_batch_size_and_deterministic(small_model):
    crops = torch.randint(0, 256, (7, 3, 32, 32), dtype=torch.uint8)
    one = BatchRestorer(small_model, torch.device("cpu"), batch_size=1).restore(crops)
    three = BatchRestorer(small_model, torch.device("cpu"), batch_size=3).restore(crops)
    again = BatchRestorer(small_model, torch.device("cpu"), batch_size=3).restore(crops)
    assert one.shape == (7, 3, 32, 32) and one.dtype == torch.float32
    assert torch.allclose(one, three, atol=1e-5)
    assert torch.equal(three, again)
    assert one.min() >= 0 and one.max() <= 1


def test_uint8_and_float_inputs_agree_and_match_the_model(small_model):
    crops = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    restorer = BatchRestorer(small_model, torch.device("cpu"))
    from_uint8 = restorer.restore(crops)
    from_float = restorer.restore(crops.float() / 255)
    assert torch.allclose(from_uint8, from_float)
    with torch.no_grad():
        direct, _ = small_model(crops.float() / 255 * 2 - 1, randomize_noise=False)
    assert torch.allclose(from_uint8, (direct.clamp(-1, 1) + 1) / 2, atol=1e-6)


def test_empty_batch_and_wrong_shape(small_model):
    restorer = BatchRestorer(small_model, torch.device("cpu"))
    assert restorer.restore(torch.zeros(0, 3, 32, 32)).shape == (0, 3, 32, 32)
    with pytest.raises(VidrestoreError, match="expects crops of shape"):
        restorer.restore(torch.zeros(1, 3, 64, 64))


def test_fp16_is_refused(small_model):
    with pytest.raises(VidrestoreError, match="fp16"):
        BatchRestorer(small_model, torch.device("cpu"), precision="fp16")


def test_out_of_memory_halves_the_batch_and_finishes(small_model, monkeypatch):
    restorer = BatchRestorer(small_model, torch.device("cpu"), batch_size=8)
    real_forward = restorer._forward
    sizes = []

    def forward_that_fits_two(chunk):
        sizes.append(chunk.shape[0])
        if chunk.shape[0] > 2:
            raise torch.OutOfMemoryError("CUDA out of memory")
        return real_forward(chunk)

    monkeypatch.setattr(restorer, "_forward", forward_that_fits_two)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: None)
    crops = torch.randint(0, 256, (5, 3, 32, 32), dtype=torch.uint8)
    out = restorer.restore(crops)
    assert out.shape == (5, 3, 32, 32)
    assert restorer.batch_size == 2
    assert sizes[:3] == [5, 4, 2]  # 8 -> 4 -> 2, then the rest in pairs
    reference = BatchRestorer(small_model, torch.device("cpu"), batch_size=1).restore(crops)
    assert torch.allclose(out, reference, atol=1e-5)
