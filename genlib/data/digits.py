"""Digits: the real handwritten digits that scikit-learn ships, as images in the book's convention.

scikit-learn's ``load_digits`` holds 1,797 handwritten digits (0 to 9, about 180 of each), 8x8
pixels with ink values 0..16, from the UCI "Optical Recognition of Handwritten Digits" set. They
are real data that needs no download, small enough to train a VAE or a diffusion model on a CPU.

:func:`load` returns them as float32 images laid out ``b 1 h w`` in ``[-1, 1]`` (background -1,
full ink +1, like MNIST: bright strokes on a dark ground) at their native size 8 or resized to 16
or 32 (bilinear with antialiasing), with their labels. The train/test split is stratified (each
digit keeps its share in both parts) and fixed by a seed.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F

from . import _checks as check

SIZES = (8, 16, 32)
SPLITS = ("train", "test", "all")
NATIVE_SIZE = 8
MAX_INK = 16.0
NUM_CLASSES = 10


@lru_cache(maxsize=1)
def _raw() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's arrays, read once: images ``b 8 8`` (0..16) and labels ``b``."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images, labels = bunch.images.astype(np.float32), bunch.target.astype(np.int64)
    images.setflags(write=False)
    labels.setflags(write=False)
    return images, labels


def split_indices(seed: int = 0, test_fraction: float = 0.2) -> tuple[np.ndarray, np.ndarray]:
    """Indices into the 1,797 digits of the train and the test part, each sorted.

    Stratified: for every digit class, a ``Generator(PCG64(seed))`` permutes its examples and the
    first ``round(test_fraction * count)`` go to test. The two parts never share an index and
    together cover all of them.
    """
    gen = check.rng(seed)
    test_fraction = check.real("test_fraction", test_fraction)
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must lie strictly between 0 and 1, got {test_fraction}")
    _, labels = _raw()
    test = []
    for digit in range(NUM_CLASSES):
        members = np.flatnonzero(labels == digit)
        members = members[gen.permutation(members.size)]
        test.append(members[: int(round(test_fraction * members.size))])
    test_idx = np.sort(np.concatenate(test))
    train_idx = np.setdiff1d(np.arange(labels.size), test_idx)
    return train_idx, test_idx


def load(
    size: int = 16, split: str = "train", seed: int = 0, test_fraction: float = 0.2
) -> tuple[torch.Tensor, torch.Tensor]:
    """The digits as ``(images, labels)``: images ``b 1 size size`` in ``[-1, 1]``, labels ``b``.

    * ``size``: 8 (native), 16 or 32; larger sizes are bilinear upsamplings with antialiasing.
    * ``split``: ``"train"`` (about 80%), ``"test"`` (the rest) or ``"all"`` (1,797 digits).
    * ``seed``, ``test_fraction``: fix the stratified split (see :func:`split_indices`); the same
      seed gives the same split, and train and test never share a digit.

    Images keep the dataset's order within each part.
    """
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size not in SIZES:
        raise ValueError(f"size must be one of {', '.join(map(str, SIZES))} pixels; got {size!r}")
    split = check.choice("split", split, SPLITS)
    raw_images, raw_labels = _raw()
    if split == "all":
        check.rng(seed)  # still validate the seed
        index = np.arange(raw_labels.size)
    else:
        train_idx, test_idx = split_indices(seed, test_fraction)
        index = train_idx if split == "train" else test_idx
    images = check.to_signed(raw_images[index][:, None], MAX_INK)  # b h w -> b 1 h w
    if size != NATIVE_SIZE:
        images = F.interpolate(
            images, size=(size, size), mode="bilinear", align_corners=False, antialias=True
        ).clamp_(-1.0, 1.0)
    return images, torch.from_numpy(raw_labels[index].copy())
