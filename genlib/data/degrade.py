"""Controlled damage to images, to see what a metric notices: blur, noise, colour shifts.

All functions take and return ``b c h w`` float tensors in [-1, 1].
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def _check(images: torch.Tensor) -> None:
    if images.ndim != 4:
        raise ValueError(f"images must have layout 'b c h w', got shape {tuple(images.shape)}")


def gaussian_blur(images: torch.Tensor, sigma: float) -> torch.Tensor:
    """Blur each channel with a Gaussian of standard deviation ``sigma`` pixels (0: unchanged).

    The kernel spans +-3 sigma and the image edges are reflected.
    """
    _check(images)
    if sigma < 0:
        raise ValueError(f"sigma must be >= 0 pixels, got {sigma}")
    if sigma == 0:
        return images.clone()
    radius = max(1, math.ceil(3 * sigma))
    x = torch.arange(-radius, radius + 1, dtype=images.dtype, device=images.device)
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    k = k / k.sum()
    c = images.shape[1]
    out = F.pad(images, (radius, radius, radius, radius), mode="reflect")
    out = F.conv2d(out, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)  # along x
    return F.conv2d(out, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)  # along y


def add_noise(images: torch.Tensor, std: float, seed: int = 0) -> torch.Tensor:
    """Add Gaussian noise of standard deviation ``std`` (in the [-1, 1] scale) and clip to [-1, 1]."""
    _check(images)
    if std < 0:
        raise ValueError(f"std must be >= 0, got {std}")
    g = torch.Generator().manual_seed(seed)
    noise = torch.randn(images.shape, generator=g, dtype=images.dtype).to(images.device)
    return (images + std * noise).clamp(-1, 1)
