"""Convolutional encoder and decoder stacks for autoencoders (AE, VAE, VQ-VAE, later VQ-GAN and
the LDM autoencoder), configured by one small dataclass.

Encoder, ``b c h w -> b z (h/f) (w/f)`` with ``f = 2 ** (len(channels) - 1)``::

    conv 3x3 (in_channels -> channels[0])
    for each level i: `blocks` residual blocks at channels[i], then (not at the last level)
                      a stride-2 conv 4x4 to channels[i + 1]          (halves h and w)
    GroupNorm + SiLU, conv 3x3 -> out_channels

The decoder mirrors it: conv 3x3 in, residual blocks and a nearest-neighbour 2x upsampling + conv
3x3 per level from the deepest up, GroupNorm + SiLU, conv 3x3 -> in_channels. The residual blocks
are the U-Net's :class:`~genlib.nn.resblock.ResBlock` without a time embedding (second convolution
zero-initialised, so each starts as the identity); normalisation and activation go through
:func:`genlib.kernels.group_norm_silu`, fused in Triton on a GPU.
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn as nn
import torch.nn.functional as F

from genlib.nn.resblock import GroupNormSiLU, ResBlock


@dataclasses.dataclass
class ConvNetConfig:
    """Shape of an encoder/decoder pair.

    ``channels[i]`` is the width at resolution level ``i`` (level 0 is full resolution; every
    further level halves h and w). ``blocks`` residual blocks per level; ``groups`` GroupNorm groups
    (must divide every width); ``latent_channels`` the encoder's output / decoder's input width.
    """

    in_channels: int = 3
    channels: tuple[int, ...] = (32, 64)
    blocks: int = 1
    latent_channels: int = 16
    groups: int = 8

    def __post_init__(self):
        self.channels = tuple(int(c) for c in self.channels)
        if self.in_channels < 1 or self.latent_channels < 1 or self.blocks < 0 or not self.channels:
            raise ValueError(f"ConvNetConfig needs in_channels, latent_channels >= 1, blocks >= 0 and "
                             f"at least one level of channels; got {self}")
        bad = [c for c in self.channels if c < 1 or c % self.groups]
        if bad:
            raise ValueError(f"every width in channels must be a positive multiple of groups={self.groups}, got {bad}")

    @property
    def factor(self) -> int:
        """How much the encoder shrinks each side: ``2 ** (levels - 1)``."""
        return 2 ** (len(self.channels) - 1)


def _check_input(x: torch.Tensor, channels: int, who: str, factor: int = 1) -> None:
    if not isinstance(x, torch.Tensor) or x.ndim != 4:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"{who} expects layout b c h w, got {shape}")
    if x.shape[1] != channels:
        raise ValueError(f"{who} expects c = {channels} channels (layout b c h w), got {x.shape[1]}")
    if x.shape[2] % factor or x.shape[3] % factor:
        raise ValueError(f"{who}: h and w must be multiples of {factor}, got {tuple(x.shape[2:])}")


class Encoder(nn.Module):
    """``b in_channels h w -> b out_channels (h/f) (w/f)`` (``out_channels`` defaults to
    ``latent_channels``; a VAE asks for twice that, for mean and log-variance)."""

    def __init__(self, cfg: ConvNetConfig, out_channels: int | None = None):
        super().__init__()
        self.cfg = cfg
        ch = cfg.channels
        self.conv_in = nn.Conv2d(cfg.in_channels, ch[0], 3, padding=1)
        layers: list[nn.Module] = []
        for i, c in enumerate(ch):
            layers += [ResBlock(c, c, groups=cfg.groups) for _ in range(cfg.blocks)]
            if i + 1 < len(ch):
                layers.append(nn.Conv2d(c, ch[i + 1], 4, stride=2, padding=1))
        self.body = nn.Sequential(*layers)
        self.norm_out = GroupNormSiLU(cfg.groups, ch[-1])
        self.conv_out = nn.Conv2d(ch[-1], out_channels or cfg.latent_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_input(x, self.cfg.in_channels, "Encoder", self.cfg.factor)
        return self.conv_out(self.norm_out(self.body(self.conv_in(x))))


class Upsample(nn.Module):
    """Nearest-neighbour 2x, then a 3x3 conv: ``b c h w -> b c_out 2h 2w``."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class Decoder(nn.Module):
    """``b latent_channels h w -> b in_channels (h*f) (w*f)``, the encoder's mirror image."""

    def __init__(self, cfg: ConvNetConfig, out_channels: int | None = None):
        super().__init__()
        self.cfg = cfg
        ch = cfg.channels[::-1]
        self.conv_in = nn.Conv2d(cfg.latent_channels, ch[0], 3, padding=1)
        layers: list[nn.Module] = []
        for i, c in enumerate(ch):
            layers += [ResBlock(c, c, groups=cfg.groups) for _ in range(cfg.blocks)]
            if i + 1 < len(ch):
                layers.append(Upsample(c, ch[i + 1]))
        self.body = nn.Sequential(*layers)
        self.norm_out = GroupNormSiLU(cfg.groups, ch[-1])
        self.conv_out = nn.Conv2d(ch[-1], out_channels or cfg.in_channels, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        _check_input(z, self.cfg.latent_channels, "Decoder")
        return self.conv_out(self.norm_out(self.body(self.conv_in(z))))
