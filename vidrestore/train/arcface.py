"""ResNetArcFace (IRBlock, layers [2,2,2,2], no SE): the identity network of GFP-GAN's identity loss.

Parameter names match arcface_resnet18.pth (conv1, bn1, prelu, layer1..4, bn4, fc5, bn5), so the
released file loads strictly. Input: gray faces (B, 1, 128, 128); output: 512-d embeddings.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from vidrestore.errors import CheckpointError, error_line
from vidrestore.models.state_dict import read_state_dict

log = logging.getLogger(__name__)

ARCFACE_INPUT_SIZE = 128


def _conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)


class IRBlock(nn.Module):
    """Improved residual block: BN, conv, BN, PReLU, conv (strided), BN, plus the (projected) input."""

    def __init__(self, in_channels: int, channels: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.bn0 = nn.BatchNorm2d(in_channels)
        self.conv1 = _conv3x3(in_channels, in_channels)
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.prelu = nn.PReLU()
        self.conv2 = _conv3x3(in_channels, channels, stride)
        self.bn2 = nn.BatchNorm2d(channels)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.prelu(self.bn1(self.conv1(self.bn0(x))))
        out = self.bn2(self.conv2(out))
        residual = self.downsample(x) if self.downsample is not None else x
        return self.prelu(out + residual)


class ResNetArcFace(nn.Module):
    """ArcFace ResNet-18 variant of GFP-GAN (IRBlock [2,2,2,2], use_se False)."""

    def __init__(self, layers: tuple[int, int, int, int] = (2, 2, 2, 2)) -> None:
        super().__init__()
        self._in_channels = 64
        self.conv1 = nn.Conv2d(1, 64, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.prelu = nn.PReLU()
        self.maxpool = nn.MaxPool2d(2, 2)
        self.layer1 = self._make_layer(64, layers[0])
        self.layer2 = self._make_layer(128, layers[1], stride=2)
        self.layer3 = self._make_layer(256, layers[2], stride=2)
        self.layer4 = self._make_layer(512, layers[3], stride=2)
        self.bn4 = nn.BatchNorm2d(512)
        self.dropout = nn.Dropout()
        self.fc5 = nn.Linear(512 * 8 * 8, 512)
        self.bn5 = nn.BatchNorm1d(512)
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                nn.init.xavier_normal_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def _make_layer(self, channels: int, blocks: int, stride: int = 1) -> nn.Sequential:
        downsample = None
        if stride != 1 or self._in_channels != channels:
            downsample = nn.Sequential(
                nn.Conv2d(self._in_channels, channels, 1, stride, bias=False), nn.BatchNorm2d(channels)
            )
        layers = [IRBlock(self._in_channels, channels, stride, downsample)]
        self._in_channels = channels
        layers += [IRBlock(channels, channels) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Embeddings (B, 512) of gray faces (B, 1, 128, 128)."""
        x = self.maxpool(self.prelu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = self.dropout(self.bn4(x))
        return self.bn5(self.fc5(x.flatten(1)))


def gray_for_identity(x: torch.Tensor) -> torch.Tensor:
    """RGB [-1,1] (B,3,H,W) -> the identity net's input: gray (0.2989 R + 0.5870 G + 0.1140 B), 128x128 bilinear."""
    gray = 0.2989 * x[:, 0:1] + 0.5870 * x[:, 1:2] + 0.1140 * x[:, 2:3]
    return F.interpolate(gray, size=(ARCFACE_INPUT_SIZE, ARCFACE_INPUT_SIZE), mode="bilinear", align_corners=False)


def load_arcface(path: str | Path | None = None) -> ResNetArcFace:
    """A frozen ResNetArcFace in eval mode, with weights from `path` when given (random weights otherwise)."""
    net = ResNetArcFace()
    if path is not None:
        try:
            net.load_state_dict(read_state_dict(path, nested=("params",)), strict=True)
        except RuntimeError as exc:
            raise CheckpointError(f"{path} is not an arcface_resnet18 state dict: {error_line(exc)}") from None
    net.eval()
    for param in net.parameters():
        param.requires_grad = False
    return net


def find_identity_net(name_or_path: str | None, device: torch.device) -> ResNetArcFace | None:
    """ArcFace with its released weights when they are present locally (never downloaded), else None (what
    needs it is skipped); weights asked for by name or path must be there (WeightsError)."""
    from vidrestore.errors import WeightsError
    from vidrestore.weights import find_weights

    try:
        path = find_weights(name_or_path or "arcface_resnet18", offline=True)
    except WeightsError as exc:
        if name_or_path:
            raise
        log.info("no ArcFace weights, identity not measured: %s", str(exc).split(";")[0])
        return None
    return load_arcface(path).to(device)
