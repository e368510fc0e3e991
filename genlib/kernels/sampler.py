"""One DDIM / DDPM sampler step with classifier-free guidance, the reference and the dispatcher.

Notation (DDIM paper, Song et al. 2021, eq. 12; diffusers' ``DDIMScheduler.step`` follows the
same stages): ``abar_t = alphas_cumprod[t]`` (diffusers' ``alpha_prod_t``; genlib says ``abar``
from the schedule to this kernel), ``abar_prev`` the same at the next, less noisy, step, and
``sigma`` the noise level of the step.

    1. guidance   p    = p_u + s (p_c - p_u)                       (s = 1: p_c alone)
    2. x0, eps    from the prediction p, by its kind (``prediction_type``):
                  epsilon  eps = p,                 x0 = (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t)
                  v        x0 = a x_t - s p,        eps = s x_t + a p     (a, s = sqrt(abar_t), sqrt(1 - abar_t))
                  sample   x0 = p,                  eps = (x_t - a x0) / s
    3. clipping   x0   = clip(x0, -c, c)                             (static, ``clip_sample_range``)
              or  x0   = clip(x0, -s_i, s_i) / s_i                   (dynamic thresholding, Imagen)
    4. eps again  eps' = (x_t - sqrt(abar_t) x0) / sqrt(1 - abar_t)  (only after clipping)
    5. step       x_prev = sqrt(abar_prev) x0 + sqrt(1 - abar_prev - sigma^2) eps' + sigma noise

Guidance is linear, so guiding the network's outputs and guiding the noise they imply agree.
Stage 2 reads x0 from a ``v`` prediction directly: going through eps instead divides by
``sqrt(abar_t)``, tiny at the start of a cosine schedule (``abar = 2.3e-9`` at ``t = T - 1`` for
``T = 1024``), and four DDIM steps of a v model came out 6e-4 off a float64 run that way.

Step 4 is a choice (diffusers makes it too): after clipping, the noise direction is recomputed so
that ``x0`` and ``eps'`` again explain ``x_t`` exactly; the unclipped ``eps`` would no longer agree
with the clipped ``x0``, and the step would add back noise that still encodes the unclipped
prediction. Without clipping ``eps' = eps`` (recomputing
it would divide by ``sqrt(1 - abar_t)``, tiny at the last steps). ``1 - abar_prev - sigma^2`` is
clamped at 0 against rounding.

The step's coefficients (``sqrt(abar_t)``, ``sqrt(1 - abar_t)``, ``sqrt(abar_prev)``,
``sqrt(1 - abar_prev - sigma^2)``, ``sigma``) are formed in float64 by :func:`step_coefficients`,
once per step, before anything touches the fp32 tensors: near ``t = 0``, ``1 - abar_prev`` and
``sigma^2`` agree to within float32's rounding of ``abar_prev`` (on the last step of a 10-step
DDPM run, 100 -> 0, their difference is 8.5e-8), and subtracting them in float32 put the noise
direction 9% off.

``sigma = 0`` is DDIM; ``sigma^2 = (1 - abar_prev) / (1 - abar_t) * (1 - abar_t / abar_prev)`` (DDIM's
``eta = 1``) is the DDPM ancestral step. ``abar_t``, ``abar_prev`` and ``sigma`` are python floats
(one timestep for the whole batch) or tensors of shape ``(b,)`` (one per sample).

The Triton kernel (:mod:`genlib.kernels.sampler_triton`) reads ``x_t``, the eps predictions and the
noise once and writes ``x_prev`` and ``x0`` once; eager PyTorch makes a round trip to memory for
each of the dozen operations above.
"""

from __future__ import annotations

import math

import torch

from genlib.kernels import dispatch
from genlib.kernels.common import (  # noqa: F401  (re-exported)
    PREDICTIONS, Coefficient, check_prediction, check_sampler_inputs, step_coefficients,
)

