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
PyTorch reference elsewhere), called by :func:`reverse_step`. Everything in genlib that samples goes
through one loop, :func:`sample`, driven by a :class:`Sampler` (timesteps chosen once, then a
``step`` per timestep, in the manner of diffusers' schedulers), with guidance and thresholding as
small objects (:class:`~genlib.diffusion.guidance.Guidance`, :class:`~genlib.diffusion.guidance.Threshold`).
:func:`ddim_sample` and :func:`ddpm_sample` are that loop with keyword options; the distilled
students, Make-A-Video's frame refinement and every model's ``sample`` use it too.

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
from genlib.diffusion.parameterisation import check_prediction_type
from genlib.diffusion.schedules import NoiseSchedule
from genlib.kernels import sampler_step
from genlib.kernels.sampler import implied_x0_eps

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


def predict(model, x_t: torch.Tensor, t: int | torch.Tensor, *, cond: Any = None, uncond: Any = None,
            guidance_scale: float | torch.Tensor = 1.0, model_inputs: tuple = ()
            ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The network's outputs ``(pred_cond, pred_uncond)`` at timestep ``t`` (``pred_uncond`` is
    ``None`` without guidance), of whatever kind it predicts; guidance combines them in the step.

    ``t`` is one timestep or one per sample (``b``). One batched call when ``cond`` and ``uncond``
    are tensors, two calls otherwise. ``model_inputs`` go to the network after ``cond`` (e.g. the
    guidance weight ``w`` of a guidance-conditioned student).
    """
    b = x_t.shape[0]
    tt = (t.to(device=x_t.device, dtype=torch.long) if isinstance(t, torch.Tensor)
          else torch.full((b,), t, dtype=torch.long, device=x_t.device))
    guided = uncond is not None and not guidance.is_unguided(guidance_scale)
    if guided and isinstance(cond, torch.Tensor) and isinstance(uncond, torch.Tensor):
        extra = tuple(torch.cat([e, e]) if isinstance(e, torch.Tensor) else e for e in model_inputs)
        both = guidance.model_output(model, torch.cat([x_t, x_t]), torch.cat([tt, tt]), torch.cat([cond, uncond]),
                                     *extra)
        return tuple(both.chunk(2))
    out_c = guidance.model_output(model, x_t, tt, cond, *model_inputs)
    return out_c, guidance.model_output(model, x_t, tt, uncond, *model_inputs) if guided else None


def _per_sample(c, x: torch.Tensor):
    """A float stays a float; a ``b`` tensor becomes ``b 1 ...`` in float32, to broadcast against ``x``."""
    return c.to(device=x.device, dtype=torch.float32).reshape(-1, *[1] * (x.ndim - 1)) if isinstance(c, torch.Tensor) else c


def reverse_step(x_t: torch.Tensor, pred: torch.Tensor, abar_t: float | torch.Tensor,
                 abar_prev: float | torch.Tensor, *, prediction_type: str = "epsilon", sigma: float = 0.0,
                 noise: torch.Tensor | None = None, pred_uncond: torch.Tensor | None = None,
                 guidance_scale: float | torch.Tensor = 1.0, threshold: guidance.Threshold | None = None,
                 noise_std: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """One reverse step, stages 1-5 of the module docstring; returns ``(x_prev, x0)``.

    ``pred`` (and ``pred_uncond`` under guidance) is the network's output, of kind
    ``prediction_type``. ``abar_t``, ``abar_prev`` are floats or one per sample (``b``; float64
    keeps the step's coefficients exact). ``sigma`` sets the mean's noise direction
    ``sqrt(1 - abar_prev - sigma^2)`` and, unless ``noise_std`` is given, the standard deviation of
    the added ``noise``. DDPM's fixed-large variance keeps the posterior mean (``sigma`` = DDIM's
    eta = 1 value) and adds ``noise_std = sqrt(beta_t)`` instead. Guidance is combined once: inside
    the fused step, or here when the dynamic threshold needs the guided x0 first or the scale is one
    per sample.
    """
    if x_t.shape != pred.shape:
        raise ValueError(f"the prediction must have x_t's layout b ... and shape {tuple(x_t.shape)}, "
                         f"got {tuple(pred.shape)}")
    if threshold is not None and not isinstance(threshold, guidance.Threshold):
        raise ValueError(f"threshold must be a guidance.Threshold or None, got {threshold!r}")
    check_prediction_type(prediction_type)
    dynamic = threshold is not None and threshold.kind == "dynamic"
    if pred_uncond is not None and (dynamic or isinstance(guidance_scale, torch.Tensor)):
        pred = guidance.cfg_combine(pred, pred_uncond, _per_sample(guidance_scale, pred))  # guidance, once
        pred_uncond, guidance_scale = None, 1.0
    if not isinstance(guidance_scale, torch.Tensor):
        check_options(None, guidance_scale)
    scale = None
    if dynamic:  # the threshold's scale comes from the unclipped x0 the step will clip
        a, s = _per_sample(abar_t, x_t) ** 0.5, _per_sample(1 - abar_t, x_t) ** 0.5
        x0_raw = implied_x0_eps(pred.float(), x_t.float(), a, s, prediction_type)[0]
        scale = guidance.dynamic_threshold_scale(x0_raw, threshold.percentile, threshold.cap).to(x_t.device)
    inside = noise_std is None or noise_std == sigma  # the kernel adds sigma * noise itself
    x_prev, x0 = sampler_step(
        x_t, pred, abar_t=abar_t, abar_prev=abar_prev, sigma=sigma,
        eps_uncond=pred_uncond, guidance_scale=guidance_scale, noise=noise if inside else None,
        clip_sample_range=threshold.limit if threshold is not None and not dynamic else None, dynamic_threshold=scale,
        prediction_type=prediction_type,
    )
    if not inside and noise is not None and noise_std > 0:
        x_prev = x_prev + noise_std * noise
    return x_prev, x0


class Sampler:
    """A reverse-diffusion sampler in the manner of diffusers' schedulers: the timesteps are
    chosen once, then :meth:`step` maps the network's output at step ``i`` to the less noisy sample.

    ``variance=None`` is DDIM with stochasticity ``eta`` (``num_steps`` steps, default 50);
    ``"fixed_small"`` / ``"fixed_large"`` is DDPM's ancestral step (Algorithm 5; every timestep
    unless ``num_steps``). ``start`` is the timestep the first sample is at (default ``T - 1``,
    pure noise; a later one denoises a partly noised input, as SDEdit and frame refinement do).
    ``threshold`` is applied to every step's x0. The step after the last timestep is the clean
    image (``abar_prev = 1``) and adds no noise.
    """

    def __init__(self, schedule: NoiseSchedule, num_steps: int | None = None, *, eta: float = 0.0,
                 variance: str | None = None, spacing: str = "leading", start: int | None = None,
                 prediction_type: str = "epsilon", threshold: guidance.Threshold | None = None):
        check_prediction_type(prediction_type)
        if variance is not None and variance not in VARIANCES:
            raise ValueError(f"unknown variance {variance!r}; expected one of {', '.join(VARIANCES)} (or None: DDIM)")
        if not eta >= 0:
            raise ValueError(f"eta must be >= 0, got {eta}")
        T = len(schedule)
        if start is not None and not (isinstance(start, (int, np.integer)) and 0 <= start < T):
            raise ValueError(f"start must be a timestep in [0, {T - 1}], got {start!r}")
        top = T if start is None else int(start) + 1
        if num_steps is None:
            num_steps = top if variance is not None else min(50, top)
        self.timesteps = timesteps(top, num_steps, spacing)
        self.eta, self.variance, self.prediction_type, self.threshold = eta, variance, prediction_type, threshold
        self.schedule = schedule

    def __len__(self) -> int:
        return len(self.timesteps)

    def abar(self, t: int) -> float:
        """``alphas_cumprod[t]`` (a float64 python float), and 1 (the clean image) at ``t = -1``."""
        return self.schedule.abar(t)

    def prev(self, i: int) -> int:
        """The timestep step ``i`` lands on (``-1`` after the last)."""
        return self.timesteps[i + 1] if i + 1 < len(self.timesteps) else -1

    def noise_levels(self, abar_t: float, abar_prev: float) -> tuple[float, float]:
        """``(sigma, std)``: the mean's sigma (DDIM eq. 16) and the added noise's standard deviation."""
        sigma = ddim_sigma(abar_t, abar_prev, 1.0 if self.variance is not None else self.eta)
        std = float(np.sqrt(1 - abar_t / abar_prev)) if self.variance == "fixed_large" else sigma  # sqrt(beta_t)
        return sigma, std

    def needs_noise(self, i: int) -> bool:
        """Whether step ``i`` adds fresh noise (never the last step)."""
        return self.prev(i) >= 0 and self.noise_levels(self.abar(self.timesteps[i]), self.abar(self.prev(i)))[1] > 0

    def step(self, i: int, x_t: torch.Tensor, pred: torch.Tensor, *, pred_uncond: torch.Tensor | None = None,
             guidance_scale: float | torch.Tensor = 1.0, noise: torch.Tensor | None = None
             ) -> tuple[torch.Tensor, torch.Tensor]:
        """Step ``i`` from ``x_t`` (at ``timesteps[i]``) given the network's output there (and the
        unconditional one under guidance); returns ``(x_prev, x0)``."""
        a, ap = self.abar(self.timesteps[i]), self.abar(self.prev(i))
        sigma, std = self.noise_levels(a, ap)
        return reverse_step(x_t, pred.to(x_t.dtype), a, ap, prediction_type=self.prediction_type, sigma=sigma,
                            noise=noise if self.needs_noise(i) else None, noise_std=std,
                            pred_uncond=None if pred_uncond is None else pred_uncond.to(x_t.dtype),
                            guidance_scale=guidance_scale, threshold=self.threshold)


@torch.no_grad()
def sample(model, sampler: Sampler, x: torch.Tensor, *, cond: Any = None, guide: guidance.Guidance | None = None,
           model_inputs: tuple = (), generator: torch.Generator | None = None, record: bool = False) -> SampleOutput:
    """Run ``sampler`` from ``x`` (at ``sampler.timesteps[0]``): genlib's one reverse-diffusion loop.

    Each step calls ``model(x_t, t[, cond][, *model_inputs])`` (twice, or once on a doubled batch,
    under ``guide``) and makes :meth:`Sampler.step` with its output.
    Fresh noise is drawn on the CPU with ``generator``. ``record`` keeps every x_t and x0.
    """
    if x.ndim < 2:
        raise ValueError(f"samples must have layout b ... (at least 2 dims), got shape {tuple(x.shape)}")
    traj = Trajectory(list(sampler.timesteps), [x.detach().float().cpu()], []) if record else None
    for i, t in enumerate(sampler.timesteps):
        scale = 1.0 if guide is None else guide.at(i, len(sampler))
        out_c, out_u = predict(model, x, t, cond=cond, uncond=None if guide is None else guide.uncond,
                               guidance_scale=scale, model_inputs=model_inputs)
        noise = _noise(x.shape, generator, x.device) if sampler.needs_noise(i) else None
        x, x0 = sampler.step(i, x, out_c, pred_uncond=out_u, guidance_scale=scale, noise=noise)
        if record:
            traj.xs.append(x.detach().float().cpu())
            traj.x0s.append(x0.detach().float().cpu())
    return SampleOutput(x, traj)


def _start(shape, x_T, generator, device) -> torch.Tensor:
    """``x_T`` on ``device``, or fresh noise of ``shape`` drawn with ``generator``."""
    if x_T is None:
        if shape is None:
            raise ValueError("pass shape (b ...) or x_T")
        return _noise(shape, generator, device)
    if shape is not None and tuple(shape) != tuple(x_T.shape):
        raise ValueError(f"shape {tuple(shape)} does not match x_T's shape {tuple(x_T.shape)}")
    config.check_finite(x_T, "x_T")
    return x_T.to(device)


def _keyword_sample(model, schedule: NoiseSchedule, shape, sampler_kw: dict, *, prediction_type, x_T, cond,
                    uncond, guidance_scale, clip_sample, dynamic_percentile, dynamic_max, generator, device,
                    record) -> SampleOutput:
    """:func:`ddim_sample` and :func:`ddpm_sample`: their keyword options made into a Guidance and a
    Threshold, a :class:`Sampler` of ``sampler_kw``, and the one loop from ``x_T`` or fresh noise."""
    guide, threshold = _options(cond, uncond, guidance_scale, clip_sample, dynamic_percentile, dynamic_max)
    sampler = Sampler(schedule, **sampler_kw, prediction_type=prediction_type, threshold=threshold)
    device = _device(model, device)
    return sample(model, sampler, _start(shape, x_T, generator, device), cond=cond, guide=guide,
                  generator=generator, record=record)


def _options(cond, uncond, guidance_scale, clip_sample, dynamic_percentile, dynamic_max):
    """The keyword options of :func:`ddim_sample` / :func:`ddpm_sample` as a Guidance and a Threshold."""
    check_options(clip_sample, guidance_scale)
    if clip_sample is not None and dynamic_percentile is not None:
        raise ValueError("pass clip_sample or dynamic_percentile, not both")
    if guidance_scale != 1.0 and uncond is None:
        raise ValueError("guidance_scale != 1 needs uncond (the condition for the unconditional prediction)")
    guide = guidance.Guidance(uncond, guidance_scale) if uncond is not None else None
    threshold = (guidance.Threshold.static(clip_sample) if clip_sample is not None else
                 guidance.Threshold.dynamic(dynamic_percentile, dynamic_max) if dynamic_percentile is not None else None)
    return guide, threshold


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
    return _keyword_sample(model, schedule, shape, dict(num_steps=num_steps, eta=eta, spacing=spacing),
                           prediction_type=prediction_type, x_T=x_T, cond=cond, uncond=uncond,
                           guidance_scale=guidance_scale, clip_sample=clip_sample,
                           dynamic_percentile=dynamic_percentile, dynamic_max=dynamic_max,
                           generator=generator, device=device, record=record)


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
    if variance is None:  # None would mean DDIM to the Sampler
        raise ValueError(f"unknown variance None; expected one of {', '.join(VARIANCES)}")
    return _keyword_sample(model, schedule, shape, dict(num_steps=num_steps, variance=variance, spacing=spacing),
                           prediction_type=prediction_type, x_T=x_T, cond=cond, uncond=uncond,
                           guidance_scale=guidance_scale, clip_sample=clip_sample,
                           dynamic_percentile=dynamic_percentile, dynamic_max=dynamic_max,
                           generator=generator, device=device, record=record)
