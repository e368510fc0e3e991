"""Training curves: one line per run, optionally smoothed, on a linear or log scale.

Smoothing is the bias-corrected exponential moving average TensorBoard uses:
``s_t = beta * s_{t-1} + (1 - beta) * x_t`` and the curve shows ``s_t / (1 - beta^(t+1))``, so
the first points are not dragged towards zero. With smoothing on, the raw values stay visible as a
faint line of the same colour.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from genlib.viz import style
from genlib.viz._images import to_numpy


def ema(values: Sequence[float], beta: float) -> np.ndarray:
    """Bias-corrected exponential moving average of ``values`` (NaNs are skipped: they keep the
    previous average)."""
    if not 0.0 <= beta < 1.0:
        raise ValueError(f"smoothing beta must be in [0, 1), got {beta}")
    x = np.asarray(values, dtype=np.float64)
    out = np.empty_like(x)
    s, n = 0.0, 0
    for i, v in enumerate(x):
        if np.isfinite(v):
            s = beta * s + (1.0 - beta) * v  # s_t = beta s_{t-1} + (1 - beta) x_t
            n += 1
        out[i] = s / (1.0 - beta**n) if n else np.nan  # debias: divide by 1 - beta^t
    return out


def _steps_values(name: str, history: Any) -> tuple[np.ndarray, np.ndarray]:
    """A history is a sequence of values (steps 0, 1, ...) or a pair ``(steps, values)``."""
    if isinstance(history, Mapping):
        raise TypeError(f"history {name!r}: pass a sequence of values or a pair (steps, values)")
    if isinstance(history, tuple) and len(history) == 2 and all(
            np.ndim(to_numpy(h)) == 1 for h in history):
        steps, values = (to_numpy(h).astype(np.float64) for h in history)
    else:
        values = to_numpy(history).astype(np.float64)
        steps = np.arange(len(values), dtype=np.float64)
    if values.ndim != 1:
        raise ValueError(f"history {name!r} must be 1-D (one value per step), got shape "
                         f"{values.shape}")
    if steps.shape != values.shape:
        raise ValueError(f"history {name!r}: {len(steps)} steps for {len(values)} values")
    return steps, values


def plot_curves(histories: Mapping[str, Any], *, smooth: float = 0.0, log: bool = False,
                xlabel: str = "step", ylabel: str = "loss", title: str | None = None, ax=None,
                figsize: tuple[float, float] = style.FIGSIZE):
    """Plot loss (or any metric) curves; returns the Figure.

    Args:
        histories: ``{name: values}``, values one per step (a list, array or 1-D tensor), or
            ``{name: (steps, values)}`` when steps are not 0, 1, 2, ...
        smooth: EMA factor ``beta`` in [0, 1); 0 plots the raw values only, 0.9 is strong.
        log: a logarithmic y axis (every value must then be positive).
        xlabel, ylabel, title: axis labels (default ``step`` and ``loss``) and title.
        ax: draw into this Axes instead of a new figure.
    """
    if not isinstance(histories, Mapping) or not histories:
        raise TypeError("plot_curves expects a non-empty dict {name: values}")
    if ax is None:
        fig = style.new_figure(figsize, layout="constrained")
        ax = fig.add_subplot()
    else:
        fig = ax.figure
    for name, history in histories.items():
        steps, values = _steps_values(name, history)
        finite = values[np.isfinite(values)]
        if log and (finite <= 0).any():
            raise ValueError(f"log=True needs positive values; history {name!r} has "
                             f"min {finite.min():.3g}")
        if smooth:
            (raw,) = ax.plot(steps, values, alpha=0.3, linewidth=0.8)
            ax.plot(steps, ema(values, smooth), color=raw.get_color(), label=str(name))
        else:
            ax.plot(steps, values, label=str(name))
    if log:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel + (f" (EMA {smooth:g})" if smooth else ""))
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=style.FONT_LABEL)
    if title:
        ax.set_title(title)
    return fig
