"""What the network predicts: ``epsilon``, ``sample`` (x0) or ``v_prediction``, and the conversions.

Names are diffusers' ``prediction_type`` values. With ``a = sqrt(abar_t)`` and ``s = sqrt(1 - abar_t)``
(so ``a^2 + s^2 = 1``) and ``x_t = a x0 + s eps`` (eq. 12):

    epsilon        the noise:             eps
    sample         the clean image:       x0  = (x_t - s eps) / a
    v_prediction   the velocity:          v   = a eps - s x0        (Salimans & Ho; Imagen Video)

and back from v: ``x0 = a x_t - s v``, ``eps = s x_t + a v``. All three carry the same
information given ``x_t``; they differ in how errors are weighted and in how well-conditioned the
conversion is at the ends of the schedule (``a -> 0`` near pure noise makes x0 from eps unstable).
"""

from __future__ import annotations

import torch

PREDICTION_TYPES = ("epsilon", "sample", "v_prediction")


def check_prediction_type(prediction_type: str) -> str:
    if prediction_type not in PREDICTION_TYPES:
        raise ValueError(f"unknown prediction_type {prediction_type!r}; expected one of {', '.join(PREDICTION_TYPES)}")
    return prediction_type


def _coefficients(abar: torch.Tensor | float, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    abar = torch.as_tensor(abar, dtype=torch.float64 if like.dtype == torch.float64 else torch.float32, device=like.device)
    return abar.sqrt(), (1 - abar).sqrt()


def v_from(x0: torch.Tensor, eps: torch.Tensor, abar: torch.Tensor | float) -> torch.Tensor:
    """``v = sqrt(abar) eps - sqrt(1 - abar) x0``."""
    a, s = _coefficients(abar, x0)
    return a * eps - s * x0


def target(prediction_type: str, x0: torch.Tensor, eps: torch.Tensor, abar: torch.Tensor | float) -> torch.Tensor:
    """The regression target of a network that predicts ``prediction_type``."""
    check_prediction_type(prediction_type)
    if x0.shape != eps.shape:
        raise ValueError(f"x0 and eps must share the layout b ...: {tuple(x0.shape)} vs {tuple(eps.shape)}")
    if prediction_type == "epsilon":
        return eps
    if prediction_type == "sample":
        return x0
    return v_from(x0, eps, abar)


def to_x0_eps(prediction: torch.Tensor, x_t: torch.Tensor, abar: torch.Tensor | float,
              prediction_type: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x0, eps)`` implied by a network output of kind ``prediction_type`` at noise level ``abar``.

    ``abar`` is a float or a tensor broadcasting against ``x_t: b ...`` (e.g. ``b 1 1 1``).
    """
    check_prediction_type(prediction_type)
    if prediction.shape != x_t.shape:
        raise ValueError(f"the prediction must have x_t's layout b ... and shape {tuple(x_t.shape)}, "
                         f"got {tuple(prediction.shape)}")
    a, s = _coefficients(abar, x_t)
    if prediction_type == "epsilon":
        eps = prediction
        return (x_t - s * eps) / a, eps
    if prediction_type == "sample":
        x0 = prediction
        return x0, (x_t - a * x0) / s
    v = prediction
    return a * x_t - s * v, s * x_t + a * v


def convert(prediction: torch.Tensor, x_t: torch.Tensor, abar: torch.Tensor | float, source: str, dest: str) -> torch.Tensor:
    """Re-express a prediction of kind ``source`` as kind ``dest`` (exact, given ``x_t``)."""
    check_prediction_type(dest)
    x0, eps = to_x0_eps(prediction, x_t, abar, source)
    return target(dest, x0, eps, abar)
