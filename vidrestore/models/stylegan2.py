"""StyleGAN2 decoder of GFP-GAN ("clean" variant: no custom CUDA ops, bilinear resampling).

Checkpoint-compatible with the decoder of the released GFPGAN v1.2-v1.4 models
(`stylegan_decoder.*` keys). Weights of the clean variant are stored pre-scaled: there is no
equalized-learning-rate multiplier at run time.

Modulated convolutions have two forms that compute the same function:
- batched (default): scale the input by the style, run one convolution shared by the whole batch,
  multiply the output by the demodulation coefficients. One dense conv: fast for any batch size.
- grouped (reference, what the official code does): build one modulated weight per sample and run
  a grouped convolution with groups = batch.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

DEMOD_EPS = 1e-8


def decoder_channels(channel_multiplier: float, narrow: float) -> dict[int, int]:
    """Channels of the StyleGAN2 decoder at each resolution (the U-Net uses the same with narrow/2)."""
    return {
        4: int(512 * narrow),
        8: int(512 * narrow),
        16: int(512 * narrow),
        32: int(512 * narrow),
        64: int(256 * channel_multiplier * narrow),
        128: int(128 * channel_multiplier * narrow),
        256: int(64 * channel_multiplier * narrow),
        512: int(32 * channel_multiplier * narrow),
        1024: int(16 * channel_multiplier * narrow),
    }


def upsample2x(x: torch.Tensor) -> torch.Tensor:
    """Bilinear x2 resize (align_corners=False), the resampler of the clean architecture."""
    return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)


class NormStyleCode(nn.Module):
    """Normalises a style code to unit mean square (first layer of the mapping MLP)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(torch.mean(x**2, dim=1, keepdim=True) + 1e-8)


