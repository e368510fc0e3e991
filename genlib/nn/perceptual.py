"""A perceptual distance: compare two images through a frozen network's feature maps.

Pixel losses (L1, L2) score a reconstruction that is shifted by a pixel or blurred as nearly as
good as a sharp one, and the L2-optimal answer to an uncertain edge is a blur. A perceptual loss
compares what a trained network *sees* instead (Johnson et al. 2016; LPIPS, Zhang et al. 2018,
which VQ-GAN uses, survey §6.2). This is LPIPS's recipe without its learned per-channel weights::

    d(x, y) = sum_l  mean_{h,w}  || f_l(x)_hw / |f_l(x)_hw| - f_l(y)_hw / |f_l(y)_hw| ||^2

``f_l`` are the network's feature maps at several depths (``b c_l h_l w_l``); each position's
channel vector is scaled to unit length, so every layer counts the same whatever its activation
scale. LPIPS reads a VGG trained on ImageNet; the book reads the shapes world's evaluator
(:meth:`genlib.metrics.evaluator.ShapesEvaluator.feature_maps`), trained on that world's labels.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

FeatureMaps = Callable[[torch.Tensor], list[torch.Tensor]]


def perceptual_distance(feature_maps: FeatureMaps, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``d(x, y)`` per image (see the module doc): ``x, y: b c h w -> b``. Gradients flow to both
    images, none to the network (freeze it: ``requires_grad_(False)`` and ``eval()``)."""
    if x.shape != y.shape or x.ndim != 4:
        raise ValueError(f"perceptual_distance compares two batches of layout b c h w of one shape, "
                         f"got {tuple(x.shape)} and {tuple(y.shape)}")
    fx, fy = feature_maps(x), feature_maps(y)
    total = x.new_zeros(len(x))
    for a, b in zip(fx, fy, strict=True):
        diff = (F.normalize(a, dim=1, eps=1e-10) - F.normalize(b, dim=1, eps=1e-10)).pow(2).sum(1)
        total = total + diff.reshape(len(x), -1).mean(1)  # a feature map may fold cells into the batch
    return total
