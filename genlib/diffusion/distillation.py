"""Distillation of a sampler into fewer steps: progressive distillation and guidance distillation.

**Progressive distillation** (Salimans & Ho 2022; survey §13.4, Algorithms 3-4, Fig. 73). A
*teacher* samples with deterministic DDIM in ``2N`` steps; a *student*, initialised as a copy of
the teacher, learns to make every two teacher steps in one, so it samples in ``N``. The student then
becomes the next teacher and ``N`` halves again. With ``a_t = sqrt(abar_t)``, ``s_t = sqrt(1 - abar_t)``
and ``x^`` a prediction of the clean image, the DDIM step (eta = 0) from ``t`` to ``u`` is

    z_u = a_u x^ + (s_u / s_t) (z_t - a_t x^)                                   (Algorithm 4)

Per training example: ``z_t = a_t x + s_t eps`` at a time ``t`` of the student's N-step grid; the
teacher steps ``t -> t' -> t''`` (half a student step each); the student's target ``x~`` is the one
clean image for which a *single* DDIM step from ``z_t`` lands on the teacher's ``z_t''``:

    z_t'' = a_t'' x~ + (s_t'' / s_t)(z_t - a_t x~)
    =>  x~ = (z_t'' - (s_t'' / s_t) z_t) / (a_t'' - (s_t'' / s_t) a_t)             (Algorithm 4)

Loss: ``w(lambda_t) ||x~ - x^_student(z_t)||^2`` with ``lambda_t = log(a_t^2 / s_t^2)`` the log-SNR
(not a guidance scale) and ``w = 1 + snr`` ("SNR+1", the same as the squared error of a
v-prediction) or ``max(snr, 1)`` ("truncated SNR"): both keep the weight of the pure-noise end
at 1, where ``snr -> 0`` and an epsilon-style weight would ignore it.

Timesteps are array indices (see :mod:`~genlib.diffusion.schedules`). The N-step grid is
diffusers' ``trailing`` spacing, ``T - 1, T - 1 - T/N, ..., T/N - 1`` and then the clean image
(index ``-1``, ``abar = 1``); the grids of ``N`` and ``2N`` nest when ``2N`` divides ``T``.

**Guidance distillation** (Meng et al. 2023, stage one; survey §13.4, "Distillation with
classifier-free guidance"): a student that takes the guidance weight ``w`` as an input learns the
teacher's guided prediction ``x^w = (1 + w) x^_c - w x^_u`` (Imagen's convention, genlib's scale
``1 + w``) for ``w ~ U[w_min, w_max]``, so one network call replaces the two of guided sampling.
Stage two is progressive distillation of that student, with ``w`` passed along.
"""

from __future__ import annotations

import copy
from typing import Any, Callable

import torch

from genlib import config, train
from genlib.diffusion import guidance
from genlib.diffusion.losses import loss_weight
from genlib.diffusion.parameterisation import check_prediction_type, to_x0_eps
from genlib.diffusion.samplers import Sampler, predict, reverse_step, sample, timesteps
from genlib.diffusion.schedules import NoiseSchedule

WEIGHTINGS = ("snr_plus_one", "truncated_snr")


# ----------------------------------------------------------------------------- the algebra


def ddim_step_x0(z_t: torch.Tensor, x0: torch.Tensor, abar_t, abar_u) -> torch.Tensor:
    """One deterministic DDIM step from ``t`` to ``u`` given the predicted clean image ``x0``:
    ``z_u = a_u x0 + (s_u / s_t)(z_t - a_t x0)``. ``abar_*`` are floats or tensors broadcasting
    against ``z_t: b ...``."""
    a_t, s_t = _a_s(abar_t, z_t)
    a_u, s_u = _a_s(abar_u, z_t)
    return a_u * x0 + (s_u / s_t) * (z_t - a_t * x0)


def student_target(z_t: torch.Tensor, z_end: torch.Tensor, abar_t, abar_end) -> torch.Tensor:
    """Salimans & Ho's target ``x~``: the clean image whose single DDIM step from ``z_t`` (at
    ``abar_t``) lands exactly on ``z_end`` (at ``abar_end``), the teacher's two-step endpoint."""
    if z_t.shape != z_end.shape:
        raise ValueError(f"z_t and z_end must share the layout b ...: {tuple(z_t.shape)} vs {tuple(z_end.shape)}")
    a_t, s_t = _a_s(abar_t, z_t)
    a_e, s_e = _a_s(abar_end, z_t)
    ratio = s_e / s_t
    return (z_end - ratio * z_t) / (a_e - ratio * a_t)


