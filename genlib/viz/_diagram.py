"""The drawing behind :mod:`genlib.viz.architecture`: boxes, arrows and bands placed in inches.

A :class:`Sheet` collects what to draw, in inches from the top-left corner (``y`` grows
downwards), and :meth:`Sheet.render` draws it on one Axes that spans the whole figure, one data
unit per inch on both axes, so a box measured here is the box on the page. Text is measured with
the font that renders it (:func:`text_extent`), so boxes are sized to their labels. Two layouts
use it: :func:`u_shape` (an encoder row left to right, a middle column, a decoder row back right
to left, skips between the rows) and :func:`chain` (boxes in a row, wrapped onto more rows), with
:func:`fan_in` (several inputs into a chain) and :func:`column` (boxes top to bottom) beside them.
"""

from __future__ import annotations

import dataclasses
import functools
import warnings

from genlib.viz.style import FONT_SMALL, TEXT_WIDTH, new_figure

LINE = 1.25           # line height, in font sizes
PAD_X, PAD_Y = 0.05, 0.045  # inches between a box's edge and its text
STACK_GAP = 0.1       # between boxes stacked in one layer (room for a small arrow)
COL_GAP = 0.15        # between columns (room for an arrow)
FRAME_PAD = 0.035     # a layer's outline around its boxes
MARGIN = 0.06
HEAD = FONT_SMALL * LINE / 72 + 0.04  # a band's header line
SKIP_GAP = 0.3        # between the encoder and the decoder rows

# kind -> (fill colour, legend text); the order is the legend's
STYLE = {
    "data": ("#f4f4f4", "tensor"),
    "conv": ("#d9d9d9", "convolution"),
    "embedding": ("#dadaeb", "embedding"),
    "text-encoder": ("#bcbddc", "text encoder"),
    "patch": ("#c6dbef", "patchify / unpatchify"),
    "resblock": ("#9ecae1", "ResBlock"),
    "transformer": ("#9ecae1", "transformer block (adaLN)"),
    "unet": ("#9ecae1", "U-Net"),
    "attention": ("#fdae6b", "self-attention"),
    "cross-attention": ("#f16913", "self- + cross-attention"),
    "temporal-conv": ("#fbb4c9", "temporal conv (mixed by α)"),
    "temporal-attention": ("#f768a1", "temporal attention"),
    "down": ("#a1d99b", "downsample"),
    "up": ("#d0e9c6", "upsample"),
    "resize": ("#d0e9c6", "resize (+ noise augmentation)"),
    "quantizer": ("#ffd92f", "vector quantiser"),
    "latent": ("#fff2ae", "latent head / sample"),
    "discriminator": ("#fb8072", "patch discriminator"),
    "linear": ("#b3cde3", "linear layer"),
    "concat": ("#e5d8bd", "reshape / concatenation (no weights)"),
    "axial-resblock": ("#fdd0a2", "attention residual block (axial)"),
    "gpt-block": ("#9ecae1", "transformer block (causal)"),
    "conv-2plus1d": ("#99d8c9", "(2+1)D convolution"),
    "pool": ("#e5f5f9", "pooling (no weights)"),
}
EDGE = "#404040"
SKIP = "#6a6a6a"


@functools.lru_cache(maxsize=4096)
def text_extent(text: str, size: float = FONT_SMALL) -> tuple[float, float]:
    """``(width, height)`` in inches of ``text`` (lines split at ``\\n``) at ``size`` points."""
    from matplotlib.font_manager import FontProperties
    from matplotlib.textpath import TextToPath

    prop = FontProperties(size=size)
    lines = text.split("\n")
    width = max(TextToPath().get_text_width_height_descent(line, prop, ismath=False)[0] for line in lines)
    return width / 72, len(lines) * size * LINE / 72


def box_size(label: str) -> tuple[float, float]:
    w, h = text_extent(label)
    return w + 2 * PAD_X, h + 2 * PAD_Y


