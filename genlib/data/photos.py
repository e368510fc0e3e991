"""Photos: the two sample photographs scikit-learn ships, cut into patches for super-resolution.

``sklearn.datasets.load_sample_images`` holds two colour photographs, 427 x 640 pixels each:
``china`` (a temple roof against the sky) and ``flower`` (a flower head in close-up). They are
the only natural photographs available offline, so the super-resolution parts of the book (SR3,
the Imagen cascade) learn from random crops of them.

Train and test never overlap: the **test region** of each photo is its right 20% (columns
``512..639``), the **train region** the remaining left 80% (columns ``0..511``), and a crop lies
wholly inside one region. Patches are float32 ``b 3 h w`` in ``[-1, 1]``.

* :func:`crop_boxes` says where the patches come from (photo, top, left), for plotting them;
* :func:`patches` cuts them out;
* :func:`low_res` downsamples by an integer factor (area averaging);
* :func:`pairs` returns (low-res, high-res) training pairs.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from . import _checks as check

NAMES = ("china", "flower")
SOURCES = ("both", *NAMES)
SPLITS = ("train", "test")
HEIGHT, WIDTH = 427, 640
TEST_FRACTION = 0.2
SPLIT_COLUMN = int(round(WIDTH * (1 - TEST_FRACTION)))  # 512: first column of the test region


@lru_cache(maxsize=1)
def _photos() -> torch.Tensor:
    """Both photographs, decoded once: ``p 3 h w`` in ``[-1, 1]``, in the order of :data:`NAMES`."""
    from sklearn.datasets import load_sample_images

    bunch = load_sample_images()
    by_name = {Path(path).stem: img for path, img in zip(bunch.filenames, bunch.images)}
    stack = np.stack([by_name[name] for name in NAMES])  # p h w c, uint8
    if stack.shape[1:] != (HEIGHT, WIDTH, 3):
        raise ValueError(f"expected sample photos of {HEIGHT}x{WIDTH}x3, got {stack.shape[1:]}")
    return check.to_signed(stack, 255.0).permute(0, 3, 1, 2).contiguous()  # p h w c -> p c h w


def photo(name: str) -> torch.Tensor:
    """One whole photograph, ``1 3 427 640`` in ``[-1, 1]``; ``name`` is ``"china"`` or ``"flower"``."""
    name = check.choice("name", name, NAMES)
    return _photos()[NAMES.index(name)][None].clone()


def region(split: str) -> tuple[int, int]:
    """The columns ``[start, stop)`` of a split's region, the same in both photos (all rows)."""
    split = check.choice("split", split, SPLITS)
    return (0, SPLIT_COLUMN) if split == "train" else (SPLIT_COLUMN, WIDTH)


def crop_boxes(
    n: int, size: int = 32, seed: int = 0, source: str = "both", split: str = "train"
) -> torch.Tensor:
    """Where :func:`patches` cuts its ``n`` crops: int64 ``n 3``, columns ``(photo, top, left)``.

    ``photo`` indexes :data:`NAMES` (for ``source="both"`` each crop picks a photo at random),
    ``top`` and ``left`` are the crop's first row and column. Each crop of ``size x size`` lies
    inside the split's region (see :func:`region`), uniformly at random, drawn from a
    ``Generator(PCG64(seed))``.
    """
    n = check.integer("n", n, minimum=0)
    start, stop = region(split)
    size = check.integer("size", size, minimum=1, maximum=min(HEIGHT, stop - start))
    source = check.choice("source", source, SOURCES)
    gen = check.rng(seed)
    if source == "both":
        which = gen.integers(0, len(NAMES), size=n)
    else:
        which = np.full(n, NAMES.index(source))
    top = gen.integers(0, HEIGHT - size + 1, size=n)
    left = gen.integers(start, stop - size + 1, size=n)
    return torch.from_numpy(np.stack([which, top, left], axis=1).astype(np.int64))


def patches(
    n: int, size: int = 32, seed: int = 0, source: str = "both", split: str = "train"
) -> torch.Tensor:
    """``n`` random ``size x size`` crops of the photographs: ``b 3 size size`` in ``[-1, 1]``.

    ``source`` is ``"both"``, ``"china"`` or ``"flower"``; ``split`` is ``"train"`` (left 80% of
    each photo) or ``"test"`` (right 20%), so the two splits share no pixel. Deterministic for a
    seed. ``size`` is at most 128, the width of the test region.
    """
    boxes = crop_boxes(n, size, seed, source, split)
    offsets = torch.arange(size)
    rows = (boxes[:, 1, None] + offsets)[:, :, None]  # b h 1
    cols = (boxes[:, 2, None] + offsets)[:, None, :]  # b 1 w
    # advanced indexing over (photo, row, col) gives b h w c; -> b c h w
    crops = _photos().permute(0, 2, 3, 1)[boxes[:, 0, None, None], rows, cols]
    return crops.permute(0, 3, 1, 2).contiguous()


def low_res(x: torch.Tensor, factor: int) -> torch.Tensor:
    """Downsample images by an integer ``factor`` with area averaging: ``b c h w -> b c h/f w/f``.

    Each output pixel is the mean of a ``factor x factor`` block (``F.interpolate(mode="area")``,
    the same as average pooling), the usual degradation for super-resolution. ``h`` and ``w`` must
    be multiples of ``factor``.
    """
    x = check.images(x, "x")
    factor = check.integer("factor", factor, minimum=1)
    h, w = x.shape[-2:]
    if h % factor or w % factor:
        raise ValueError(f"x's height and width ({h}x{w}) must be multiples of factor={factor}")
    return F.interpolate(x, size=(h // factor, w // factor), mode="area")


def pairs(
    n: int,
    size: int = 32,
    factor: int = 4,
    seed: int = 0,
    source: str = "both",
    split: str = "train",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Super-resolution pairs ``(lo, hi)``: ``hi`` is ``b 3 size size`` from :func:`patches`,
    ``lo = low_res(hi, factor)`` is ``b 3 size/factor size/factor``.
    """
    size = check.integer("size", size, minimum=1)
    factor = check.integer("factor", factor, minimum=1)
    if size % factor:
        raise ValueError(f"size={size} must be a multiple of factor={factor}")
    hi = patches(n, size, seed, source, split)
    return low_res(hi, factor), hi
