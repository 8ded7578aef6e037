"""GFP-GAN restorer: degradation-removal U-Net + StyleGAN2 facial prior joined by CS-SFT layers.

Same constructor keywords, state-dict layout and forward contract as the official GFPGANv1Clean;
the defaults are the configuration of the released GFPGAN v1.3 / v1.4 checkpoints.

Data flow for out_size = 2**L (L = 9 for 512):
  x (B,3,S,S) in [-1,1] -> 1x1 conv -> L-2 residual down blocks (S -> 4) -> 3x3 conv at 4x4
  -> final_linear -> W+ codes (B, 2L-2, F)
  4x4 features -> L-2 residual up blocks (4 -> S), each adding the U-Net skip of its resolution
  and emitting a (scale, shift) condition pair and an intermediate RGB
  -> StyleGAN2 decoder(W+, conditions) -> image (B,3,S,S), not clamped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from vidrestore.models.state_dict import read_state_dict
from vidrestore.models.stylegan2 import ModulatedConv2d, StyleGAN2GeneratorCSFT, decoder_channels


class ResBlock(nn.Module):
    """Residual block that halves ('down') or doubles ('up') the resolution with bilinear resizing."""

    def __init__(self, in_channels: int, out_channels: int, mode: str) -> None:
        super().__init__()
        if mode not in ("down", "up"):
            raise ValueError(f"mode must be 'down' or 'up', not {mode!r}")
        self.scale_factor = 0.5 if mode == "down" else 2.0
        self.conv1 = nn.Conv2d(in_channels, in_channels, 3, 1, 1)
        self.conv2 = nn.Conv2d(in_channels, out_channels, 3, 1, 1)
        self.skip = nn.Conv2d(in_channels, out_channels, 1, bias=False)

    def _resize(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, scale_factor=self.scale_factor, mode="bilinear", align_corners=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.leaky_relu(self.conv1(x), negative_slope=0.2)
        out = F.leaky_relu(self.conv2(self._resize(out)), negative_slope=0.2)
        return out + self.skip(self._resize(x))


def _condition_head(channels: int, out_channels: int) -> nn.Sequential:
    """Two 3x3 convs producing an SFT scale or shift map from U-Net features."""
    return nn.Sequential(
        nn.Conv2d(channels, channels, 3, 1, 1),
        nn.LeakyReLU(0.2, True),
        nn.Conv2d(channels, out_channels, 3, 1, 1),
    )


@dataclass(frozen=True)
class GFPGANConfig:
    """The configuration of a GFPGANv1Clean network, its constructor keywords; defaults = released v1.3/v1.4."""

    out_size: int = 512
    num_style_feat: int = 512
    channel_multiplier: float = 2
    num_mlp: int = 8
    input_is_latent: bool = True
    different_w: bool = True
    narrow: float = 1
    sft_half: bool = True

    def as_dict(self) -> dict[str, Any]:
        """The GFPGAN keywords alone (also of a subclass with more fields), as `GFPGAN.config` holds them."""
        return {f.name: getattr(self, f.name) for f in fields(GFPGANConfig)}


class GFPGAN(nn.Module):
    """GFP-GAN (GFPGANv1Clean architecture); defaults = released v1.3/v1.4 configuration."""

    def __init__(
        self,
        out_size: int = GFPGANConfig.out_size,
        num_style_feat: int = GFPGANConfig.num_style_feat,
        channel_multiplier: float = GFPGANConfig.channel_multiplier,
        decoder_load_path: str | Path | None = None,
        fix_decoder: bool = False,
        num_mlp: int = GFPGANConfig.num_mlp,
        input_is_latent: bool = GFPGANConfig.input_is_latent,
        different_w: bool = GFPGANConfig.different_w,
        narrow: float = GFPGANConfig.narrow,
        sft_half: bool = GFPGANConfig.sft_half,
    ) -> None:
        super().__init__()
        log_size = int(math.log2(out_size))
        if 2**log_size != out_size or out_size < 8:
            raise ValueError(f"out_size must be a power of two >= 8, not {out_size}")
        self.out_size = out_size
        self.log_size = log_size
        self.num_style_feat = num_style_feat
        self.input_is_latent = input_is_latent
        self.different_w = different_w
        # Recorded so that a model can be rebuilt (`GFPGAN(**model.config)`) or saved with its configuration.
        self.config = GFPGANConfig(out_size, num_style_feat, channel_multiplier, num_mlp, input_is_latent,
                                   different_w, narrow, sft_half).as_dict()
        channels = decoder_channels(channel_multiplier, narrow * 0.5)  # the U-Net is half as wide
        levels = range(3, log_size + 1)  # resolutions 8 .. out_size

        self.conv_body_first = nn.Conv2d(3, channels[out_size], 1)
        self.conv_body_down = nn.ModuleList()
        in_channels = channels[out_size]
        for i in range(log_size, 2, -1):
            self.conv_body_down.append(ResBlock(in_channels, channels[2 ** (i - 1)], mode="down"))
            in_channels = channels[2 ** (i - 1)]
        self.final_conv = nn.Conv2d(in_channels, channels[4], 3, 1, 1)

        self.conv_body_up = nn.ModuleList()
        in_channels = channels[4]
        for i in levels:
            self.conv_body_up.append(ResBlock(in_channels, channels[2**i], mode="up"))
            in_channels = channels[2**i]
        self.toRGB = nn.ModuleList(nn.Conv2d(channels[2**i], 3, 1) for i in levels)

        num_latent = log_size * 2 - 2
        self.final_linear = nn.Linear(channels[4] * 4 * 4, num_latent * num_style_feat if different_w else num_style_feat)

        self.stylegan_decoder = StyleGAN2GeneratorCSFT(
            out_size=out_size,
            num_style_feat=num_style_feat,
            num_mlp=num_mlp,
            channel_multiplier=channel_multiplier,
            narrow=narrow,
            sft_half=sft_half,
        )
        if decoder_load_path:
            self.stylegan_decoder.load_state_dict(read_state_dict(decoder_load_path, nested=("params_ema",)))
        if fix_decoder:
            for param in self.stylegan_decoder.parameters():
                param.requires_grad = False

        sft_channels = (lambda c: c) if sft_half else (lambda c: 2 * c)
        self.condition_scale = nn.ModuleList(_condition_head(channels[2**i], sft_channels(channels[2**i])) for i in levels)
        self.condition_shift = nn.ModuleList(_condition_head(channels[2**i], sft_channels(channels[2**i])) for i in levels)

    @classmethod
    def from_config(cls, config: GFPGANConfig, **options: Any) -> GFPGAN:
        """A network of `config`; `options`: `decoder_load_path`, `fix_decoder`."""
        return cls(**config.as_dict(), **options)

    def set_grouped_modconv(self, grouped: bool) -> None:
        """Switch every modulated conv between the batched form (default) and the grouped reference form."""
        for module in self.modules():
            if isinstance(module, ModulatedConv2d):
                module.grouped = grouped

    def forward(
        self,
        x: torch.Tensor,
        return_latents: bool = False,
        return_rgb: bool = True,
        randomize_noise: bool = True,
        **kwargs: object,
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Restore faces x (B,3,S,S) in [-1,1]; returns (image, [rgb_8, rgb_16, ..., rgb_S])."""
        conditions: list[torch.Tensor] = []
        out_rgbs: list[torch.Tensor] = []
        unet_skips: list[torch.Tensor] = []

        feat = F.leaky_relu(self.conv_body_first(x), negative_slope=0.2)
        for down in self.conv_body_down:
            feat = down(feat)
            unet_skips.insert(0, feat)  # ordered 4x4 first
        feat = F.leaky_relu(self.final_conv(feat), negative_slope=0.2)  # (B, C4, 4, 4)

        style_code = self.final_linear(feat.flatten(1))
        if self.different_w:
            style_code = style_code.view(style_code.size(0), -1, self.num_style_feat)  # (B, 2L-2, F)

        for skip, up, scale_head, shift_head, to_rgb in zip(
            unet_skips, self.conv_body_up, self.condition_scale, self.condition_shift, self.toRGB
        ):
            feat = up(feat + skip)
            conditions.append(scale_head(feat))
            conditions.append(shift_head(feat))
            if return_rgb:
                out_rgbs.append(to_rgb(feat))

        image, _ = self.stylegan_decoder(
            [style_code],
            conditions,
            input_is_latent=self.input_is_latent,
            randomize_noise=randomize_noise,
            return_latents=return_latents,
        )
        return image, out_rgbs
