"""Turn image and clip tensors into display arrays: shape checks and value mapping.

Every plotting helper in :mod:`genlib.viz` takes images the way the models make them:

* images: ``b c h w`` (or one image ``c h w``), ``c`` in {1, 3};
* clips: ``b t c h w`` (or one clip ``t c h w``);
* values: floats in ``value_range`` (default ``(-1, 1)``, what the models are trained on); values
  outside are clipped. ``uint8`` arrays with the default range are read as 0..255.

torch tensors (any device, any float dtype, with or without grad) and NumPy arrays are accepted;
a list of equally shaped ``c h w`` tensors is stacked into ``b c h w``.
"""

from __future__ import annotations

import warnings
from typing import Any, Sequence

import numpy as np

DEFAULT_RANGE = (-1.0, 1.0)


def to_numpy(x: Any) -> np.ndarray:
    """A NumPy copy of a torch tensor, NumPy array or list of them (stacked on a new first axis)."""
    if isinstance(x, (list, tuple)):
        if not x:
            raise ValueError("got an empty list of images")
        parts = [to_numpy(v) for v in x]
        shapes = {p.shape for p in parts}
        if len(shapes) > 1:
            raise ValueError(f"cannot stack images of different shapes {sorted(shapes)}")
        return np.stack(parts)
    if hasattr(x, "detach"):  # a torch tensor, without importing torch here
        x = x.detach().cpu()
        if x.dtype.is_floating_point:
            x = x.float()  # bfloat16 has no NumPy dtype
        return x.numpy()
    return np.asarray(x)


def _channels_hint(shape: tuple[int, ...]) -> str:
    if len(shape) >= 3 and shape[-1] in (1, 3) and shape[-3] not in (1, 3):
        return (" It looks channels-last (... h w c): rearrange it first, e.g. "
                "einops.rearrange(x, 'b h w c -> b c h w').")
    return ""


def check_images(x: np.ndarray, fn: str) -> np.ndarray:
    """Return ``x`` as ``b c h w``; raise a ValueError naming the layout when it is not one."""
    expected = f"{fn} expects images as `b c h w` (or one image `c h w`) with c in {{1, 3}}"
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4:
        hint = " For clips `b t c h w` use video_strip or animate." if x.ndim == 5 else ""
        raise ValueError(f"{expected}; got rank {x.ndim} with shape {tuple(x.shape)}.{hint}")
    if x.shape[1] not in (1, 3):
        raise ValueError(f"{expected}; got c={x.shape[1]} in shape {tuple(x.shape)}."
                         + _channels_hint(x.shape))
    if x.shape[0] == 0:
        raise ValueError(f"{fn} got an empty batch: shape {tuple(x.shape)}")
    return x


def check_clips(x: np.ndarray, fn: str) -> np.ndarray:
    """Return ``x`` as ``b t c h w``; raise a ValueError naming the layout when it is not one."""
    expected = f"{fn} expects clips as `b t c h w` (or one clip `t c h w`) with c in {{1, 3}}"
    if x.ndim == 4:
        x = x[None]
    if x.ndim != 5:
        raise ValueError(f"{expected}; got rank {x.ndim} with shape {tuple(x.shape)}.")
    if x.shape[2] not in (1, 3):
        raise ValueError(f"{expected}; got c={x.shape[2]} in shape {tuple(x.shape)}."
                         + _channels_hint(x.shape))
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"{fn} got an empty clip batch: shape {tuple(x.shape)}")
    return x


def to_unit(x: np.ndarray, value_range: Sequence[float] | None = DEFAULT_RANGE) -> np.ndarray:
    """Map values from ``value_range`` to [0, 1] (float32), clipping what falls outside.

    ``uint8`` input with the default range is read as 0..255 and ``bool`` as 0..1. NaNs are drawn
    as the low end of the range, with a warning (a diverged model should be visible, not fatal).
    """
    if x.dtype == np.bool_:
        lo, hi = 0.0, 1.0
    elif x.dtype == np.uint8 and tuple(value_range or DEFAULT_RANGE) == DEFAULT_RANGE:
        lo, hi = 0.0, 255.0
    else:
        if value_range is None or len(value_range) != 2:
            raise ValueError(f"value_range must be a pair (low, high), got {value_range!r}")
        lo, hi = float(value_range[0]), float(value_range[1])
    if not hi > lo:
        raise ValueError(f"value_range must have high > low, got {value_range!r}")
    y = (x.astype(np.float32) - lo) / (hi - lo)
    nan = np.isnan(y)
    if nan.any():
        warnings.warn(f"{int(nan.sum())} NaN values drawn as the low end of the range",
                      stacklevel=3)
        y = np.where(nan, 0.0, y)
    return np.clip(y, 0.0, 1.0).astype(np.float32)


def images_hwc(x: Any, fn: str, value_range=DEFAULT_RANGE) -> np.ndarray:
    """``b c h w`` input -> ``b h w c`` float32 in [0, 1]."""
    arr = to_unit(check_images(to_numpy(x), fn), value_range)
    return arr.transpose(0, 2, 3, 1)


def clips_hwc(x: Any, fn: str, value_range=DEFAULT_RANGE) -> np.ndarray:
    """``b t c h w`` input -> ``b t h w c`` float32 in [0, 1]."""
    arr = to_unit(check_clips(to_numpy(x), fn), value_range)
    return arr.transpose(0, 1, 3, 4, 2)


def even_indices(n: int, k: int | None) -> list[int]:
    """At most ``k`` indices out of ``range(n)``, evenly spaced, first and last included."""
    if k is None or n <= k:
        return list(range(n))
    if k < 1:
        raise ValueError(f"need at least one frame, got max {k}")
    if k == 1:
        return [0]
    return sorted({int(round(i * (n - 1) / (k - 1))) for i in range(k)})
