"""Reading state dicts from checkpoint files safely: the one reader for every network's weights.

Files are loaded with `weights_only=True`: a pickle that would run code is refused, never executed.
The tensors may sit under a key (`params_ema`, `params`, `state_dict`); `module.` prefixes
(DataParallel) are stripped. Every failure is a CheckpointError naming the file.
"""

from __future__ import annotations

import os
import pickle
import warnings
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch

from vidrestore.errors import CheckpointError, error_line

GENERATOR_KEYS = ("params_ema", "params")  # EMA weights preferred, as the released files hold them


def load_weights_only(path: str | os.PathLike) -> Any:
    """The object in a checkpoint file, loaded on the CPU without unpickling anything but tensors and containers."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint {path} is empty (0 bytes)")
    try:
        with warnings.catch_warnings():  # junk files make the unpickler warn before it fails
            warnings.simplefilter("ignore", UserWarning)
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "weights only load failed" in str(exc).lower() or "unsupported global" in str(exc).lower():
            raise CheckpointError(
                f"{path} contains Python objects other than tensors; refusing to unpickle it "
                "(it could run arbitrary code). Re-save the state dict alone."
            ) from None
        raise CheckpointError(f"{path} is not a PyTorch checkpoint ({error_line(exc, 200)})") from None
    except Exception as exc:  # the unpickler raises anything on junk bytes: all mean "not loadable"
        raise CheckpointError(f"{path} is truncated or not a PyTorch checkpoint ({error_line(exc, 200)})") from None


def read_state_dict(path: str | os.PathLike, nested: Sequence[str] = GENERATOR_KEYS) -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint file: the first `nested` key holding a dict, else the whole dict; no `module.`."""
    obj = load_weights_only(path)
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{path} does not hold a state dict (found {type(obj).__name__})")
    for key in nested:
        if key in obj and isinstance(obj[key], Mapping):
            obj = obj[key]
            break
    state = {}
    for name, value in obj.items():
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(f"{path} is not a model state dict: entry '{name}' is a {type(value).__name__}")
        state[name.removeprefix("module.")] = value
    if not state:
        raise CheckpointError(f"{path} holds an empty state dict")
    return state