@dataclasses.dataclass
class Box:
    """A block's box: ``x, y`` its top-left corner, in inches."""

    index: int
    kind: str
    label: str
    x: float
    y: float
    w: float
    h: float

    @property
    def cx(self) -> float:
        return self.x + self.w / 2

    @property
    def cy(self) -> float:
        return self.y + self.h / 2


@dataclasses.dataclass
class Rect:
    x0: float
    y0: float
    x1: float
    y1: float

    @property
    def cx(self) -> float:
        return (self.x0 + self.x1) / 2


class Sheet:
    """What one diagram draws. Blocks are given as ``(kind, label)`` pairs and numbered in the
    order they are placed (a test pairs the drawn box ``gid="block:i"`` with the i-th block)."""

    def __init__(self):
        self.boxes: list[Box] = []
        self.arrows: list[tuple[tuple[float, float], tuple[float, float], bool, float]] = []
        self.lines: list[list[tuple[float, float]]] = []
        self.frames: list[Rect] = []
        self.bands: list[tuple[Rect, str]] = []
        self.texts: list[tuple[float, float, str, str]] = []

    def box(self, index: int, kind: str, label: str, x: float, y: float, w: float, h: float) -> Box:
        b = Box(index, kind, label, x, y, w, h)
        self.boxes.append(b)
        return b

    def arrow(self, a: tuple[float, float], b: tuple[float, float], *, dashed: bool = False, rad: float = 0.0):
        self.arrows.append((a, b, dashed, rad))

    def render(self, width: float, height: float, *, notes: list[str] = (), skips: bool = False):
        """A Figure ``width`` inches wide holding everything placed so far (all of it above
        ``height``), with a legend of the kinds drawn and ``notes`` below it."""
        import matplotlib.patches as mpatches

        kinds = [k for k in STYLE if any(b.kind == k for b in self.boxes)]
        legend = [(k, STYLE[k][1]) for k in kinds] + ([("skip", "skip connection (concatenated)")] if skips else [])
        y, legend_at = height + 0.04, []
        x = MARGIN
        for kind, text in legend:  # entries left to right, wrapped
            w = 0.16 + 0.05 + text_extent(text)[0]
            if x > MARGIN and x + w > width - MARGIN:
                x, y = MARGIN, y + FONT_SMALL * LINE / 72 + 0.03
            legend_at.append((x, y, kind, text))
            x += w + 0.14
        y += FONT_SMALL * LINE / 72 + 0.03 if legend else 0
        note_lines = [line for note in notes for line in wrap(note, width - 2 * MARGIN)]
        note_y = y
        total = note_y + len(note_lines) * FONT_SMALL * LINE / 72 + MARGIN

        # whole hundredths of an inch: the stored figure size ("<Figure size 508x340 ...>", which the
        # notebook tests compare) does not depend on the last bits of the text measurements
        width, total = round(width, 2), round(total, 2)
        fig = new_figure((width, total))
        ax = fig.add_axes((0, 0, 1, 1))
        ax.set_xlim(0, width)
        ax.set_ylim(total, 0)
        ax.set_axis_off()
        for rect, label in self.bands:
            ax.add_patch(mpatches.FancyBboxPatch((rect.x0, rect.y0), rect.x1 - rect.x0, rect.y1 - rect.y0,
                                                 boxstyle="round,pad=0,rounding_size=0.05", fc="#f7f7fb",
                                                 ec="#dcdce6", lw=0.6, zorder=0))
            ax.text(rect.cx, rect.y0 + 0.03, label, ha="center", va="top", fontsize=FONT_SMALL, color="#555555",
                    zorder=1)
        for rect in self.frames:
            ax.add_patch(mpatches.FancyBboxPatch((rect.x0, rect.y0), rect.x1 - rect.x0, rect.y1 - rect.y0,
                                                 boxstyle="round,pad=0,rounding_size=0.04", fc="white",
                                                 ec="#b0b0b0", lw=0.6, zorder=1))
        for pts in self.lines:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], color=EDGE, lw=0.8, zorder=2, solid_capstyle="butt")
        for a, b, dashed, rad in self.arrows:
            ax.add_patch(mpatches.FancyArrowPatch(
                a, b, arrowstyle="-|>", mutation_scale=6, lw=0.8 if not dashed else 0.7,
                color=SKIP if dashed else EDGE, linestyle=(0, (3, 2)) if dashed else "-",
                connectionstyle=f"arc3,rad={rad}", shrinkA=0, shrinkB=0, zorder=2))
        for b in self.boxes:
            patch = mpatches.FancyBboxPatch((b.x, b.y), b.w, b.h, boxstyle="round,pad=0,rounding_size=0.03",
                                            fc=STYLE[b.kind][0], ec=EDGE, lw=0.7, zorder=3)
            patch.set_gid(f"block:{b.index}")
            ax.add_patch(patch)
            t = ax.text(b.cx, b.cy, b.label, ha="center", va="center", fontsize=FONT_SMALL, zorder=4,
                        linespacing=LINE / 1.2)
            t.set_gid(f"block:{b.index}")
        for x, y, text, ha in self.texts:
            ax.text(x, y, text, ha=ha, va="top", fontsize=FONT_SMALL, color="#333333", zorder=4)
        for x, y, kind, text in legend_at:
            mid = y + FONT_SMALL * LINE / 144
            if kind == "skip":
                ax.plot([x, x + 0.16], [mid, mid], color=SKIP, lw=0.8, linestyle=(0, (3, 2)))
            else:
                ax.add_patch(mpatches.Rectangle((x, mid - 0.045), 0.16, 0.09, fc=STYLE[kind][0], ec=EDGE, lw=0.6))
            ax.text(x + 0.21, mid, text, ha="left", va="center", fontsize=FONT_SMALL)
        for i, line in enumerate(note_lines):
            ax.text(MARGIN, note_y + i * FONT_SMALL * LINE / 72, line, ha="left", va="top", fontsize=FONT_SMALL,
                    color="#333333")
        if width > TEXT_WIDTH + 1e-6:
            warnings.warn(f"the diagram needs {width:.2f} in, wider than the page's {TEXT_WIDTH} in: "
                          f"its labels will shrink below {FONT_SMALL} pt once placed", stacklevel=3)
        return fig


