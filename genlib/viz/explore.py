"""One call for every interactive view: live widgets in Jupyter, a scrubber in the static book.

A chapter writes the view once, as a function that draws it::

    def draw(ax, t, schedule):
        ax.imshow(...)

    explore(draw, t=range(0, 1000, 50), schedule=["linear", "cosine"], defaults={"t": 500})

* In a live Jupyter kernel (:func:`genlib.config.interactive`) this is an ipywidgets view: one
  slider (numbers) or dropdown (anything else) per parameter, redrawing on every change.
* In a static build (the HTML book, nbval, notebook refresh: ``GENLIB_STATIC=1``) a page cannot
  run Python, so the same ``draw`` renders a jshtml scrubber over the first parameter, the others
  held at their defaults, or, with ``static="multiples"``, a grid of small multiples over the
  first two parameters. A caption under the view says what was held fixed or subsampled.

Both paths call the same ``draw`` and write the same label (``t = 500, schedule = linear``) as the
view's suptitle, so the book and the notebook always show the same picture for the same values.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import matplotlib
import numpy as np

from genlib import config
from genlib.viz import style
from genlib.viz._images import even_indices
from genlib.viz.animation import animate

MAX_FRAMES = 24  # frames of a static scrubber: each is a PNG inside the page
MAX_PANELS = 12  # panels of small multiples


@dataclass
class Param:
    """One explored parameter: its name, the values it takes and the index of its default."""

    name: str
    values: list
    index: int = 0

    @property
    def default(self) -> Any:
        return self.values[self.index]

    @property
    def numeric(self) -> bool:
        return all(isinstance(v, (int, float, np.integer, np.floating))
                   and not isinstance(v, (bool, np.bool_)) for v in self.values)


def _as_values(name: str, values: Any) -> list:
    if hasattr(values, "tolist") and getattr(values, "ndim", 1) == 1:
        values = values.tolist()  # NumPy arrays, torch tensors
    if isinstance(values, (str, bytes)) or not hasattr(values, "__len__"):
        raise TypeError(f"explore: parameter {name!r} must be a sequence of values (a list, "
                        f"tuple, range or 1-D array), got {type(values).__name__} {values!r}")
    values = list(values)
    if not values:
        raise ValueError(f"explore: parameter {name!r} has no values")
    return values


def _find(values: list, value: Any) -> int | None:
    for i, v in enumerate(values):
        try:
            if v == value or (isinstance(v, float) and math.isclose(v, value, rel_tol=1e-9,
                                                                     abs_tol=1e-12)):
                return i
        except (TypeError, ValueError):
            continue
    return None


def params_of(params: Mapping[str, Any], defaults: Mapping[str, Any] | None) -> list[Param]:
    """Check the keyword parameters of :func:`explore` and pick each one's default
    (``defaults[name]``, which must be one of its values, else its first value)."""
    if not params:
        raise ValueError("explore needs at least one parameter, e.g. explore(draw, t=range(10))")
    defaults = dict(defaults or {})
    unknown = sorted(set(defaults) - set(params))
    if unknown:
        raise ValueError(f"defaults name {unknown}, which are not parameters ({sorted(params)})")
    out = []
    for name, values in params.items():
        values = _as_values(name, values)
        if name in defaults:
            i = _find(values, defaults[name])
            if i is None:
                raise ValueError(f"explore: default {name}={defaults[name]!r} is not one of its "
                                 f"values {values[:6]}{' ...' if len(values) > 6 else ''}")
        else:
            i = 0
        out.append(Param(name, values, i))
    return out


def label_of(values: Mapping[str, Any]) -> str:
    """The view's label: ``"t = 500, schedule = linear"``."""
    return ", ".join(f"{k} = {style.format_number(v, 4, trim=True)}" for k, v in values.items())


def draw_view(target, draw: Callable, values: Mapping[str, Any], canvas: str,
              label: Mapping[str, Any] | None = None) -> None:
    """Draw one view into a Figure or SubFigure: ``draw(ax_or_fig, **values)``, then write
    ``label_of(label)`` (default: all the values) as its suptitle."""
    draw(target.add_subplot() if canvas == "ax" else target, **values)
    target.suptitle(label_of(values if label is None else label), fontsize=style.FONT_LABEL)


def explore(draw: Callable[..., Any], *, defaults: Mapping[str, Any] | None = None,
            static: str = "scrubber", canvas: str = "ax",
            figsize: tuple[float, float] = style.FIGSIZE, max_frames: int = MAX_FRAMES,
            max_panels: int = MAX_PANELS, fps: float = 2, **params):
    """An interactive view of ``draw`` over parameter values: widgets live, a scrubber static.

    Args:
        draw: ``draw(ax, **values)`` (``canvas="ax"``: a fresh Axes) or ``draw(fig, **values)``
            (``canvas="figure"``: a Figure or SubFigure to fill, e.g. with ``subplots``) draws
            one view. It must not set the figure's suptitle: the view's label goes there.
        **params: each parameter's values, a sequence (list, tuple, range, 1-D array), in the
            order the controls appear. Names must differ from explore's own options.
        defaults: a value per parameter (one of its values); default: its first value.
        static: what a static build shows: ``"scrubber"`` (a jshtml player over the first
            parameter, the others at their defaults) or ``"multiples"`` (a figure of small
            multiples: the first parameter across, the second down, the rest at defaults).
        figsize: the size of one view in inches.
        max_frames / max_panels: bounds on scrubber frames and multiples panels; longer value
            lists are subsampled evenly (first and last kept), and the caption says so.
        fps: scrubber playback speed.

    Returns an ipywidgets ``VBox`` (live), a :class:`~genlib.viz.animation.Player` (scrubber) or a
    matplotlib Figure (multiples): make it the cell's last expression.
    """
    if canvas not in ("ax", "figure"):
        raise ValueError(f"canvas must be 'ax' or 'figure', got {canvas!r}")
    if static not in ("scrubber", "multiples"):
        raise ValueError(f"static must be 'scrubber' or 'multiples', got {static!r}")
    specs = params_of(params, defaults)
    if config.interactive():
        return live_view(draw, specs, canvas=canvas, figsize=figsize)
    if static == "multiples":
        return multiples_view(draw, specs, canvas=canvas, figsize=figsize, max_panels=max_panels)
    return scrubber_view(draw, specs, canvas=canvas, figsize=figsize, max_frames=max_frames,
                         fps=fps)


