"""Imagen's Efficient U-Net (Saharia et al. 2022, App. B.1; survey §9.6, Fig. 39, 42, 43).

Three changes to the U-Net of :mod:`genlib.nn.unet` (same ResBlocks, attention and embeddings):

1. **Downsample first, upsample last.** A ``DBlock`` starts with its stride-2 convolution and
   then runs its ResBlocks at the *lower* resolution; a ``UBlock`` runs its ResBlocks and then
   upsamples. The plain U-Net does it the other way round, so its costliest convolutions run at
   the full resolution; here the full resolution sees only ``conv_in`` and ``conv_out``.
2. **More blocks where it is cheap.** ``num_res_blocks`` is per level, growing towards the low
   resolutions (Imagen: 2 at the top, up to 8 at the bottom): parameters move to where a
   convolution costs a quarter, a sixteenth... of a full-resolution one.
3. **Skip connections scaled by 1/sqrt(2)** (as SR3 did): each skip is multiplied by
   ``skip_scale`` before it is concatenated onto the up path.

::

    x_t: b in h w ─ conv_in ──────────────────── skip * s ──▶ cat ─ norm, silu, conv_out ─ b out h w
                      ▼ DBlock 0: conv stride 2, ResBlocks x n[0] ──skip*s──▶ UBlock 0: ResBlocks, upsample ▲
                      ▼ DBlock 1: conv stride 2, ResBlocks x n[1] ──skip*s──▶ UBlock 1: ResBlocks, upsample ▲
                      └──────── middle: ResBlock, attention, ResBlock ────────┘

``forward(x_t, t, cond)`` has the plain U-Net's interface (class labels or a context ``b n d``).
"""

from __future__ import annotations

import dataclasses
import math

import torch
from torch import nn

from genlib.nn.attention import AttentionBlock2d
from genlib.nn.convnets import Upsample
from genlib.nn.embeddings import TimestepEmbedding, batch_timesteps, check_class_labels
from genlib.nn.resblock import GroupNormSiLU, ResBlock
from genlib.nn.unet import Downsample, UNet, num_parameters


