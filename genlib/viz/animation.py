"""Animations that play in Jupyter and in the static book: matplotlib's jshtml, made deterministic.

:func:`animate` renders every frame once into a PNG and returns a :class:`Player` (HTML)
holding matplotlib's JavaScript player (play, pause, step, a scrubber slider), written by the
``HTMLWriter`` behind ``FuncAnimation.to_jshtml``. It needs no kernel, so it works in the built
HTML book exactly as in Jupyter.

Matplotlib names each player's HTML elements with a random ``uuid4``; here that id is replaced by
``genlib<n>``, where ``n`` counts the animations made in this Python process. A notebook executed
from a fresh kernel therefore gives the same HTML every time, apart from the base64 PNG frames
(which nbval compares only after the sanitize rule for ``data:image/png;base64,...``). The PNG
payloads are written on one line each so one regex covers them.
"""

from __future__ import annotations

import html as html_lib
import itertools
import math
import re
import tempfile
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from genlib.viz import style
from genlib.viz._images import DEFAULT_RANGE, even_indices, to_numpy, to_unit
from genlib.viz.grid import GridLayout, show_canvas

_ids = itertools.count()


def reset_html_ids(start: int = 0) -> None:
    """Restart the animation id counter (tests use it to compare two renders of one input)."""
    global _ids
    _ids = itertools.count(start)


def _next_id() -> str:
    return f"genlib{next(_ids)}"


_UUID = re.compile(r'_anim_img([0-9a-f]{32})"')
_PAYLOAD = re.compile(r"(data:image/\w+;base64,)([^\"]*)")
# matplotlib's player links font-awesome from a CDN for its button icons; the book's theme (and
# JupyterLab) ship the icons, and a page must never wait on the network to render.
_REMOTE_LINK = re.compile(r"<link\b[^>]*\bhref=\"https?://[^\"]*\"[^>]*>\s*")


def deterministic_jshtml(raw: str, html_id: str | None = None) -> str:
    """Replace matplotlib's random player id in ``raw`` (``to_jshtml`` output) by ``html_id``
    (default: the next ``genlib<n>``), put each base64 frame on one line and drop the stylesheet
    link to a CDN (the page stays offline)."""
    found = _UUID.search(raw)
    if found is None:
        raise RuntimeError("matplotlib's jshtml changed: no _anim_img<uuid> element found")
    html_id = html_id or _next_id()
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", html_id):
        raise ValueError(f"html_id must be a JavaScript identifier, got {html_id!r}")
    out = _REMOTE_LINK.sub("", raw.replace(found.group(1), html_id))
    return _PAYLOAD.sub(lambda m: m.group(1) + m.group(2).replace("\\\n", ""), out)


_INIT = re.compile(r"(anim(\w+) = new Animation\(frames, img_id, slider_id, [^;]*;)")


def open_at(text: str, frame: int) -> str:
    """Make a jshtml player open on ``frame`` instead of frame 0 (the slider follows)."""
    found = _INIT.search(text)
    if found is None:
        raise RuntimeError("matplotlib's jshtml changed: no Animation constructor found")
    return text[:found.end()] + f"\n        anim{found.group(2)}.set_frame({int(frame)});" + text[found.end():]


def jshtml(fig, update: Callable[[int], Any], n: int, *, fps: float = 4, loop: bool = True,
           dpi: float | None = None, html_id: str | None = None,
           caption: str | None = None, start: int = 0):
    """Play ``update(0) ... update(n - 1)`` on ``fig`` as a jshtml player; returns :class:`Player`.

    ``update(i)`` draws frame ``i``; it is called exactly once per frame, and each frame is
    rendered once. This is what ``FuncAnimation(...).to_jshtml()`` produces (the same
    ``HTMLWriter``), without FuncAnimation's extra first-frame call and second render per frame.
    The player opens on frame ``start``.
    """
    from matplotlib.animation import HTMLWriter

    if n < 1:
        raise ValueError("an animation needs at least one frame")
    if not 0 <= start < n:
        raise ValueError(f"start must be a frame in [0, {n - 1}], got {start}")
    fps = max(float(fps), 0.1)
    writer = HTMLWriter(fps=fps, embed_frames=True, default_mode="loop" if loop else "once",
                        embed_limit=64)
    with tempfile.TemporaryDirectory() as tmp, _rc({"savefig.bbox": None}):
        path = Path(tmp) / "animation.html"
        with writer.saving(fig, str(path), dpi or fig.dpi):
            for i in range(n):
                update(i)
                writer.grab_frame()
        raw = path.read_text()
    text = deterministic_jshtml(raw, html_id)
    if start:
        text = open_at(text, start)
    if caption:
        text += ('\n<div class="genlib-caption" style="font-size: smaller; margin-top: 0.3em">'
                 f"{html_lib.escape(caption)}</div>\n")
    return Player(text, n)


class Player:
    """A jshtml player: Jupyter and the book show its HTML; a plain Python script needs no IPython.

    ``.data`` holds the HTML (as ``IPython.display.HTML`` does); the text form names the frame count.
    """

    def __init__(self, html: str, frames: int):
        self.data, self.frames = html, frames

    def _repr_html_(self) -> str:
        return self.data

    def __repr__(self) -> str:
        return f"<animation: {self.frames} frames>"


def _rc(params):
    import matplotlib

    return matplotlib.rc_context(params)


