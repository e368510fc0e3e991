"""Diffusion: schedules, the forward process, parameterisations, losses, samplers, guidance.

Pure functions of tensors (the networks live in :mod:`genlib.nn` and :mod:`genlib.models`). Names
follow diffusers' schedulers (``betas``, ``alphas_cumprod``, ``prediction_type``), and array index
``t`` in ``0 .. T-1`` is the DDPM paper's step ``t + 1`` (see :mod:`~genlib.diffusion.schedules`).

===========================  ===============================================================
:class:`NoiseSchedule`       ``linear`` / ``cosine`` / ``scaled_linear``; betas, alpha-bar, SNR
:func:`q_step`               one forward step ``q(x_t | x_{t-1})``
:func:`q_sample`             the closed form, survey eq. 12
:func:`q_posterior`          mean and variance of ``q(x_{t-1} | x_t, x0)``
:func:`to_x0_eps`            ``epsilon`` / ``sample`` / ``v_prediction`` conversions
:func:`diffusion_loss`       Algorithm 2 / eq. 14, with ``simple``, ``x0`` or ``min_snr`` weights
:func:`ddpm_sample`          ancestral sampling, Algorithm 5 (fixed small or large variance)
:func:`ddim_sample`          DDIM, eq. 23, any steps, eta, spacing, clipping, thresholding, CFG
:func:`sample`               the one reverse-diffusion loop, driven by a :class:`Sampler`
:mod:`guidance`              CFG convention and conversions, static / dynamic thresholding
===========================  ===============================================================
"""

from genlib.diffusion import guidance
from genlib.diffusion.forward import q_mean_variance, q_posterior, q_sample, q_step
from genlib.diffusion.losses import WEIGHTINGS, diffusion_loss, loss_weight
from genlib.diffusion.parameterisation import PREDICTION_TYPES, convert, target, to_x0_eps, v_from
from genlib.diffusion.samplers import (
    SPACINGS, Sampler, SampleOutput, Trajectory, ddim_sample, ddim_sigma, ddpm_sample, predict, reverse_step,
    sample, timesteps,
)
from genlib.diffusion.schedules import KINDS, NoiseSchedule

__all__ = [
    "KINDS", "PREDICTION_TYPES", "SPACINGS", "WEIGHTINGS", "NoiseSchedule", "SampleOutput", "Sampler", "Trajectory",
    "convert", "ddim_sample", "ddim_sigma", "ddpm_sample", "diffusion_loss", "guidance", "loss_weight",
    "predict", "q_mean_variance", "q_posterior", "q_sample", "q_step", "reverse_step", "sample", "target",
    "timesteps", "to_x0_eps", "v_from",
]
