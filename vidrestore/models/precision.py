"""Numeric precision for inference: fp32 on CPU, bfloat16 autocast on CUDA.

fp16 is not offered: activations of the StyleGAN2 decoder exceed its range and overflow to inf.
"""

from __future__ import annotations

import contextlib
from typing import ContextManager

import torch

from vidrestore.errors import VidrestoreError

PRECISIONS = ("fp32", "bf16")


def default_precision(device: torch.device) -> str:
    """bf16 where tensor cores make it fast (CUDA), fp32 elsewhere."""
    return "bf16" if device.type == "cuda" else "fp32"


def check_precision(precision: str) -> str:
    """Validate a precision name; fp16 gets an explanation rather than an overflowing model."""
    if precision == "fp16":
        raise VidrestoreError("fp16 is not supported: GFP-GAN activations overflow in fp16; use bf16")
    if precision not in PRECISIONS:
        raise VidrestoreError(f"unknown precision '{precision}': use one of {', '.join(PRECISIONS)}")
    return precision


def autocast(device: torch.device, precision: str) -> ContextManager:
    """The autocast context for running the restorer at `precision` on `device`."""
    if check_precision(precision) == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def prepare_for_inference(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """Move to the device in eval mode without gradients; channels_last on CUDA for the tensor cores."""
    model = model.to(device).eval().requires_grad_(False)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    return model
