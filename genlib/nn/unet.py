"""The U-Net that predicts noise in every diffusion chapter (DDPM's, with LDM's conditioning).

Read it top to bottom as the architecture diagram (``c = base_channels``, three levels shown)::

    x_t: b in h w ── conv_in ─────────────────────────────────────── conv_out(silu(norm)) ── b out h w
                       │  level 0: ResBlocks (c * mult[0])   ──skips──▶  ResBlocks (+1)  ▲
                       ▼  downsample (stride-2 conv)                     upsample (nearest + conv)
                       │  level 1: ResBlocks (c * mult[1]) [+ attn] ──▶  ResBlocks [+ attn]
                       ▼  downsample                                     upsample
                       │  level 2: ResBlocks (c * mult[2]) [+ attn] ──▶  ResBlocks [+ attn]
                       └──────────── middle: ResBlock, attention, ResBlock ──────┘
    t: b ── sinusoidal embedding (eq. 15) ── MLP ── emb: b 4c ── into every ResBlock
    cond ── class label: embedding added to emb  |  context b n d: cross-attention in attn blocks

Every output of the down path (after conv_in, after each ResBlock, after each downsample) is kept
and concatenated onto the up path at the same resolution, so the decoder sees the fine detail the
encoder saw. Attention runs at the feature-map sizes listed in ``attention_resolutions``. The last
convolution starts at zero: a fresh U-Net predicts 0 everywhere, the mean of the noise it learns
to predict.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import torch
from torch import nn

from genlib import config as _config
from genlib.nn.attention import AttentionBlock2d
from genlib.nn.convnets import Upsample
from genlib.nn.embeddings import TimestepEmbedding, batch_timesteps, check_class_labels
from genlib.nn.resblock import GroupNormSiLU, ResBlock


@dataclasses.dataclass(frozen=True)
class UNetConfig:
    """Sizes of a :class:`UNet`. ``image_size`` fixes at which levels attention runs; the network
    accepts any ``h, w`` divisible by ``2 ** (len(channel_mult) - 1)``."""

    in_channels: int = 3
    out_channels: int | None = None  # None: same as in_channels (eps, x0 or v have x_t's shape)
    image_size: int = 32
    base_channels: int = 32
    channel_mult: tuple[int, ...] = (1, 2, 2)
    num_res_blocks: int = 1
    attention_resolutions: tuple[int, ...] = (8,)  # feature-map sides with self-attention
    num_heads: int = 4
    groups: int = 8
    dropout: float = 0.0
    num_classes: int | None = None  # class-conditional: labels 0..num_classes-1, num_classes = "no label"
    context_dim: int | None = None  # cross-attention to a context b n context_dim (text tokens)

    def __post_init__(self):
        object.__setattr__(self, "channel_mult", tuple(self.channel_mult))
        object.__setattr__(self, "attention_resolutions", tuple(self.attention_resolutions))
        if (self.in_channels < 1 or self.base_channels < 1 or self.num_res_blocks < 1 or not self.channel_mult
                or self.groups < 1 or self.num_heads < 1 or min(self.channel_mult) < 1):
            raise ValueError(f"UNetConfig needs positive in_channels, base_channels, num_res_blocks, groups, "
                             f"num_heads and channel_mult entries, got {self}")
        for m in self.channel_mult:
            if (self.base_channels * m) % self.groups:
                raise ValueError(f"UNetConfig: width base_channels*{m}={self.base_channels * m} is not divisible "
                                 f"by groups={self.groups}")
            if (self.base_channels * m) % self.num_heads:
                raise ValueError(f"UNetConfig: width {self.base_channels * m} is not divisible by num_heads={self.num_heads}")
        if self.image_size % self.factor:
            raise ValueError(f"UNetConfig: image_size={self.image_size} must be divisible by "
                             f"2**(levels-1)={self.factor}")

    @property
    def factor(self) -> int:
        """How much the deepest level is downsampled: ``2 ** (len(channel_mult) - 1)``."""
        return 2 ** (len(self.channel_mult) - 1)

    @property
    def emb_dim(self) -> int:
        return 4 * self.base_channels

    @classmethod
    def preset(cls, **overrides) -> "UNetConfig":
        """The profile's size: ``ci`` tiny (~40k parameters), ``cpu`` about 1.1M, ``gpu`` about 4.4M.

        ``overrides`` set any field, e.g. ``UNetConfig.preset(in_channels=1, image_size=16)``.
        """
        sizes = _config.pick(
            ci=dict(base_channels=8, channel_mult=(1, 2), num_res_blocks=1, groups=4, num_heads=2,
                    attention_resolutions=()),
            cpu=dict(base_channels=16, channel_mult=(1, 2, 4, 4), num_res_blocks=1, attention_resolutions=(8,)),
            gpu=dict(base_channels=32, channel_mult=(1, 2, 4, 4), num_res_blocks=1, attention_resolutions=(16, 8)),
        )
        return cls(**{**sizes, **overrides})

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


class Downsample(nn.Module):
    """``b c h w -> b c h/2 w/2`` by a stride-2 3x3 convolution."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class UNet(nn.Module):
    """``forward(x_t: b c h w, t: b, cond=None) -> b out h w``; see the module docstring.

    ``t`` holds one timestep per sample (int or float; a scalar is broadcast). ``cond`` is a
    ``long`` tensor ``b`` of class labels when ``cfg.num_classes`` is set (the label
    ``num_classes`` means "unconditional"), or a context ``b n context_dim`` when
    ``cfg.context_dim`` is set; ``None`` means unconditional in both cases.

    ``after_block``, when given, is called as ``h = after_block(block, h)`` after every ResBlock
    and every attention block, on the way down, in the middle and on the way up: the one place a
    model that extends the U-Net (Video-LDM's temporal layers, chapter 12) adds its own layers,
    without copying this forward pass.
    """

    def __init__(self, cfg: UNetConfig):
        super().__init__()
        self.cfg = cfg
        c, e = cfg.base_channels, cfg.emb_dim
        block = dict(groups=cfg.groups, dropout=cfg.dropout)
        attn = dict(heads=cfg.num_heads, groups=cfg.groups, context_dim=cfg.context_dim)

        # timestep (eq. 15) and class label -> one embedding vector per sample
        self.time_embed = TimestepEmbedding(c, e)
        self.label_embed = nn.Embedding(cfg.num_classes + 1, e) if cfg.num_classes else None

        # encoder: conv_in, then per level ResBlocks (+ attention), then a downsample
        self.conv_in = nn.Conv2d(cfg.in_channels, c, 3, padding=1)
        self.down = nn.ModuleList()
        skip_widths, width, size = [c], c, cfg.image_size
        for level, mult in enumerate(cfg.channel_mult):
            for _ in range(cfg.num_res_blocks):
                layer = nn.ModuleList([ResBlock(width, c * mult, e, **block)])
                width = c * mult
                if size in cfg.attention_resolutions:
                    layer.append(AttentionBlock2d(width, **attn))
                self.down.append(layer)
                skip_widths.append(width)
            if level < len(cfg.channel_mult) - 1:
                self.down.append(nn.ModuleList([Downsample(width)]))
                skip_widths.append(width)
                size //= 2

        # middle: ResBlock, attention, ResBlock at the lowest resolution
        self.mid = nn.ModuleList([ResBlock(width, width, e, **block), AttentionBlock2d(width, **attn),
                                  ResBlock(width, width, e, **block)])

        # decoder: per level (deepest first) ResBlocks on [features, skip], (+ attention), upsample
        self.up = nn.ModuleList()
        for level, mult in reversed(list(enumerate(cfg.channel_mult))):
            for i in range(cfg.num_res_blocks + 1):
                layer = nn.ModuleList([ResBlock(width + skip_widths.pop(), c * mult, e, **block)])
                width = c * mult
                if size in cfg.attention_resolutions:
                    layer.append(AttentionBlock2d(width, **attn))
                if level > 0 and i == cfg.num_res_blocks:
                    layer.append(Upsample(width, width))
                    size *= 2
                self.up.append(layer)

        # output: GroupNorm + SiLU, then a zero-initialised 3x3 conv
        self.norm_out = GroupNormSiLU(cfg.groups, width)
        self.conv_out = nn.Conv2d(width, cfg.out_channels or cfg.in_channels, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    def forward(self, x_t: torch.Tensor, t: torch.Tensor | float | int, cond: torch.Tensor | None = None, *,
                after_block: Callable[[nn.Module, torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
        x_t, t, cond = self._check(x_t, t, cond)
        emb = self.time_embed(t)
        if self.label_embed is not None:
            labels = torch.full_like(t, self.cfg.num_classes, dtype=torch.long) if cond is None else cond
            emb = emb + self.label_embed(labels)
        context = cond if self.cfg.context_dim else None

        h = self.conv_in(x_t)
        skips = [h]
        for layer in self.down:
            h = self._run(layer, h, emb, context, after_block)
            skips.append(h)
        h = self._run(self.mid, h, emb, context, after_block)
        for layer in self.up:
            h = self._run(layer, torch.cat([h, skips.pop()], dim=1), emb, context, after_block)
        return self.conv_out(self.norm_out(h))

    @staticmethod
    def _run(layer, h, emb, context, after_block=None):
        for module in layer:
            if isinstance(module, ResBlock):
                h = module(h, emb)
            elif isinstance(module, AttentionBlock2d):
                h = module(h, context)
            else:
                h = module(h)  # down- and upsampling
                continue
            if after_block is not None:
                h = after_block(module, h)
        return h

    def _check(self, x_t, t, cond):
        cfg = self.cfg
        factor = cfg.factor
        if x_t.ndim != 4 or x_t.shape[1] != cfg.in_channels:
            raise ValueError(f"UNet expects x_t of layout b c h w with c={cfg.in_channels}, got {tuple(x_t.shape)}")
        if x_t.shape[2] % factor or x_t.shape[3] % factor:
            raise ValueError(f"UNet expects h and w divisible by {factor} ({len(cfg.channel_mult)} levels), "
                             f"got {tuple(x_t.shape[2:])}")
        b = x_t.shape[0]
        t = batch_timesteps(t, b, x_t.device, "UNet")
        if cond is not None:
            if cfg.num_classes:
                cond = check_class_labels(cond, b, cfg.num_classes, "UNet", "unconditional")
            elif cfg.context_dim:
                if cond.ndim != 3 or cond.shape[0] != b or cond.shape[2] != cfg.context_dim:
                    raise ValueError(f"UNet with context_dim expects cond of layout b n d = ({b}, n, "
                                     f"{cfg.context_dim}), got {tuple(cond.shape)}")
            else:
                raise ValueError("this UNet is unconditional (no num_classes or context_dim): pass cond=None")
        return x_t, t, cond

    def num_parameters(self) -> int:
        """The number of trainable parameters."""
        return num_parameters(self)


def num_parameters(module: nn.Module) -> int:
    """Trainable parameters of any module."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