def wrap(text: str, width: float) -> list[str]:
    """``text`` split at spaces into lines that each fit ``width`` inches at ``FONT_SMALL``."""
    lines, line = [], ""
    for word in text.split(" "):
        trial = f"{line} {word}" if line else word
        if line and text_extent(trial)[0] > width:
            lines.append(line)
            line = word
        else:
            line = trial
    return lines + [line] if line else lines


# ----------------------------------------------------------------------------- layouts


@dataclasses.dataclass
class Cell:
    """One layer of a network: its blocks' ``(index, kind, label)``, read top to bottom, and the
    band (resolution level) it sits in."""

    items: list[tuple[int, str, str]]
    band: int


def _stack(sheet: Sheet, cell_items, x: float, y: float, w: float, *, centre_in: tuple[float, float] | None = None,
           frame: bool = True) -> Rect:
    """Boxes of one layer stacked top to bottom in a column ``w`` wide from ``y``, small arrows
    between them, an outline around them when there are several; returns the outline."""
    heights = [box_size(label)[1] for _, _, label in cell_items]
    inner = sum(heights) + STACK_GAP * (len(heights) - 1)
    top = y + FRAME_PAD
    if centre_in is not None:
        top = (centre_in[0] + centre_in[1]) / 2 - inner / 2
    boxes = []
    for (index, kind, label), h in zip(cell_items, heights):
        boxes.append(sheet.box(index, kind, label, x + FRAME_PAD, top, w - 2 * FRAME_PAD, h))
        top += h + STACK_GAP
    for a, b in zip(boxes, boxes[1:]):
        sheet.arrow((a.cx, a.y + a.h), (b.cx, b.y))
    rect = Rect(x, boxes[0].y - FRAME_PAD, x + w, boxes[-1].y + boxes[-1].h + FRAME_PAD)
    if centre_in is not None:
        rect = Rect(x, centre_in[0], x + w, centre_in[1])
    if frame and (len(boxes) > 1 or centre_in is not None):
        sheet.frames.append(rect)
    return rect


