"""Normalisation layers from their definition (survey App. C.3, Fig. 88; Wu & He 2018, Group Norm).

All four norms compute the same thing on a feature map ``x: b c h w``; they differ only in which
values share one mean and one variance (the set ``S_i`` of the GroupNorm paper, the shaded block
of the survey's Fig. 88)::

    x_hat = (x - mu) / sqrt(var + eps)       mu, var: mean and *biased* variance over S_i
    y     = gamma[c] * x_hat + beta[c]       a learned scale and shift per channel

    BatchNorm     S_i = b    h w  for each channel           (Ioffe & Szegedy 2015, Alg. 1)
    LayerNorm     S_i = c    h w  for each sample            (Ba et al. 2016; Fig. 88)
    InstanceNorm  S_i =      h w  for each sample, channel   (Ulyanov et al. 2016)
    GroupNorm     S_i = (c/g) h w for each sample, group     (Wu & He 2018)

Only BatchNorm mixes samples: its output for one image depends on the rest of the batch. At
inference it uses running estimates instead (Ioffe & Szegedy, Alg. 2), passed here as
``running_mean`` and ``running_var``.
"""

from __future__ import annotations

import torch
from einops import rearrange

from genlib.nn.resblock import check_groups

LAYOUT = "b c h w"


def normalize(x: torch.Tensor, dims: tuple[int, ...], eps: float = 1e-5) -> torch.Tensor:
    """``(x - mu) / sqrt(var + eps)`` with ``mu`` and ``var`` taken over ``dims`` (App. C.3)."""
    mu = x.mean(dim=dims, keepdim=True)  # mu = 1/H sum_i x_i
    var = x.var(dim=dims, keepdim=True, correction=0)  # sigma^2 = 1/H sum_i (x_i - mu)^2, biased
    return (x - mu) / torch.sqrt(var + eps)


def _check_layout(x: torch.Tensor, fn: str) -> int:
    if x.ndim != 4:
        raise ValueError(f"{fn} expects layout {LAYOUT} (4 dims), got shape {tuple(x.shape)}")
    return x.shape[1]


def _per_channel(t: torch.Tensor | None, c: int, name: str, fn: str) -> torch.Tensor | None:
    """A ``(c,)`` parameter as ``1 c 1 1``, ready to broadcast over ``b c h w``."""
    if t is None:
        return None
    if tuple(t.shape) != (c,):
        raise ValueError(f"{fn} expects {name} of shape (c,) = ({c},), got {tuple(t.shape)}")
    return t[None, :, None, None]


def _layer_param(t: torch.Tensor | None, x: torch.Tensor, name: str) -> torch.Tensor | None:
    """A LayerNorm parameter, per channel ``(c,)`` or per element ``(c, h, w)``, ready to broadcast."""
    if t is None or tuple(t.shape) == tuple(x.shape[1:]):
        return t
    if tuple(t.shape) == (x.shape[1],):
        return t[None, :, None, None]
    raise ValueError(f"layer_norm expects {name} of shape (c,) or (c, h, w) = {tuple(x.shape[1:])}, "
                     f"got {tuple(t.shape)}")


def _affine(x_hat: torch.Tensor, weight: torch.Tensor | None, bias: torch.Tensor | None) -> torch.Tensor:
    """``y = gamma * x_hat + beta`` (either may be absent)."""
    y = x_hat if weight is None else x_hat * weight
    return y if bias is None else y + bias


def batch_norm(x: torch.Tensor, weight: torch.Tensor | None = None, bias: torch.Tensor | None = None,
               eps: float = 1e-5, running_mean: torch.Tensor | None = None,
               running_var: torch.Tensor | None = None) -> torch.Tensor:
    """BatchNorm on ``b c h w``: each channel over ``b h w`` (Ioffe & Szegedy, Alg. 1, with the
    batch and the positions of a feature map as one mini-batch of ``m = b h w`` values).

    With ``running_mean`` and ``running_var`` (shape ``(c,)``) it is the inference form (Alg. 2):
    the stored statistics replace the batch's, so samples no longer affect each other.
    """
    c = _check_layout(x, "batch_norm")
    gamma, beta = _per_channel(weight, c, "weight", "batch_norm"), _per_channel(bias, c, "bias", "batch_norm")
    if (running_mean is None) != (running_var is None):
        raise ValueError("batch_norm needs both running_mean and running_var, or neither")
    if running_mean is None:
        return _affine(normalize(x, (0, 2, 3), eps), gamma, beta)
    mu = _per_channel(running_mean, c, "running_mean", "batch_norm")
    var = _per_channel(running_var, c, "running_var", "batch_norm")
    return _affine((x - mu) / torch.sqrt(var + eps), gamma, beta)


def layer_norm(x: torch.Tensor, weight: torch.Tensor | None = None, bias: torch.Tensor | None = None,
               eps: float = 1e-5) -> torch.Tensor:
    """LayerNorm on ``b c h w`` as in Fig. 88: each sample over all its ``c h w`` values.

    ``weight``/``bias`` may be per channel ``(c,)`` (the GroupNorm paper's convention) or per
    element ``(c, h, w)`` (``torch.nn.LayerNorm([c, h, w])``'s).
    """
    _check_layout(x, "layer_norm")
    gamma, beta = (_layer_param(t, x, name) for t, name in ((weight, "weight"), (bias, "bias")))
    return _affine(normalize(x, (1, 2, 3), eps), gamma, beta)


def instance_norm(x: torch.Tensor, weight: torch.Tensor | None = None, bias: torch.Tensor | None = None,
                  eps: float = 1e-5) -> torch.Tensor:
    """InstanceNorm on ``b c h w``: each (sample, channel) over its ``h w`` positions."""
    c = _check_layout(x, "instance_norm")
    gamma, beta = _per_channel(weight, c, "weight", "instance_norm"), _per_channel(bias, c, "bias", "instance_norm")
    return _affine(normalize(x, (2, 3), eps), gamma, beta)


def group_norm(x: torch.Tensor, groups: int, weight: torch.Tensor | None = None,
               bias: torch.Tensor | None = None, eps: float = 1e-5) -> torch.Tensor:
    """GroupNorm on ``b c h w``: the ``c`` channels split into ``groups`` groups of ``c / groups``;
    each (sample, group) over its ``(c / groups) h w`` values. ``groups=1`` is LayerNorm,
    ``groups=c`` is InstanceNorm (Wu & He, Sec. 3.1)."""
    c = _check_layout(x, "group_norm")
    check_groups(c, groups, "group_norm")
    gamma, beta = _per_channel(weight, c, "weight", "group_norm"), _per_channel(bias, c, "bias", "group_norm")
    grouped = rearrange(x, "b (g k) h w -> b g k h w", g=groups)
    x_hat = rearrange(normalize(grouped, (2, 3, 4), eps), "b g k h w -> b (g k) h w")
    return _affine(x_hat, gamma, beta)
