"""Which palette colours a frame shows: a reader of the shapes worlds' colours by hue.

The shapes worlds draw flat objects in the palette's colours on black (:mod:`genlib.data.render`).
A pixel is *lit* when its brightest channel (in [0, 1]) exceeds ``lit``; a lit pixel votes for the
palette colour nearest to it in hue, the largest cosine between RGB directions, so brightness (an
anti-aliased edge, a dim sample) does not change its vote. Chapters 11, 12 and 14 score generated
clips with it: does the object keep its colour, does a sample show the colour it was asked for?
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange

from genlib.data.render import COLOURS, PALETTE

HUES = F.normalize(torch.tensor([PALETTE[c] for c in COLOURS]), dim=-1)  # k 3: each palette colour's RGB direction


def colour_votes(frames: torch.Tensor, lit: float = 0.3) -> torch.Tensor:
    """``b 3 h w`` in [-1, 1] -> ``b k`` (int): per frame, how many lit pixels are nearest in hue to
    each palette colour."""
    if frames.ndim != 4 or frames.shape[1] != 3:
        raise ValueError(f"colour_votes reads RGB frames of layout b 3 h w, got {tuple(frames.shape)}")
    px = (rearrange(frames.float().cpu(), "b c h w -> b (h w) c") + 1) / 2
    nearest = (F.normalize(px, dim=-1) @ HUES.T).argmax(-1)  # b n: the nearest hue of every pixel
    on = px.amax(-1) > lit  # b n: not background
    return (F.one_hot(nearest, len(COLOURS)) * on[..., None]).sum(1)


def colours_seen(frames: torch.Tensor, min_pixels: int = 2, lit: float = 0.3) -> torch.Tensor:
    """``b 3 h w`` in [-1, 1] -> ``b k`` (bool): the palette colours with ``min_pixels`` or more
    lit pixels in each frame."""
    return colour_votes(frames, lit) >= min_pixels