def _a_s(abar, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    abar = torch.as_tensor(abar, dtype=like.dtype, device=like.device)
    return abar.sqrt(), (1 - abar).clamp(min=0).sqrt()


def student_grid(T: int, num_steps: int) -> list[int]:
    """The timesteps of a ``num_steps``-step student (trailing spacing), checking that the grid of
    its ``2 num_steps``-step teacher nests in it (``2 num_steps`` must divide ``T``)."""
    if isinstance(num_steps, bool) or not isinstance(num_steps, int) or num_steps < 1:
        raise ValueError(f"num_steps must be a positive integer, got {num_steps!r}")
    if T % (2 * num_steps):
        raise ValueError(f"progressive distillation needs 2 * num_steps to divide T: T={T}, num_steps={num_steps} "
                         f"(use T = 1024 and powers of two)")
    return timesteps(T, num_steps, "trailing")


def abar_at(schedule: NoiseSchedule, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``schedule.abar(t)`` (index ``-1``: the clean image, 1) shaped ``b 1 ...`` like ``like``."""
    return schedule.abar(torch.as_tensor(t)).reshape(-1, *[1] * (like.ndim - 1)).to(device=like.device, dtype=like.dtype)


# ----------------------------------------------------------------------------- calling a model


def predict_x0(model, schedule: NoiseSchedule, z_t: torch.Tensor, t: torch.Tensor, *, prediction_type: str,
               cond: Any = None, uncond: Any = None, guidance_scale: float | torch.Tensor = 1.0,
               w: torch.Tensor | None = None, clip: float | None = None) -> torch.Tensor:
    """The clean image a network implies at ``z_t`` (timesteps ``t: b``), optionally guided.

    With ``uncond`` and ``guidance_scale != 1`` the output is classifier-free guided in genlib's
    convention, ``out_u + s (out_c - out_u)``; the conversions to x0 are affine in the output, so
    guiding the output and guiding x0 agree. ``w`` (one per sample) is passed to a
    guidance-conditioned network as its fourth argument. ``clip`` clips x0 to ``[-clip, clip]``.
    """
    check_prediction_type(prediction_type)
    extra = () if w is None else (w,)
    out = guidance.model_output(model, z_t, t, cond, *extra)
    if not guidance.is_unguided(guidance_scale):
        if uncond is None:
            raise ValueError("a guidance scale other than 1 needs uncond (the unconditional model's condition)")
        s = torch.as_tensor(guidance_scale, dtype=out.dtype, device=out.device)
        out = guidance.cfg_combine(out, guidance.model_output(model, z_t, t, uncond, *extra),
                                   s.reshape(-1, *[1] * (out.ndim - 1)) if s.ndim else s)
    abar = abar_at(schedule, t, z_t)
    x0 = to_x0_eps(out.to(z_t.dtype), z_t, abar, prediction_type)[0]
    return x0 if clip is None else x0.clamp(-clip, clip)


@torch.no_grad()
def teacher_two_steps(teacher, schedule: NoiseSchedule, z_t: torch.Tensor, t: torch.Tensor, num_steps: int,
                      **predict) -> tuple[torch.Tensor, torch.Tensor]:
    """Two DDIM steps of the teacher, each half a step of a ``num_steps``-step student:
    ``t -> t - T/(2N) -> t - T/N`` (index ``-1`` = the clean image). Returns ``(z_t'', t'')``.
    ``predict`` goes to :func:`predict_x0` (``prediction_type``, ``cond``, guidance, ``w``, ``clip``)."""
    half = len(schedule) // (2 * num_steps)
    t_mid, t_end = t - half, t - 2 * half
    z_mid = step_between(teacher, schedule, z_t, t, t_mid, **predict)
    return step_between(teacher, schedule, z_mid, t_mid, t_end, **predict), t_end


@torch.no_grad()
def step_between(model, schedule: NoiseSchedule, z: torch.Tensor, t: torch.Tensor, u: torch.Tensor, *,
                 prediction_type: str, cond: Any = None, uncond: Any = None,
                 guidance_scale: float | torch.Tensor = 1.0, w: torch.Tensor | None = None,
                 clip: float | None = None) -> torch.Tensor:
    """One deterministic DDIM step of ``model`` from ``z`` at timesteps ``t`` to ``u`` (both ``b``,
    one per sample; ``-1`` = the clean image): the samplers' own step
    (:func:`genlib.diffusion.samplers.reverse_step`, float64 coefficients), which equals
    :func:`ddim_step_x0` with the model's x0."""
    abar_t, abar_u = (schedule.abar(torch.as_tensor(s)).to(z.device) for s in (t, u))
    out, out_u = predict(model, z, t, cond=cond, uncond=uncond, guidance_scale=guidance_scale,
                         model_inputs=() if w is None else (w,))
    threshold = None if clip is None else guidance.Threshold.static(clip)
    return reverse_step(z, out.to(z.dtype), abar_t, abar_u, prediction_type=prediction_type,
                        pred_uncond=None if out_u is None else out_u.to(z.dtype), guidance_scale=guidance_scale,
                        threshold=threshold)[0]


def distillation_weight(schedule: NoiseSchedule, t: torch.Tensor, weighting: str = "snr_plus_one") -> torch.Tensor:
    """Salimans & Ho's weights on the x0 error at timesteps ``t`` (``b``): ``1 + snr`` or
    ``max(snr, 1)``, ``snr = abar / (1 - abar)``; genlib's one :func:`~genlib.diffusion.losses.loss_weight`
    with the x0 error (``prediction_type="sample"``)."""
    if weighting not in WEIGHTINGS:
        raise ValueError(f"unknown weighting {weighting!r}; expected one of {', '.join(WEIGHTINGS)}")
    return loss_weight(schedule, t, "sample", weighting)


def distillation_loss(student, teacher, schedule: NoiseSchedule, x: torch.Tensor, num_steps: int, *,
                      prediction_type: str = "v_prediction", weighting: str = "snr_plus_one",
                      cond: Any = None, uncond: Any = None, guidance_scale: float | torch.Tensor = 1.0,
                      w: torch.Tensor | None = None, clip: float | None = None,
                      student_prediction_type: str | None = None,
                      generator: torch.Generator | None = None) -> torch.Tensor:
    """Algorithm 4's inner loop body on a batch ``x: b ...`` for a ``num_steps``-step student.

    The teacher may be guided (``uncond``, ``guidance_scale``); the student is not (it learns the
    guided teacher), except through ``w`` when it is guidance-conditioned. The student predicts
    ``student_prediction_type`` (default: the teacher's ``prediction_type``); Salimans & Ho
    distil an epsilon teacher into a student that predicts x0 or v.
    """
    if x.ndim < 2:
        raise ValueError(f"x must have layout b ... (at least 2 dims), got shape {tuple(x.shape)}")
    grid = torch.tensor(student_grid(len(schedule), num_steps))
    b = x.shape[0]
    t = grid[torch.randint(0, num_steps, (b,), generator=generator)].to(x.device)  # t = i / N, i ~ Cat[1..N]
    eps = config.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    abar_t = abar_at(schedule, t, x)
    z_t = abar_t.sqrt() * x + (1 - abar_t).sqrt() * eps                              # z_t = a_t x + s_t eps
    z_end, t_end = teacher_two_steps(teacher, schedule, z_t, t, num_steps, prediction_type=prediction_type,
                                     cond=cond, uncond=uncond, guidance_scale=guidance_scale, w=w, clip=clip)
    x_target = student_target(z_t, z_end, abar_t, abar_at(schedule, t_end, x))      # x~
    x_student = predict_x0(student, schedule, z_t, t, prediction_type=student_prediction_type or prediction_type,
                           cond=cond, w=w)
    per_sample = (x_student.float() - x_target.float()).pow(2).flatten(1).mean(1)
    weight = distillation_weight(schedule, t, weighting).to(per_sample.device)
    return (weight * per_sample).mean()                                               # w(lambda_t) ||x~ - x^||^2


def distil_once(student: torch.nn.Module, teacher, schedule: NoiseSchedule, batches, num_steps: int, *,
                steps: int, lr: float = 1e-4, prediction_type: str = "v_prediction", seed: int | None = None,
                **loss_kw) -> train.History:
    """One round of Algorithm 4: train ``student`` (already a copy of the teacher) for ``steps``
    optimiser steps to sample in ``num_steps`` where the teacher takes ``2 num_steps``.

    ``batches`` is a callable ``step -> x`` (or ``(x, cond)``, then passed as ``cond``); other
    keywords go to :func:`distillation_loss`. The teacher is not trained.
    """
    was_training = teacher.training if isinstance(teacher, torch.nn.Module) else None
    if was_training is not None:
        teacher.eval()

    def loss_fn(model, batch):
        x, cond = batch if isinstance(batch, (tuple, list)) else (batch, loss_kw.get("cond"))
        kw = {k: v for k, v in loss_kw.items() if k != "cond"}
        return distillation_loss(model, teacher, schedule, x, num_steps, prediction_type=prediction_type, cond=cond, **kw)

    try:
        history = train.fit(student, loss_fn, batches, steps, lr=lr, grad_clip=1.0, seed=seed,
                            desc=f"distil {2 * num_steps} -> {num_steps} steps")
    finally:
        if was_training:
            teacher.train()
    student.eval()
    return history


def progressive_distillation(teacher: torch.nn.Module, schedule: NoiseSchedule, batches, *, start_steps: int,
                             halvings: int, steps: int, lr: float = 1e-4, prediction_type: str = "v_prediction",
                             on_halving: Callable[[int, torch.nn.Module, train.History], None] | None = None,
                             **loss_kw) -> list[tuple[int, torch.nn.Module, train.History]]:
    """Algorithm 4's outer loop: ``halvings`` rounds of :func:`distil_once`, each starting the
    student as a copy of the current teacher and then making it the teacher.

    ``start_steps`` is the first teacher's DDIM step count. Returns ``[(N, student, history), ...]``
    with ``N = start_steps / 2, / 4, ...``; ``on_halving`` is called after each round. The first
    teacher is left untouched.
    """
    if halvings < 1 or start_steps % (2 ** halvings):
        raise ValueError(f"need halvings >= 1 and start_steps divisible by 2**halvings, got {start_steps}, {halvings}")
    out = []
    n = start_steps
    for _ in range(halvings):
        n //= 2
        student = copy.deepcopy(teacher)                                             # theta <- eta
        history = distil_once(student, teacher, schedule, batches, n, steps=steps, lr=lr,
                              prediction_type=prediction_type, **loss_kw)
        out.append((n, student, history))
        if on_halving is not None:
            on_halving(n, student, history)
        teacher = student                                                            # eta <- theta
    return out


# ----------------------------------------------------------------------------- guidance distillation


def guidance_distillation_loss(student, teacher, schedule: NoiseSchedule, x: torch.Tensor, cond: Any, uncond: Any, *,
                               w_range: tuple[float, float] = (0.0, 4.0), prediction_type: str = "v_prediction",
                               weighting: str = "snr_plus_one", generator: torch.Generator | None = None) -> torch.Tensor:
    """Meng et al.'s stage one: ``w ~ U[w_min, w_max]`` per sample, ``t`` uniform over all ``T``
    steps; the student ``student(z_t, t, cond, w)`` matches the teacher's guided clean image
    ``(1 + w) x^_c - w x^_u`` in x0 space, weighted as :func:`distillation_loss`."""
    w_min, w_max = w_range
    if not w_min <= w_max:
        raise ValueError(f"w_range must be (w_min, w_max) with w_min <= w_max, got {w_range}")
    b = x.shape[0]
    w = w_min + (w_max - w_min) * torch.rand(b, generator=generator)
    t = torch.randint(0, len(schedule), (b,), generator=generator).to(x.device)
    w = w.to(x.device)
    eps = config.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    abar_t = abar_at(schedule, t, x)
    z_t = abar_t.sqrt() * x + (1 - abar_t).sqrt() * eps
    with torch.no_grad():
        x_teacher = predict_x0(teacher, schedule, z_t, t, prediction_type=prediction_type, cond=cond, uncond=uncond,
                               guidance_scale=1 + w)                                 # x^w = (1 + w) x^_c - w x^_u
    x_student = predict_x0(student, schedule, z_t, t, prediction_type=prediction_type, cond=cond, w=w)
    per_sample = (x_student.float() - x_teacher.float()).pow(2).flatten(1).mean(1)
    return (distillation_weight(schedule, t, weighting).to(per_sample.device) * per_sample).mean()


@torch.no_grad()
def ddim_sample_x0(model, schedule: NoiseSchedule, z: torch.Tensor, num_steps: int, *, prediction_type: str,
                   cond: Any = None, uncond: Any = None, guidance_scales=None, w: torch.Tensor | None = None,
                   clip: float | None = None, start: int | None = None) -> torch.Tensor:
    """Deterministic DDIM on the trailing grid, as a student samples: the one sampling loop,
    :func:`genlib.diffusion.samplers.sample` (each step equals :func:`ddim_step_x0` with the model's x0).

    ``start``: the timestep ``z`` is at (default ``T - 1``, pure noise); a later start samples
    from a partly noised ``z``, e.g. where the SNR is 1e-2 (chapter 13's control).

    ``guidance_scales``: one guidance scale per step (genlib's convention; e.g. an oscillating
    schedule) or ``None`` for none. ``w`` goes to a guidance-conditioned student after ``cond``.
    Equals :func:`genlib.diffusion.ddim_sample` with ``spacing="trailing"`` and ``eta=0`` for a
    constant scale.
    """
    scales = None if guidance_scales is None else guidance.Guidance(uncond, list(guidance_scales))
    if scales is not None and len(scales.scale) != num_steps:
        raise ValueError(f"need one guidance scale per step ({num_steps}), got {len(scales.scale)}")
    sampler = Sampler(schedule, num_steps, spacing="trailing", start=start, prediction_type=prediction_type,
                      threshold=None if clip is None else guidance.Threshold.static(clip))
    return sample(model, sampler, z, cond=cond, guide=scales, model_inputs=() if w is None else (w,)).sample
