"""Grids of images and strips of clips, drawn as one pixel-exact picture.

The images are enlarged by a whole factor (each model pixel becomes a ``k x k`` block), pasted
into one canvas, each framed by a ``pad``-pixel grey line (neighbours share it), and shown in a
figure sized so one canvas pixel is one figure pixel at ``style.DPI``: model pixels stay crisp
squares, the separators are one pixel wide, and no axes, ticks or resampling blur get in the way.
Captions go in white bands above the rows, sized from the font so they never cover the pictures.

* :func:`image_grid`: ``b c h w`` -> a grid, ``nrow`` images per row (torchvision's meaning).
* :func:`video_strip`: ``b t c h w`` -> one row per clip, one column per frame, ``t=`` labels.
"""

from __future__ import annotations

import math
import textwrap
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from genlib.viz import style
from genlib.viz._images import DEFAULT_RANGE, clips_hwc, even_indices, images_hwc

LINE = 1.3  # text line height in units of the font size
SEP_VALUE = 0.5  # grey of the separator lines, in [0, 1]


@dataclass
class GridLayout:
    """Where each cell of a ``rows x cols`` grid of ``h x w`` images sits in the canvas (pixels).

    Each image is enlarged ``k`` times (nearest neighbour); ``h`` and ``w`` are its canvas size
    after that. ``band[r]`` pixels of white sit above row ``r`` for its captions; ``px`` is the
    size of one canvas pixel in inches when the grid has a figure of its own.
    """

    rows: int
    cols: int
    h: int
    w: int
    pad: int = 1
    band: list[int] = field(default_factory=list)
    px: float = 1 / style.DPI
    k: int = 1

    @classmethod
    def fit(cls, rows: int, cols: int, h: int, w: int, cell_inches: float, pad: int = 1):
        """A layout whose images are about ``cell_inches`` wide, enlarged by a whole factor so
        one canvas pixel is one figure pixel (when the images are small enough), and no wider
        in all than the page (``style.TEXT_WIDTH``, 10% of slack for the whole factor): the page
        would shrink a wider figure, and its labels with it."""
        cell_inches = min(cell_inches, style.TEXT_WIDTH / max(cols, 1))
        k = max(1, round(cell_inches * style.DPI / w))
        if k > 1 and cols * (k * w + pad) > 1.1 * style.TEXT_WIDTH * style.DPI:
            k = max(1, int(cell_inches * style.DPI // w))  # round down where rounding up overflows
        px = 1 / style.DPI if k > 1 or w <= cell_inches * style.DPI else cell_inches / w
        return cls(rows, cols, h * k, w * k, pad, px=px, k=k)

    def with_bands(self, band: list[int]) -> "GridLayout":
        return GridLayout(self.rows, self.cols, self.h, self.w, self.pad, band, self.px, self.k)

    def __post_init__(self):
        self.band = list(self.band) or [0] * self.rows
        tops, y = [], 0
        for r in range(self.rows):
            y += self.band[r]
            tops.append(y + self.pad)
            y += self.pad + self.h
        self.tops = tops
        self.height = y + self.pad
        self.width = self.cols * (self.w + self.pad) + self.pad

    def origin(self, r: int, c: int) -> tuple[int, int]:
        """Top-left canvas pixel ``(y, x)`` of the image in row ``r``, column ``c``."""
        return self.tops[r], self.pad + c * (self.w + self.pad)

    def compose(self, cells: dict[tuple[int, int], np.ndarray], channels: int,
                sep_value: float = SEP_VALUE) -> np.ndarray:
        """Paste ``h w c`` arrays in [0, 1] (model size) at their cells of a white canvas."""
        canvas = np.ones((self.height, self.width, channels), dtype=np.float32)
        p = self.pad
        for (r, c), img in cells.items():
            y, x = self.origin(r, c)
            canvas[y - p:y + self.h + p, x - p:x + self.w + p] = sep_value
            if self.k > 1:
                img = img.repeat(self.k, axis=0).repeat(self.k, axis=1)
            canvas[y:y + self.h, x:x + self.w] = img
        return canvas[..., 0] if channels == 1 else canvas

    def band_px(self, lines: int, fontsize: float) -> int:
        """Pixels of band that hold ``lines`` lines of text at ``fontsize`` points."""
        return 0 if lines <= 0 else math.ceil(lines * fontsize * LINE / 72 / self.px) + 1


def default_scale(cols: int, lo: float = 0.5, hi: float = 2.0) -> float:
    """Inches per image so that ``cols`` images fill at most the page width."""
    return float(np.clip(style.TEXT_WIDTH / max(cols, 1), lo, hi))


def wrap(text: str, width: int, max_lines: int = 3) -> list[str]:
    """Wrap a caption to ``width`` characters, at most ``max_lines`` lines (the last one ending
    in an ellipsis when the text was cut)."""
    lines = textwrap.wrap(str(text), max(width, 4)) or [""]
    if len(lines) > max_lines:
        lines = lines[:max_lines]
        lines[-1] = lines[-1][: max(width - 3, 1)].rstrip() + "..."
    return lines


def chars_per(inches: float, fontsize: float) -> int:
    """About how many characters of a ``fontsize`` point font fit in ``inches``."""
    return int(inches * 72 / (fontsize * 0.55))


def show_canvas(layout: GridLayout, canvas: np.ndarray, ax=None, *, top_inches: float = 0.0):
    """Draw ``canvas`` into ``ax`` or into a new figure sized so one canvas pixel is ``layout.px``
    inches. Returns ``(fig, ax, image_artist)``."""
    if ax is None:
        w_in = layout.width * layout.px
        h_in = layout.height * layout.px
        fig = style.new_figure((w_in, h_in + top_inches))
        ax = fig.add_axes((0.0, 0.0, 1.0, h_in / (h_in + top_inches)))
        if top_inches:
            fig._genlib_top_room = top_inches
    else:
        fig = ax.figure
    im = ax.imshow(canvas, interpolation="nearest", vmin=0.0, vmax=1.0,
                   cmap="gray" if canvas.ndim == 2 else None)
    ax.set_axis_off()
    return fig, ax, im


def _labels(values: Any, n: int, what: str) -> list[str] | None:
    if values is None or values is False:
        return None
    if isinstance(values, str):
        raise TypeError(f"{what} must be a sequence of {n} strings, not one string")
    values = [str(v) for v in values]
    if len(values) != n:
        raise ValueError(f"got {len(values)} {what} for {n} items")
    return values


def image_grid(images: Any, nrow: int | None = None, value_range: Sequence[float] = DEFAULT_RANGE,
               titles: Sequence[str] | None = None, title: str | None = None, ax=None,
               scale: float | None = None, *, pad: int = 1, sep_value: float = SEP_VALUE,
               fontsize: float = style.FONT_SMALL, max_title_lines: int = 3):
    """Show a batch of images as one grid; returns the matplotlib Figure.

    Args:
        images: ``b c h w`` (or one ``c h w``) tensor or array, ``c`` in {1, 3}, values in
            ``value_range`` (clipped); a list of ``c h w`` tensors is stacked.
        nrow: images per row (torchvision's meaning); default ``ceil(sqrt(b))``.
        value_range: the values drawn as black and white, default ``(-1, 1)``; ``uint8`` input
            with the default is read as 0..255.
        titles: one caption per image (e.g. the prompt), wrapped to the image width in a small
            font, at most ``max_title_lines`` lines.
        title: a title above the grid.
        ax: draw into this Axes instead of a new figure (returns its figure; ``title`` becomes
            the Axes title).
        scale: inches per image; default fills at most the page width, which also caps it.
        pad: separator width in pixels; sep_value: its grey level in [0, 1].
    """
    x = images_hwc(images, "image_grid", value_range)
    b, h, w, ch = x.shape
    cols = int(nrow) if nrow else math.ceil(math.sqrt(b))
    if cols < 1:
        raise ValueError(f"nrow must be a positive number of images per row, got {nrow}")
    cols = min(cols, b)
    rows = math.ceil(b / cols)
    cell = float(scale) if scale else default_scale(cols)
    layout = GridLayout.fit(rows, cols, h, w, cell, pad)
    caps = _labels(titles, b, "titles")
    wrapped: list[list[str]] = []
    if caps is not None:
        width = chars_per((layout.w + pad) * layout.px, fontsize)
        wrapped = [wrap(t, width, max_title_lines) for t in caps]
        lines = [max(len(wrapped[i]) for i in range(r * cols, min(b, (r + 1) * cols)))
                 for r in range(rows)]
        layout = layout.with_bands([layout.band_px(n, fontsize) for n in lines])
    cells = {(i // cols, i % cols): x[i] for i in range(b)}
    given = ax is not None
    fig, ax, _ = show_canvas(layout, layout.compose(cells, ch, sep_value), ax)
    for i, lines in enumerate(wrapped):
        y, x0 = layout.origin(i // cols, i % cols)
        ax.text(x0 + (layout.w - 1) / 2, y - pad - 0.5, "\n".join(lines), ha="center", va="bottom",
                fontsize=fontsize, linespacing=1.1)
    if title:
        style.titled(ax if given else fig, title, tag=False)
    return fig


def video_strip(clips: Any, value_range: Sequence[float] = DEFAULT_RANGE,
                titles: Sequence[str] | None = None, frame_labels: Any = True,
                max_frames: int | None = None, title: str | None = None, ax=None,
                scale: float | None = None, *, pad: int = 1, sep_value: float = SEP_VALUE,
                fontsize: float = style.FONT_SMALL):
    """Show clips as strips of frames: one row per clip, one column per frame; returns the Figure.

    Args:
        clips: ``b t c h w`` (or one clip ``t c h w``), ``c`` in {1, 3}, values in ``value_range``.
        titles: one caption per clip, written above its row.
        frame_labels: ``True`` labels the columns ``t=0, t=1, ...`` (the frame index in the
            clip), a sequence of ``t`` strings labels them with those, ``False`` leaves them off.
        max_frames: show at most this many frames, evenly spaced (first and last kept); the
            labels keep the original indices.
        title, ax, scale, pad, sep_value: as in :func:`image_grid`.
    """
    x = clips_hwc(clips, "video_strip", value_range)
    b, t, h, w, ch = x.shape
    idx = even_indices(t, max_frames)
    cols = len(idx)
    if frame_labels is True:
        labels = [f"t={i}" for i in idx]
    else:
        full = _labels(frame_labels, t, "frame_labels")
        labels = None if full is None else [full[i] for i in idx]
    cell = float(scale) if scale else default_scale(cols, lo=0.4, hi=1.5)
    layout = GridLayout.fit(b, cols, h, w, cell, pad)
    caps = _labels(titles, b, "titles")
    wrapped = [[] for _ in range(b)]
    if caps is not None:
        width = chars_per(layout.width * layout.px, fontsize)
        wrapped = [wrap(c, width, 2) for c in caps]
    lines = [len(wrapped[r]) + (1 if r == 0 and labels else 0) for r in range(b)]
    layout = layout.with_bands([layout.band_px(n, fontsize) for n in lines])
    cells = {(r, c): x[r, i] for r in range(b) for c, i in enumerate(idx)}
    given = ax is not None
    fig, ax, _ = show_canvas(layout, layout.compose(cells, ch, sep_value), ax)
    for r in range(b):
        top = layout.tops[r] - pad - layout.band[r]
        if wrapped[r]:
            ax.text(-0.5, top + 0.5, "\n".join(wrapped[r]), ha="left", va="top",
                    fontsize=fontsize, linespacing=1.1)
    if labels:
        for c, label in enumerate(labels):
            y, x0 = layout.origin(0, c)
            ax.text(x0 + (layout.w - 1) / 2, y - pad - 0.5, label, ha="center", va="bottom",
                    fontsize=fontsize)
    if title:
        style.titled(ax if given else fig, title, tag=False)
    return fig
