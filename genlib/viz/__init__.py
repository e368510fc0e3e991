"""Plots, animations and interactive views for the book: they know tensors, not models.

``genlib.viz`` stands apart from the rest of genlib: it imports :mod:`genlib.config` only.
Layouts (einops notation): images ``b c h w`` with ``c`` in {1, 3}, clips ``b t c h w``, values
in ``value_range`` (default ``(-1, 1)``); torch tensors and NumPy arrays are both accepted.

=====================  ===================================================================
:func:`architecture`   a model's block diagram, drawn from its modules (and the boxes' list)
:func:`image_grid`     a batch of images as one grid, optional per-image captions
:func:`video_strip`    clips as rows of frames, with frame-index labels
:func:`animate`        frames (or drawing callbacks) as a jshtml player with stable HTML
:func:`explore`        THE interactive view: live widgets in Jupyter, scrubber in the book
:func:`plot_curves`    loss curves, EMA smoothing, log scale
:func:`show_source`    a genlib function's source shown in the page
:func:`table`          a results table as HTML and as aligned text
:func:`titled`         a title ending in ``(profile=..., seed=...)``
:func:`check`          an invariant: ``PASS: ...`` printed, or the page stops
=====================  ===================================================================

Helpers return what the cell should show (a Figure, an HTML player, a widget, a table): make the
call the cell's last expression. Figures are created closed, so Jupyter never shows one twice.
"""

from genlib.viz.animation import animate, reset_html_ids
from genlib.viz.architecture import architecture, architecture_blocks
from genlib.viz.checks import InvariantError, check
from genlib.viz.curves import ema, plot_curves
from genlib.viz.explore import explore
from genlib.viz.grid import image_grid, video_strip
from genlib.viz.source import Source, show_source
from genlib.viz.style import caption_tag, format_number, new_figure, titled
from genlib.viz.tables import Table, table

__all__ = [
    "InvariantError",
    "Source",
    "Table",
    "animate",
    "architecture",
    "architecture_blocks",
    "check",
    "caption_tag",
    "ema",
    "explore",
    "format_number",
    "image_grid",
    "new_figure",
    "plot_curves",
    "reset_html_ids",
    "show_source",
    "table",
    "titled",
    "video_strip",
]