def _fixed_text(specs: list[Param]) -> str:
    if not specs:
        return ""
    return " Fixed: " + label_of({p.name: p.default for p in specs}) + "."


def _shown(p: Param, n: int) -> str:
    """``"24 of 100 values, evenly spaced"`` (or ``"8 values"`` when all are shown)."""
    return (f"{n} of {len(p.values)} values, evenly spaced" if n < len(p.values)
            else f"{n} value" if n == 1 else f"{n} values")


def scrubber_view(draw, specs: list[Param], *, canvas: str, figsize, max_frames: int,
                  fps: float):
    """A jshtml player over the first parameter's values, the others at their defaults."""
    first, rest = specs[0], specs[1:]
    idx = even_indices(len(first.values), max_frames)
    held = {p.name: p.default for p in rest}

    def frame(value):
        return lambda fig: draw_view(fig, draw, {first.name: value, **held}, canvas)

    opens = min(range(len(idx)), key=lambda j: _distance(first.values[idx[j]], first.default))
    at = f"; it opens at {label_of({first.name: first.values[idx[opens]]})}" if opens else ""
    caption = (f"Scrub {first.name} ({_shown(first, len(idx))}{at}).{_fixed_text(rest)} "
               "Run the notebook in Jupyter for live controls.")
    return animate([frame(first.values[i]) for i in idx], canvas="figure", figsize=figsize,
                   fps=fps, max_frames=None, labels=False, caption=caption, start=opens)


def _distance(value, default) -> float:
    """How far a shown value is from the default (0 for the default itself): the player opens on
    the nearest shown frame, as the live view opens on the default."""
    if value == default:
        return 0.0
    try:
        return abs(float(value) - float(default))
    except (TypeError, ValueError):
        return 1.0


def multiples_view(draw, specs: list[Param], *, canvas: str, figsize, max_panels: int):
    """A Figure of small multiples: first parameter across, second down, the rest at defaults."""
    across = specs[0]
    down = specs[1] if len(specs) > 1 else None
    rest = specs[2:]
    if down is not None and len(down.values) == 1:  # nothing varies down: wrap the row instead
        down, rest = None, specs[1:]
    if down is None:
        idx = even_indices(len(across.values), max_panels)
        # as many panels per row as fit the page at full size (at most 4), so labels stay legible
        per_row = max(1, min(4, int(style.TEXT_WIDTH // figsize[0])))
        rows = math.ceil(len(idx) / per_row)
        cols = math.ceil(len(idx) / rows)
        grid = [[{across.name: across.values[i]} for i in idx[r * cols:(r + 1) * cols]]
                for r in range(rows)]
    else:
        r_idx = even_indices(len(down.values), min(4, max(1, max_panels // 2)))
        c_idx = even_indices(len(across.values), min(4, max(1, max_panels // len(r_idx))))
        cols, rows = len(c_idx), len(r_idx)
        grid = [[{across.name: across.values[i], down.name: down.values[j]} for i in c_idx]
                for j in r_idx]
    held = {p.name: p.default for p in rest}
    s = max(0.4, min(1.0, style.TEXT_WIDTH / (cols * figsize[0])))
    fig = style.new_figure((cols * figsize[0] * s, rows * figsize[1] * s), layout="constrained")
    subs = fig.subfigures(rows, cols, squeeze=False)
    with matplotlib.rc_context({"font.size": style.FONT_SMALL}):  # small panels, small text
        for r, row in enumerate(grid):
            for c, varying in enumerate(row):
                draw_view(subs[r][c], draw, {**varying, **held}, canvas, label=varying)

    if down is None:
        text = f"{across.name}: {_shown(across, len(idx))}."
    else:
        text = (f"{across.name} across ({_shown(across, cols)}), "
                f"{down.name} down ({_shown(down, rows)}).")
    fig.suptitle(text + _fixed_text(rest), fontsize=style.FONT_LABEL)
    return fig


def _control(p: Param):
    import ipywidgets as widgets

    labels = [style.format_number(v, 4, trim=True) for v in p.values]
    if len(set(labels)) < len(labels):
        labels = [repr(v) for v in p.values]
    common = dict(options=list(zip(labels, p.values)), index=p.index, description=p.name,
                  style={"description_width": "initial"})
    if p.numeric:
        return widgets.SelectionSlider(continuous_update=False, **common)
    return widgets.Dropdown(**common)


def live_view(draw, specs: list[Param], *, canvas: str, figsize):
    """An ipywidgets VBox: one control per parameter above an output that redraws the view."""
    import ipywidgets as widgets
    from IPython.display import display

    controls = {p.name: _control(p) for p in specs}

    def show(**values):
        fig = style.new_figure(figsize, layout="constrained")
        draw_view(fig, draw, {p.name: values[p.name] for p in specs}, canvas)
        display(fig)

    out = widgets.interactive_output(show, controls)
    row = widgets.HBox if len(controls) <= 2 else widgets.VBox
    return widgets.VBox([row(list(controls.values())), out])