@dataclasses.dataclass(frozen=True)
class EfficientUNetConfig:
    """Sizes of an :class:`EfficientUNet`. ``num_res_blocks[i]`` ResBlocks in level ``i``'s
    DBlock (and ``+1`` in its UBlock); level ``i`` runs at ``image_size / 2 ** (i + 1)``."""

    in_channels: int = 3
    out_channels: int | None = None
    image_size: int = 16
    base_channels: int = 32
    channel_mult: tuple[int, ...] = (1, 2, 2)
    num_res_blocks: tuple[int, ...] = (1, 2, 4)
    attention_resolutions: tuple[int, ...] = ()
    num_heads: int = 4
    groups: int = 8
    skip_scale: float = 1 / math.sqrt(2)
    num_classes: int | None = None
    context_dim: int | None = None

    def __post_init__(self):
        for name in ("channel_mult", "num_res_blocks", "attention_resolutions"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        if len(self.num_res_blocks) != len(self.channel_mult) or min(self.num_res_blocks, default=0) < 1:
            raise ValueError(f"EfficientUNetConfig needs one num_res_blocks >= 1 per level of channel_mult, got "
                             f"{self.num_res_blocks} for {self.channel_mult}")
        for m in self.channel_mult:
            if (self.base_channels * m) % self.groups or (self.base_channels * m) % self.num_heads:
                raise ValueError(f"EfficientUNetConfig: width {self.base_channels * m} must be divisible by "
                                 f"groups={self.groups} and num_heads={self.num_heads}")
        if self.image_size % self.factor:
            raise ValueError(f"EfficientUNetConfig: image_size={self.image_size} must be divisible by {self.factor}")

    @property
    def factor(self) -> int:
        """Every level halves the resolution first: ``2 ** len(channel_mult)``."""
        return 2 ** len(self.channel_mult)

    @property
    def emb_dim(self) -> int:
        return 4 * self.base_channels


class EfficientUNet(nn.Module):
    """``forward(x_t: b c h w, t: b, cond=None) -> b out h w``; see the module docstring."""

    def __init__(self, cfg: EfficientUNetConfig):
        super().__init__()
        self.cfg = cfg
        c, e = cfg.base_channels, cfg.emb_dim
        attn = dict(heads=cfg.num_heads, groups=cfg.groups, context_dim=cfg.context_dim)
        self.time_embed = TimestepEmbedding(c, e)
        self.label_embed = nn.Embedding(cfg.num_classes + 1, e) if cfg.num_classes else None
        self.conv_in = nn.Conv2d(cfg.in_channels, c, 3, padding=1)

        # DBlocks: stride-2 conv first (change 1), then n[i] ResBlocks (change 2) at the new size
        self.down = nn.ModuleList()
        widths, width, size = [c], c, cfg.image_size
        for mult, n in zip(cfg.channel_mult, cfg.num_res_blocks):
            size //= 2
            layer = nn.ModuleList([Downsample(width)])
            for _ in range(n):
                layer.append(ResBlock(width, c * mult, e, groups=cfg.groups))
                width = c * mult
            if size in cfg.attention_resolutions:
                layer.append(AttentionBlock2d(width, **attn))
            self.down.append(layer)
            widths.append(width)
        self.mid = nn.ModuleList([ResBlock(width, width, e, groups=cfg.groups), AttentionBlock2d(width, **attn),
                                  ResBlock(width, width, e, groups=cfg.groups)])

        # UBlocks, deepest first: ResBlocks on [h, skip * s] (change 3), then upsample last (change 1)
        self.up = nn.ModuleList()
        for i in reversed(range(len(cfg.channel_mult))):
            out = c * cfg.channel_mult[i]
            layer = nn.ModuleList([ResBlock(width + widths[i + 1], out, e, groups=cfg.groups)])
            layer.extend(ResBlock(out, out, e, groups=cfg.groups) for _ in range(cfg.num_res_blocks[i]))
            if size in cfg.attention_resolutions:
                layer.append(AttentionBlock2d(out, **attn))
            layer.append(Upsample(out, widths[i]))
            self.up.append(layer)
            width, size = widths[i], size * 2
        self.norm_out = GroupNormSiLU(cfg.groups, 2 * c)
        self.conv_out = nn.Conv2d(2 * c, cfg.out_channels or cfg.in_channels, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    def forward(self, x_t: torch.Tensor, t, cond: torch.Tensor | None = None) -> torch.Tensor:
        cfg = self.cfg
        if x_t.ndim != 4 or x_t.shape[1] != cfg.in_channels or x_t.shape[2] % cfg.factor or x_t.shape[3] % cfg.factor:
            raise ValueError(f"EfficientUNet expects x_t of layout b c h w with c={cfg.in_channels} and h, w "
                             f"divisible by {cfg.factor}, got {tuple(x_t.shape)}")
        t = batch_timesteps(t, x_t.shape[0], x_t.device, "EfficientUNet")
        emb = self.time_embed(t)
        context = None
        if self.label_embed is not None:
            labels = torch.full_like(t, cfg.num_classes, dtype=torch.long) if cond is None else \
                check_class_labels(cond, x_t.shape[0], cfg.num_classes, "EfficientUNet", "unconditional")
            emb = emb + self.label_embed(labels)
        elif cond is not None:
            if not cfg.context_dim or cond.ndim != 3 or cond.shape[0] != x_t.shape[0] or cond.shape[2] != cfg.context_dim:
                raise ValueError(f"EfficientUNet expects cond of layout b n d with d={cfg.context_dim} (or None), "
                                 f"got {tuple(cond.shape)}")
            context = cond

        h = self.conv_in(x_t)
        skips = [h]
        for layer in self.down:
            h = UNet._run(layer, h, emb, context)
            skips.append(h)
        for module in self.mid:
            h = UNet._run([module], h, emb, context)
        for layer in self.up:
            h = UNet._run(layer, torch.cat([h, cfg.skip_scale * skips.pop()], dim=1), emb, context)
        h = torch.cat([h, cfg.skip_scale * skips.pop()], dim=1)
        return self.conv_out(self.norm_out(h))

    def num_parameters(self) -> int:
        return num_parameters(self)
