"""Samplers: DDPM ancestral sampling (Algorithm 5) and DDIM (survey eq. 23, App. H.2).

Both walk a decreasing list of timesteps ``t_1 > t_2 > ... > t_n`` (array indices, see
:mod:`genlib.diffusion.schedules`) and, at each, make one reverse step from ``x_t`` to ``x_prev``
(the next, less noisy, index; after the last one ``abar_prev = 1``, the clean image). The step is
DDIM's general update (Song et al. 2021, eq. 12), with ``abar`` the cumulative product (the
*survey's* ``alpha_t`` in eq. 22-23 is this ``abar``):

    1. eps    = the network's noise prediction (converted from ``sample`` / ``v_prediction``),
                guided:  eps = eps_u + s (eps_c - eps_u)                          (guidance.py)
    2. x0     = (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t)                        (eq. 12 solved for x0)
    3. x0     = clip(x0) or dynamic threshold, and eps recomputed to match        (optional)
    4. sigma  = eta sqrt((1 - abar_prev) / (1 - abar_t)) sqrt(1 - abar_t / abar_prev)   (DDIM eq. 16)
    5. x_prev = sqrt(abar_prev) x0 + sqrt(1 - abar_prev - sigma^2) eps + sigma z,  z ~ N(0, I)

``eta = 0`` is deterministic DDIM; ``eta = 1`` over consecutive steps gives sigma^2 = DDPM's
posterior variance beta-tilde, and the step is exactly DDPM's ancestral step with the "fixed small"
variance (the mean in step 5 equals the posterior mean of :func:`genlib.diffusion.forward.q_posterior`).
DDPM's "fixed large" variance (sigma^2 = beta_t) keeps that mean and adds ``sqrt(beta_t) z``.

Stages 1-5 run in :func:`genlib.kernels.sampler_step` (a fused Triton kernel on CUDA, its plain
PyTorch reference elsewhere).

Spacings of ``n`` steps among ``T`` (diffusers' ``timestep_spacing``):

* ``leading``:  ``[0, k, 2k, ..., (n-1)k]`` reversed, ``k = T // n``  (DDIM paper, Stable Diffusion)
* ``trailing``: ``round(T - i T / n) - 1`` for i = 0..n-1, so the first step is ``T - 1``
* ``linspace``: ``round(linspace(0, T - 1, n))`` reversed
"""

from __future__ import annotations

import dataclasses
from numbers import Real
from typing import Any

import numpy as np
import torch

from genlib import config
from genlib.diffusion import guidance
from genlib.diffusion.parameterisation import check_prediction_type, to_x0_eps
from genlib.diffusion.schedules import NoiseSchedule
from genlib.kernels import sampler_step

SPACINGS = ("leading", "trailing", "linspace")
VARIANCES = ("fixed_small", "fixed_large")


def check_options(clip_sample, guidance_scale) -> None:
    """``clip_sample`` is ``None`` or a positive finite number (x0 is clipped to ``[-c, c]``: with
    ``c <= 0`` every pixel would become ``c``); ``guidance_scale`` is a finite number."""
    def number(x) -> bool:  # Python and NumPy ints and floats, not bools
        return isinstance(x, Real) and not isinstance(x, (bool, np.bool_))

    if clip_sample is not None and not (number(clip_sample) and 0 < clip_sample < float("inf")):
        raise ValueError(f"clip_sample must be a positive finite number (x0 is clipped to [-c, c]) or None, "
                         f"got {clip_sample!r}")
    if not (number(guidance_scale) and np.isfinite(guidance_scale)):
        raise ValueError(f"guidance_scale must be a finite number (a Python float; 1 = no guidance), "
                         f"got {guidance_scale!r}")


