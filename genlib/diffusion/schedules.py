"""Noise schedules: how much noise the forward process adds at each step (survey §7.3, eq. 11).

Indexing (one convention for all of genlib, the one diffusers uses). The DDPM paper numbers the
forward steps 1..T and writes ``q(x_t | x_{t-1}) = N(sqrt(1 - beta_t) x_{t-1}, beta_t I)``. Code
stores 0-indexed arrays, so array index ``t`` in ``0 .. T-1`` is the paper's step ``t + 1``:

    betas[t]           = beta_{t+1}              variance added by step t (from x_{t} to x_{t+1} in paper numbers)
    alphas[t]          = 1 - betas[t]
    alphas_cumprod[t]  = prod_{s <= t} alphas[s] = abar_{t+1}   (the closed form, eq. 12, uses this)

so ``alphas_cumprod[0] = 1 - betas[0]`` is already a (slightly) noised image and
``alphas_cumprod[T-1]`` is (almost) pure noise. The clean image has no index; samplers treat the
step after index 0 as ``abar = 1``.

Kinds (all computed in float64):

* ``linear`` -- DDPM: betas evenly spaced from 1e-4 to 0.02 at T = 1000. For other T both ends are
  multiplied by 1000 / T (Improved DDPM's rescaling), so every T ends near the same noise level;
  without it a T = 100 chain stops at abar ~ 0.36, nowhere near noise.
* ``cosine`` -- Improved DDPM (Nichol & Dhariwal): ``abar(t) = f(t) / f(0)`` with
  ``f(t) = cos^2((t / T + s) / (1 + s) * pi / 2)``, ``s = 0.008``; betas
  ``1 - abar(t) / abar(t - 1)`` clipped at 0.999 (the last steps would otherwise reach 1).
* ``scaled_linear`` -- Latent Diffusion / Stable Diffusion: ``sqrt(beta)`` evenly spaced from
  sqrt(0.00085) to sqrt(0.012) at T = 1000, rescaled by 1000 / T like ``linear``.

Every quantity a sampler or a loss needs derives from ``alphas_cumprod``: the signal-to-noise ratio
``snr = abar / (1 - abar)`` and its log ``log_snr`` (the ``lambda_t`` of v-prediction papers).
"""

from __future__ import annotations

import math
from typing import Sequence

import torch

KINDS = ("linear", "cosine", "scaled_linear")


def _check_T(T: int) -> int:
    if isinstance(T, bool) or not isinstance(T, int) or T < 2:
        raise ValueError(f"num_train_timesteps T must be an integer >= 2, got {T!r}")
    return T


def linear_betas(T: int, beta_start: float = 1e-4, beta_end: float = 0.02, reference_T: int = 1000) -> torch.Tensor:
    """DDPM's linear betas, both ends scaled by ``reference_T / T`` (float64, ``T``)."""
    _check_T(T)
    scale = reference_T / T
    lo, hi = beta_start * scale, beta_end * scale
    if not 0 < lo <= hi < 1:
        raise ValueError(f"linear schedule: betas must lie in (0, 1); T={T} rescales them to [{lo}, {hi}]")
    return torch.linspace(lo, hi, T, dtype=torch.float64)


def scaled_linear_betas(T: int, beta_start: float = 0.00085, beta_end: float = 0.012, reference_T: int = 1000) -> torch.Tensor:
    """LDM's betas: linear in sqrt(beta), then squared; ends scaled by ``reference_T / T``."""
    _check_T(T)
    scale = reference_T / T
    lo, hi = beta_start * scale, beta_end * scale
    if not 0 < lo <= hi < 1:
        raise ValueError(f"scaled_linear schedule: betas must lie in (0, 1); T={T} rescales them to [{lo}, {hi}]")
    return torch.linspace(math.sqrt(lo), math.sqrt(hi), T, dtype=torch.float64) ** 2


def cosine_alpha_bar(u: torch.Tensor, s: float = 0.008) -> torch.Tensor:
    """``f(u) / f(0)`` with ``f(u) = cos^2((u + s) / (1 + s) * pi / 2)``, ``u = t / T`` in [0, 1]."""
    f = lambda v: torch.cos((v + s) / (1 + s) * math.pi / 2) ** 2
    return f(u) / f(torch.zeros_like(u))


def cosine_betas(T: int, s: float = 0.008, max_beta: float = 0.999) -> torch.Tensor:
    """Improved DDPM's cosine betas ``1 - abar(t) / abar(t - 1)`` for paper steps t = 1..T, clipped."""
    _check_T(T)
    if not s > 0:
        raise ValueError(f"cosine schedule: offset s must be > 0, got {s}")
    u = torch.arange(T + 1, dtype=torch.float64) / T
    abar = cosine_alpha_bar(u, s)
    return (1 - abar[1:] / abar[:-1]).clamp(max=max_beta)


