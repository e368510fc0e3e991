"""What every diffusion model's training config shares: the noise process it learns to undo and
its budget.

:class:`DiffusionTraining` holds the schedule, ``T``, the prediction type and the EMA decay on top
of :class:`genlib.train.Budget`. The pixel DDPM and DiT (chapter 07, Appendix C), the latent
denoisers (chapters 08 and 12) and Imagen's base and super-resolution models (chapter 09) inherit
it and add only their network and data fields, so a field means the same thing in every one of
them and is checked in one place.
"""

from __future__ import annotations

import dataclasses

from genlib.diffusion.parameterisation import check_prediction_type
from genlib.diffusion.schedules import KINDS
from genlib.train import Budget


@dataclasses.dataclass(frozen=True, kw_only=True)
class DiffusionTraining(Budget):
    """``schedule`` (one of :data:`~genlib.diffusion.schedules.KINDS`), ``num_train_timesteps``
    (``T``), ``prediction_type`` (``epsilon`` | ``sample`` | ``v_prediction``) and ``ema_decay``
    (``None``: no weight averaging), plus the :class:`~genlib.train.Budget` fields."""

    schedule: str = "linear"
    num_train_timesteps: int = 1000
    prediction_type: str = "epsilon"
    ema_decay: float | None = None

    def __post_init__(self):
        super().__post_init__()
        if self.schedule not in KINDS:
            raise ValueError(f"unknown schedule kind {self.schedule!r}; expected one of {', '.join(KINDS)}")
        check_prediction_type(self.prediction_type)
        if self.num_train_timesteps < 2:
            raise ValueError(f"num_train_timesteps (T) must be at least 2, got {self.num_train_timesteps}")
        if self.ema_decay is not None and not 0 < self.ema_decay < 1:
            raise ValueError(f"ema_decay must lie in (0, 1) or be None, got {self.ema_decay}")
