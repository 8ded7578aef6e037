"""Loading GFP-GAN checkpoints safely, with the configuration read off the tensors.

A checkpoint is a `params_ema` dict (released files), a `params` dict (training snapshots) or a bare
state dict; `module.` prefixes (DataParallel) are stripped. Files are read by models/state_dict.py
with `weights_only=True`: a pickle that would run code is refused, never executed.
"""

from __future__ import annotations

import logging
import os
import re
from typing import Any, Mapping

import torch

from vidrestore.errors import CheckpointError
from vidrestore.models.gfpgan import GFPGAN, GFPGANConfig
from vidrestore.models.state_dict import GENERATOR_KEYS, read_state_dict

log = logging.getLogger(__name__)

# Keys whose presence identifies the clean GFP-GAN layout.
_REQUIRED_KEYS = (
    "conv_body_first.weight",
    "final_linear.weight",
    "stylegan_decoder.constant_input.weight",
    "stylegan_decoder.style_conv1.modulated_conv.modulation.weight",
    "condition_scale.0.0.weight",
    "condition_scale.0.2.weight",
)


def read_checkpoint(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a checkpoint file and return its generator state dict (EMA weights preferred)."""
    return read_state_dict(path, GENERATOR_KEYS)


def infer_config(state: Mapping[str, torch.Tensor], *, input_is_latent: bool = True) -> dict[str, Any]:
    """Read every GFP-GAN configuration value off the tensor shapes of a state dict.

    `input_is_latent` cannot be seen in the tensors (the style MLP weights are stored either way);
    the released models use True.
    """
    _check_architecture(state)
    num_down = _count_indexed(state, r"conv_body_down\.(\d+)\.conv1\.weight")
    out_size = 2 ** (num_down + 2)
    num_style_feat = state["stylegan_decoder.style_conv1.modulated_conv.modulation.weight"].shape[1]
    num_mlp = _count_indexed(state, r"stylegan_decoder\.style_mlp\.(\d+)\.weight")
    narrow = state["stylegan_decoder.constant_input.weight"].shape[1] / 512
    num_latent = 2 * (num_down + 2) - 2
    linear_out = state["final_linear.weight"].shape[0]
    if linear_out == num_latent * num_style_feat:
        different_w = True
    elif linear_out == num_style_feat:
        different_w = False
    else:
        raise CheckpointError(
            f"final_linear has {linear_out} outputs; expected {num_latent * num_style_feat} or {num_style_feat}"
        )
    sft_half = state["condition_scale.0.2.weight"].shape[0] == state["condition_scale.0.0.weight"].shape[0]
    return GFPGANConfig(
        out_size=out_size,
        num_style_feat=int(num_style_feat),
        channel_multiplier=_infer_channel_multiplier(state, out_size, narrow),
        num_mlp=num_mlp,
        input_is_latent=input_is_latent,
        different_w=different_w,
        narrow=narrow,
        sft_half=sft_half,
    ).as_dict()


def _count_indexed(state: Mapping[str, torch.Tensor], pattern: str) -> int:
    regex = re.compile(pattern + "$")
    return sum(1 for key in state if regex.match(key))


def _infer_channel_multiplier(state: Mapping[str, torch.Tensor], out_size: int, narrow: float) -> float:
    """The multiplier scales decoder channels from 64x64 up; below that it has no effect (use 1)."""
    if out_size < 64:
        return 1
    # style_convs.6 is the upsampling conv into 64x64 (8x8 is index 0).
    channels_64 = state["stylegan_decoder.style_convs.6.modulated_conv.weight"].shape[1]
    multiplier = channels_64 / (256 * narrow)
    return int(multiplier) if float(multiplier).is_integer() else multiplier


def _check_architecture(state: Mapping[str, torch.Tensor]) -> None:
    """Refuse state dicts of other architectures with a message that says which one it looks like."""
    missing = [key for key in _REQUIRED_KEYS if key not in state]
    if not missing:
        return
    if "conv_body_first.0.weight" in state or "stylegan_decoder.style_conv1.activate.bias" in state:
        raise CheckpointError(
            "this is an original/bilinear GFPGAN (v1 or v1.2-bilinear) checkpoint; only the clean "
            "architecture (GFPGAN v1.2-clean, v1.3, v1.4) is supported"
        )
    if any(key.startswith(("encoder.", "quantize.")) for key in state):
        raise CheckpointError("this looks like a RestoreFormer or other VQ model, not a GFP-GAN checkpoint")
    raise CheckpointError(f"not a GFP-GAN checkpoint: missing {', '.join(missing[:3])}")


def build_from_state_dict(
    state: Mapping[str, torch.Tensor], *, input_is_latent: bool = True, source: str = "state dict"
) -> GFPGAN:
    """Construct a GFPGAN for `state` and load it strictly; shape mismatches become CheckpointError."""
    config = infer_config(state, input_is_latent=input_is_latent)
    with torch.device("meta"):
        model = GFPGAN(**config)
    expected = model.state_dict()
    problems = [f"missing {k}" for k in expected if k not in state]
    problems += [f"unexpected {k}" for k in state if k not in expected]
    problems += [
        f"{k} has shape {tuple(state[k].shape)}, expected {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
    ]
    if problems:
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        raise CheckpointError(f"{source} does not match a GFP-GAN {config}: {'; '.join(problems[:3])}{more}")
    model = model.to_empty(device="cpu")
    model.load_state_dict(state, strict=True)
    return model


def load_restorer(
    path: str | os.PathLike,
    *,
    input_is_latent: bool = True,
    device: str | torch.device = "cpu",
) -> GFPGAN:
    """Load a GFP-GAN checkpoint file, configuration inferred from its tensors, in eval mode."""
    state = read_checkpoint(path)
    model = build_from_state_dict(state, input_is_latent=input_is_latent, source=str(path))
    log.debug("loaded %s with %s", path, model.config)
    return model.to(device).eval()
