"""What :mod:`genlib.viz.architecture` draws for each kind of genlib model: the boxes
(:class:`Block`), in the order the forward pass runs them, and how to place them (a ``Plan``).

Layers are recognised by their class names and attributes (``ResBlock.out_channels``,
``AttentionBlock2d.cross_attn``, ``VideoLDM.mixers``, ...), not by importing them: ``genlib.viz``
stands apart from ``nn`` and ``models``. A model the walk does not expect raises ``TypeError``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from genlib.viz import _diagram as D
from genlib.viz.style import TEXT_WIDTH, format_number

NBSP = "\u00a0"  # a space the notes never break a line at


@dataclasses.dataclass(frozen=True)
class Block:
    """One box of a diagram: its ``kind`` (the colour; see the legend), the ``label`` it shows,
    the dotted name of the ``module`` it draws (relative to the model passed in; ``""`` for a
    tensor or an operation without parameters), the width of its output (``channels``), the side
    of its output feature map (``size``, ``None`` where the model does not fix it) and how many
    modules it stands for (``count``: more than 1 only where repeated blocks are folded)."""

    kind: str
    label: str
    module: str = ""
    channels: int | None = None
    size: int | None = None
    count: int = 1


@dataclasses.dataclass
class Plan:
    blocks: list[Block]
    layout: Any  # callable(sheet) -> (width, height) in inches
    notes: list[str]
    skips: bool = False


def class_name(m: Any) -> str:
    return type(m).__name__


def _arrow(a: int, b: int) -> str:
    return f"{a}→{b}" if a != b else f"{b}"


def conv2d_of(m: Any) -> Any:
    """The image convolution of a conv, or of Make-A-Video's pseudo-3D conv wrapped around one."""
    return m.spatial if class_name(m) == "Pseudo3dConv" else m


def _inflated(m: Any) -> bool:
    return any(class_name(s) == "Pseudo3dConv" for s in m.modules())


def count_of(model: Any, *kinds: str) -> int:
    return sum(class_name(m) in kinds for m in model.modules())


# ----------------------------------------------------------------------------- U-Nets


def _layer_blocks(m: Any, names: dict[int, str], size: int, compact: bool) -> list[Block]:
    """The boxes of one module of a U-Net layer (``size``: the side it outputs)."""
    kind, name = class_name(m), names.get(id(m), "")
    if kind == "ResBlock":
        head = "Res" if compact else ("Res (2+1)D" if _inflated(m) else "ResBlock")
        chans = m.out_channels if compact else _arrow(m.in_channels, m.out_channels)
        return [Block("resblock", f"{head}\n{chans}", name, m.out_channels, size)]
    if kind == "AttentionBlock2d":
        if m.cross_attn is not None:
            label = f"X-attn\n{m.channels}" if compact else f"Self+cross\n{m.channels} ← {m.cross_attn.context_dim}"
            return [Block("cross-attention", label, name, m.channels, size)]
        return [Block("attention", f"{'Attn' if compact else 'Self-attn'}\n{m.channels}", name, m.channels, size)]
    if kind == "Pseudo3dAttention":  # Make-A-Video: the image block, then attention over the frames
        t = m.temporal
        return _layer_blocks(m.spatial, names, size, compact) + [
            Block("temporal-attention", f"T-attn\n{t.dim}", names.get(id(t), ""), t.dim, size)]
    if kind in ("Downsample", "Upsample"):
        conv = conv2d_of(m.conv)
        head = ("Down" if kind == "Downsample" else "Up") + (" (2+1)D" if _inflated(m) and not compact else "")
        chans = conv.out_channels if compact else _arrow(conv.in_channels, conv.out_channels)
        return [Block("down" if kind == "Downsample" else "up", f"{head}\n{chans}", name, conv.out_channels, size)]
    raise TypeError(f"architecture: no box for a {kind} inside a U-Net layer")


def _mixer_block(m: Any, unet_names: dict[int, str], mixers: Any, names: dict[int, str], size: int,
                 compact: bool) -> list[Block]:
    """Video-LDM's TemporalMixer after the frozen block ``m`` (keyed by ``m``'s name in the U-Net)."""
    key = unet_names.get(id(m), "").replace(".", "_")
    if mixers is None or key not in mixers:
        return []
    mixer = mixers[key]
    t = mixer.temporal
    conv = class_name(t) == "TemporalConvBlock"
    width = t.channels if conv else t.dim
    alpha = format_number(float(mixer.alpha().detach()), 2)
    head = "T-conv" if conv else "T-attn"
    label = f"{head}\nα {alpha.removeprefix('0')}" if compact else f"{head} {width}\nα = {alpha}"
    return [Block("temporal-conv" if conv else "temporal-attention", label, names.get(id(mixer), ""), width, size)]


