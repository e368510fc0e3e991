"""Argument checks and the one pixel convention shared by the data worlds.

Every public entry point in ``genlib.data`` checks its arguments here, so a wrong value fails at
once with a ``ValueError`` that names the argument, what was expected and what came in, instead
of failing deep inside numpy or torch with a message about something else.

The pixel convention of the whole book also lives here: images are float32 tensors laid out
``b c h w`` with values in ``[-1, 1]``. :func:`to_signed` maps stored pixel values (0..16 for the
scikit-learn digits, 0..255 for photographs) onto that range.
"""

from __future__ import annotations

from collections.abc import Sequence
from numbers import Integral, Real

import numpy as np
import torch


def integer(name: str, value: object, minimum: int = 1, maximum: int | None = None) -> int:
    """``value`` as a Python int, checked to lie in ``[minimum, maximum]``."""
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    value = int(value)
    if value < minimum or (maximum is not None and value > maximum):
        bound = f">= {minimum}" if maximum is None else f"in [{minimum}, {maximum}]"
        raise ValueError(f"{name} must be an integer {bound}, got {value}")
    return value


def real(name: str, value: object, minimum: float = 0.0, strict: bool = False) -> float:
    """``value`` as a finite Python float, checked to be ``>= minimum`` (``> minimum`` if strict)."""
    if isinstance(value, bool) or not isinstance(value, Real) or not np.isfinite(float(value)):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    value = float(value)
    if value < minimum or (strict and value == minimum):
        raise ValueError(f"{name} must be {'>' if strict else '>='} {minimum}, got {value}")
    return value


def choice(name: str, value: object, allowed: Sequence[str]) -> str:
    """``value`` checked to be one of the ``allowed`` names."""
    if not isinstance(value, str) or value not in allowed:
        names = ", ".join(repr(a) for a in allowed)
        raise ValueError(f"{name} must be one of {names}; got {value!r}")
    return value


def rng(seed: object) -> np.random.Generator:
    """A NumPy ``Generator(PCG64(seed))``: the same seed gives the same draws on every machine."""
    seed = integer("seed", seed, minimum=0)
    return np.random.Generator(np.random.PCG64(seed))


def images(x: object, name: str = "images", channels: Sequence[int] | None = None) -> torch.Tensor:
    """``x`` checked to be a floating tensor laid out ``b c h w`` (rank 4)."""
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor laid out 'b c h w', got {type(x).__name__}")
    if x.ndim != 4:
        raise ValueError(
            f"{name} must be laid out 'b c h w' (rank 4), got rank {x.ndim} with shape {tuple(x.shape)}"
        )
    if not x.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor in [-1, 1], got dtype {x.dtype}")
    if channels is not None and x.shape[1] not in channels:
        raise ValueError(
            f"{name} must have c in {tuple(channels)} channels ('b c h w'), got shape {tuple(x.shape)}"
        )
    return x


def to_signed(x: np.ndarray, top: float, bottom: float = 0.0) -> torch.Tensor:
    """Map stored pixel values in ``[bottom, top]`` linearly onto ``[-1, 1]`` as float32.

    ``bottom -> -1`` and ``top -> +1``; the layout of ``x`` is kept and ``x`` is not modified.
    """
    t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    return t.sub(bottom).mul_(2.0 / (top - bottom)).sub_(1.0).clamp_(-1.0, 1.0)