def _stack_height(items) -> float:
    return sum(box_size(label)[1] for _, _, label in items) + STACK_GAP * (len(items) - 1) + 2 * FRAME_PAD


def u_shape(sheet: Sheet, enc: list[Cell], mid: list[tuple[int, str, str]], dec: list[Cell],
            skips: list[tuple[int, int]], bands: list[str], mid_label: str,
            data_in: tuple[int, str, str], data_out: tuple[int, str, str]) -> tuple[float, float]:
    """The encoder's layers left to right along the top row, each resolution level a shaded band;
    the middle (or bottleneck) layers down the right-hand column; the decoder's layers right to
    left along the bottom row, under the encoder layer of the same band; ``skips`` join encoder
    layer ``i`` to decoder layer ``j`` (dashed). Returns the width and height used, in inches."""
    everything = [it for c in enc + dec for it in c.items] + list(mid)
    col_w = max(box_size(label)[0] for _, _, label in everything) + 2 * FRAME_PAD
    io_w = max(box_size(data_in[2])[0], box_size(data_out[2])[0])
    ncols = [max(sum(c.band == b for c in enc), sum(c.band == b for c in dec)) for b in range(len(bands))]
    band_w = [n * col_w + (n - 1) * COL_GAP for n in ncols]
    x_band, x = [], MARGIN + io_w + COL_GAP
    for w in band_w:
        x_band.append(x)
        x += w + COL_GAP
    x_mid = x
    width = x_mid + col_w + MARGIN

    y_enc = MARGIN + HEAD
    enc_h = max(_stack_height(c.items) for c in enc)
    dec_h = max(_stack_height(c.items) for c in dec)
    y_dec = y_enc + max(enc_h + SKIP_GAP, _stack_height(mid) - dec_h)  # a tall middle column spreads the rows
    bottom = y_dec + dec_h
    for b, label in enumerate(bands):
        sheet.bands.append((Rect(x_band[b] - 0.05, MARGIN, x_band[b] + band_w[b] + 0.05, bottom + 0.05), label))
    sheet.bands.append((Rect(x_mid - 0.05, MARGIN, x_mid + col_w + 0.05, bottom + 0.05), mid_label))

    def column_x(band: int, col: int) -> float:
        return x_band[band] + col * (col_w + COL_GAP)

    enc_rects, seen = [], [0] * len(bands)
    for c in enc:
        enc_rects.append(_stack(sheet, c.items, column_x(c.band, seen[c.band]), y_enc, col_w))
        seen[c.band] += 1
    dec_rects, seen = [], [0] * len(bands)
    for c in dec:
        col = ncols[c.band] - 1 - seen[c.band]
        dec_rects.append(_stack(sheet, c.items, column_x(c.band, col), y_dec, col_w))
        seen[c.band] += 1
    mid_rect = _stack(sheet, mid, x_mid, y_enc, col_w, centre_in=(y_enc, bottom))

    flow_enc = y_enc + FRAME_PAD + box_size(enc[0].items[0][2])[1] / 2
    flow_dec = y_dec + FRAME_PAD + box_size(dec[0].items[0][2])[1] / 2
    w_in, h_in = box_size(data_in[2])
    b_in = sheet.box(data_in[0], data_in[1], data_in[2], MARGIN, flow_enc - h_in / 2, io_w, h_in)
    w_out, h_out = box_size(data_out[2])
    b_out = sheet.box(data_out[0], data_out[1], data_out[2], MARGIN, flow_dec - h_out / 2, io_w, h_out)
    path = [Rect(b_in.x, b_in.y, b_in.x + b_in.w, b_in.y + b_in.h)] + enc_rects + [mid_rect]
    for a, b in zip(path, path[1:]):
        sheet.arrow((a.x1, flow_enc), (b.x0, flow_enc))
    path = [mid_rect] + dec_rects + [Rect(b_out.x, b_out.y, b_out.x + b_out.w, b_out.y + b_out.h)]
    for a, b in zip(path, path[1:]):
        sheet.arrow((a.x0, flow_dec), (b.x1, flow_dec))
    for i, j in skips:
        a, b = enc_rects[i], dec_rects[j]
        sheet.arrow((a.cx, a.y1), (b.cx, b.y0), dashed=True, rad=0.0 if abs(a.cx - b.cx) < 1e-6 else 0.25)
    return width, bottom + 0.05


