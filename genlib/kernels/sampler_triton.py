"""One fused DDIM / DDPM sampler step in Triton: an element-wise kernel over ``x_t: b ...``.

Each program owns ``BLOCK`` consecutive values of one sample, so the per-sample coefficients (the
step's five, made in float64 by :func:`genlib.kernels.sampler.step_coefficients`, and the threshold
``s_i``) are scalars it loads once. The stages are those of :mod:`genlib.kernels.sampler`, in fp32
registers, one read of every input and one write of ``x_prev`` and ``x0``.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from genlib.kernels.common import Coefficient, check_prediction, check_sampler_inputs, step_coefficients


@triton.jit
def _coefficient(c, sample, PER_SAMPLE: tl.constexpr):
    """A coefficient: ``c`` itself (a scalar argument) or ``c[sample]`` (a pointer to ``(b,)``)."""
    if PER_SAMPLE:
        value = tl.load(c + sample)
    else:
        value = c
    return value


@triton.jit
def _sampler_step_kernel(
    X, EPS_C, EPS_U, NOISE, THRESHOLD, X_PREV, X0,
    sqrt_abar_t, sqrt_one_minus_abar_t, sqrt_abar_prev, direction, sigma,  # floats, or (b,) pointers
    guidance_scale, clip, per_sample, blocks_per_sample,
    PER_SAMPLE: tl.constexpr,  # the five coefficients are pointers to (b,)
    GUIDED: tl.constexpr,
    HAS_NOISE: tl.constexpr,
    CLIP_STATIC: tl.constexpr,  # x0 clipped to [-clip, clip]
    CLIP_DYNAMIC: tl.constexpr,  # x0 clipped to [-s_i, s_i] and divided by s_i
    PRED: tl.constexpr,  # what the predictions are: 0 epsilon, 1 sample (x0), 2 v
    BLOCK: tl.constexpr,
):
    pid = tl.program_id(0)
    sample = pid // blocks_per_sample
    cols = (pid % blocks_per_sample) * BLOCK + tl.arange(0, BLOCK)
    ok = cols < per_sample
    offs = sample.to(tl.int64) * per_sample + cols  # int64: b * per_sample can pass 2**31
    a_t = _coefficient(sqrt_abar_t, sample, PER_SAMPLE)
    s_t = _coefficient(sqrt_one_minus_abar_t, sample, PER_SAMPLE)
    a_prev = _coefficient(sqrt_abar_prev, sample, PER_SAMPLE)
    dir_coef = _coefficient(direction, sample, PER_SAMPLE)
    sig = _coefficient(sigma, sample, PER_SAMPLE)

    x = tl.load(X + offs, mask=ok, other=0.0).to(tl.float32)
    # 1. classifier-free guidance
    pred = tl.load(EPS_C + offs, mask=ok, other=0.0).to(tl.float32)
    if GUIDED:
        pred_u = tl.load(EPS_U + offs, mask=ok, other=0.0).to(tl.float32)
        pred = pred_u + guidance_scale * (pred - pred_u)
    # 2. the clean sample and the noise the prediction implies
    if PRED == 0:  # epsilon
        eps = pred
        x0 = (x - s_t * eps) / a_t
    elif PRED == 1:  # sample
        x0 = pred
        eps = (x - a_t * x0) / s_t
    else:  # v_prediction
        x0 = a_t * x - s_t * pred
        eps = s_t * x + a_t * pred
    # 3. clipping, and 4. the noise direction recomputed from the clipped x0
    if CLIP_STATIC:
        x0 = tl.minimum(tl.maximum(x0, -clip), clip)
    if CLIP_DYNAMIC:
        s = tl.load(THRESHOLD + sample)
        x0 = tl.minimum(tl.maximum(x0, -s), s) / s
    if CLIP_STATIC or CLIP_DYNAMIC:
        eps = (x - a_t * x0) / s_t
    # 5. the step to x_{t-1}
    x_prev = a_prev * x0 + dir_coef * eps
    if HAS_NOISE:
        x_prev += sig * tl.load(NOISE + offs, mask=ok, other=0.0).to(tl.float32)

    tl.store(X_PREV + offs, x_prev.to(X_PREV.dtype.element_ty), mask=ok)
    tl.store(X0 + offs, x0.to(X0.dtype.element_ty), mask=ok)


def _as_argument(c: Coefficient) -> float | torch.Tensor:
    """A float stays a float (a scalar kernel argument); a ``(b,)`` tensor becomes fp32 contiguous."""
    return c.to(torch.float32).contiguous() if isinstance(c, torch.Tensor) else float(c)


def sampler_step_triton(
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
    """Run the fused step (arguments as :func:`genlib.kernels.sampler.sampler_step`); forward only."""
    pred_kind = check_prediction(prediction_type)
    check_sampler_inputs(
        x_t, eps_cond, eps_uncond, noise,
        dict(abar_t=abar_t, abar_prev=abar_prev, sigma=sigma,
             dynamic_threshold=dynamic_threshold),
        clip_sample_range,
    )
    x_t, eps_cond = x_t.contiguous(), eps_cond.contiguous()
    eps_uncond = None if eps_uncond is None else eps_uncond.contiguous()
    noise = None if noise is None else noise.contiguous()
    x_prev, x0 = torch.empty_like(x_t), torch.empty_like(x_t)
    numel = x_t.numel()
    if numel == 0:
        return x_prev, x0
    coefficients = [_as_argument(c) for c in step_coefficients(abar_t, abar_prev, sigma)]
    threshold = x_t if dynamic_threshold is None else _as_argument(dynamic_threshold)
    per_sample = numel // x_t.shape[0]
    block = min(1024, max(16, triton.next_power_of_2(per_sample)))
    blocks_per_sample = triton.cdiv(per_sample, block)
    _sampler_step_kernel[(x_t.shape[0] * blocks_per_sample,)](
        x_t, eps_cond,
        x_t if eps_uncond is None else eps_uncond,  # placeholder pointers, never read when unused
        x_t if noise is None else noise,
        threshold,
        x_prev, x0,
        *coefficients,
        float(guidance_scale), float(clip_sample_range or 0.0), per_sample, blocks_per_sample,
        PER_SAMPLE=isinstance(coefficients[0], torch.Tensor),
        GUIDED=eps_uncond is not None,
        HAS_NOISE=noise is not None,
        CLIP_STATIC=clip_sample_range is not None,
        CLIP_DYNAMIC=dynamic_threshold is not None,
        PRED=pred_kind,
        BLOCK=block,
        num_warps=4,
    )
    return x_prev, x0
