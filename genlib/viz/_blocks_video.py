"""What :mod:`genlib.viz.architecture` draws for chapter 11's VideoGPT (the 3D VQ-VAE and the GPT
prior over its codes, side by side as in the survey's Fig. 55) and chapter 10's clip evaluator.

As in :mod:`genlib.viz._blocks`, layers are recognised by class names and attributes
(``AttentionResBlock``, ``Conv3d.stride``, ``VideoPrior.gpt.blocks``, ``Conv2Plus1d.out_shape``);
nothing here imports ``genlib.models`` or ``genlib.metrics``.
"""

from __future__ import annotations

import sys
from typing import Any

from genlib.viz import _diagram as D
from genlib.viz._blocks import Block, Plan, _arrow, class_name
from genlib.viz.style import FONT_SMALL, TEXT_WIDTH

Items = list[tuple[int, str, str]]


def _axes(stride: tuple[int, ...]) -> str:
    """``(2, 2, 2) -> "t,h,w"``, ``(1, 2, 2) -> "h,w"``: the axes a 3D conv resamples."""
    return ",".join(a for a, s in zip("thw", stride) if s > 1)


# ----------------------------------------------------------------------------- VideoGPT


def _prior_blocks(prior: Any, names: dict[int, str], width: float | None = None) -> list[Block]:
    """The prior's boxes: the code volume, the token sequence, the embeddings, the causal blocks,
    the head. The middle blocks are folded into one box: for a column (``width`` None) when there
    are more than three, for a row until it fits ``width`` inches (as DiT's are)."""
    cfg, gpt = prior.cfg, prior.gpt
    k, n, d, vocab = cfg.num_codes, cfg.t * cfg.h * cfg.w, gpt.cfg.dim, gpt.head.out_features
    head = [Block("data", f"codes s\n{cfg.t}×{cfg.h}×{cfg.w}, K={k}", "", k, cfg.h),
            Block("concat", f"start K + codes\n→ {n + 1} tokens", "", 1, n + 1),
            Block("embedding", f"token + pos.\nembed → {d}", names[id(gpt.token)], d, n + 1)]
    tail = [Block("linear", f"LN, linear\n{d}→{vocab}", names[id(gpt.head)], vocab, n + 1),
            Block("data", f"next-code logits\n{n} × {vocab}", "", vocab, n)]
    layers = [Block("gpt-block", f"GPT block {i + 1}\n{d}, {b.attn.heads} heads", names[id(b)], d, n + 1)
              for i, b in enumerate(gpt.blocks)]
    shown = layers
    for keep in range(len(layers) - 1, 2, -1):  # keep - 2 blocks, the folded ones, the last block
        fits = width is not None and sum(D.box_size(b.label)[0] + D.COL_GAP for b in head + shown + tail) \
            - D.COL_GAP <= width
        if fits or (width is None and len(shown) <= 3):
            break
        m = len(layers) - keep + 1
        folded = Block("gpt-block", f"GPT blocks {keep - 1}–{keep - 2 + m}\n({m} blocks)",
                       f"{names[id(gpt.blocks)]}[{keep - 2}:{keep - 2 + m}]", d, n + 1, count=m)
        shown = layers[:keep - 2] + [folded] + layers[-1:]
    return head + shown + tail