class NoiseSchedule:
    """A discrete noise schedule with diffusers' names; every tensor is float64 on the CPU.

    ``NoiseSchedule("cosine", 1000)`` or ``NoiseSchedule.from_betas(betas)``. Attributes:
    ``betas``, ``alphas``, ``alphas_cumprod`` (index convention in the module docstring),
    ``alphas_cumprod_prev`` (1 before index 0), ``snr``, ``log_snr``, ``posterior_variance``
    (DDPM's beta-tilde) and ``num_train_timesteps`` (``T``).
    """

    def __init__(self, kind: str = "linear", num_train_timesteps: int = 1000, *, s: float = 0.008,
                 beta_start: float | None = None, beta_end: float | None = None):
        T = _check_T(num_train_timesteps)
        if kind == "linear":
            betas = linear_betas(T, beta_start or 1e-4, beta_end or 0.02)
        elif kind == "scaled_linear":
            betas = scaled_linear_betas(T, beta_start or 0.00085, beta_end or 0.012)
        elif kind == "cosine":
            if beta_start is not None or beta_end is not None:
                raise ValueError("the cosine schedule has no beta_start / beta_end; it takes s")
            betas = cosine_betas(T, s)
        else:
            raise ValueError(f"unknown schedule kind {kind!r}; expected one of {', '.join(KINDS)}")
        self.kind, self.s = kind, s
        self._set(betas)

    @classmethod
    def from_betas(cls, betas: Sequence[float] | torch.Tensor) -> "NoiseSchedule":
        """A schedule from any betas in (0, 1) (``T >= 2`` of them), e.g. for property tests."""
        betas = torch.as_tensor(betas, dtype=torch.float64).flatten()
        _check_T(len(betas))
        if not bool(((betas > 0) & (betas < 1)).all()):
            raise ValueError("betas must all lie in the open interval (0, 1)")
        obj = cls.__new__(cls)
        obj.kind, obj.s = "custom", None
        obj._set(betas)
        return obj

    def _set(self, betas: torch.Tensor) -> None:
        self.betas = betas
        self.alphas = 1.0 - betas
        self.alphas_cumprod = torch.cumprod(self.alphas, 0)  # abar[t] = prod_{s <= t} alphas[s]
        self.alphas_cumprod_prev = torch.cat([torch.ones(1, dtype=torch.float64), self.alphas_cumprod[:-1]])
        self.snr = self.alphas_cumprod / (1 - self.alphas_cumprod)
        self.log_snr = torch.log(self.snr)
        # DDPM eq. 7: the variance of q(x_{t-1} | x_t, x0), "beta tilde"
        self.posterior_variance = (1 - self.alphas_cumprod_prev) / (1 - self.alphas_cumprod) * self.betas

    @property
    def num_train_timesteps(self) -> int:
        return len(self.betas)

    T = num_train_timesteps

    def __len__(self) -> int:
        return len(self.betas)

    def __repr__(self) -> str:
        return (f"NoiseSchedule(kind={self.kind!r}, T={len(self)}, abar[0]={self.alphas_cumprod[0]:.5f}, "
                f"abar[T-1]={self.alphas_cumprod[-1]:.2e})")

    def check_t(self, t: torch.Tensor | int, name: str = "t") -> torch.Tensor:
        """``t`` as an int64 tensor after checking ``0 <= t < T`` (ValueError otherwise)."""
        if isinstance(t, (bool, str, bytes)) or t is None:
            raise ValueError(f"{name} must be integer timesteps in [0, {len(self) - 1}] (an int or a tensor), "
                             f"got {type(t).__name__} {t!r}")
        t = torch.as_tensor(t)
        if t.dtype == torch.bool:
            raise ValueError(f"{name} must be integer timesteps in [0, {len(self) - 1}], got dtype bool")
        if t.is_floating_point():
            if not bool((t == t.round()).all()):
                raise ValueError(f"{name} must hold integer timesteps in [0, {len(self) - 1}], got fractional values")
            t = t.round()
        t = t.long()
        if t.numel() and (int(t.min()) < 0 or int(t.max()) >= len(self)):
            raise ValueError(f"{name} must lie in [0, T-1] = [0, {len(self) - 1}], got values in "
                             f"[{int(t.min())}, {int(t.max())}]")
        return t

    def gather(self, values: torch.Tensor, t: torch.Tensor | int, like: torch.Tensor) -> torch.Tensor:
        """``values[t]`` shaped to broadcast against ``like: b ...`` (dtype and device of ``like``).

        ``t`` is one timestep (an int or 0-d tensor) or one per sample, shape ``(b,)``.
        """
        t = self.check_t(t)
        out = values[t.cpu()]
        if out.ndim == 1:
            if like.ndim == 0 or out.shape[0] != like.shape[0]:
                raise ValueError(f"t holds {out.shape[0]} timesteps but x has layout b ... with b = "
                                 f"{like.shape[0] if like.ndim else 'none'}; pass one t per sample or one scalar t")
            out = out.reshape(-1, *[1] * (like.ndim - 1))
        # non_blocking from the CPU: a blocking copy to a GPU would first wait for all queued work.
        return out.to(device=like.device, dtype=like.dtype if like.is_floating_point() else torch.float32,
                      non_blocking=out.device.type == "cpu")

    def abar(self, t: int | torch.Tensor) -> float | torch.Tensor:
        """``alphas_cumprod[t]`` in float64, with ``t = -1`` meaning the clean image (``abar = 1``):
        the name samplers and the sampler kernel use. A python float for an int ``t``; a CPU
        float64 tensor of ``t``'s shape for a tensor (one timestep per sample)."""
        if isinstance(t, torch.Tensor):
            t = t.long().cpu()
            if t.numel() and (int(t.min()) < -1 or int(t.max()) >= len(self)):
                raise ValueError(f"timesteps must lie in [-1, {len(self) - 1}] (-1: the clean image), got values in "
                                 f"[{int(t.min())}, {int(t.max())}]")
            return torch.cat([torch.ones(1, dtype=torch.float64), self.alphas_cumprod])[t + 1]
        if isinstance(t, bool) or not -1 <= int(t) < len(self) or int(t) != t:
            raise ValueError(f"t must be a timestep in [-1, {len(self) - 1}] (-1: the clean image), got {t!r}")
        return 1.0 if int(t) == -1 else float(self.alphas_cumprod[int(t)])
