"""Loading facexlib's ParseNet face parser, with its configuration read off the checkpoint's tensors.

The released `parsing_parsenet.pth` (facexlib v0.2.2) is a bare state dict of
`ParseNet(in_size=512, out_size=512, parsing_ch=19)`: an encoder of residual down blocks to 32x32
features, 10 residual body blocks, residual up blocks back to the output size, and two heads (19-class
logits, and an image nobody uses). The network itself is facexlib's, as the detector's RetinaFace is;
only the sizes are read here, so that smaller test checkpoints of the same layout load too.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass

import torch

from vidrestore.errors import CheckpointError
from vidrestore.models.state_dict import read_state_dict

log = logging.getLogger(__name__)

MIN_FEAT_SIZE = 32  # facexlib's default: the encoder halves the input down to 32x32 features
_REQUIRED_KEYS = ("encoder.0.conv2d.weight", "out_mask_conv.conv2d.weight", "body.0.conv1.conv2d.weight")


@dataclass(frozen=True)
class ParseNetConfig:
    """ParseNet's constructor arguments (facexlib names); the released file is in_size = out_size = 512."""

    in_size: int = 512
    out_size: int = 512
    base_ch: int = 64
    parsing_ch: int = 19
    res_depth: int = 10
    ch_range: tuple[int, int] = (32, 256)


def _count_blocks(state: Mapping[str, torch.Tensor], part: str) -> int:
    """Residual blocks of one part (encoder, body, decoder): the distinct indices with a conv1."""
    regex = re.compile(rf"{part}\.(\d+)\.conv1\.conv2d\.weight$")
    return len({m.group(1) for key in state if (m := regex.match(key))})


def infer_parsenet_config(state: Mapping[str, torch.Tensor]) -> ParseNetConfig:
    """Every ParseNet size off the tensor shapes: down/up steps from the block counts, channels from the weights."""
    missing = [key for key in _REQUIRED_KEYS if key not in state]
    if missing:
        raise CheckpointError(f"not a ParseNet face parser checkpoint: missing {', '.join(missing)}")
    down, up = _count_blocks(state, "encoder"), _count_blocks(state, "decoder")
    channels = [int(v.shape[0]) for k, v in state.items() if k.endswith("conv1.conv2d.weight")]
    channels.append(int(state["out_mask_conv.conv2d.weight"].shape[1]))
    return ParseNetConfig(
        in_size=MIN_FEAT_SIZE * 2**down,
        out_size=MIN_FEAT_SIZE * 2**up,
        base_ch=int(state["encoder.0.conv2d.weight"].shape[0]),
        parsing_ch=int(state["out_mask_conv.conv2d.weight"].shape[0]),
        res_depth=_count_blocks(state, "body"),
        ch_range=(min(channels), max(channels)),
    )


def build_parsenet(state: Mapping[str, torch.Tensor], source: str = "state dict") -> torch.nn.Module:
    """facexlib's ParseNet for `state`, loaded strictly; a layout that does not fit is a CheckpointError."""
    from facexlib.parsing.parsenet import ParseNet

    config = infer_parsenet_config(state)
    values = asdict(config)
    values["ch_range"] = list(config.ch_range)
    model = ParseNet(min_feat_size=MIN_FEAT_SIZE, **values)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{source} does not fit a ParseNet {config}: {str(exc)[:300]}") from None
    model.config = config
    return model


def load_parsenet(path: str | os.PathLike, device: torch.device | str = "cpu") -> torch.nn.Module:
    """A ParseNet checkpoint file (a bare state dict, or under `params`/`state_dict`) in eval mode on `device`."""
    state = read_state_dict(path, nested=("params_ema", "params", "state_dict"))
    model = build_parsenet(state, source=str(path))
    log.debug("loaded face parser %s with %s", path, model.config)
    return model.eval().requires_grad_(False).to(device)
