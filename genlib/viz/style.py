"""One look for every figure in the book: sizes, fonts, number formatting and captions.

Figures here are made with :func:`new_figure`, which creates them through pyplot (so Jupyter's
inline backend knows how to show them) and closes them at once (so Jupyter does not show them a
second time at the end of the cell). A helper returns its Figure; the cell shows it when it is the
cell's last expression, or when passed to ``display``.

Every figure states the profile and seed that made it (STYLE.md). :func:`titled` adds them::

    fig = image_grid(samples)
    titled(fig, "DDPM samples after training", seed=0)   # "... (profile=cpu, seed=0)"
"""

from __future__ import annotations

import math
from typing import Any

import matplotlib
import matplotlib.axes
import matplotlib.figure

from genlib import config

TEXT_WIDTH = 7.5  # inches: the widest figure the book's page shows without scaling it down
FIGSIZE = (5.0, 3.5)  # one plot
DPI = 100
FONT_SMALL = 7  # per-image captions, frame labels
FONT_LABEL = 9  # view labels, suptitles of small panels
FONT_TITLE = 11


def new_figure(figsize: tuple[float, float] = FIGSIZE, *, layout: str | None = None,
               dpi: float = DPI):
    """A pyplot-created Figure that is already closed: shown once, by whoever displays it."""
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=figsize, dpi=dpi, layout=layout)
    plt.close(fig)
    return fig


def caption_tag(seed: int | None = None) -> str:
    """``"profile=cpu, seed=0"``: the part of a caption that says what made a figure."""
    tag = f"profile={config.profile()}"
    return tag if seed is None else f"{tag}, seed={seed}"


def titled(target: Any, text: str, *, seed: int | None = None, tag: bool = True,
           fontsize: float = FONT_TITLE):
    """Title a Figure (suptitle) or an Axes (title) with ``text (profile=..., seed=...)``.

    For a figure without a layout engine (all figures made by :mod:`genlib.viz`), the figure grows
    at the top by one title line so the title never covers the plot; calling it again only
    replaces the text. Returns ``target``, so ``titled(image_grid(x), "...", seed=0)`` can end a
    cell.
    """
    full = f"{text} ({caption_tag(seed)})" if tag else text
    if isinstance(target, matplotlib.axes.Axes):
        target.set_title(full, fontsize=fontsize)
        return target
    if not isinstance(target, matplotlib.figure.FigureBase):
        raise TypeError(f"titled expects a matplotlib Figure or Axes, got {type(target).__name__}")
    if target.get_layout_engine() is None and isinstance(target, matplotlib.figure.Figure):
        lines = full.count("\n") + 1
        reserve_top(target, lines * fontsize * 1.45 / 72 + 0.08)
        w, h = target.get_size_inches()
        y = 1 - 0.06 / h
    else:
        y = None
    kwargs = {} if y is None else {"y": y, "va": "top"}
    target.suptitle(full, fontsize=fontsize, **kwargs)
    return target


def reserve_top(fig, inches: float) -> None:
    """Grow ``fig`` by ``inches`` at the top, keeping every axes where it is in inches.

    Idempotent per figure: a second call only grows the figure if it asks for more room.
    """
    have = getattr(fig, "_genlib_top_room", 0.0)
    extra = inches - have
    if extra <= 0:
        return
    w, h = fig.get_size_inches()
    new_h = h + extra
    for ax in fig.axes:
        x0, y0, aw, ah = ax.get_position().bounds
        ax.set_position([x0, y0 * h / new_h, aw, ah * h / new_h])
    for text in fig.texts:  # figure texts placed in figure fractions keep their height in inches
        x, y = text.get_position()
        text.set_position((x, y * h / new_h))
    fig.set_size_inches(w, new_h)
    fig._genlib_top_room = inches


def format_number(v: Any, digits: int = 3, *, trim: bool = False) -> str:
    """Readable, deterministic text for a number: ``digits`` significant figures, no ``e``
    notation between 1e-4 and 1e15, integers exact (with thousands separators from 10,000).
    ``trim`` drops trailing zeros (``0.2`` rather than ``0.200``), for labels."""
    if hasattr(v, "item") and getattr(v, "ndim", 0) == 0:
        v = v.item()  # 0-d tensors and NumPy scalars
    if isinstance(v, bool) or v is None or isinstance(v, str):
        return "-" if v is None else str(v)
    if isinstance(v, int):
        return f"{v:,}" if abs(v) >= 10_000 else str(v)
    if isinstance(v, float):
        if math.isnan(v) or math.isinf(v):
            return str(v)
        if v == 0:
            return "0"
        mag = math.floor(math.log10(abs(v)))
        if mag < -4 or mag >= 15:
            text = f"{v:.{max(digits - 1, 0)}e}"
            if trim:
                mant, exp = text.split("e")
                text = (mant.rstrip("0").rstrip(".") if "." in mant else mant) + "e" + exp
            return text
        decimals = max(digits - 1 - mag, 0)
        text = f"{round(v, decimals):.{decimals}f}"
        if trim and "." in text:
            text = text.rstrip("0").rstrip(".")
        return "0" if float(text) == 0 else text  # no "-0.00"
    return str(v)