def unet_plan(unet: Any, names: dict[int, str], compact: bool, *, mixers: Any = None, video: str | None = None,
              outer: Any = None) -> Plan:
    """A U-Net's layers as the U of :func:`~genlib.viz._diagram.u_shape`: ``conv_in`` and each entry
    of ``unet.down`` along the top (the skips' sources), ``unet.mid`` down the right, each entry of
    ``unet.up`` along the bottom. ``mixers``: Video-LDM's temporal layers, a box after the block
    each follows; ``video="inflated"``: Make-A-Video's pseudo-3D layers; ``outer``: the config of
    the model holding the U-Net (its conditioning, for the notes)."""
    blocks: list[Block] = []
    unet_names = {id(m): n for n, m in unet.named_modules()}

    def put(new: list[Block]) -> list[tuple[int, str, str]]:
        items = []
        for b in new:
            blocks.append(b)
            items.append((len(blocks) - 1, b.kind, b.label))
        return items

    def layer(modules, size) -> tuple[list[tuple[int, str, str]], int, int]:
        items, shift = [], 0
        for m in modules:
            if class_name(m) == "Downsample":
                size, shift = size // 2, shift + 1
            elif class_name(m) == "Upsample":
                size, shift = size * 2, shift - 1
            items += put(_layer_blocks(m, names, size, compact)
                         + _mixer_block(m, unet_names, mixers, names, size, compact))
        return items, size, shift

    size = unet.cfg.image_size
    conv_in, conv_out = conv2d_of(unet.conv_in), conv2d_of(unet.conv_out)
    c_in, c_out = conv_in.in_channels, conv_out.out_channels
    plain = "x_t, low↑" if hasattr(outer, "low_size") else "x_t"  # SR: x_t and the upsampled low-res image
    what = {"ldm": "z_t frames", "inflated": "clip frames"}.get(video, plain)
    data_in = put([Block("data", f"{what}\n{c_in}×{size}×{size}", "", c_in, size)])[0]
    head = "Conv" if compact else ("Conv (2+1)D" if video == "inflated" else "Conv in")
    chans = conv_in.out_channels if compact else _arrow(c_in, conv_in.out_channels)
    enc = [D.Cell(put([Block("conv", f"{head}\n{chans}", names.get(id(unet.conv_in), ""), conv_in.out_channels,
                             size)]), 0)]
    level, sizes = 0, [size]
    for modules in unet.down:
        items, size, shift = layer(modules, size)
        level += shift
        if shift:
            sizes.append(size)
        enc.append(D.Cell(items, level))
    mid, size, _ = layer(unet.mid, size)
    dec = []
    for modules in unet.up:
        items, new_size, shift = layer(modules, size)
        dec.append(D.Cell(items, level))
        level, size = level + shift, new_size
    head = "Out" if compact else ("Out (2+1)D" if video == "inflated" else "Norm, conv")
    chans = c_out if compact else _arrow(conv_out.in_channels, c_out)
    dec[-1].items += put([Block("conv", f"{head}\n{chans}", names.get(id(unet.conv_out), ""), c_out, size)])
    data_out = put([Block("data", f"{'out' if compact else 'prediction'}\n{c_out}×{size}×{size}", "", c_out,
                          size)])[0]
    skips = [(len(enc) - 1 - k, k) for k in range(len(dec))]  # up layer k reads the k-th skip from the end
    bands = [f"{s}×{s}" for s in sizes]
    mid_label = f"{'mid' if compact else 'middle'} {sizes[-1]}×{sizes[-1]}"

    def layout(sheet):
        return D.u_shape(sheet, enc, mid, dec, skips, bands, mid_label, data_in, data_out)

    notes = _unet_notes(unet, mixers, video, outer)
    if compact:
        notes.append("Boxes show output channels" + ("; X-attn: self- and cross-attention." if any(
            b.kind == "cross-attention" for b in blocks) else "."))
    return Plan(blocks, layout, notes, skips=True)


