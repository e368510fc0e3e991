"""What each reference and its Triton kernel share, so that no kernel module imports its dispatcher.

The input checks of the four kernels (a reference, its Triton launcher and its dispatcher all run
the same one) and the sampler step's coefficients, made in float64 on the host. The dispatchers
(``attention.py``, ``groupnorm.py``, ``vq.py``, ``sampler.py``) re-export these names; the
``*_triton`` modules import them from here, and the attention kernels' shared inner loop lives in
:mod:`genlib.kernels.online_softmax`. So imports run one way: dispatcher -> kernel -> common.
"""

from __future__ import annotations

import math

import torch


# ----------------------------------------------------------------------------- attention


def check_attention_inputs(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> None:
    """Raise ``ValueError`` unless ``q: b h n d`` and ``k, v: b h m d`` fit together."""
    for name, t in (("q", q), ("k", k), ("v", v)):
        if t.ndim != 4:
            raise ValueError(
                f"attention expects {name} of layout b h n d (4 dims), got shape {tuple(t.shape)}"
            )
    if k.shape != v.shape:
        raise ValueError(
            f"attention expects k and v of the same layout b h m d, got {tuple(k.shape)} and {tuple(v.shape)}"
        )
    if q.shape[3] != k.shape[3]:
        raise ValueError(
            f"attention head dims differ: q is b h n d with d={q.shape[3]}, k and v have d={k.shape[3]}"
        )
    if q.shape[:2] != k.shape[:2]:
        raise ValueError(
            f"attention expects q (b h n d) and k, v (b h m d) with the same b and h, got "
            f"{tuple(q.shape)} and {tuple(k.shape)}"
        )
    if not (q.dtype == k.dtype == v.dtype):
        raise ValueError(f"attention expects one dtype for q, k, v, got {q.dtype}, {k.dtype}, {v.dtype}")


# ----------------------------------------------------------------------------- GroupNorm + SiLU


def check_group_norm_inputs(
    x: torch.Tensor, num_groups: int, weight: torch.Tensor | None, bias: torch.Tensor | None
) -> None:
    """Raise ``ValueError`` unless ``x`` is ``b c h w`` or ``b c t h w`` with ``c % num_groups == 0``
    and ``weight`` and ``bias`` (when given) have shape ``(c,)``."""
    if x.ndim not in (4, 5):
        raise ValueError(
            "group_norm_silu expects x of layout b c h w or b c t h w (4 or 5 dims), "
            f"got shape {tuple(x.shape)}"
        )
    c = x.shape[1]
    if num_groups < 1 or c % num_groups != 0:
        raise ValueError(f"group_norm_silu: channels c={c} are not divisible by num_groups={num_groups}")
    for name, t in (("weight", weight), ("bias", bias)):
        if t is not None and tuple(t.shape) != (c,):
            raise ValueError(f"group_norm_silu expects {name} of shape (c,) = ({c},), got {tuple(t.shape)}")


# ----------------------------------------------------------------------------- vector quantisation


PRECISIONS = ("tf32", "ieee")


def check_vq_inputs(z: torch.Tensor, codebook: torch.Tensor) -> None:
    """Raise ``ValueError`` unless ``z: n d`` and ``codebook: k d`` share ``d``."""
    if z.ndim != 2:
        raise ValueError(f"vq_nearest expects z of layout n d (2 dims), got shape {tuple(z.shape)}")
    if codebook.ndim != 2:
        raise ValueError(
            f"vq_nearest expects codebook of layout k d (2 dims), got shape {tuple(codebook.shape)}"
        )
    if z.shape[1] != codebook.shape[1]:
        raise ValueError(
            f"vq_nearest: code dim mismatch, z is n d with d={z.shape[1]} but codebook is k d with "
            f"d={codebook.shape[1]}"
        )
    if codebook.shape[0] == 0:
        raise ValueError("vq_nearest needs a codebook with at least one code (k >= 1)")


# ----------------------------------------------------------------------------- the sampler step


Coefficient = float | torch.Tensor
PREDICTIONS = ("epsilon", "sample", "v_prediction")  # the kernel's PRED: 0, 1, 2


def check_prediction(prediction_type: str) -> int:
    """The kernel's code for ``prediction_type`` (``ValueError`` for an unknown one)."""
    if prediction_type not in PREDICTIONS:
        raise ValueError(f"sampler_step: unknown prediction_type {prediction_type!r}; expected one of "
                         f"{', '.join(PREDICTIONS)}")
    return PREDICTIONS.index(prediction_type)


def check_sampler_inputs(
    x_t: torch.Tensor,
    eps_cond: torch.Tensor,
    eps_uncond: torch.Tensor | None,
    noise: torch.Tensor | None,
    coefficients: dict[str, Coefficient | None],
    clip_sample_range: float | None,
) -> None:
    """Raise ``ValueError`` unless the tensors share ``x_t``'s layout ``b ...`` and every
    per-sample coefficient has shape ``(b,)``."""
    if x_t.ndim < 1:
        raise ValueError("sampler_step expects x_t of layout b ... (at least 1 dim)")
    for name, t in (("eps_cond", eps_cond), ("eps_uncond", eps_uncond), ("noise", noise)):
        if t is not None and t.shape != x_t.shape:
            raise ValueError(
                f"sampler_step expects {name} of x_t's shape {tuple(x_t.shape)}, got {tuple(t.shape)}"
            )
    b = x_t.shape[0]
    for name, c in coefficients.items():
        if isinstance(c, torch.Tensor) and tuple(c.shape) != (b,):
            raise ValueError(
                f"sampler_step expects {name} as a float or a tensor of shape (b,) = ({b},), "
                f"got {tuple(c.shape)}"
            )
    if clip_sample_range is not None and coefficients.get("dynamic_threshold") is not None:
        raise ValueError("sampler_step: pass clip_sample_range or dynamic_threshold, not both")


def step_coefficients(abar_t: Coefficient, abar_prev: Coefficient, sigma: Coefficient
                      ) -> tuple[Coefficient, Coefficient, Coefficient, Coefficient, Coefficient]:
    """``(sqrt(abar_t), sqrt(1 - abar_t), sqrt(abar_prev), sqrt(1 - abar_prev - sigma^2), sigma)``,
    computed in float64 (see the module docstring): python floats when all three inputs are
    floats, else float64 tensors of shape ``(b,)`` (formed from the inputs as given, so pass
    float64 tensors to keep the precision); the step rounds them to its compute precision."""
    if not any(isinstance(c, torch.Tensor) for c in (abar_t, abar_prev, sigma)):
        a_t, a_prev, sig = float(abar_t), float(abar_prev), float(sigma)
        return (math.sqrt(a_t), math.sqrt(1 - a_t), math.sqrt(a_prev), math.sqrt(max(1 - a_prev - sig * sig, 0.0)),
                sig)
    device = next(c.device for c in (abar_t, abar_prev, sigma) if isinstance(c, torch.Tensor))
    a_t, a_prev, sig = torch.broadcast_tensors(
        *(torch.as_tensor(c, dtype=torch.float64, device=device) for c in (abar_t, abar_prev, sigma)))
    return a_t.sqrt(), (1 - a_t).sqrt(), a_prev.sqrt(), (1 - a_prev - sig * sig).clamp_min(0).sqrt(), sig