def chain(sheet: Sheet, items: list[tuple[int, str, str]], x0: float, y0: float, max_width: float,
          *, gap: float = COL_GAP) -> tuple[list[Box], float, float]:
    """Boxes left to right from ``(x0, y0)``, arrows between them, wrapped onto a new row (the
    arrow runs back along the gap) when a row would pass ``x0 + max_width``. All boxes of a row
    share its tallest box's height. Returns the boxes, the right edge reached and the bottom."""
    sizes = [box_size(label) for _, _, label in items]
    rows, row, x = [], [], x0
    for item, (w, h) in zip(items, sizes):
        if row and x + w > x0 + max_width:
            rows.append(row)
            row, x = [], x0
        row.append((item, w, h))
        x += w + gap
    rows.append(row)
    boxes, y, right = [], y0, x0
    for r, row in enumerate(rows):
        h = max(h for _, _, h in row)
        x = x0
        for (index, kind, label), w, _ in row:
            boxes.append(sheet.box(index, kind, label, x, y, w, h))
            x += w + gap
        right = max(right, x - gap)
        y += h + (0.28 if r < len(rows) - 1 else 0)
    for a, b in zip(boxes, boxes[1:]):
        if abs(a.y - b.y) < 1e-9:
            sheet.arrow((a.x + a.w, a.cy), (b.x, b.cy))
        else:  # the end of one row back to the start of the next, through the gap between them
            turn = (a.y + a.h + b.y) / 2
            sheet.lines.append([(a.cx, a.y + a.h), (a.cx, turn), (b.cx, turn)])
            sheet.arrow((b.cx, turn), (b.cx, b.y))
    return boxes, right, y


def fan_in(sheet: Sheet, inputs: list[tuple[int, str, str]], items: list[tuple[int, str, str]], x0: float,
           y0: float, max_width: float) -> tuple[list[Box], float, float]:
    """``inputs`` stacked in a column at ``x0``, each with an arrow into the first of ``items``,
    which :func:`chain` places to their right (the column and the first row centred on each
    other). Returns the boxes (inputs first), the right edge reached and the bottom."""
    sizes = [box_size(label) for _, _, label in inputs]
    col_w = max(w for w, _ in sizes)
    col_h = sum(h for _, h in sizes) + STACK_GAP * (len(inputs) - 1)
    x = x0 + col_w + 2 * COL_GAP  # room for the arrows to converge
    row_h = chain(Sheet(), items, x, y0, max_width - (x - x0))[0][0].h
    top = y0 + max(0.0, (row_h - col_h) / 2)
    boxes = []
    for (index, kind, label), (_, h) in zip(inputs, sizes):
        boxes.append(sheet.box(index, kind, label, x0, top, col_w, h))
        top += h + STACK_GAP
    row, right, bottom = chain(sheet, items, x, y0 + max(0.0, (col_h - row_h) / 2), max_width - (x - x0))
    first = row[0]
    for i, b in enumerate(boxes):
        sheet.arrow((b.x + b.w, b.cy), (first.x, first.y + first.h * (i + 1) / (len(boxes) + 1)))
    return boxes + row, right, max(bottom, boxes[-1].y + boxes[-1].h)


def column(sheet: Sheet, items: list[tuple[int, str, str]], x: float, y: float) -> Rect:
    """Boxes top to bottom from ``(x, y)``, as wide as the widest, arrows between them; returns
    the rectangle they fill."""
    w = max(box_size(label)[0] for _, _, label in items) + 2 * FRAME_PAD
    return _stack(sheet, items, x, y, w, frame=False)
