"""Trainer: a short overfit lowers the loss, resume is bit-exact, checkpoints load for inference."""

from __future__ import annotations

import math

import pytest
import torch

from vidrestore.errors import VidrestoreError
from vidrestore.models import load_restorer
from vidrestore.train.dataset import FaceDataset, IterationBatchSampler
from vidrestore.train.trainer import TrainConfig, Trainer

from train_support import SMALL_CONFIG, all_tensors, cheap_losses, tiny_config


@pytest.fixture(scope="module")
def ffhq(media_dir):
    return media_dir / "faces_hq" / "ffhq"


def test_small_config_reads_and_rejects_unknown_keys(tmp_path):
    cfg = TrainConfig.from_yaml(SMALL_CONFIG)
    assert cfg.network_g.out_size == 32 and cfg.run.batch_size == 2
    assert TrainConfig().optim.betas_g == (0.0, 0.99)
    bad = tmp_path / "bad.yaml"
    bad.write_text("losses:\n  pixel_wieght: 1\n")
    with pytest.raises(VidrestoreError, match="pixel_wieght"):
        TrainConfig.from_yaml(bad)


def test_pixel_losses_fall_when_overfitting_one_batch(ffhq, tmp_path):
    cfg = tiny_config(ffhq, tmp_path, **cheap_losses(), gan_weight=0.0, use_components=False, pyramid_until=100)
    trainer = Trainer(cfg, device="cpu")  # the paper's learning rate
    batch = torch.utils.data.default_collate([FaceDataset(ffhq, 32, cfg.degradation, cache=True)[0]])
    losses = []
    for _ in range(20):
        logs = trainer.train_step(batch)
        losses.append(logs["l_g_pix"] + logs["l_p_pyramid"])
    assert min(losses[-3:]) < 0.8 * losses[0]


def _fit(cfg: TrainConfig, stop: int, dataset: FaceDataset, resume=None) -> Trainer:
    trainer = Trainer(cfg, device="cpu")
    if resume is not None:
        trainer.load(resume)
    trainer.fit(stop, dataset)
    return trainer


def test_resumed_run_matches_straight_run_bit_exactly(ffhq, tmp_path):
    cfg = tiny_config(ffhq, tmp_path / "straight", **cheap_losses())
    cfg.run.total_iter, cfg.run.save_every, cfg.run.val_every = 4, 2, 0
    dataset = FaceDataset(ffhq, 32, cfg.degradation, seed=cfg.run.seed, cache=True)
    straight = _fit(cfg, 4, dataset).state_dict()

    cfg.run.out_dir = str(tmp_path / "split")
    first = _fit(cfg, 2, dataset)
    assert first.iteration == 2 and (tmp_path / "split" / "latest.pth").is_file()
    torch.manual_seed(1234)  # a fresh process would not share the first half's global RNG
    resumed = _fit(cfg, 4, dataset, resume=tmp_path / "split" / "latest.pth").state_dict()

    assert resumed["iteration"] == straight["iteration"] == 4
    a, b = all_tensors(straight), all_tensors(resumed)
    assert a.keys() == b.keys()
    different = [k for k in a if not k.startswith("rng.") and not torch.equal(a[k], b[k])]
    assert different == []
    assert any(k.startswith("params_ema.") for k in a) and any(k.startswith("optimizers.left_eye") for k in a)


def test_training_checkpoint_loads_with_load_restorer(ffhq, tmp_path):
    cfg = tiny_config(ffhq, tmp_path, **cheap_losses(), use_components=False)
    trainer = Trainer(cfg, device="cpu")
    dataset = FaceDataset(ffhq, 32, cfg.degradation, cache=True)
    trainer.train_step(torch.utils.data.default_collate([dataset[0], dataset[1]]))
    path = trainer.save(tmp_path / "ckpt.pth")
    model = load_restorer(path)
    assert model.config == trainer.net_g_ema.config
    x = dataset[2]["lq"].unsqueeze(0)
    with torch.no_grad():
        expected, _ = trainer.net_g_ema(x, randomize_noise=False)
        got, _ = model(x, randomize_noise=False)
    assert torch.equal(expected, got)


def test_validation_keeps_the_best_checkpoint(ffhq, tmp_path):
    cfg = tiny_config(ffhq, tmp_path, **cheap_losses(), use_components=False)
    cfg.data.val_gt, cfg.data.val_limit = str(ffhq), 1
    cfg.run.total_iter, cfg.run.val_every, cfg.run.save_every = 1, 1, 0
    trainer = Trainer(cfg, device="cpu")
    trainer.fit(1, FaceDataset(ffhq, 32, cfg.degradation, cache=True))
    assert (tmp_path / "best.pth").is_file()
    assert torch.load(tmp_path / "best.pth", weights_only=True)["best_metric"] == pytest.approx(trainer.best_metric)


def test_resume_from_a_foreign_file_is_a_user_error(ffhq, tmp_path):
    junk = tmp_path / "junk.pth"
    torch.save({"params": {}}, junk)
    trainer = Trainer(tiny_config(ffhq, tmp_path, **cheap_losses(), use_components=False), device="cpu")
    with pytest.raises(VidrestoreError, match="not a vidrestore training checkpoint"):
        trainer.load(junk)


