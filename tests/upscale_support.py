"""Helpers of the upscaling and parsing tests: tiny random-weight Real-ESRGAN and ParseNet checkpoints
in the released files' key layouts."""

from __future__ import annotations

from pathlib import Path

import torch

from vidrestore.models.upsampler import random_realesrgan_state


def make_tiny_realesrgan(path: Path, scale: int = 2, num_feat: int = 8, num_block: int = 1, seed: int = 0) -> Path:
    """A small random-weight RRDBNet saved as the released files are: {'params_ema': state dict}. The growth
    channels stay the released 32 (spandrel, like BasicSR's loaders, takes them as fixed)."""
    torch.save({"params_ema": random_realesrgan_state(scale, num_feat, num_block, seed=seed)}, path)
    return path


def make_tiny_parsenet(path: Path, seed: int = 0, label: int | None = None) -> Path:
    """A small random-weight facexlib ParseNet (64x64 in and out) saved as the released file is: a bare state
    dict. With `label`, its class head is set to give that class for every pixel."""
    from facexlib.parsing.parsenet import ParseNet

    torch.manual_seed(seed)
    model = ParseNet(in_size=64, out_size=64, base_ch=32, parsing_ch=19, res_depth=2, ch_range=[32, 64])
    state = model.state_dict()
    if label is not None:
        state["out_mask_conv.conv2d.weight"].zero_()
        state["out_mask_conv.conv2d.bias"].zero_()
        state["out_mask_conv.conv2d.bias"][label] = 1.0
    torch.save(state, path)
    return path
