"""An image as a sequence of patches: patchify, patch and position embeddings, and a small ViT
(survey App. F; Dosovitskiy et al. 2021, "An image is worth 16x16 words").

Cut an image into non-overlapping ``p x p`` patches, flatten each into a vector, and the image is a
sequence a transformer can read::

    patchify:   b c (gh p) (gw p) -> b (gh gw) (p p c)        gh = h / p, gw = w / p
    embed:      token_i = FlattenPatch_i W + b                (survey App. F, "Projected")
    position:   token_i += pos_i                              (summed, not concatenated)

:func:`unpatchify` is the exact inverse. Two kinds of position embedding:

* **learned** (a parameter per position), what the ViT classifier uses (``ViT``, 1-D over the
  ``gh*gw`` patches in raster order, plus one for the [CLS] token);
* **fixed 2-D sin-cos** (:func:`sincos_2d`), what MAE and DiT use: half of the channels encode the
  patch's row and half its column, each with the sinusoidal code of the timestep embedding
  (:func:`genlib.nn.embeddings.timestep_embedding`, cosines then sines; MAE writes sines first, a
  permutation of the same numbers).
"""

from __future__ import annotations

import dataclasses

import torch
from einops import rearrange
from torch import nn

from genlib.nn.embeddings import timestep_embedding
from genlib.nn.transformer import TransformerBlock


def _check_patchable(x: torch.Tensor, p: int, fn: str) -> None:
    if p < 1:
        raise ValueError(f"{fn}: patch size must be >= 1, got {p}")
    if x.ndim != 4:
        raise ValueError(f"{fn} expects images of layout b c h w, got shape {tuple(x.shape)}")
    if x.shape[2] % p or x.shape[3] % p:
        raise ValueError(f"{fn}: layout b c (gh p) (gw p) needs h and w divisible by the patch size p={p}, "
                         f"got h, w = {x.shape[2]}, {x.shape[3]}")


def patchify(x: torch.Tensor, p: int) -> torch.Tensor:
    """``b c (gh p) (gw p) -> b (gh gw) (p p c)``: patches in raster order (row by row), each
    flattened with its channels last."""
    _check_patchable(x, p, "patchify")
    return rearrange(x, "b c (gh p1) (gw p2) -> b (gh gw) (p1 p2 c)", p1=p, p2=p)


def unpatchify(tokens: torch.Tensor, p: int, grid: tuple[int, int], channels: int) -> torch.Tensor:
    """``b (gh gw) (p p c) -> b c (gh p) (gw p)``: the inverse of :func:`patchify` for a
    ``grid = (gh, gw)`` of patches with ``channels`` channels."""
    gh, gw = grid
    if tokens.ndim != 3 or tokens.shape[1] != gh * gw or tokens.shape[2] != p * p * channels:
        raise ValueError(f"unpatchify expects tokens of layout b (gh gw) (p p c) = (b, {gh * gw}, {p * p * channels}), "
                         f"got {tuple(tokens.shape)}")
    return rearrange(tokens, "b (gh gw) (p1 p2 c) -> b c (gh p1) (gw p2)", gh=gh, gw=gw, p1=p, p2=p, c=channels)


class PatchEmbed(nn.Module):
    """``b c h w -> b (gh gw) dim``: patchify, then one linear map per patch (App. F's
    ``FlattenPatch x W + b``; a stride-``p`` convolution computes the same)."""

    def __init__(self, in_channels: int, patch_size: int, dim: int):
        super().__init__()
        self.in_channels, self.patch_size = in_channels, patch_size
        self.proj = nn.Linear(patch_size * patch_size * in_channels, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"PatchEmbed expects images of layout b c h w with c={self.in_channels}, "
                             f"got {tuple(x.shape)}")
        return self.proj(patchify(x, self.patch_size))


