"""Every GFP-GAN loss is finite and sends gradients where it should; networks have the spec's shapes."""

from __future__ import annotations

import math

import pytest
import torch

from vidrestore.train.arcface import ResNetArcFace
from vidrestore.train.dataset import FaceDataset
from vidrestore.train.discriminators import FacialComponentDiscriminator, StyleGAN2Discriminator
from vidrestore.train.losses import lazy_r1_loss
from vidrestore.train.trainer import Trainer

from train_support import tiny_config


@pytest.fixture(scope="module")
def trainer_and_batch(media_dir, tmp_path_factory):
    cfg = tiny_config(media_dir / "faces_hq" / "ffhq", tmp_path_factory.mktemp("run"))
    trainer = Trainer(cfg, device="cpu")
    ds = FaceDataset(cfg.data.train, cfg.network_g.out_size, cfg.degradation, cache=True)
    batch = torch.utils.data.default_collate([ds[0], ds[1]])
    return trainer, batch


def test_network_shapes():
    assert StyleGAN2Discriminator(32, narrow=0.125)(torch.randn(3, 3, 32, 32)).shape == (3, 1)
    out, feats = FacialComponentDiscriminator()(torch.randn(1, 3, 32, 32), return_feats=True)
    assert out.shape == (1, 1, 8, 8)
    assert [f.shape for f in feats] == [(1, 128, 16, 16), (1, 256, 8, 8)]
    arc = ResNetArcFace().eval()
    assert arc(torch.randn(1, 1, 128, 128)).shape == (1, 512)
    keys = set(arc.state_dict())
    assert {"conv1.weight", "bn1.running_mean", "prelu.weight", "layer1.0.bn0.weight", "layer2.0.downsample.0.weight",
            "bn4.weight", "fc5.weight", "bn5.running_var"} <= keys


def test_every_generator_loss_is_finite_with_gradients_on_its_inputs(trainer_and_batch):
    trainer, batch = trainer_and_batch
    trainer.iteration = 1
    output, rgbs = trainer.net_g(batch["lq"])
    output = output.detach().requires_grad_(True)
    rgbs = [r.detach().requires_grad_(True) for r in rgbs]
    terms = trainer.generator_losses(output, rgbs, batch["gt"], batch)
    expected = {"l_g_pix", "l_p_pyramid", "l_g_percep", "l_g_style", "l_g_gan", "l_g_gan_left_eye",
                "l_g_gan_right_eye", "l_g_gan_mouth", "l_g_comp_style_loss", "l_identity"}
    assert set(terms) == expected
    for name, value in terms.items():
        assert value.ndim == 0 and math.isfinite(float(value.detach())), name
        inputs = rgbs if name == "l_p_pyramid" else [output]
        grads = torch.autograd.grad(value, inputs, retain_graph=True, allow_unused=True)
        assert all(g is not None and g.abs().sum() > 0 for g in grads), f"{name} has no gradient"


def test_one_iteration_updates_every_trained_network(trainer_and_batch):
    trainer, batch = trainer_and_batch
    trainer.iteration = 1  # the next step is iteration 2: lazy R1 (every 2 in the small config) runs
    before = {name: [p.detach().clone() for p in net.parameters()]
              for name, net in [("g", trainer.net_g), ("d", trainer.net_d), *trainer.net_d_components.items()]}
    ema_before = [p.clone() for p in trainer.net_g_ema.parameters()]
    logs = trainer.train_step(batch)
    assert all(math.isfinite(v) for v in logs.values())
    assert "l_d_r1" in logs and {"l_d_left_eye", "l_d_right_eye", "l_d_mouth"} <= set(logs)
    nets = {"g": trainer.net_g, "d": trainer.net_d, **trainer.net_d_components}
    for name, net in nets.items():
        changed = sum(not torch.equal(a, b) for a, b in zip(before[name], net.parameters()))
        assert changed > 0, f"{name} did not change"
    assert any(not torch.equal(a, b) for a, b in zip(ema_before, trainer.net_g_ema.parameters()))
    assert all(not p.requires_grad for p in trainer.perceptual.parameters())
    assert all(not p.requires_grad for p in trainer.identity_net.parameters())


def test_lazy_r1_has_gradients_on_discriminator():
    net = StyleGAN2Discriminator(16, narrow=0.125)
    real = torch.randn(2, 3, 16, 16, requires_grad=True)
    loss = lazy_r1_loss(net(real), real, weight=10, every=16)
    loss.backward()
    value = float(loss.detach())
    assert math.isfinite(value) and value > 0
    assert all(p.grad is not None for p in net.parameters())


def test_discriminator_lr_and_betas_carry_the_lazy_r1_correction(trainer_and_batch):
    trainer, _ = trainer_and_batch
    every = trainer.cfg.losses.r1_every
    group = trainer.optimizers["d"].param_groups[0]
    ratio = every / (every + 1)
    assert group["initial_lr"] == pytest.approx(2e-3 * ratio)
    assert group["betas"] == pytest.approx((0.0, 0.99**ratio))
    assert trainer.optimizers["left_eye"].param_groups[0]["betas"] == (0.9, 0.99)