def _group_lr(trainer: Trainer, name: str) -> float:
    param = dict(trainer.net_g.named_parameters())[name]
    return next(g["lr"] for g in trainer.optimizers["g"].param_groups if any(p is param for p in g["params"]))


def test_generator_learning_rates_are_those_of_the_papers_equalized_layers(ffhq, tmp_path):
    trainer = Trainer(tiny_config(ffhq, tmp_path, **cheap_losses(), use_components=False), device="cpu")
    lr, lr_mlp, feat = trainer.cfg.optim.lr_g, trainer.cfg.optim.lr_mlp, trainer.cfg.network_g.num_style_feat
    conv = trainer.net_g.stylegan_decoder.style_conv1.modulated_conv.weight  # (1, out, in, 3, 3)
    assert _group_lr(trainer, "stylegan_decoder.style_conv1.modulated_conv.weight") == pytest.approx(
        lr / math.sqrt(conv.shape[2] * 9))
    assert _group_lr(trainer, "stylegan_decoder.style_mlp.1.weight") == pytest.approx(lr * lr_mlp / math.sqrt(feat))
    assert _group_lr(trainer, "stylegan_decoder.style_mlp.1.bias") == pytest.approx(lr * lr_mlp)
    assert _group_lr(trainer, "stylegan_decoder.constant_input.weight") == pytest.approx(lr)
    assert _group_lr(trainer, "stylegan_decoder.style_conv1.bias") == pytest.approx(lr)
    first = trainer.net_g.conv_body_first.weight
    assert _group_lr(trainer, "conv_body_first.weight") == pytest.approx(lr / math.sqrt(first[0].numel()))
    trainable = sum(len(g["params"]) for g in trainer.optimizers["g"].param_groups)
    assert trainable == sum(1 for p in trainer.net_g.parameters() if p.requires_grad)


def test_the_papers_learning_rates_train_stably_with_the_adversarial_losses(ffhq, tmp_path):
    cfg = tiny_config(ffhq, tmp_path, **cheap_losses())
    trainer = Trainer(cfg, device="cpu")
    dataset = FaceDataset(ffhq, 32, cfg.degradation, cache=True)
    sampler = IterationBatchSampler(len(dataset), 2, 0, 0, 30)
    for items in sampler:
        logs = trainer.train_step(torch.utils.data.default_collate([dataset[i] for i in items]))
        assert all(math.isfinite(v) for v in logs.values()), (trainer.iteration, logs)
        assert abs(logs["real_score"]) < 50 and abs(logs["fake_score"]) < 50, (trainer.iteration, logs)
        assert logs["l_g_pix"] < 1.0, (trainer.iteration, logs)  # outputs stay in range (pixel weight 0.1)


def test_a_diverging_run_stops_with_a_clear_error_and_saves_nothing_broken(ffhq, tmp_path, monkeypatch):
    cfg = tiny_config(ffhq, tmp_path, **cheap_losses(), use_components=False)
    cfg.run.total_iter, cfg.run.save_every, cfg.run.val_every = 3, 1, 0
    trainer = Trainer(cfg, device="cpu")
    losses = trainer.generator_losses

    def poisoned(*args, **kwargs):
        terms = losses(*args, **kwargs)
        if trainer.iteration == 2:
            terms["l_g_pix"] = terms["l_g_pix"] * float("nan")
        return terms

    monkeypatch.setattr(trainer, "generator_losses", poisoned)
    with pytest.raises(VidrestoreError, match="diverged at iteration 2: l_g_pix"):
        trainer.fit(3, FaceDataset(ffhq, 32, cfg.degradation, cache=True))
    assert (tmp_path / "net_g_1.pth").is_file() and not (tmp_path / "net_g_2.pth").exists()
    assert torch.load(tmp_path / "latest.pth", weights_only=True)["iteration"] == 1


def test_losses_and_validation_are_logged_to_tensorboard(ffhq, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg = tiny_config(ffhq, tmp_path, **cheap_losses(), use_components=False)
    cfg.data.val_gt, cfg.data.val_limit = str(ffhq), 1
    cfg.run.total_iter, cfg.run.val_every, cfg.run.save_every, cfg.run.log_every = 2, 2, 0, 1
    cfg.run.tensorboard = True
    trainer = Trainer(cfg, device="cpu")
    trainer.fit(2, FaceDataset(ffhq, 32, cfg.degradation, cache=True))
    trainer._tensorboard().flush()
    events = EventAccumulator(str(tmp_path / "tb"))
    events.Reload()
    tags = events.Tags()["scalars"]
    assert {"train/l_g_pix", "train/l_d", "val/psnr", "val/psnr_input"} <= set(tags)
    assert [e.step for e in events.Scalars("train/l_g_pix")] == [1, 2]
    assert events.Scalars("val/psnr")[0].value == pytest.approx(trainer.validate()["psnr"], rel=1e-6)