class ModulatedConv2d(nn.Module):
    """Style-modulated convolution with optional demodulation and bilinear x2 upsampling of the input.

    `grouped = True` selects the per-sample grouped form (the official formulation) instead of the
    batched form; both give the same result up to float rounding.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        num_style_feat: int,
        demodulate: bool = True,
        upsample: bool = False,
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = kernel_size
        self.demodulate = demodulate
        self.upsample = upsample
        self.padding = kernel_size // 2
        self.grouped = False
        self.modulation = nn.Linear(num_style_feat, in_channels, bias=True)
        nn.init.kaiming_normal_(self.modulation.weight, a=0, mode="fan_in", nonlinearity="linear")
        nn.init.constant_(self.modulation.bias, 1.0)
        # (1, C_out, C_in, k, k), pre-scaled by 1/sqrt(fan_in) as in the released checkpoints
        self.weight = nn.Parameter(
            torch.randn(1, out_channels, in_channels, kernel_size, kernel_size)
            / math.sqrt(in_channels * kernel_size**2)
        )

    def forward(self, x: torch.Tensor, style: torch.Tensor, gain: float = 1.0) -> torch.Tensor:
        """Modulated conv of x (B, C_in, H, W) by style (B, F); the output is multiplied by `gain`."""
        s = self.modulation(style)  # (B, C_in)
        if self.grouped:
            return self._forward_grouped(x, s, gain)
        return self._forward_batched(x, s, gain)

    def _forward_batched(self, x: torch.Tensor, s: torch.Tensor, gain: float) -> torch.Tensor:
        """Scale activations, one shared convolution, demodulate outputs.

        The style scaling is applied before the bilinear upsampling (they commute: both are linear
        and per channel), on a quarter of the pixels; `gain` is folded into the demodulation.
        """
        weight = self.weight[0]  # (C_out, C_in, k, k)
        x = x * s[:, :, None, None].to(x.dtype)
        if self.upsample:
            x = upsample2x(x)
        out = F.conv2d(x, weight.to(x.dtype), padding=self.padding)
        if self.demodulate:
            # sum_{c,k,k} (W[o,c] s[c])^2 = sum_c s[c]^2 * sum_{k,k} W[o,c]^2
            w_sq = weight.float().pow(2).sum(dim=(2, 3))  # (C_out, C_in)
            coeff = torch.rsqrt(s.float().pow(2) @ w_sq.t() + DEMOD_EPS) * gain  # (B, C_out)
            out = out * coeff[:, :, None, None].to(out.dtype)
        elif gain != 1.0:
            out = out * gain
        return out

    def _forward_grouped(self, x: torch.Tensor, s: torch.Tensor, gain: float) -> torch.Tensor:
        """Per-sample modulated weights and a grouped convolution (groups = batch): the official form."""
        if self.upsample:
            x = upsample2x(x)
        b, c, h, w = x.shape
        weight = self.weight * s.view(b, 1, c, 1, 1)  # (B, C_out, C_in, k, k)
        if self.demodulate:
            demod = torch.rsqrt(weight.pow(2).sum(dim=(2, 3, 4)) + DEMOD_EPS)
            weight = weight * demod.view(b, self.out_channels, 1, 1, 1)
        weight = weight.view(b * self.out_channels, c, self.kernel_size, self.kernel_size)
        out = F.conv2d(x.reshape(1, b * c, h, w), weight.to(x.dtype), padding=self.padding, groups=b)
        out = out.view(b, self.out_channels, out.shape[2], out.shape[3])
        return out * gain if gain != 1.0 else out


class StyleConv(nn.Module):
    """Modulated 3x3 conv, x sqrt(2), + scaled noise, + bias, LeakyReLU(0.2)."""

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int, num_style_feat: int, upsample: bool = False
    ) -> None:
        super().__init__()
        self.modulated_conv = ModulatedConv2d(
            in_channels, out_channels, kernel_size, num_style_feat, demodulate=True, upsample=upsample
        )
        self.weight = nn.Parameter(torch.zeros(1))  # noise strength
        self.bias = nn.Parameter(torch.zeros(1, out_channels, 1, 1))
        self.activate = nn.LeakyReLU(negative_slope=0.2, inplace=True)

    def forward(self, x: torch.Tensor, style: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        out = self.modulated_conv(x, style, gain=math.sqrt(2))
        if noise is None:
            b, _, h, w = out.shape
            noise = out.new_empty(b, 1, h, w).normal_()
        out = out + self.weight * noise
        out = out + self.bias
        return self.activate(out)


class ToRGB(nn.Module):
    """Modulated 1x1 conv to RGB (no demodulation), added to the upsampled RGB of the level below."""

    def __init__(self, in_channels: int, num_style_feat: int, upsample: bool = True) -> None:
        super().__init__()
        self.upsample = upsample
        self.modulated_conv = ModulatedConv2d(in_channels, 3, 1, num_style_feat, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1))

    def forward(self, x: torch.Tensor, style: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        out = self.modulated_conv(x, style) + self.bias
        if skip is not None:
            if self.upsample:
                skip = upsample2x(skip)
            out = out + skip
        return out


class ConstantInput(nn.Module):
    """The learned 4x4 input of the decoder, repeated over the batch."""

    def __init__(self, channels: int, size: int = 4) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(1, channels, size, size))

    def forward(self, batch: int) -> torch.Tensor:
        return self.weight.expand(batch, -1, -1, -1)


class StyleGAN2GeneratorCSFT(nn.Module):
    """StyleGAN2 decoder with channel-split spatial feature transform (CS-SFT) after each upsampling conv.

    Layer schedule for out_size = 2**L: a 4x4 StyleConv, then per resolution 8..2**L an upsampling
    StyleConv (followed by SFT), a StyleConv and a ToRGB. There are 2L-3 noise inputs and 2L-2 W vectors.
    """

    def __init__(
        self,
        out_size: int,
        num_style_feat: int = 512,
        num_mlp: int = 8,
        channel_multiplier: float = 2,
        narrow: float = 1,
        sft_half: bool = False,
    ) -> None:
        super().__init__()
        self.num_style_feat = num_style_feat
        self.sft_half = sft_half
        self.log_size = int(math.log2(out_size))
        self.num_layers = (self.log_size - 2) * 2 + 1
        self.num_latent = self.log_size * 2 - 2
        channels = decoder_channels(channel_multiplier, narrow)

        mlp: list[nn.Module] = [NormStyleCode()]
        for _ in range(num_mlp):
            linear = nn.Linear(num_style_feat, num_style_feat, bias=True)
            nn.init.kaiming_normal_(linear.weight, a=0.2, mode="fan_in", nonlinearity="leaky_relu")
            nn.init.zeros_(linear.bias)
            mlp += [linear, nn.LeakyReLU(negative_slope=0.2, inplace=True)]
        self.style_mlp = nn.Sequential(*mlp)

        self.constant_input = ConstantInput(channels[4], size=4)
        self.style_conv1 = StyleConv(channels[4], channels[4], 3, num_style_feat)
        self.to_rgb1 = ToRGB(channels[4], num_style_feat, upsample=False)

        self.style_convs = nn.ModuleList()
        self.to_rgbs = nn.ModuleList()
        self.noises = nn.Module()
        for layer_idx in range(self.num_layers):
            resolution = 2 ** ((layer_idx + 5) // 2)
            self.noises.register_buffer(f"noise{layer_idx}", torch.randn(1, 1, resolution, resolution))
        in_channels = channels[4]
        for i in range(3, self.log_size + 1):
            out_channels = channels[2**i]
            self.style_convs.append(StyleConv(in_channels, out_channels, 3, num_style_feat, upsample=True))
            self.style_convs.append(StyleConv(out_channels, out_channels, 3, num_style_feat))
            self.to_rgbs.append(ToRGB(out_channels, num_style_feat, upsample=True))
            in_channels = out_channels

    def fixed_noise(self) -> list[torch.Tensor]:
        """The stored noise buffers, one per StyleConv (fixed noise: no flicker between frames)."""
        return [getattr(self.noises, f"noise{i}") for i in range(self.num_layers)]

    def forward(
        self,
        styles: list[torch.Tensor],
        conditions: list[torch.Tensor],
        input_is_latent: bool = False,
        noise: list[torch.Tensor | None] | None = None,
        randomize_noise: bool = True,
        return_latents: bool = False,
        **kwargs: object,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Decode W (B, num_latent, F) or z/w (B, F) codes; `conditions` = [scale0, shift0, ...]."""
        if not input_is_latent:
            styles = [self.style_mlp(s) for s in styles]
        if noise is None:
            noise = [None] * self.num_layers if randomize_noise else self.fixed_noise()
        latent = styles[0]
        if latent.ndim < 3:
            latent = latent.unsqueeze(1).repeat(1, self.num_latent, 1)  # (B, num_latent, F)

        out = self.constant_input(latent.shape[0])
        out = self.style_conv1(out, latent[:, 0], noise=noise[0])
        skip = self.to_rgb1(out, latent[:, 1])
        i = 1
        for up_conv, conv, noise_up, noise_same, to_rgb in zip(
            self.style_convs[::2], self.style_convs[1::2], noise[1::2], noise[2::2], self.to_rgbs
        ):
            out = up_conv(out, latent[:, i], noise=noise_up)
            if i < len(conditions):
                out = self._apply_sft(out, conditions[i - 1], conditions[i])
            out = conv(out, latent[:, i + 1], noise=noise_same)
            skip = to_rgb(out, latent[:, i + 2], skip)
            i += 2
        return skip, (latent if return_latents else None)

    def _apply_sft(self, feat: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
        """Spatial feature transform; with sft_half only the second half of the channels is modulated."""
        if not self.sft_half:
            return feat * scale + shift
        half = feat.shape[1] // 2
        same, modulated = torch.split(feat, half, dim=1)
        return torch.cat([same, modulated * scale + shift], dim=1)