def sincos_1d(positions: torch.Tensor, dim: int) -> torch.Tensor:
    """``n -> n dim``: the sinusoidal code of (integer or float) positions, the one of the timestep
    embedding (eq. 15): ``[cos(pos f) | sin(pos f)]``, ``f_i = 10000^(-i / (dim/2))``."""
    return timestep_embedding(positions, dim)


def sincos_2d(grid: tuple[int, int], dim: int) -> torch.Tensor:
    """``(gh gw) dim``: fixed 2-D position embeddings of a ``gh x gw`` patch grid in raster order.
    The first ``dim/2`` channels are :func:`sincos_1d` of the row, the last ``dim/2`` of the
    column (``dim`` divisible by 4)."""
    gh, gw = grid
    if dim < 4 or dim % 4:
        raise ValueError(f"2-D sin-cos position embeddings need dim divisible by 4, got {dim}")
    if gh < 1 or gw < 1:
        raise ValueError(f"grid must be at least 1 x 1, got {grid}")
    rows, cols = torch.meshgrid(torch.arange(gh), torch.arange(gw), indexing="ij")  # gh gw each
    return torch.cat([sincos_1d(rows.flatten(), dim // 2), sincos_1d(cols.flatten(), dim // 2)], dim=-1)


@dataclasses.dataclass(frozen=True)
class ViTConfig:
    """A ViT classifier of ``image_size`` images with ``in_channels``, cut into ``patch_size``
    patches, ``depth`` pre-norm blocks of width ``dim`` with ``heads`` heads."""

    num_classes: int = 10
    in_channels: int = 1
    image_size: int = 16
    patch_size: int = 4
    dim: int = 64
    depth: int = 2
    heads: int = 4
    mlp_ratio: int = 4
    dropout: float = 0.0

    def __post_init__(self):
        if min(self.num_classes, self.in_channels, self.patch_size, self.dim, self.depth, self.heads) < 1:
            raise ValueError(f"ViTConfig needs positive sizes, got {self}")
        if self.image_size % self.patch_size or self.dim % self.heads:
            raise ValueError(f"ViTConfig needs image_size divisible by patch_size and dim by heads, got {self}")

    @property
    def grid(self) -> tuple[int, int]:
        g = self.image_size // self.patch_size
        return g, g


class ViT(nn.Module):
    """``images: b c h w -> logits: b num_classes``, as the ViT paper builds it: patch embedding,
    a learned [CLS] token prepended, learned 1-D position embeddings added, pre-norm transformer
    blocks, a final LayerNorm and a linear head on the [CLS] token's output."""

    def __init__(self, cfg: ViTConfig):
        super().__init__()
        self.cfg = cfg
        n = cfg.grid[0] * cfg.grid[1]
        self.patch = PatchEmbed(cfg.in_channels, cfg.patch_size, cfg.dim)
        self.cls = nn.Parameter(torch.zeros(1, 1, cfg.dim))
        self.pos = nn.Parameter(torch.randn(1, n + 1, cfg.dim) * 0.02)  # learned, one per position
        self.blocks = nn.ModuleList(TransformerBlock(cfg.dim, cfg.heads, mlp_ratio=cfg.mlp_ratio, dropout=cfg.dropout)
                                    for _ in range(cfg.depth))
        self.norm = nn.LayerNorm(cfg.dim)
        self.head = nn.Linear(cfg.dim, cfg.num_classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        cfg = self.cfg
        if images.ndim != 4 or images.shape[1:] != (cfg.in_channels, cfg.image_size, cfg.image_size):
            raise ValueError(f"ViT expects images of layout b c h w = (b, {cfg.in_channels}, {cfg.image_size}, "
                             f"{cfg.image_size}), got {tuple(images.shape)}")
        x = self.patch(images)                                            # b n dim
        x = torch.cat([self.cls.expand(len(x), -1, -1), x], dim=1)        # [CLS] first: b (1 + n) dim
        x = x + self.pos                                                  # summed, not concatenated
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x[:, 0]))                              # classify from [CLS]

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad)
