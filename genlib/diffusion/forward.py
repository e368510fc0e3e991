"""The forward (noising) process: one step, the closed form (eq. 12) and the posterior.

Index convention of :mod:`genlib.diffusion.schedules`: array index ``t`` is the paper's step
``t + 1``, and ``x0`` is the clean image. Layout: any ``b ...`` (images ``b c h w``, points ``b d``).
"""

from __future__ import annotations

import torch

from genlib.diffusion.schedules import NoiseSchedule


def _same_shape(a: torch.Tensor, b: torch.Tensor, na: str, nb: str) -> None:
    if a.shape != b.shape:
        raise ValueError(f"{nb} must have {na}'s layout b ... and shape {tuple(a.shape)}, got {tuple(b.shape)}")


def _check_x(x: torch.Tensor, name: str) -> None:
    if not isinstance(x, torch.Tensor) or x.ndim < 1:
        raise ValueError(f"{name} must be a tensor of layout b ... (at least 1 dim)")


def q_step(schedule: NoiseSchedule, x_prev: torch.Tensor, t: torch.Tensor | int, noise: torch.Tensor) -> torch.Tensor:
    """One forward step, DDPM's ``q(x_t | x_{t-1})`` (survey §7.4, first displayed equation):

        x_t = sqrt(1 - beta_t) x_{t-1} + sqrt(beta_t) eps

    ``x_prev`` is the sample at index ``t - 1`` (the clean image when ``t = 0``); returns index ``t``.
    """
    _check_x(x_prev, "x_prev")
    _same_shape(x_prev, noise, "x_prev", "noise")
    beta = schedule.gather(schedule.betas, t, x_prev)
    return (1 - beta).sqrt() * x_prev + beta.sqrt() * noise


def q_sample(schedule: NoiseSchedule, x0: torch.Tensor, t: torch.Tensor | int, noise: torch.Tensor) -> torch.Tensor:
    """The closed form, survey eq. 12 (DDPM eq. 4): jump from ``x0`` to step ``t`` at once,

        x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps,    abar_t = alphas_cumprod[t]

    ``t``: one timestep or one per sample ``(b,)``; ``noise``: x0's shape (diffusers' ``add_noise``).
    """
    _check_x(x0, "x0")
    _same_shape(x0, noise, "x0", "noise")
    abar = schedule.gather(schedule.alphas_cumprod, t, x0)
    return abar.sqrt() * x0 + (1 - abar).sqrt() * noise


def q_mean_variance(schedule: NoiseSchedule, x0: torch.Tensor, t: torch.Tensor | int) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean ``sqrt(abar_t) x0`` and variance ``1 - abar_t`` of ``q(x_t | x0)`` (eq. 12)."""
    _check_x(x0, "x0")
    abar = schedule.gather(schedule.alphas_cumprod, t, x0)
    return abar.sqrt() * x0, (1 - abar).expand_as(x0)


def q_posterior(schedule: NoiseSchedule, x0: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor | int) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and variance of ``q(x_{t-1} | x_t, x0)`` (DDPM eq. 6-7), the target of every reverse step:

        mean     = sqrt(abar_{t-1}) beta_t / (1 - abar_t) x0 + sqrt(alpha_t) (1 - abar_{t-1}) / (1 - abar_t) x_t
        variance = (1 - abar_{t-1}) / (1 - abar_t) beta_t            ("beta tilde"; 0 at t = 0)
    """
    _check_x(x0, "x0")
    _same_shape(x0, x_t, "x0", "x_t")
    abar = schedule.gather(schedule.alphas_cumprod, t, x_t)
    abar_prev = schedule.gather(schedule.alphas_cumprod_prev, t, x_t)
    beta = schedule.gather(schedule.betas, t, x_t)
    coef_x0 = abar_prev.sqrt() * beta / (1 - abar)
    coef_xt = (1 - beta).sqrt() * (1 - abar_prev) / (1 - abar)
    variance = schedule.gather(schedule.posterior_variance, t, x_t)
    return coef_x0 * x0 + coef_xt * x_t, variance.expand_as(x_t)