def implied_x0_eps(pred: torch.Tensor, x_t: torch.Tensor, a_t, s_t, prediction_type: str
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """Stage 2: ``(x0, eps)`` a prediction of kind ``prediction_type`` implies at ``x_t``, with
    ``a_t = sqrt(abar_t)`` and ``s_t = sqrt(1 - abar_t)`` (numbers or tensors broadcasting against
    ``x_t``). x0 is read from a v or x0 prediction directly, never through eps."""
    pred_kind = check_prediction(prediction_type)
    if pred_kind == 0:  # epsilon
        return (x_t - s_t * pred) / a_t, pred
    if pred_kind == 1:  # sample
        return pred, (x_t - a_t * pred) / s_t
    return a_t * x_t - s_t * pred, s_t * x_t + a_t * pred  # v_prediction


def _per_sample(c: Coefficient, x: torch.Tensor) -> torch.Tensor:
    """A coefficient as a tensor of ``x``'s dtype that broadcasts against ``x: b ...``."""
    c = torch.as_tensor(c, dtype=x.dtype, device=x.device)
    return c.reshape(-1, *[1] * (x.ndim - 1)) if c.ndim == 1 else c


def sampler_step_reference(
    x_t: torch.Tensor,
    eps_cond: torch.Tensor,
    *,
    abar_t: Coefficient,
    abar_prev: Coefficient,
    sigma: Coefficient = 0.0,
    eps_uncond: torch.Tensor | None = None,
    guidance_scale: float = 1.0,
    noise: torch.Tensor | None = None,
    clip_sample_range: float | None = None,
    dynamic_threshold: torch.Tensor | None = None,
    prediction_type: str = "epsilon",
) -> tuple[torch.Tensor, torch.Tensor]:
    """The stages of the module docstring in plain PyTorch (fp32; fp64 for fp64 inputs); returns
    ``(x_prev, x0)``."""
    check_prediction(prediction_type)
    check_sampler_inputs(
        x_t, eps_cond, eps_uncond, noise,
        dict(abar_t=abar_t, abar_prev=abar_prev, sigma=sigma,
             dynamic_threshold=dynamic_threshold),
        clip_sample_range,
    )
    x = x_t.double() if x_t.dtype == torch.float64 else x_t.float()
    # sqrt(abar_t), sqrt(1 - abar_t), sqrt(abar_prev), sqrt(1 - abar_prev - sigma^2), sigma (float64-made)
    a_t, s_t, a_prev, direction, sig = (_per_sample(c, x) for c in
                                        step_coefficients(abar_t, abar_prev, sigma))
    # 1. classifier-free guidance
    pred = eps_cond.to(x.dtype)
    if eps_uncond is not None:
        pred_u = eps_uncond.to(x.dtype)
        pred = pred_u + guidance_scale * (pred - pred_u)
    # 2. the clean sample and the noise the prediction implies
    x0, eps = implied_x0_eps(pred, x, a_t, s_t, prediction_type)
    # 3. clipping, and 4. the noise direction recomputed from the clipped x0
    if clip_sample_range is not None or dynamic_threshold is not None:
        if clip_sample_range is not None:
            x0 = x0.clamp(-clip_sample_range, clip_sample_range)
        else:
            s = _per_sample(dynamic_threshold, x)
            x0 = torch.minimum(torch.maximum(x0, -s), s) / s
        eps = (x - a_t * x0) / s_t
    # 5. the step to x_{t-1}
    x_prev = a_prev * x0 + direction * eps
    if noise is not None:
        x_prev = x_prev + sig * noise.to(x.dtype)
    return x_prev.to(x_t.dtype), x0.to(x_t.dtype)


def sampler_step(
    x_t: torch.Tensor,
    eps_cond: torch.Tensor,
    *,
    abar_t: Coefficient,
    abar_prev: Coefficient,
    sigma: Coefficient = 0.0,
    eps_uncond: torch.Tensor | None = None,
    guidance_scale: float = 1.0,
    noise: torch.Tensor | None = None,
    clip_sample_range: float | None = None,
    dynamic_threshold: torch.Tensor | None = None,
    prediction_type: str = "epsilon",
) -> tuple[torch.Tensor, torch.Tensor]:
    """One sampler step on ``x_t: b ...``; returns ``(x_prev, x0)`` in x_t's dtype, fused in Triton
    where it can be.

    ``eps_cond`` (and ``eps_uncond`` for guidance) are the model's predictions, of the kind
    ``prediction_type`` (``epsilon``: the noise, ``v_prediction``, or ``sample``: x0), ``noise`` the
    fresh Gaussian noise (omitted: no noise term, as DDIM with ``sigma = 0``), ``dynamic_threshold``
    the per-sample scale ``s_i`` of shape ``(b,)`` (computed by the caller, e.g. a percentile of
    ``|x0|`` clamped below at 1). ``x0`` is returned after clipping. When a tensor requires a
    gradient, or ``x_t`` is float64, the reference runs.
    """
    tensors = (x_t, eps_cond, eps_uncond, noise, dynamic_threshold)
    tensors += tuple(c for c in (abar_t, abar_prev, sigma) if isinstance(c, torch.Tensor))
    kwargs = dict(
        abar_t=abar_t, abar_prev=abar_prev, sigma=sigma, eps_uncond=eps_uncond,
        guidance_scale=guidance_scale, noise=noise, clip_sample_range=clip_sample_range,
        dynamic_threshold=dynamic_threshold, prediction_type=prediction_type,
    )
    if dispatch.needs_grad(*tensors) or x_t.dtype == torch.float64 or not dispatch.use_triton(*tensors):
        return sampler_step_reference(x_t, eps_cond, **kwargs)
    from genlib.kernels.sampler_triton import sampler_step_triton

    return sampler_step_triton(x_t, eps_cond, **kwargs)