def timesteps(T: int, num_steps: int, spacing: str = "leading") -> list[int]:
    """The decreasing timestep indices a ``num_steps`` sampler visits among ``T`` (see module doc)."""
    if isinstance(num_steps, bool) or not isinstance(num_steps, (int, np.integer)) or num_steps < 1:
        raise ValueError(f"num_steps must be a positive integer, got {num_steps!r}")
    if num_steps > T:
        raise ValueError(f"num_steps={num_steps} is more sampling steps than the T={T} training timesteps")
    if spacing == "leading":
        ts = np.arange(num_steps) * (T // num_steps)
    elif spacing == "trailing":
        ts = np.round(np.arange(T, 0, -T / num_steps)).astype(np.int64)[:num_steps] - 1
    elif spacing == "linspace":
        ts = np.round(np.linspace(0, T - 1, num_steps)).astype(np.int64)
    else:
        raise ValueError(f"unknown spacing {spacing!r}; expected one of {', '.join(SPACINGS)}")
    ts = sorted({int(t) for t in ts}, reverse=True)
    if len(ts) != num_steps:  # cannot happen for num_steps <= T, kept as a guard
        raise ValueError(f"spacing {spacing!r} gives repeated timesteps for num_steps={num_steps}, T={T}")
    return ts


@dataclasses.dataclass
class Trajectory:
    """What a recorded run visited (CPU float32 tensors).

    ``timesteps[i]`` is the index of step ``i``; ``xs[i]`` the ``x_t`` fed to it (``xs[-1]`` is the
    final sample, so ``len(xs) = n + 1``); ``x0s[i]`` the (clipped) x0 predicted at step ``i``.
    """

    timesteps: list[int]
    xs: list[torch.Tensor]
    x0s: list[torch.Tensor]

    def stacked(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(xs, x0s)`` as tensors of layout ``n b ...`` (``xs`` has ``n + 1`` entries)."""
        return torch.stack(self.xs), torch.stack(self.x0s)


@dataclasses.dataclass
class SampleOutput:
    sample: torch.Tensor
    trajectory: Trajectory | None = None


def _noise(shape, generator, device, dtype=torch.float32) -> torch.Tensor:
    """Gaussian noise drawn on the CPU (same numbers on every device), then moved."""
    return config.randn(shape, generator=generator, device=device, dtype=dtype)


def ddim_sigma(abar_t: float, abar_prev: float, eta: float) -> float:
    """DDIM eq. 16: ``eta sqrt((1 - abar_prev) / (1 - abar_t)) sqrt(1 - abar_t / abar_prev)``."""
    return float(eta * np.sqrt((1 - abar_prev) / (1 - abar_t)) * np.sqrt(1 - abar_t / abar_prev))


def predict_eps(model, x_t: torch.Tensor, t: int, abar_t: float, *, prediction_type: str = "epsilon",
                cond: Any = None, uncond: Any = None, guidance_scale: float = 1.0
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(eps_cond, eps_uncond)`` at timestep ``t`` (``eps_uncond`` is ``None`` without guidance).

    The network's output is converted to a noise prediction; guidance combines the two later.
    One batched call when ``cond`` and ``uncond`` are tensors, two calls otherwise.
    """
    tt = torch.full((x_t.shape[0],), t, dtype=torch.long, device=x_t.device)
    guided = uncond is not None and guidance_scale != 1.0
    if guided and isinstance(cond, torch.Tensor) and isinstance(uncond, torch.Tensor):
        both = guidance.model_output(model, torch.cat([x_t, x_t]), torch.cat([tt, tt]), torch.cat([cond, uncond]))
        out_c, out_u = both.chunk(2)
    else:
        out_c = guidance.model_output(model, x_t, tt, cond)
        out_u = guidance.model_output(model, x_t, tt, uncond) if guided else None
    def to_eps(out):
        return out if out is None or prediction_type == "epsilon" else to_x0_eps(out, x_t, abar_t, prediction_type)[1]

    return to_eps(out_c), to_eps(out_u)


def reverse_step(x_t: torch.Tensor, eps: torch.Tensor, abar_t: float, abar_prev: float, *, sigma: float = 0.0,
                 noise: torch.Tensor | None = None, eps_uncond: torch.Tensor | None = None,
                 guidance_scale: float = 1.0, clip_sample: float | None = None,
                 dynamic_percentile: float | None = None, dynamic_max: float | None = None,
                 noise_std: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """One reverse step, stages 2-5 of the module docstring; returns ``(x_prev, x0)``.

    ``sigma`` sets the mean's noise direction ``sqrt(1 - abar_prev - sigma^2)`` and, unless
    ``noise_std`` is given, the standard deviation of the added ``noise``. DDPM's fixed-large
    variance keeps the posterior mean (``sigma`` = DDIM's eta = 1 value) and adds
    ``noise_std = sqrt(beta_t)`` instead.
    """
    if x_t.shape != eps.shape:
        raise ValueError(f"eps must have x_t's layout b ... and shape {tuple(x_t.shape)}, got {tuple(eps.shape)}")
    check_options(clip_sample, guidance_scale)
    if clip_sample is not None and dynamic_percentile is not None:
        raise ValueError("pass clip_sample or dynamic_percentile, not both")
    scale = None
    if dynamic_percentile is not None:
        e = eps if eps_uncond is None else guidance.cfg_combine(eps, eps_uncond, guidance_scale)
        x0_raw = (x_t.float() - (1 - abar_t) ** 0.5 * e.float()) / abar_t ** 0.5
        scale = guidance.dynamic_threshold_scale(x0_raw, dynamic_percentile, dynamic_max).to(x_t.device)
    inside = noise_std is None or noise_std == sigma  # the kernel adds sigma * noise itself
    x_prev, x0 = sampler_step(
        x_t, eps, alpha_prod_t=abar_t, alpha_prod_t_prev=abar_prev, sigma=sigma,
        eps_uncond=eps_uncond, guidance_scale=guidance_scale,
        noise=noise if inside else None, clip_sample_range=clip_sample, dynamic_threshold=scale,
    )
    if not inside and noise is not None and noise_std > 0:
        x_prev = x_prev + noise_std * noise
    return x_prev, x0


@torch.no_grad()
def _run(model, schedule: NoiseSchedule, shape, *, x_T, steps: list[int], sigma_fn, std_fn,
         prediction_type, cond, uncond, guidance_scale, clip_sample, dynamic_percentile, dynamic_max,
         generator, device, record) -> SampleOutput:
    check_prediction_type(prediction_type)
    if x_T is None:
        if shape is None:
            raise ValueError("pass shape (b ...) or x_T")
        x = _noise(shape, generator, device)
    else:
        if shape is not None and tuple(shape) != tuple(x_T.shape):
            raise ValueError(f"shape {tuple(shape)} does not match x_T's shape {tuple(x_T.shape)}")
        config.check_finite(x_T, "x_T")
        x = x_T.to(device)
    if x.ndim < 2:
        raise ValueError(f"samples must have layout b ... (at least 2 dims), got shape {tuple(x.shape)}")
    if guidance_scale != 1.0 and uncond is None:
        raise ValueError("guidance_scale != 1 needs uncond (the condition for the unconditional prediction)")
    abar = schedule.alphas_cumprod.tolist()
    traj = Trajectory(list(steps), [x.detach().float().cpu()], []) if record else None
    for i, t in enumerate(steps):
        t_prev = steps[i + 1] if i + 1 < len(steps) else -1
        abar_t, abar_prev = abar[t], (abar[t_prev] if t_prev >= 0 else 1.0)
        eps_c, eps_u = predict_eps(model, x, t, abar_t, prediction_type=prediction_type, cond=cond,
                                   uncond=uncond, guidance_scale=guidance_scale)
        sigma = sigma_fn(abar_t, abar_prev)
        std = sigma if std_fn is None else std_fn(abar_t, abar_prev)
        noise = _noise(x.shape, generator, device) if std > 0 and t_prev >= 0 else None  # none at the last step
        x, x0 = reverse_step(x, eps_c.to(x.dtype), abar_t, abar_prev, sigma=sigma, noise=noise,
                             noise_std=std, eps_uncond=eps_u, guidance_scale=guidance_scale,
                             clip_sample=clip_sample, dynamic_percentile=dynamic_percentile,
                             dynamic_max=dynamic_max)
        if record:
            traj.xs.append(x.detach().float().cpu())
            traj.x0s.append(x0.detach().float().cpu())
    return SampleOutput(x, traj)


def _device(model, device):
    if device is not None:
        return torch.device(device)
    return config.module_device(model) if isinstance(model, torch.nn.Module) else torch.device("cpu")


def ddim_sample(model, schedule: NoiseSchedule, shape=None, *, num_steps: int = 50, eta: float = 0.0,
                spacing: str = "leading", prediction_type: str = "epsilon", x_T: torch.Tensor | None = None,
                cond: Any = None, uncond: Any = None, guidance_scale: float = 1.0,
                clip_sample: float | None = None, dynamic_percentile: float | None = None,
                dynamic_max: float | None = None, generator: torch.Generator | None = None,
                device=None, record: bool = False) -> SampleOutput:
    """DDIM sampling (survey eq. 23, DDIM eq. 12) with ``num_steps`` steps and stochasticity ``eta``.

    ``model(x_t, t[, cond])`` returns a ``prediction_type`` output of ``x_t``'s shape. Start from
    ``x_T`` or from fresh noise of ``shape`` (``b ...``) drawn with ``generator``. Options:
    ``spacing`` (``leading | trailing | linspace``); ``clip_sample`` (static clip of x0 to
    ``[-c, c]``) or ``dynamic_percentile`` / ``dynamic_max`` (Imagen's dynamic thresholding);
    classifier-free guidance with ``cond``, ``uncond`` and ``guidance_scale`` (genlib's convention,
    see :mod:`genlib.diffusion.guidance`); ``record`` keeps every x_t and predicted x0.
    """
    if not eta >= 0:
        raise ValueError(f"eta must be >= 0, got {eta}")
    steps = timesteps(len(schedule), num_steps, spacing)
    return _run(model, schedule, shape, x_T=x_T, steps=steps,
                sigma_fn=lambda a, ap: ddim_sigma(a, ap, eta), std_fn=None,
                prediction_type=prediction_type, cond=cond, uncond=uncond, guidance_scale=guidance_scale,
                clip_sample=clip_sample, dynamic_percentile=dynamic_percentile, dynamic_max=dynamic_max,
                generator=generator, device=_device(model, device), record=record)


def ddpm_sample(model, schedule: NoiseSchedule, shape=None, *, variance: str = "fixed_small",
                num_steps: int | None = None, spacing: str = "leading", prediction_type: str = "epsilon",
                x_T: torch.Tensor | None = None, cond: Any = None, uncond: Any = None,
                guidance_scale: float = 1.0, clip_sample: float | None = None,
                dynamic_percentile: float | None = None, dynamic_max: float | None = None,
                generator: torch.Generator | None = None, device=None, record: bool = False) -> SampleOutput:
    """DDPM ancestral sampling (Algorithm 5): every timestep (or ``num_steps`` of them, respaced).

    Each step draws ``x_prev ~ N(posterior mean, sigma^2 I)``: ``variance="fixed_small"`` uses
    ``sigma^2 = beta-tilde_t`` (the true posterior variance), ``"fixed_large"`` uses ``beta_t``. With
    fewer steps the betas are those of the respaced chain, ``1 - abar_t / abar_prev``. The last
    step adds no noise. Other options as :func:`ddim_sample`.
    """
    if variance not in VARIANCES:
        raise ValueError(f"unknown variance {variance!r}; expected one of {', '.join(VARIANCES)}")
    steps = timesteps(len(schedule), len(schedule) if num_steps is None else num_steps, spacing)
    sigma_fn = lambda a, ap: ddim_sigma(a, ap, 1.0)  # the mean is always the posterior mean
    std_fn = None if variance == "fixed_small" else (lambda a, ap: float(np.sqrt(1 - a / ap)))  # sqrt(beta_t)
    return _run(model, schedule, shape, x_T=x_T, steps=steps, sigma_fn=sigma_fn, std_fn=std_fn,
                prediction_type=prediction_type, cond=cond, uncond=uncond, guidance_scale=guidance_scale,
                clip_sample=clip_sample, dynamic_percentile=dynamic_percentile, dynamic_max=dynamic_max,
                generator=generator, device=_device(model, device), record=record)
