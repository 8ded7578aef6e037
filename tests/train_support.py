"""Helpers for the training tests: tiny CPU configurations on the shared HQ faces."""

from __future__ import annotations

from pathlib import Path

import torch

from vidrestore.train.trainer import TrainConfig

REPO_ROOT = Path(__file__).resolve().parents[1]
SMALL_CONFIG = REPO_ROOT / "configs" / "train_small.yaml"


def tiny_config(faces: Path, out_dir: Path, **losses: object) -> TrainConfig:
    """train_small.yaml on `faces`, writing to out_dir, with the given loss settings overridden."""
    cfg = TrainConfig.from_yaml(SMALL_CONFIG)
    cfg.data.train = str(faces)
    cfg.data.val_gt = None
    cfg.run.out_dir = str(out_dir)
    for key, value in losses.items():
        setattr(cfg.losses, key, value)
    return cfg


def cheap_losses() -> dict[str, object]:
    """No VGG19 and no ArcFace: the GAN, component and pixel paths only (fast on CPU)."""
    return dict(perceptual_weight=0.0, style_weight=0.0, identity_weight=0.0)


def all_tensors(state: object, prefix: str = "") -> dict[str, torch.Tensor]:
    """Every tensor of a nested checkpoint dict, by dotted path."""
    found: dict[str, torch.Tensor] = {}
    if isinstance(state, torch.Tensor):
        found[prefix] = state
    elif isinstance(state, dict):
        for key, value in state.items():
            found.update(all_tensors(value, f"{prefix}.{key}" if prefix else str(key)))
    elif isinstance(state, (list, tuple)):
        for i, value in enumerate(state):
            found.update(all_tensors(value, f"{prefix}.{i}"))
    return found


def save_tiny_restorer(path: Path) -> Path:
    """A 32-pixel GFP-GAN with seeded random weights, saved as a released file is (`params_ema`)."""
    from vidrestore.models import GFPGAN

    torch.manual_seed(0)
    net = GFPGAN(out_size=32, num_style_feat=32, channel_multiplier=1, num_mlp=2, narrow=0.125)
    torch.save({"params_ema": net.state_dict()}, path)
    return path
