"""Discriminators of GFP-GAN training: the StyleGAN2 discriminator and the facial component discriminator.

Bilinear resampling (as our generator), leaky ReLU 0.2 with the StyleGAN2 gain sqrt(2), and
equalized-learning-rate layers as in the paper's discriminators: weights stored N(0, 1) and scaled by
1/sqrt(fan_in) at run time, so Adam at the paper's learning rate moves every layer by the same relative
amount (with pre-scaled weights a 2e-3 step is 5-15% of a weight and training diverges).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from vidrestore.models.stylegan2 import decoder_channels

ACT_GAIN = math.sqrt(2.0)


def downsample2x(x: torch.Tensor) -> torch.Tensor:
    """Bilinear x0.5 resize (align_corners=False), the resampler of the clean architecture."""
    return F.interpolate(x, scale_factor=0.5, mode="bilinear", align_corners=False)


class EqualConv2d(nn.Module):
    """Convolution with an equalized learning rate: N(0,1) weights times 1/sqrt(fan_in) at run time."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, bias: bool = True) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.scale = 1 / math.sqrt(in_channels * kernel_size**2)
        self.padding = kernel_size // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.scale, self.bias, padding=self.padding)


class EqualLinear(nn.Module):
    """Linear layer with an equalized learning rate."""

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_features, in_features))
        self.bias = nn.Parameter(torch.zeros(out_features))
        self.scale = 1 / math.sqrt(in_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight * self.scale, self.bias)


class ConvLayer(nn.Module):
    """Optional bilinear x0.5 downsampling, an equalized convolution, and leaky ReLU x sqrt(2) when `activate`."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, downsample: bool = False,
                 bias: bool = True, activate: bool = True) -> None:
        super().__init__()
        self.downsample = downsample
        self.activate = activate
        self.conv = EqualConv2d(in_channels, out_channels, kernel_size, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.downsample:
            x = downsample2x(x)
        x = self.conv(x)
        return F.leaky_relu(x, 0.2) * ACT_GAIN if self.activate else x


class DiscriminatorBlock(nn.Module):
    """Residual block halving the resolution: two 3x3 convs beside a 1x1 skip, summed / sqrt(2)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv1 = ConvLayer(in_channels, in_channels, 3)
        self.conv2 = ConvLayer(in_channels, out_channels, 3, downsample=True)
        self.skip = ConvLayer(in_channels, out_channels, 1, downsample=True, bias=False, activate=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.conv2(self.conv1(x)) + self.skip(x)) / math.sqrt(2.0)


def minibatch_stddev(x: torch.Tensor, group_size: int = 4, num_features: int = 1) -> torch.Tensor:
    """Append the per-group standard deviation of features as extra channels (StyleGAN2)."""
    b, c, h, w = x.shape
    group = min(b, group_size)
    while b % group:
        group -= 1
    y = x.view(group, -1, num_features, c // num_features, h, w)
    y = torch.sqrt(y.var(dim=0, unbiased=False) + 1e-8)
    y = y.mean(dim=(2, 3, 4), keepdim=True).squeeze(2)
    y = y.repeat(group, 1, h, w)
    return torch.cat([x, y], dim=1)


class StyleGAN2Discriminator(nn.Module):
    """StyleGAN2 discriminator: 1x1 conv, residual blocks down to 4x4, minibatch stddev, conv, two linears."""

    def __init__(self, out_size: int = 512, channel_multiplier: float = 1, narrow: float = 1,
                 stddev_group: int = 4) -> None:
        super().__init__()
        channels = decoder_channels(channel_multiplier, narrow)
        log_size = int(math.log2(out_size))
        if 2**log_size != out_size or out_size < 8:
            raise ValueError(f"out_size must be a power of two >= 8, not {out_size}")
        self.stddev_group = stddev_group
        self.conv_first = ConvLayer(3, channels[out_size], 1)
        blocks = []
        in_channels = channels[out_size]
        for i in range(log_size, 2, -1):
            blocks.append(DiscriminatorBlock(in_channels, channels[2 ** (i - 1)]))
            in_channels = channels[2 ** (i - 1)]
        self.conv_body = nn.Sequential(*blocks)
        self.final_conv = ConvLayer(in_channels + 1, channels[4], 3)
        self.final_linear1 = EqualLinear(channels[4] * 4 * 4, channels[4])
        self.final_linear2 = EqualLinear(channels[4], 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Realness logits (B, 1) of images (B, 3, S, S) in [-1, 1]."""
        out = self.conv_body(self.conv_first(x))
        out = self.final_conv(minibatch_stddev(out, self.stddev_group))
        out = F.leaky_relu(self.final_linear1(out.flatten(1)), 0.2) * ACT_GAIN
        return self.final_linear2(out)


class FacialComponentDiscriminator(nn.Module):
    """VGG-style patch discriminator of an eye or mouth crop; output at 1/4 resolution."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = ConvLayer(3, 64, 3)
        self.conv2 = ConvLayer(64, 128, 3, downsample=True)
        self.conv3 = ConvLayer(128, 128, 3)
        self.conv4 = ConvLayer(128, 256, 3, downsample=True)
        self.conv5 = ConvLayer(256, 256, 3)
        self.final_conv = ConvLayer(256, 1, 3, activate=False)

    def forward(self, x: torch.Tensor, return_feats: bool = False) -> tuple[torch.Tensor, list[torch.Tensor] | None]:
        """Patch logits, and with return_feats the conv3 (128 ch) and conv5 (256 ch) features for the style loss."""
        feat3 = self.conv3(self.conv2(self.conv1(x)))
        feat5 = self.conv5(self.conv4(feat3))
        out = self.final_conv(feat5)
        return out, ([feat3, feat5] if return_feats else None)
