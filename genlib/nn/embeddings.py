"""The sinusoidal timestep embedding (survey §8.2, eq. 15) and the MLP that follows it in a U-Net.

A diffusion network is told the timestep ``t`` as a vector, not a scalar: ``t`` is multiplied by
``half = dim / 2`` frequencies spread geometrically from 1 down to ``1 / max_period`` and each
product goes through a cosine and a sine.

**The pinned convention** (the one of Latent Diffusion / Stable Diffusion, and of the survey's
Listing 1)::

    freq_i   = max_period ** (-i / half)          i = 0 .. half - 1   (divisor: half)
    emb(t)   = [cos(t freq_0) .. cos(t freq_{half-1}),  sin(t freq_0) .. sin(t freq_{half-1})]

cosines first, then sines, frequencies with divisor ``half``. The other common one, the original
DDPM code's (and diffusers' default ``flip_sin_to_cos=False, downscale_freq_shift=1``), puts the
sines first and divides by ``half - 1`` so that the last frequency is exactly ``1 / max_period``;
:func:`ddpm_timestep_embedding` computes it for comparison only. Eq. 15 as printed interleaves
sine (even ``i``) and cosine (odd ``i``); that is a permutation of the same numbers. Any of these
trains equally well, but weights trained with one are wrong for another.

Layouts: timesteps ``b`` (integer or float; a float ``t`` is used as it is, so a continuous-time
model may pass ``t`` in ``[0, 1]`` scaled by its own factor) -> embedding ``b dim``.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from genlib import config


def _embedding_input(t: torch.Tensor | float | int, dim: int) -> torch.Tensor:
    if dim < 2 or dim % 2:
        raise ValueError(f"timestep embedding dim must be an even number >= 2, got {dim}")
    t = torch.as_tensor(t)
    if t.ndim == 0:
        t = t[None]
    if t.ndim != 1:
        raise ValueError(f"timesteps must have layout b (one per sample), got shape {tuple(t.shape)}")
    if t.dtype == torch.bool or t.is_complex():
        raise ValueError(f"timesteps must be integers or floats, got dtype {t.dtype}")
    return t.float()


def timestep_embedding(t: torch.Tensor | float | int, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Eq. 15 in the pinned convention: ``b -> b dim`` as ``[cos(t f) | sin(t f)]``, ``f_i =
    max_period^(-i / (dim / 2))``. A scalar ``t`` gives ``1 dim``."""
    t = _embedding_input(t, dim)
    half = dim // 2
    # freq_i = max_period^(-i / half): from 1 (fast, changes every step) down to ~1/max_period (slow)
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    angles = t[:, None] * freqs[None, :]  # b half
    return torch.cat([torch.cos(angles), torch.sin(angles)], dim=-1)  # b dim: cosines, then sines


def ddpm_timestep_embedding(t: torch.Tensor | float | int, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """The *other* common convention, for comparison only: ``[sin(t f) | cos(t f)]`` with
    ``f_i = max_period^(-i / (dim/2 - 1))`` (the original DDPM code). Not used by genlib's models."""
    t = _embedding_input(t, dim)
    half = dim // 2
    if half < 2:
        raise ValueError(f"the DDPM convention divides by dim/2 - 1 and needs dim >= 4, got {dim}")
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / (half - 1))
    angles = t[:, None] * freqs[None, :]
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=-1)


class TimestepEmbedding(nn.Module):
    """``t: b -> b out_dim``: the sinusoidal embedding of width ``dim``, then Linear, SiLU, Linear.

    The U-Net adds this vector (projected per block) to its feature maps, so every layer knows
    how noisy its input is.
    """

    def __init__(self, dim: int, out_dim: int, max_period: float = 10000.0):
        super().__init__()
        if dim < 2 or dim % 2:
            raise ValueError(f"TimestepEmbedding dim must be an even number >= 2, got {dim}")
        self.dim, self.max_period = dim, max_period
        self.mlp = nn.Sequential(nn.Linear(dim, out_dim), nn.SiLU(), nn.Linear(out_dim, out_dim))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        emb = timestep_embedding(t, self.dim, self.max_period).to(self.mlp[0].weight.device)
        return self.mlp(emb.to(self.mlp[0].weight.dtype))


def check_timesteps(t, who: str, num_timesteps: int | None = None) -> torch.Tensor:
    """``t`` (an int, a float, a NumPy number or array, or a tensor) as a tensor, after checking
    that it holds numbers that are timesteps: ``t >= 0``, and ``t <= num_timesteps - 1`` when the
    caller knows its ``T``. ``who`` names the network in the error.

    The range is checked where ``t`` lives on the CPU (free). A ``t`` already on a GPU is not read
    back (that would wait for the GPU once per forward): genlib's samplers and losses check their
    timesteps on the CPU before they move them.
    """
    numbers = (torch.Tensor, np.ndarray, np.number, int, float, list, tuple)
    if not isinstance(t, numbers) or isinstance(t, (bool, np.bool_)):
        raise ValueError(f"{who}: timesteps t must be numbers (an int, a float or a tensor of layout b), "
                         f"got {type(t).__name__} {t!r}")
    t = torch.as_tensor(t)
    if t.dtype in (torch.uint16, torch.uint32, torch.uint64):  # no min/max kernels for these: as int64
        t = t.long()
    if t.dtype == torch.bool or t.is_complex():
        raise ValueError(f"{who}: timesteps t must be numbers (integers or floats), got dtype {t.dtype}")
    if t.device.type == "cpu" and t.numel():
        lo, hi = torch.stack(torch.aminmax(t)).tolist()
        if num_timesteps is not None and not (0 <= lo and hi <= num_timesteps - 1):
            raise ValueError(f"{who}: t must lie in [0, T-1] = [0, {num_timesteps - 1}], got values in [{lo}, {hi}]")
        if not lo >= 0:  # also catches NaN
            raise ValueError(f"{who}: t must be >= 0 (a timestep), got values in [{lo}, {hi}]")
    return t


def batch_timesteps(t: torch.Tensor | float | int, b: int, device: torch.device, who: str) -> torch.Tensor:
    """A denoiser's timesteps as one per sample: a scalar ``t`` is repeated ``b`` times, a tensor
    must have layout ``b`` (checked by :func:`check_timesteps`). ``who`` names the network in the error."""
    t = check_timesteps(t, who).to(device)
    if t.ndim == 0:
        t = t.expand(b)
    if t.shape != (b,):
        raise ValueError(f"{who} expects timesteps t of layout b = ({b},) (or a scalar), got {tuple(t.shape)}")
    return t


def check_class_labels(cond: torch.Tensor, b: int, num_classes: int, who: str, null_meaning: str) -> torch.Tensor:
    """Integer class labels of layout ``b`` in ``0..num_classes``, where ``num_classes`` itself is the
    extra label ``null_meaning`` (classifier-free guidance's "no class"); returned as int64."""
    if cond.shape != (b,) or cond.dtype not in (torch.int32, torch.int64):
        raise ValueError(f"{who} expects cond as integer labels of layout b = ({b},), got {tuple(cond.shape)} {cond.dtype}")
    config.check_range(cond, 0, num_classes, f"{who} labels must be in 0..{num_classes} ({num_classes} = {null_meaning})")
    return cond.long()