def _unet_notes(unet: Any, mixers: Any, video: str | None, outer: Any) -> list[str]:
    te = unet.time_embed
    notes = [f"Timestep t: sinusoidal features ({te.dim}) and an MLP give a {te.mlp[-1].out_features}-wide "
             f"embedding, added inside every ResBlock."]
    if unet.label_embed is not None:
        what = "noise-augmentation level" if hasattr(outer, "aug_levels") else "class label"
        notes.append(f"The {what} ({unet.label_embed.num_embeddings - 1} values and 'none') is embedded and added "
                     f"to the timestep's embedding.")
    if hasattr(outer, "low_size"):
        c_in = conv2d_of(unet.conv_in).in_channels
        notes.append(f"Input: x_t and the {outer.low_size}×{outer.low_size} image upsampled to "
                     f"{outer.image_size}×{outer.image_size}, concatenated ({c_in} channels).")
    cross = [m.cross_attn for m in unet.modules() if class_name(m) == "AttentionBlock2d" and m.cross_attn is not None]
    if cross:
        source = {"minilm": "the frozen MiniLM's token states", "scratch": "a text encoder trained with the U-Net"}.get(
            getattr(outer, "text_encoder", None), "a context")
        notes.append(f"Cross-attention reads {source}: b×n×{cross[0].context_dim}.")
    if video == "ldm":
        first = next(iter(mixers.values()), None)
        ctx = " Each also reads the context c_S (masked latents and mask)." if getattr(first, "context_in", None) \
            is not None else ""
        mix = "out = α·z + (1 − α)·l_φ(z)".replace(" ", NBSP)
        notes.append(f"The image U-Net's layers are frozen; after each ResBlock and attention block a trained temporal "
                     f"layer l_φ is mixed in: {mix} ({len(mixers)} layers).{ctx}")
    if video == "inflated":
        notes.append("(2+1)D: every k×k conv of the image U-Net (in ResBlocks, down/upsampling, in and out) is "
                     "followed by a 1-D conv along time, the identity at the start; T-attn: attention over the "
                     "frames at each pixel, zero at the start. Frames run through the image layers as one batch.")
    return notes


# ----------------------------------------------------------------------------- DiT


def dit_plan(dit: Any, names: dict[int, str]) -> Plan:
    """Patchify, the DiT blocks (the middle ones folded into one box if the row would pass the
    page), the final layer and unpatchify in a row; the conditioning embeddings below, feeding
    every block's adaLN."""
    c, s = dit.cfg.in_channels, dit.cfg.image_size
    p, n, d = dit.patch.patch_size, dit.pos.shape[1], dit.patch.proj.out_features
    te, le = dit.time_embed, dit.label_embed
    out = dit.final.linear.out_features
    head = [Block("data", f"x_t\n{c}×{s}×{s}", "", c, s),
            Block("patch", f"Patchify p={p}\n+ positions\n{n} × {d}", names[id(dit.patch)], d, n)]
    tail = [Block("transformer", f"Final layer\nadaLN, linear\n{d}→{out}", names[id(dit.final)], out, n),
            Block("patch", f"Unpatchify\n{n} × {out}\n→ {c}×{s}×{s}", "", c, s)]
    dit_blocks = [Block("transformer", f"DiT block {i + 1}\nadaLN-Zero\n{d}, {b.attn.heads} heads", names[id(b)], d, n)
                  for i, b in enumerate(dit.blocks)]
    cond = [Block("embedding", f"t: sinusoidal {te.dim}\nMLP → {te.mlp[-1].out_features}", names[id(te)],
                  te.mlp[-1].out_features)]
    if le is not None:
        cond.append(Block("embedding", f"label embedding\n{le.num_embeddings - 1} + none → {le.embedding_dim}",
                          names[id(le)], le.embedding_dim))
    avail = TEXT_WIDTH - 2 * D.MARGIN

    def row_width(bs):
        return sum(D.box_size(b.label)[0] for b in bs) + D.COL_GAP * (len(bs) - 1)

    shown = dit_blocks
    for keep in range(len(dit_blocks) - 1, 2, -1):  # fold the middle blocks until the row fits the page
        if row_width(head + shown + tail) <= avail:
            break
        k = len(dit_blocks) - keep + 1
        folded = Block("transformer", f"DiT blocks\n{keep - 1}–{keep - 2 + k}\n({k} blocks)",
                       f"blocks[{keep - 2}:{keep - 2 + k}]", d, n, count=k)
        shown = dit_blocks[:keep - 2] + [folded] + dit_blocks[-1:]
    blocks = head + shown + tail + cond
    items = [(i, b.kind, b.label) for i, b in enumerate(blocks)]
    main, conds = items[:len(blocks) - len(cond)], items[len(blocks) - len(cond):]

    def layout(sheet):
        boxes, right, bottom = D.chain(sheet, main, D.MARGIN, D.MARGIN, avail)
        ada = [b for b in boxes if b.kind == "transformer"]
        y_bus = bottom + 0.2
        cboxes, r2, bottom2 = D.chain(sheet, conds, D.MARGIN, y_bus + 0.16, avail)
        for b in cboxes:
            sheet.lines.append([(b.cx, b.y), (b.cx, y_bus)])
        sheet.lines.append([(cboxes[0].cx, y_bus), (ada[-1].cx, y_bus)])
        for b in ada:
            sheet.arrow((b.cx, y_bus), (b.cx, b.y + b.h))
        sheet.texts.append((r2 + 0.15, y_bus + 0.08, f"c (b×{d}): the embeddings' sum, from which\nevery "
                            f"block regresses its adaLN shift, scale and gate", "left"))
        return max(right, r2) + D.MARGIN, bottom2 + 0.05

    notes = ["adaLN-Zero: each block's LayerNorms are scaled and shifted, and its residual branches gated, by "
             "values regressed from c; the regressor starts at zero, so a fresh block is the identity."]
    return Plan(blocks, layout, notes)


