"""The residual block of a diffusion U-Net (DDPM's, as in LDM's ``ResBlock``).

Layouts: ``x: b c_in h w``, time embedding ``emb: b e`` -> ``b c_out h w``::

    h = conv3x3( silu(groupnorm(x)) )                 # c_in -> c_out
    h = h + linear( silu(emb) )[:, :, None, None]     # the timestep, one shift per channel
    h = conv3x3( dropout( silu(groupnorm(h)) ) )      # c_out -> c_out, zero-initialised
    out = skip(x) + h                                 # skip: identity, or 1x1 conv if c_in != c_out

GroupNorm followed by SiLU runs through :func:`genlib.kernels.group_norm_silu` (one fused Triton
kernel on a GPU, ``F.silu(F.group_norm(...))`` elsewhere). The second convolution starts at zero,
so a fresh block is the identity on ``x`` (or its 1x1 projection): a deep U-Net starts close to a
shallow one and trains stably.
"""

from __future__ import annotations

import torch
from torch import nn

from genlib.kernels import group_norm_silu


class GroupNormSiLU(nn.GroupNorm):
    """``silu(groupnorm(x))`` on ``b c h w``: an ``nn.GroupNorm`` (same parameters, same
    ``state_dict``) whose forward calls the fused kernel."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return group_norm_silu(x, self.num_groups, self.weight, self.bias, self.eps)


def check_groups(channels: int, groups: int, where: str) -> None:
    if groups < 1 or channels % groups:
        raise ValueError(f"{where}: channels={channels} must be divisible by groups={groups}")


class ResBlock(nn.Module):
    """``(x: b c_in h w, emb: b e | None) -> b c_out h w``; see the module docstring."""

    def __init__(self, in_channels: int, out_channels: int, emb_dim: int | None = None, *,
                 groups: int = 8, dropout: float = 0.0):
        super().__init__()
        check_groups(in_channels, groups, "ResBlock input")
        check_groups(out_channels, groups, "ResBlock output")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"ResBlock dropout must be in [0, 1), got {dropout}")
        self.in_channels, self.out_channels, self.emb_dim = in_channels, out_channels, emb_dim
        self.norm1 = GroupNormSiLU(groups, in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.emb_proj = nn.Sequential(nn.SiLU(), nn.Linear(emb_dim, out_channels)) if emb_dim else None
        self.norm2 = GroupNormSiLU(groups, out_channels)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        nn.init.zeros_(self.conv2.weight)  # the block starts as its skip path
        nn.init.zeros_(self.conv2.bias)
        self.skip = nn.Identity() if in_channels == out_channels else nn.Conv2d(in_channels, out_channels, 1)

    def forward(self, x: torch.Tensor, emb: torch.Tensor | None = None) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"ResBlock expects x of layout b c h w with c={self.in_channels}, got {tuple(x.shape)}")
        h = self.conv1(self.norm1(x))
        if self.emb_proj is not None:
            if emb is None or emb.ndim != 2 or emb.shape != (x.shape[0], self.emb_dim):
                got = None if emb is None else tuple(emb.shape)
                raise ValueError(f"ResBlock expects emb of layout b e = ({x.shape[0]}, {self.emb_dim}), got {got}")
            h = h + self.emb_proj(emb)[:, :, None, None]  # b c -> b c 1 1: one shift per channel
        h = self.conv2(self.dropout(self.norm2(h)))
        return self.skip(x) + h
