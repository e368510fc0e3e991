"""Training losses: the simple loss (survey eq. 14, Algorithm 2) and weighted variants.

Algorithm 2, line by line (array index ``t`` = paper's ``t + 1``)::

    x0  ~ data                                   # the batch
    t   ~ Uniform{0, ..., T-1}                   # one per sample
    eps ~ N(0, I)                                # fresh for every sample and every step
    x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps # eq. 12
    loss = || target - model(x_t, t) ||^2        # target = eps for the simple loss, eq. 14

Weightings (per sample, applied to the mean squared error over the other dims). Each is stated in
x0 space, where the three prediction types share one error: ``||eps - eps^||^2 = snr ||x0 - x0^||^2``
and ``||v - v^||^2 = (snr + 1) ||x0 - x0^||^2``.

* ``simple``  -- weight 1 on the prediction's own error (DDPM's L_simple for ``epsilon``).
* ``x0``      -- the error of the implied x0: weight ``1 / snr`` (epsilon), ``1 / (snr + 1)`` (v), 1 (sample).
* ``min_snr`` -- Min-SNR-gamma (Hang et al. 2023): x0 error weighted by ``min(snr, gamma)``.
* ``snr_plus_one``, ``truncated_snr`` -- Salimans & Ho's distillation weights on the x0 error,
  ``snr + 1`` (the v error) and ``max(snr, 1)`` (:mod:`genlib.diffusion.distillation`).
"""

from __future__ import annotations

from typing import Any

import torch

from genlib import config
from genlib.diffusion import guidance
from genlib.diffusion.forward import q_sample
from genlib.diffusion.parameterisation import check_prediction_type, target
from genlib.diffusion.schedules import NoiseSchedule

WEIGHTINGS = ("simple", "x0", "min_snr", "snr_plus_one", "truncated_snr")


def loss_weight(schedule: NoiseSchedule, t: torch.Tensor, prediction_type: str = "epsilon",
                weighting: str = "simple", gamma: float = 5.0) -> torch.Tensor:
    """Per-sample weights ``(b,)`` (float32) for the squared error of a ``prediction_type`` output."""
    check_prediction_type(prediction_type)
    if weighting not in WEIGHTINGS:
        raise ValueError(f"unknown weighting {weighting!r}; expected one of {', '.join(WEIGHTINGS)}")
    t = schedule.check_t(t)
    snr = schedule.snr[t.cpu()]
    if weighting == "simple":
        return torch.ones_like(snr, dtype=torch.float32)
    # how much larger this prediction's squared error is than the x0 error it implies
    to_x0 = {"epsilon": snr, "sample": torch.ones_like(snr), "v_prediction": snr + 1}[prediction_type]
    wanted = {"x0": torch.ones_like(snr), "min_snr": snr.clamp(max=gamma), "snr_plus_one": snr + 1,
              "truncated_snr": snr.clamp(min=1)}[weighting]
    return (wanted / to_x0).float()


def diffusion_loss(model: torch.nn.Module, schedule: NoiseSchedule, x0: torch.Tensor, *,
                   prediction_type: str = "epsilon", weighting: str = "simple", gamma: float = 5.0,
                   cond: Any = None, t: torch.Tensor | None = None, noise: torch.Tensor | None = None,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """One Monte-Carlo estimate of the training loss on ``x0: b ...`` (Algorithm 2, eq. 14).

    ``t`` and ``noise`` are drawn fresh unless given (tests pass them to compare with a closed
    form). Returns the scalar mean over the batch of the weighted per-sample mean squared error.
    An empty batch, or (on the CPU) an ``x0`` holding NaN or inf, is a ``ValueError``.
    """
    check_prediction_type(prediction_type)
    if x0.ndim < 2:
        raise ValueError(f"x0 must have layout b ... (at least 2 dims), got shape {tuple(x0.shape)}")
    b = x0.shape[0]
    if b == 0:
        raise ValueError(f"x0 is an empty batch (b = 0, shape {tuple(x0.shape)}): the loss is a mean over samples")
    if x0.device.type == "cpu":  # free here; on a GPU it would wait once per step (fit reports a NaN loss)
        config.check_finite(x0, "x0")
    if t is None:
        t = torch.randint(0, len(schedule), (b,), generator=generator)
    # t is checked and used for lookups on the CPU: checking a CUDA t (its min and max) or indexing
    # the tables with it would read it back from the GPU, six times per step. (The looked-up
    # coefficients still travel to the GPU, and PyTorch finishes such small copies synchronously.)
    t = schedule.check_t(t).cpu()
    if t.shape != (b,):
        raise ValueError(f"t must hold one timestep per sample, shape ({b},), got {tuple(t.shape)}")
    if noise is None:
        noise = config.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype) if generator is not None \
            else torch.randn_like(x0)
    x_t = q_sample(schedule, x0, t, noise)
    abar = schedule.gather(schedule.alphas_cumprod, t, x0)
    goal = target(prediction_type, x0, noise, abar)
    pred = guidance.model_output(model, x_t, t.to(x0.device, non_blocking=True), cond)  # t is on the CPU
    per_sample = (pred.float() - goal.float()).pow(2).flatten(1).mean(1)
    w = loss_weight(schedule, t, prediction_type, weighting, gamma).to(per_sample.device, non_blocking=True)
    return (w * per_sample).mean()