def videogpt_plan(vq: Any, prior: Any, names: dict[int, str], image_size: int | None, compact: bool) -> Plan:
    """The 3D VQ-VAE as a U without skips (strided 3D convs and attention residual blocks along
    the top, the quantiser down the right, the decoder back along the bottom), and the prior as a
    column beside it (or a row below, when the page is too narrow); either may be ``None``."""
    blocks: list[Block] = []

    def put(*new: Block) -> Items:
        blocks.extend(new)
        return [(len(blocks) - len(new) + i, b.kind, b.label) for i, b in enumerate(new)]

    notes = []
    if vq is None:  # the prior alone: a row, the middle blocks folded if it would pass the page
        prior_items = put(*_prior_blocks(prior, names, TEXT_WIDTH - 2 * D.MARGIN))

        def layout(sheet):
            _, right, bottom = D.chain(sheet, prior_items, D.MARGIN, D.MARGIN, TEXT_WIDTH - 2 * D.MARGIN)
            return right + D.MARGIN, bottom + 0.05

        return Plan(blocks, layout, _prior_notes(prior))

    enc, dec, q = vq.encoder, vq.decoder, vq.quantizer
    strides = [tuple(m.stride) for m in enc.net if class_name(m) == "Conv3d" and max(m.stride) > 1]
    factors = [(1, 1)]
    for st, ss, _ in strides:
        factors.append((factors[-1][0] * st, factors[-1][1] * ss))
    t0 = prior.cfg.t * factors[-1][0] if prior is not None else None  # the clip's size, if the prior fixes it
    s0 = prior.cfg.h * factors[-1][1] if prior is not None else image_size

    def side(level: int) -> int | None:
        return None if s0 is None else s0 // factors[level][1]

    def shape(level: int) -> str:
        ft, fs = factors[level]
        t = str(t0 // ft) if t0 else ("t" if ft == 1 else f"t/{ft}")
        h, w = (str(s0 // fs),) * 2 if s0 else (("h", "w") if fs == 1 else (f"h/{fs}", f"w/{fs}"))
        return f"{t}×{h}×{w}"

    def chans(a: int, b: int) -> str:
        return str(b) if compact else _arrow(a, b)

    def attn_res(net: Any, i: int, level: int) -> list[Block]:
        """The attention residual block ``net[i]``; compact, a run of more than two is one box,
        drawn at the run's first block (the others give none)."""
        first, end = i, i + 1
        while first and class_name(net[first - 1]) == "AttentionResBlock":
            first -= 1
        while end < len(net) and class_name(net[end]) == "AttentionResBlock":
            end += 1
        m, fold = net[i], compact and end - first > 2
        heads, dim = m.axial.passes[0].attn.heads, m.axial.dim
        if fold:
            return [] if i != first else [Block("axial-resblock", f"Attn-Res ×{end - first}\n{dim}",
                                                f"{names[id(net)]}[{first}:{end}]", dim, side(level),
                                                count=end - first)]
        label = f"Attn-Res\n{dim}" if compact else f"Attn ResBlock\n{dim}, {heads} heads"
        return [Block("axial-resblock", label, names[id(m)], dim, side(level))]

    c_img = enc.net[0].in_channels
    data_in = put(Block("data", f"clip x\n{c_img}×{shape(0)}", "", c_img, side(0)))[0]
    cells, mid, level, norm = [], [], 0, False
    convs = [m for m in enc.net if class_name(m) == "Conv3d"]
    for i, m in enumerate(enc.net):
        kind = class_name(m)
        if kind == "Conv3d" and max(m.stride) > 1:
            level += 1
            head = f"Down {_axes(m.stride)}"
            cells.append(D.Cell(put(Block("down", f"{head}\n{chans(m.in_channels, m.out_channels)}", names[id(m)],
                                          m.out_channels, side(level))), level))
        elif kind == "AttentionResBlock":
            cells += [D.Cell(put(b), level) for b in attn_res(enc.net, i, level)]
        elif kind == "GroupNorm":
            norm = True
        elif kind == "Conv3d":  # the 1x1x1 conv to the code dimension: the bottleneck column
            k = "×".join(map(str, m.kernel_size)) if len(set(m.kernel_size)) > 1 else f"{m.kernel_size[0]}³"
            new = Block("conv", f"{'Norm, conv' if norm else 'Conv'} {k}\n{chans(m.in_channels, m.out_channels)}",
                        names[id(m)], m.out_channels, side(level))
            if m is convs[-1]:
                mid += put(new)
            else:
                cells.append(D.Cell(put(new), level))
    deepest = level
    ema = " (EMA)" if getattr(q, "use_ema", False) else ""
    mid += put(Block("quantizer", f"Quantise{ema}\n{q.num_codes} codes\nof dim {q.code_dim}", names[id(q)],
                     q.code_dim, side(level)))
    q_index = mid[-1][0]
    dec_cells: list[D.Cell] = []
    norm = False
    for i, m in enumerate(dec.net):
        kind = class_name(m)
        if kind == "Conv3d":
            new = put(Block("conv", f"Conv {m.kernel_size[0]}³\n{chans(m.in_channels, m.out_channels)}",
                            names[id(m)], m.out_channels, side(level)))
            if not dec_cells:
                mid += new
            else:
                dec_cells.append(D.Cell(new, level))
        elif kind == "AttentionResBlock":
            dec_cells += [D.Cell(put(b), level) for b in attn_res(dec.net, i, level)]
        elif kind == "GroupNorm":
            norm = True
        elif kind == "ConvTranspose3d":  # stacked under the last box of the level it reads
            head = f"{'Norm, up' if norm and not compact else 'Up'} {_axes(m.stride)}"
            norm = False
            new = put(Block("up", f"{head}\n{chans(m.in_channels, m.out_channels)}", names[id(m)], m.out_channels,
                            side(level - 1)))
            if dec_cells and dec_cells[-1].band == level:
                dec_cells[-1].items += new
            else:
                dec_cells.append(D.Cell(new, level))
            level -= 1
    c_out = dec.net[-1].out_channels
    data_out = put(Block("data", f"x̂\n{c_out}×{shape(0)}", "", c_out, side(0)))[0]
    low = 1 if deepest else 0  # the clip itself (level 0) has no layer of its own when the first conv strides
    for c in cells + dec_cells:
        c.band -= low
    bands = [shape(i) for i in range(low, deepest + 1)]
    u_args = (cells, mid, dec_cells, [], bands, f"latent {shape(deepest)}", data_in, data_out)
    w_u, _ = D.u_shape(D.Sheet(), *u_args)
    x_col = w_u - D.MARGIN + 0.25  # the prior's column, right of the U (room for the arrow from the quantiser)
    column = _prior_blocks(prior, names) if prior is not None else []
    col_w = max((D.box_size(b.label)[0] for b in column), default=0) + 2 * D.FRAME_PAD
    beside = bool(column) and x_col + col_w + 0.05 + D.MARGIN <= TEXT_WIDTH
    prior_full = put(*(column if beside else _prior_blocks(prior, names, TEXT_WIDTH - 2 * D.MARGIN))) \
        if prior is not None else []
    d = (q.code_dim, q.num_codes)
    notes.append(f"Shapes are c×t×h×w (clips enter as b t c h w). Down: a {convs[0].kernel_size[0]}³ conv of "
                 f"stride {max(convs[0].stride)} along the axes named; Up: a transposed 3D conv undoing it.")
    notes.append(f"{'Attn-Res' if compact else 'Attn ResBlock'} (VideoGPT's attention residual block): norm, ReLU, "
                 f"3³ conv to half the width, 1³ conv back, then axial attention along t, h and w, the three summed, "
                 f"added to the input.")
    notes.append(f"Quantise: each {d[0]}-dim latent vector is replaced by the nearest of K={d[1]} codes.")
    if prior is not None and not beside:
        notes += _prior_notes(prior)
    if compact:
        notes.append("Boxes show output channels.")
    stages = []  # beside the prior, under the U: what the two stages are, in the room the tall column leaves
    if beside:
        t, h, w = prior.cfg.t, prior.cfg.h, prior.cfg.w
        stages = [f"Stage 1, the 3D VQ-VAE (left): trained to reconstruct clips; its encoder turns a clip into a "
                  f"{t}×{h}×{w} volume of code indices s."] + _prior_notes(prior, "Stage 2, the prior (right), "
                                                                         "trained on the frozen first stage's codes: ")

    def layout(sheet):
        w, h = D.u_shape(sheet, *u_args)
        if not prior_full:
            return w, h
        if beside:
            (qbox,) = [b for b in sheet.boxes if b.index == q_index]
            rect = D.column(sheet, prior_full, x_col, D.MARGIN + D.HEAD)
            y = h + 0.08
            for text in stages:
                lines = D.wrap(text, x_col - 0.3 - D.MARGIN)
                sheet.texts.append((D.MARGIN, y, "\n".join(lines), "left"))
                y += len(lines) * FONT_SMALL * D.LINE / 72 + 0.06
            bottom = max(h - 0.05, rect.y1 + 0.05, y - 0.06)
            sheet.bands.append((D.Rect(x_col - 0.05, D.MARGIN, rect.x1 + 0.05, bottom), "stage 2: prior"))
            codes = sheet.boxes[-len(prior_full)]
            x_turn = x_col - 0.125
            sheet.lines.append([(qbox.x + qbox.w, qbox.cy), (x_turn, qbox.cy), (x_turn, codes.cy)])
            sheet.arrow((x_turn, codes.cy), (codes.x, codes.cy))
            return rect.x1 + 0.05 + D.MARGIN, bottom + 0.05
        sheet.texts.append((D.MARGIN, h + 0.1, "Stage 2, the prior: a GPT over the code volume s", "left"))
        _, right, h = D.chain(sheet, prior_full, D.MARGIN, h + 0.1 + D.HEAD, TEXT_WIDTH - 2 * D.MARGIN)
        return max(w, right + D.MARGIN), h + 0.05

    return Plan(blocks, layout, notes)


def _prior_notes(prior: Any, head: str = "Prior: ") -> list[str]:
    cfg = prior.cfg
    return [f"{head}the {cfg.t}×{cfg.h}×{cfg.w} codes read as one sequence, time slowest, after a start token K; "
            f"causal attention lets position i see tokens 0..i only, and its logits give p(s_i+1 | s_≤i).",
            "Sampling: the prior draws the codes one by one (or continues a first latent frame's codes), and the "
            "decoder turns them into a clip."]


# ----------------------------------------------------------------------------- the clip evaluator


def clip_evaluator_plan(model: Any, names: dict[int, str], compact: bool) -> Plan:
    """The (2+1)D trunk in a row, the feature maps, the shared linear head and its logits; the
    pooled features (what the Fréchet distance compares) below the maps."""
    cfg = model.cfg
    t, h, w = cfg.frames, cfg.size, cfg.size
    c = model.trunk[0].in_channels
    blocks = [Block("data", f"clips\n{c}×{t}×{h}×{w}", "", c, h)]
    for m in model.trunk:
        kind = class_name(m)
        if kind == "Conv2Plus1d":
            t, h, w = m.out_shape(t, h, w)
            c = m.out_channels
            head = f"(2+1)D ↓{m.stride}" if compact else f"(2+1)D conv ↓{m.stride}"
            blocks.append(Block("conv-2plus1d", f"{head}\n{c if compact else _arrow(m.in_channels, c)}",
                                names[id(m)], c, h))
        elif kind in ("GroupNorm", "SiLU") and not compact and blocks[-1].kind == "conv-2plus1d":
            word = "GN" if kind == "GroupNorm" else "SiLU"
            last = blocks[-1]
            sep = "\n" if last.label.count("\n") == 1 else ", "
            blocks[-1] = Block(last.kind, last.label + sep + word, last.module, last.channels, last.size)
    blocks.append(Block("data", f"feature maps\n{c}×{t}×{h}×{w}", "", c, h))
    head = model.head
    split = getattr(sys.modules.get(type(model).__module__), "HEADS", None)  # {"colour": 7, ...}, if the module says
    blocks.append(Block("linear", f"Linear head\n{head.in_features}→{head.out_features}\nat each frame, cell",
                        names[id(head)], head.out_features, h))
    what = ",\n".join(f"{k} {v}" for k, v in split.items()) if isinstance(split, dict) else f"{head.out_features}"
    blocks.append(Block("data", f"logits per\nframe and cell:\n{what}", "", head.out_features, h))
    blocks.append(Block("pool", f"mean, max\nover t h w\n→ {2 * c} features", "", 2 * c))
    items = [(i, b.kind, b.label) for i, b in enumerate(blocks)]
    maps = len(blocks) - 4

    def layout(sheet):
        boxes, right, bottom = D.chain(sheet, items[:-1], D.MARGIN, D.MARGIN, TEXT_WIDTH - 2 * D.MARGIN)
        src = boxes[maps]
        pw, ph = D.box_size(items[-1][2])
        top = bottom + 0.2
        pool = sheet.box(items[-1][0], "pool", items[-1][2], src.cx - pw / 2, top, pw, ph)
        sheet.arrow((src.cx, src.y + src.h), (pool.cx, pool.y))
        text = "what a Fréchet distance\n(FVD-style) compares"
        sheet.texts.append((pool.x + pool.w + 0.1, pool.y, text, "left"))
        right = max(right, pool.x + pool.w + 0.1 + D.text_extent(text)[0])
        return right + D.MARGIN, max(bottom, pool.y + pool.h) + 0.05

    first = next(m for m in model.trunk if class_name(m) == "Conv2Plus1d")
    act = f", {class_name(first.act)}," if class_name(first.act) != "Identity" else ","
    notes = [f"(2+1)D conv: a {first.k}×{first.k} conv of stride {first.stride} on every frame{act} then a "
             f"{first.kt}-tap conv along time at every pixel (R(2+1)D). Shapes are c×t×h×w.",
             "The head is one linear map, the same at every frame and cell: for the object centred in that cell "
             "(or none), its colour, shape and direction of motion; motion cannot be read from one frame."]
    return Plan(blocks, layout, notes)
