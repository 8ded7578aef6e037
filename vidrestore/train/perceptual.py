"""Perceptual and Gram-matrix style losses on VGG19 features (BasicSR's PerceptualLoss as GFP-GAN uses it).

The feature extractor is torchvision's VGG19 `features` stack (same layer indices, so torchvision's
vgg19-dcbf9e7d.pth loads into it), cut after conv5_4, frozen. Features are taken before the ReLU.
Inputs in [-1,1] are mapped to [0,1] and normalised with the ImageNet mean and std.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.vgg import cfgs, make_layers

from vidrestore.errors import CheckpointError
from vidrestore.models.state_dict import read_state_dict

# Pre-ReLU conv layers used by GFP-GAN and their weights (specs/gfpgan.md 3.4).
DEFAULT_LAYER_WEIGHTS = {"conv1_2": 0.1, "conv2_2": 0.1, "conv3_4": 1.0, "conv4_4": 1.0, "conv5_4": 1.0}
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def vgg19_conv_indices() -> dict[str, int]:
    """Index of each convN_M layer in torchvision's VGG19 `features` Sequential."""
    indices, block, conv, index = {}, 1, 0, 0
    for value in cfgs["E"]:
        if value == "M":
            block, conv = block + 1, 0
            index += 1
        else:
            conv += 1
            indices[f"conv{block}_{conv}"] = index
            index += 2  # conv, relu
    return indices


def gram_matrix(x: torch.Tensor) -> torch.Tensor:
    """Gram matrix F F^T / (c h w) of features (B, C, H, W) -> (B, C, C)."""
    b, c, h, w = x.shape
    feats = x.reshape(b, c, h * w)
    return feats @ feats.transpose(1, 2) / (c * h * w)


class VGG19Features(nn.Module):
    """Frozen VGG19 returning the pre-ReLU outputs of the named conv layers."""

    def __init__(self, layers: tuple[str, ...], weights_path: str | Path | None = None) -> None:
        super().__init__()
        indices = vgg19_conv_indices()
        unknown = [name for name in layers if name not in indices]
        if unknown:
            raise ValueError(f"unknown VGG19 layers {unknown}; known: {list(indices)}")
        self.layer_at = {indices[name]: name for name in layers}
        self.features = make_layers(cfgs["E"], batch_norm=False)[: max(self.layer_at) + 1]
        if weights_path is not None:
            self._load(Path(weights_path))
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.eval()
        for param in self.parameters():
            param.requires_grad = False

    def _load(self, path: Path) -> None:
        """Load the `features.*` tensors of a torchvision VGG19 state dict."""
        state = read_state_dict(path, nested=())
        own = self.features.state_dict()
        picked = {k: state[f"features.{k}"] for k in own if f"features.{k}" in state}
        if len(picked) != len(own):
            raise CheckpointError(f"{path} is not a torchvision VGG19 state dict (features.* tensors missing)")
        self.features.load_state_dict(picked, strict=True)

    def train(self, mode: bool = True) -> "VGG19Features":
        """Always stays in eval mode: it is a fixed feature extractor."""
        return super().train(False)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Features of images in [-1, 1], by layer name."""
        x = ((x + 1) / 2 - self.mean) / self.std
        out = {}
        for index, layer in enumerate(self.features):
            x = layer(x)
            if index in self.layer_at:
                out[self.layer_at[index]] = x.clone() if index + 1 < len(self.features) else x
        return out


class PerceptualLoss(nn.Module):
    """Weighted L1 of VGG19 features (perceptual) and of their Gram matrices (style); returns both."""

    def __init__(
        self,
        layer_weights: dict[str, float] | None = None,
        perceptual_weight: float = 1.0,
        style_weight: float = 50.0,
        weights_path: str | Path | None = None,
    ) -> None:
        super().__init__()
        self.layer_weights = dict(layer_weights or DEFAULT_LAYER_WEIGHTS)
        self.perceptual_weight = perceptual_weight
        self.style_weight = style_weight
        self.vgg = VGG19Features(tuple(self.layer_weights), weights_path)

    def forward(self, output: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(perceptual loss, style loss) of output against target (target features are detached)."""
        out_feats = self.vgg(output)
        with torch.no_grad():
            target_feats = self.vgg(target.detach())
        percep = output.new_zeros(())
        style = output.new_zeros(())
        for name, weight in self.layer_weights.items():
            a, b = out_feats[name].float(), target_feats[name].float()
            percep = percep + F.l1_loss(a, b) * weight
            style = style + F.l1_loss(gram_matrix(a), gram_matrix(b)) * weight
        return percep * self.perceptual_weight, style * self.style_weight
