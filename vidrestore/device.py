"""Device selection: the user's `--device` string to a torch.device, with clear errors."""

from __future__ import annotations

import torch

from vidrestore.errors import VidrestoreError


def resolve_device(name: str | None = "auto") -> torch.device:
    """Turn 'auto', 'cpu', 'cuda' or 'cuda:N' into a torch.device that exists on this machine."""
    name = (name or "auto").strip().lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise VidrestoreError(f"unknown device '{name}': use cpu, cuda or cuda:N") from None
    if device.type == "cpu":
        return device
    if device.type != "cuda":
        raise VidrestoreError(f"unsupported device '{name}': use cpu, cuda or cuda:N")
    if not torch.cuda.is_available():
        raise VidrestoreError(f"device '{name}' was asked for, but CUDA is not available on this machine")
    index = device.index if device.index is not None else 0
    if index >= torch.cuda.device_count():
        raise VidrestoreError(
            f"device '{name}' does not exist: this machine has {torch.cuda.device_count()} CUDA device(s)"
        )
    return torch.device("cuda", index)