# ----------------------------------------------------------------------------- autoencoders


def autoencoder_plan(ae: Any, names: dict[int, str], image_size: int | None, compact: bool,
                     disc: Any = None) -> Plan:
    """A conv autoencoder (``genlib.nn.convnets`` Encoder and Decoder) as a U without skips: the
    encoder along the top, the bottleneck (quantiser, posterior sample or vector head) down the
    right, the decoder along the bottom; the patch discriminator ``disc`` in a row below."""
    enc, dec = ae.encoder, ae.decoder
    blocks: list[Block] = []

    def chans(a: int, b: int) -> str:
        return str(b) if compact else _arrow(a, b)

    def put(*new: Block) -> list[tuple[int, str, str]]:
        blocks.extend(new)
        return [(len(blocks) - len(new) + i, b.kind, b.label) for i, b in enumerate(new)]

    def side(level: int) -> int | None:
        return None if image_size is None else image_size // 2 ** level

    def shape(c: int, level: int) -> str:
        s = side(level)
        return f"{c}×H×W" if s is None else f"{c}×{s}×{s}"

    res, out = ("Res", "Out") if compact else ("ResBlock", "Norm, conv")
    c_img = enc.conv_in.in_channels
    data_in = put(Block("data", f"x\n{shape(c_img, 0)}", "", c_img, side(0)))[0]
    cells = [D.Cell(put(Block("conv", f"Conv in\n{chans(c_img, enc.conv_in.out_channels)}", names[id(enc.conv_in)],
                              enc.conv_in.out_channels, side(0))), 0)]
    level = 0
    for m in enc.body:
        if class_name(m) == "ResBlock":
            cells.append(D.Cell(put(Block("resblock", f"{res}\n{chans(m.in_channels, m.out_channels)}",
                                          names[id(m)], m.out_channels, side(level))), level))
        else:  # a stride-2 convolution
            level += 1
            head = "Down" if compact else f"Down s{m.stride[0]}"
            cells.append(D.Cell(put(Block("down", f"{head}\n{chans(m.in_channels, m.out_channels)}",
                                          names[id(m)], m.out_channels, side(level))), level))
    deepest = level
    z = enc.conv_out.out_channels
    mid = put(Block("conv", f"{out}\n{chans(enc.conv_out.in_channels, z)}", names[id(enc.conv_out)], z,
                    side(level)))
    kind = class_name(ae)
    if hasattr(ae, "quantizer"):
        q = ae.quantizer
        mid += put(Block("quantizer", f"Quantise\n{q.num_codes} codes\nof dim {q.code_dim}", names[id(q)],
                         q.code_dim, side(level)))
    elif hasattr(ae, "to_latent"):  # a vector latent (VAE, autoencoder)
        d_in, d_out = ae.to_latent.in_features, ae.to_latent.out_features
        d = ae.from_latent.in_features
        if kind == "VAE":
            mid += put(Block("latent", f"Linear\n{d_in}→{d_out}\nμ, log σ²", names[id(ae.to_latent)], d_out),
                       Block("latent", f"Sample\nz = μ+σ·ε\n{d}", "", d))
        else:
            mid += put(Block("latent", f"Linear\n{d_in}→{d}\nz", names[id(ae.to_latent)], d))
        mid += put(Block("latent", f"Linear\n{d}→{ae.from_latent.out_features}",
                         names[id(ae.from_latent)], ae.from_latent.out_features))
    elif z == 2 * dec.conv_in.in_channels:  # a Gaussian posterior per position (the KL autoencoder)
        mid += put(Block("latent", f"Sample\nz = μ+σ·ε\n{z // 2}", "", z // 2, side(level)))
    mid += put(Block("conv", f"Conv in\n{chans(dec.conv_in.in_channels, dec.conv_in.out_channels)}",
                     names[id(dec.conv_in)], dec.conv_in.out_channels, side(level)))
    dec_cells: list[D.Cell] = []
    for m in dec.body:
        if class_name(m) == "ResBlock":
            dec_cells.append(D.Cell(put(Block("resblock", f"{res}\n{chans(m.in_channels, m.out_channels)}",
                                              names[id(m)], m.out_channels, side(level))), level))
        else:  # Upsample: stacked under the last ResBlock of its level
            new = put(Block("up", f"Up ×2\n{chans(m.conv.in_channels, m.conv.out_channels)}", names[id(m)],
                            m.conv.out_channels, side(level - 1)))
            if dec_cells and dec_cells[-1].band == level:
                dec_cells[-1].items += new
            else:
                dec_cells.append(D.Cell(new, level))
            level -= 1
    c_out = dec.conv_out.out_channels
    last = put(Block("conv", f"{out}\n{chans(dec.conv_out.in_channels, c_out)}", names[id(dec.conv_out)],
                     c_out, side(0)))
    if dec_cells and dec_cells[-1].band == 0:
        dec_cells[-1].items += last
    else:
        dec_cells.append(D.Cell(last, 0))
    data_out = put(Block("data", f"x̂\n{shape(c_out, 0)}", "", c_out, side(0)))[0]

    def band(level: int) -> str:
        s = side(level)
        return (f"{s}×{s}" if s else "full size") if level == 0 or s else f"÷{2 ** level}"

    disc_items = []
    if disc is not None:
        disc_items = put(Block("data", f"x or x̂\n{shape(disc.in_channels, 0)}", "", disc.in_channels, side(0)))
        convs = [(i, m) for i, m in enumerate(disc.net) if class_name(m) == "Conv2d"]
        for j, (i, m) in enumerate(convs):
            extras = {class_name(x) for x in disc.net[i + 1:convs[j + 1][0] if j + 1 < len(convs) else None]}
            bn = ", BN" if "BatchNorm2d" in extras else ""
            disc_items += put(Block("discriminator", f"Conv {m.kernel_size[0]} s{m.stride[0]}{bn}\n"
                                    f"{_arrow(m.in_channels, m.out_channels)}", names[id(m)], m.out_channels))
        r = disc.receptive_field()
        disc_items += put(Block("data", f"logits, each\nsees {r}×{r} px", "", 1))
    bands = [band(i) for i in range(deepest + 1)]
    latent = "latent z" if hasattr(ae, "to_latent") else f"latent {band(deepest)}"

    def layout(sheet):
        w, h = D.u_shape(sheet, cells, mid, dec_cells, [], bands, latent, data_in, data_out)
        if disc_items:
            sheet.texts.append((D.MARGIN, h + 0.1, "Patch discriminator D (trained against the decoder):", "left"))
            _, right, h = D.chain(sheet, disc_items, D.MARGIN, h + 0.1 + D.HEAD, TEXT_WIDTH - 2 * D.MARGIN)
            w = max(w, right + D.MARGIN)
        return w, h + 0.05

    notes = []
    if hasattr(ae, "quantizer"):
        notes.append("Quantise: each latent vector is replaced by its nearest codebook entry (straight-through "
                     "gradient to the encoder).")
    return Plan(blocks, layout, notes)