def _frame_labels(labels: Any, idx: list[int], t: int, default: bool) -> list[str] | None:
    if labels is False or (labels is None and not default):
        return None
    if labels is None or labels is True:
        return [f"t={i}" for i in idx]
    if isinstance(labels, str) or len(labels) != t:
        raise ValueError(f"labels must be a sequence of {t} strings, one per frame")
    return [str(labels[i]) for i in idx]


def animate(frames: Any, *, fps: float = 4, value_range: Sequence[float] = DEFAULT_RANGE,
            nrow: int | None = None, labels: Any = None, scale: float | None = None,
            figsize: tuple[float, float] = style.FIGSIZE, canvas: str = "ax",
            max_frames: int | None = 32, loop: bool = True, caption: str | None = None,
            html_id: str | None = None, dpi: float | None = None, start: int = 0):
    """Animate image frames or drawing callbacks; returns a :class:`Player` (HTML) player.

    Args:
        frames: one of
            * ``t c h w``: one image per frame (``c`` in {1, 3}, values in ``value_range``);
            * ``t b c h w``: a grid of ``b`` images per frame (``nrow`` per row), e.g. a batch
              of samples along the reverse diffusion (note: time first, unlike ``b t c h w``
              clips; use ``einops.rearrange(x, 'b t c h w -> t b c h w')`` for clips);
            * a list of callables, one per frame, each drawing its frame into a fresh Axes
              (``canvas="ax"``) or into the cleared Figure (``canvas="figure"``).
        fps: frames per second of playback.
        labels: per-frame labels. For tensors the default writes ``t=<frame index>`` above the
            picture; pass ``t`` strings to write those instead, or ``False`` for none. For
            callbacks the default is no label; a sequence of strings becomes the suptitle.
        scale: inches per image (tensors); figsize: the figure size (callbacks).
        max_frames: at most this many frames, evenly spaced, first and last kept (labels keep
            the original indices; a caption says so). ``None``: all frames.
        loop: loop playback (else play once).
        caption: a line of text under the player.
        start: the frame the player opens on (an index into the frames shown).
        html_id: the player's HTML id (a JavaScript identifier); default ``genlib<n>``.

    The figure is closed, so it is not shown a second time under the player.
    """
    if isinstance(frames, (list, tuple)) and frames and all(callable(f) for f in frames):
        n_all = len(frames)
        idx = even_indices(n_all, max_frames)
        texts = _frame_labels(labels, idx, n_all, default=False)
        fig, update = _callback_frames(frames, idx, texts, figsize, canvas)
    else:
        arr = to_numpy(frames)
        if arr.ndim == 4:
            arr = arr[:, None]
        if arr.ndim != 5 or arr.shape[2] not in (1, 3) or 0 in arr.shape[:2]:
            raise ValueError(
                "animate expects frames as `t c h w` or `t b c h w` with c in {1, 3}, or a list "
                f"of draw callbacks; got shape {tuple(arr.shape)}")
        n_all = arr.shape[0]
        idx = even_indices(n_all, max_frames)
        texts = _frame_labels(labels, idx, n_all, default=True)
        fig, update = _tensor_frames(to_unit(arr[idx], value_range), texts, nrow, scale)
    if len(idx) < n_all and caption is None:
        caption = f"Showing {len(idx)} of {n_all} frames, evenly spaced."
    return jshtml(fig, update, len(idx), fps=fps, loop=loop, dpi=dpi, html_id=html_id,
                  caption=caption, start=start)


def _tensor_frames(x: np.ndarray, texts: list[str] | None, nrow: int | None,
                   scale: float | None):
    """Figure and update function for ``t b c h w`` frames in [0, 1]."""
    t, b, ch, h, w = x.shape
    x = x.transpose(0, 1, 3, 4, 2)  # t b h w c
    cols = min(int(nrow) if nrow else math.ceil(math.sqrt(b)), b)
    rows = math.ceil(b / cols)
    # smaller than image_grid's default: every frame is a PNG inside the page
    cell = float(scale) if scale else float(np.clip(4.0 / cols, 0.4, 1.6))
    layout = GridLayout.fit(rows, cols, h, w, cell)
    top = style.FONT_LABEL * 1.6 / 72 if texts else 0.0

    def canvas(i: int) -> np.ndarray:
        return layout.compose({(j // cols, j % cols): x[i, j] for j in range(b)}, ch)

    fig, ax, im = show_canvas(layout, canvas(0), top_inches=top)
    label = None
    if texts:
        label = fig.text(0.5, 1 - 0.04 / fig.get_size_inches()[1], texts[0], ha="center",
                         va="top", fontsize=style.FONT_LABEL)

    def update(i: int):
        im.set_data(canvas(i))
        if label is not None:
            label.set_text(texts[i])

    return fig, update


def _callback_frames(frames: Sequence[Callable], idx: list[int], texts: list[str] | None,
                     figsize: tuple[float, float], canvas: str):
    """Figure and update function for one drawing callback per frame."""
    if canvas not in ("ax", "figure"):
        raise ValueError(f"canvas must be 'ax' or 'figure', got {canvas!r}")
    fig = style.new_figure(figsize, layout="constrained")

    def update(i: int):
        fig.clear()
        frames[idx[i]](fig.add_subplot() if canvas == "ax" else fig)
        if texts:
            fig.suptitle(texts[i], fontsize=style.FONT_LABEL)

    return fig, update
