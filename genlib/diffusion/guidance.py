"""Calling the network, classifier-free guidance and thresholding of the predicted x0.

Guidance convention (one for all of genlib, diffusers' ``guidance_scale``):

    eps = eps_u + s (eps_c - eps_u)          s = 1: conditional model alone, s = 0: unconditional

Other ways of writing it, converted to ``s``:

* the survey (§8.5, §9.3): ``w eps_c + (1 - w) eps_u``  ->  ``s = w``   (:func:`scale_from_survey`)
* Imagen / Imagen Video / Ho & Salimans: ``(1 + w) eps_c - w eps_u``  ->  ``s = 1 + w``
  (:func:`scale_from_imagen`). So "w = 0" means *no guidance* there and *unconditional* in the
  survey's form: the two conventions disagree exactly at the value people quote most.

Guidance is applied at sampling time; the unconditional prediction comes from the same network,
trained with its condition dropped some of the time. Classifier guidance (:func:`classifier_guided_eps`)
instead adds the gradient of a separate classifier of noisy inputs to an unconditional prediction.

Thresholding acts on the predicted clean image ``x0`` (not on the noise prediction):

* static: ``x0 <- clip(x0, -1, 1)``
* dynamic (Imagen): per sample ``s_i = percentile(|x0_i|, p)``, ``s_i <- max(s_i, 1)`` (and at most
  ``max_value``), then ``x0_i <- clip(x0_i, -s_i, s_i) / s_i``. Clamping ``s_i`` *below* at 1 keeps
  images already in range untouched; an *upper* clamp of 1 would make ``s_i = 1`` always, i.e.
  static clipping.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from numbers import Real
from typing import Any

import torch


def model_output(model: torch.nn.Module, x_t: torch.Tensor, t: torch.Tensor, cond: Any = None, *extra) -> torch.Tensor:
    """``model(x_t, t[, cond][, *extra])`` (e.g. a student's guidance weight), checking the output's shape."""
    out = model(x_t, t, cond, *extra) if extra else model(x_t, t) if cond is None else model(x_t, t, cond)
    if not isinstance(out, torch.Tensor) or out.shape != x_t.shape:
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(f"the model must return a prediction of x_t's layout b ... and shape {tuple(x_t.shape)}, got {got}")
    return out


def cfg_combine(pred_cond: torch.Tensor, pred_uncond: torch.Tensor, guidance_scale: float) -> torch.Tensor:
    """``pred_u + s (pred_c - pred_u)``: classifier-free guidance in genlib's convention.

    Linear in the prediction, so it means the same for ``epsilon`` and ``v_prediction`` outputs.
    """
    if pred_cond.shape != pred_uncond.shape:
        raise ValueError(f"conditional and unconditional predictions must share a shape: "
                         f"{tuple(pred_cond.shape)} vs {tuple(pred_uncond.shape)}")
    return pred_uncond + guidance_scale * (pred_cond - pred_uncond)


def classifier_guided_eps(eps: torch.Tensor, grad_log_prob: torch.Tensor, abar_t: float | torch.Tensor,
                          scale: float) -> torch.Tensor:
    """Classifier guidance (Dhariwal & Nichol 2021, Algorithm 2; survey §8.5):

        eps_hat = eps - scale * sqrt(1 - abar_t) * grad_x log p_phi(y | x_t)

    A noise prediction is a scaled score, ``eps = -sqrt(1 - abar_t) * grad log p(x_t)``, so this is
    the survey's ``grad log p(x_t) + gamma grad log p(y | x_t)`` written for an eps-network, with
    ``gamma = scale``. ``abar_t`` is one number or one per sample (``b``).
    """
    if eps.shape != grad_log_prob.shape:
        raise ValueError(f"the noise prediction and the classifier's gradient must share a shape: "
                         f"{tuple(eps.shape)} vs {tuple(grad_log_prob.shape)}")
    sigma = (1 - torch.as_tensor(abar_t, dtype=eps.dtype, device=eps.device)).sqrt()
    sigma = sigma.reshape(-1, *[1] * (eps.ndim - 1)) if sigma.ndim else sigma
    return eps - scale * sigma * grad_log_prob


def drop_condition(cond: torch.Tensor, null: torch.Tensor | int, p: float,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """Training for classifier-free guidance (Ho & Salimans 2022): replace each sample's condition
    by the *null* condition with probability ``p``, so one network learns ``eps_c`` and ``eps_u``.

    ``cond``: class labels ``b`` (int64; ``null`` is the label that means "none", e.g. the U-Net's
    ``num_classes``) or a context ``b n d`` (``null``: ``n d`` or ``1 n d``, e.g. the empty
    caption's text states). The coin flips come from ``generator`` on the CPU, one per sample.
    """
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"the drop probability p must lie in [0, 1], got {p}")
    drop = (torch.rand(len(cond), generator=generator) < p).to(cond.device, non_blocking=True)
    if cond.ndim == 1:
        if cond.dtype != torch.long or not isinstance(null, int):
            raise ValueError("class conditions are int64 labels of layout b, and null is one label (an int)")
        return torch.where(drop, torch.full_like(cond, null), cond)
    if cond.ndim != 3 or not isinstance(null, torch.Tensor) or null.shape[-2:] != cond.shape[1:] or null.ndim not in (2, 3):
        raise ValueError(f"a context has layout b n d and its null n d (or 1 n d); got {tuple(cond.shape)} and "
                         f"{tuple(null.shape) if isinstance(null, torch.Tensor) else null!r}")
    return torch.where(drop[:, None, None], null.reshape(1, *cond.shape[1:]).to(cond), cond)


def scale_from_survey(w: float) -> float:
    """The survey's ``w cond + (1 - w) uncond`` is genlib's ``s = w``."""
    return float(w)


def scale_from_imagen(w: float) -> float:
    """Imagen's ``(1 + w) cond - w uncond`` is genlib's ``s = 1 + w``."""
    return 1.0 + float(w)


def static_threshold(x0: torch.Tensor, limit: float = 1.0) -> torch.Tensor:
    """``clip(x0, -limit, limit)``."""
    if not limit > 0:
        raise ValueError(f"static threshold limit must be > 0, got {limit}")
    return x0.clamp(-limit, limit)


def dynamic_threshold_scale(x0: torch.Tensor, percentile: float = 0.995, max_value: float | None = None) -> torch.Tensor:
    """Imagen's per-sample scale ``s_i = max(quantile(|x0_i|, percentile), 1)`` (``(b,)``),
    optionally capped at ``max_value`` (diffusers' ``sample_max_value``)."""
    if x0.ndim < 2:
        raise ValueError(f"dynamic thresholding needs x0 of layout b ... (at least 2 dims), got shape {tuple(x0.shape)}")
    if not 0 < percentile <= 1:
        raise ValueError(f"percentile must be in (0, 1], got {percentile}")
    if max_value is not None and max_value < 1:
        raise ValueError(f"max_value must be >= 1 (else thresholding is static clipping), got {max_value}")
    s = torch.quantile(x0.detach().float().abs().flatten(1), percentile, dim=1)
    s = s.clamp(min=1.0)
    if max_value is not None:
        s = s.clamp(max=max_value)
    return s


def dynamic_threshold(x0: torch.Tensor, percentile: float = 0.995, max_value: float | None = None) -> torch.Tensor:
    """``clip(x0_i, -s_i, s_i) / s_i`` with :func:`dynamic_threshold_scale`'s ``s_i``."""
    s = dynamic_threshold_scale(x0, percentile, max_value).to(x0.dtype).reshape(-1, *[1] * (x0.ndim - 1))
    return torch.minimum(torch.maximum(x0, -s), s) / s


# ----------------------------------------------------------------------------- the sampler's options


@dataclasses.dataclass(frozen=True)
class Guidance:
    """Classifier-free guidance as a sampler takes it: the unconditional input and the scale.

    ``scale`` (genlib's convention, ``s = 1``: no guidance) is one number, one number per sampling
    step (e.g. an oscillating schedule), or a tensor of one scale per sample (``b``), as a
    guidance-distillation teacher draws them.
    """

    uncond: Any
    scale: float | Sequence[float] | torch.Tensor = 1.0

    def __post_init__(self):
        if self.uncond is None:
            raise ValueError("Guidance needs uncond (the condition of the unconditional prediction)")
        scales = self.scale.flatten().tolist() if isinstance(self.scale, torch.Tensor) else (
            list(self.scale) if isinstance(self.scale, Sequence) else [self.scale])
        if not scales or not all(isinstance(s, Real) and not isinstance(s, bool) and math.isfinite(s) for s in scales):
            raise ValueError(f"guidance scale must be finite numbers (1 = no guidance), got {self.scale!r}")

    def at(self, step: int, num_steps: int) -> float | torch.Tensor:
        """The scale at sampling step ``step`` of ``num_steps``."""
        if isinstance(self.scale, Sequence) and not isinstance(self.scale, str):
            if len(self.scale) != num_steps:
                raise ValueError(f"need one guidance scale per step ({num_steps}), got {len(self.scale)}")
            return float(self.scale[step])
        return self.scale if isinstance(self.scale, torch.Tensor) else float(self.scale)


def is_unguided(scale: float | torch.Tensor) -> bool:
    """True when ``scale`` is the number 1 (the conditional prediction alone: no second call)."""
    return not isinstance(scale, torch.Tensor) and float(scale) == 1.0


@dataclasses.dataclass(frozen=True)
class Threshold:
    """What a sampler does to each step's predicted x0: ``kind="static"`` clips to
    ``[-limit, limit]``; ``kind="dynamic"`` is Imagen's per-sample scale (``percentile`` of
    ``|x0|``, at least 1 and at most ``cap``) of :func:`dynamic_threshold_scale`."""

    kind: str = "static"
    limit: float = 1.0
    percentile: float = 0.995
    cap: float | None = None

    def __post_init__(self):
        if self.kind not in ("static", "dynamic"):
            raise ValueError(f"unknown threshold kind {self.kind!r}; expected 'static' or 'dynamic'")
        if not (isinstance(self.limit, Real) and 0 < self.limit < math.inf):
            raise ValueError(f"the static limit must be a positive finite number (x0 is clipped to [-c, c]), "
                             f"got {self.limit!r}")
        if self.kind == "dynamic" and not 0 < self.percentile <= 1:
            raise ValueError(f"percentile must be in (0, 1], got {self.percentile}")
        if self.cap is not None and not self.cap >= 1:
            raise ValueError(f"cap must be >= 1 (else thresholding is static clipping), got {self.cap}")

    @classmethod
    def static(cls, limit: float = 1.0) -> "Threshold":
        return cls("static", limit=limit)

    @classmethod
    def dynamic(cls, percentile: float = 0.995, cap: float | None = None) -> "Threshold":
        return cls("dynamic", percentile=percentile, cap=cap)
