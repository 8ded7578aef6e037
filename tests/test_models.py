"""GFP-GAN model: golden parity with the official code, checkpoint layout, batched modulated conv."""

from __future__ import annotations

import json

import pytest
import torch

from vidrestore.models import GFPGAN, ModulatedConv2d, StyleGAN2GeneratorCSFT, autocast
from vidrestore.models.precision import check_precision
from vidrestore.errors import VidrestoreError


@pytest.fixture(scope="module")
def golden(shared_dir):
    return torch.load(shared_dir / "specs" / "golden" / "gfpgan_clean_small.pt", weights_only=True)


def test_golden_output_and_pyramid_match_official(golden):
    model = GFPGAN(**golden["config"]).eval()
    model.load_state_dict(golden["params_ema"], strict=True)
    with torch.no_grad():
        image, rgbs = model(golden["input"], return_rgb=True, randomize_noise=False)
    assert image.shape == golden["output"].shape
    assert (image - golden["output"]).abs().max().item() <= 1e-4
    assert len(rgbs) == len(golden["out_rgbs"])
    for ours, official in zip(rgbs, golden["out_rgbs"]):
        assert ours.shape == official.shape
        assert (ours - official).abs().max().item() <= 1e-4


def test_golden_matches_with_grouped_reference_path(golden):
    model = GFPGAN(**golden["config"]).eval()
    model.load_state_dict(golden["params_ema"], strict=True)
    model.set_grouped_modconv(True)
    with torch.no_grad():
        image, _ = model(golden["input"], randomize_noise=False)
    assert (image - golden["output"]).abs().max().item() <= 1e-4


def test_return_rgb_false_gives_no_pyramid(golden):
    model = GFPGAN(**golden["config"]).eval()
    model.load_state_dict(golden["params_ema"], strict=True)
    with torch.no_grad():
        image, rgbs = model(golden["input"], return_rgb=False, randomize_noise=False, weight=0.5)
    assert rgbs == []
    assert (image - golden["output"]).abs().max().item() <= 1e-4


def test_full_config_has_exactly_the_released_keys_and_shapes(shared_dir):
    manifest = json.loads((shared_dir / "specs" / "gfpgan_v1.4_state_dict_keys.json").read_text())
    expected = [(name, tuple(shape)) for name, shape in manifest["keys"].items()]
    with torch.device("meta"):
        model = GFPGAN()  # defaults = released v1.3/v1.4 configuration
    got = [(name, tuple(t.shape)) for name, t in model.state_dict().items()]
    assert got == expected  # same keys, same shapes, same order
    assert model.config == {k: manifest["config"][k] for k in model.config}


def test_fixed_noise_is_deterministic_and_random_noise_is_not():
    torch.manual_seed(0)
    model = GFPGAN(out_size=32, num_style_feat=32, channel_multiplier=1, num_mlp=2, narrow=0.125).eval()
    with torch.no_grad():
        for module in model.modules():  # noise strengths start at zero: make them matter
            if hasattr(module, "modulated_conv") and hasattr(module, "weight") and module.weight.numel() == 1:
                module.weight.fill_(0.5)
        x = torch.rand(2, 3, 32, 32) * 2 - 1
        a, _ = model(x, randomize_noise=False)
        b, _ = model(x, randomize_noise=False)
        c, _ = model(x, randomize_noise=True)
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)


@pytest.mark.parametrize("batch", [1, 2, 3, 5])
@pytest.mark.parametrize(
    "kind", [dict(kernel_size=3, demodulate=True, upsample=False), dict(kernel_size=3, demodulate=True, upsample=True),
             dict(kernel_size=1, demodulate=False, upsample=False)]
)
def test_batched_modulated_conv_equals_grouped(batch, kind):
    torch.manual_seed(batch)
    conv = ModulatedConv2d(16, 24, num_style_feat=32, **kind)
    with torch.no_grad():
        conv.modulation.bias.normal_()  # styles far from 1, so modulation really varies per sample
    x = torch.randn(batch, 16, 8, 8)
    style = torch.randn(batch, 32)
    with torch.no_grad():
        batched = conv(x, style)
        conv.grouped = True
        grouped = conv(x, style)
    assert batched.shape == grouped.shape == (batch, 24, 16 if kind["upsample"] else 8, 16 if kind["upsample"] else 8)
    assert torch.allclose(batched, grouped, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("batch", [1, 4])
def test_whole_model_batched_equals_grouped_and_per_sample(batch):
    torch.manual_seed(1)
    model = GFPGAN(out_size=64, num_style_feat=64, channel_multiplier=1, num_mlp=2, narrow=0.25).eval()
    x = torch.rand(batch, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        batched, _ = model(x, randomize_noise=False)
        singles = torch.cat([model(x[i : i + 1], randomize_noise=False)[0] for i in range(batch)])
        model.set_grouped_modconv(True)
        grouped, _ = model(x, randomize_noise=False)
    scale = grouped.abs().max()
    assert (batched - grouped).abs().max() <= 1e-5 * scale
    assert (batched - singles).abs().max() <= 1e-5 * scale  # no cross-talk between samples


def test_decoder_with_w_plus_and_single_code():
    torch.manual_seed(2)
    decoder = StyleGAN2GeneratorCSFT(out_size=32, num_style_feat=16, num_mlp=2, channel_multiplier=1, narrow=0.0625,
                                     sft_half=False).eval()
    assert decoder.num_layers == 7 and decoder.num_latent == 8
    assert [n.shape[-1] for n in decoder.fixed_noise()] == [4, 8, 8, 16, 16, 32, 32]
    z = torch.randn(2, 16)
    with torch.no_grad():
        image, latent = decoder([z], [], input_is_latent=False, randomize_noise=False, return_latents=True)
    assert image.shape == (2, 3, 32, 32)
    assert latent.shape == (2, 8, 16)


def test_bf16_autocast_runs_and_stays_close_to_fp32(golden):
    model = GFPGAN(**golden["config"]).eval()
    model.load_state_dict(golden["params_ema"], strict=True)
    device = torch.device("cpu")
    with torch.no_grad(), autocast(device, "bf16"):
        image, _ = model(golden["input"], randomize_noise=False)
    assert torch.isfinite(image).all()
    relative = (image.float() - golden["output"]).abs().mean() / golden["output"].abs().mean()
    assert relative < 0.05


def test_fp16_is_refused_with_an_explanation():
    with pytest.raises(VidrestoreError, match="overflow"):
        check_precision("fp16")


def test_out_size_must_be_a_power_of_two():
    with pytest.raises(ValueError, match="power of two"):
        GFPGAN(out_size=100)
