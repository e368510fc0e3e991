"""What :mod:`genlib.viz.architecture` draws for chapter 05's GANs: the generator G (noise ``z``,
and a class label ``y`` for a conditional GAN, to a sample) and the discriminator D (a sample, or
a pack of samples, to one real/fake logit) as two rows, as in the survey's Figs. 11-12.

Both networks are walked layer by layer: each ``Linear`` or ``Conv2d`` is one box, named with the
resampling before it (``Upsample``, ``Flatten``) and the normalisation and activation after it,
so the MLPs of ``genlib.models.gan`` and the DCGAN-style convnets of ``genlib.models.cgan`` are
drawn by the same code. Like the rest of ``genlib.viz`` it recognises them by class names and
attributes (``z_dim``, ``pack``, ``cfg.num_classes``), importing neither module.
"""

from __future__ import annotations

from typing import Any

from genlib.viz import _diagram as D
from genlib.viz._blocks import Block, Plan, _arrow, class_name
from genlib.viz.style import TEXT_WIDTH

WEIGHTS = ("Linear", "Conv2d", "ConvTranspose2d")
BEFORE = ("Upsample", "Flatten")  # resamplings named in the box of the layer that follows them
WORDS = {"ReLU": "ReLU", "LeakyReLU": "LReLU", "SiLU": "SiLU", "GELU": "GELU", "Tanh": "tanh",
         "Sigmoid": "sigmoid", "BatchNorm1d": "BN", "BatchNorm2d": "BN", "GroupNorm": "GN", "LayerNorm": "LN"}
# Activations a network applies in its forward as a function, not as a module: the walk cannot see them.
OUTPUT_ACTIVATION = {"ConvGenerator": "tanh"}


def _groups(net: Any) -> list[dict]:
    """One dict per weight layer of ``net``, in forward order (the order the leaves are
    registered in, as in genlib's GANs): the layer, the modules just before and just after it."""
    leaves = [m for m in net.modules() if next(m.children(), None) is None]
    groups, pending = [], []
    for m in leaves:
        kind = class_name(m)
        if kind in WEIGHTS:
            groups.append({"layer": m, "before": pending, "after": []})
            pending = []
        elif kind in BEFORE or not groups:
            pending.append(m)
        else:
            groups[-1]["after"].append(m)
    return groups


def _layer_blocks(net: Any, names: dict[int, str], size: int | None, compact: bool) -> list[Block]:
    """A box per weight layer of ``net`` (``size``: the side of the map it reads, None for vectors)."""
    blocks = []
    groups = _groups(net)
    for i, g in enumerate(groups):
        m, kind = g["layer"], class_name(g["layer"])
        head, out_shape = [], None
        for b in g["before"]:
            if class_name(b) == "Upsample":
                head.append(f"Up ×{format(b.scale_factor, 'g')}")
                size = None if size is None else int(size * b.scale_factor)
            elif class_name(b) == "Flatten":
                head.append("Flatten")
        if kind == "Linear":
            word, box, c_in, c_out = "linear", "linear", m.in_features, m.out_features
        else:
            k, s = m.kernel_size[0], m.stride[0]
            word = f"conv {k}" + (f" s{s}" if s > 1 else "")
            c_in, c_out = m.in_channels, m.out_channels
            size = None if size is None else size // s
            box = "up" if head and head[0].startswith("Up") else ("down" if s > 1 else "conv")
        head.append(word)
        tail = [WORDS[class_name(a)] for a in g["after"] if class_name(a) in WORDS]
        if i == len(groups) - 1 and class_name(net) in OUTPUT_ACTIVATION:
            tail.append(OUTPUT_ACTIVATION[class_name(net)])
        for a in g["after"]:
            if class_name(a) == "Unflatten":
                out_shape = tuple(a.unflattened_size)
                size = out_shape[-1]
        first = ", ".join(head)
        first = first[0].upper() + first[1:]
        shape = "×".join(map(str, out_shape)) if out_shape else str(c_out)
        if compact:
            lines = [first, shape]
        else:
            joined = ", ".join([first] + tail)
            lines = ([joined] if len(joined) <= 18 else [first] + ([", ".join(tail)] if tail else [])) + \
                [f"{c_in}→{shape}" if out_shape else _arrow(c_in, c_out)]
        blocks.append(Block(box, "\n".join(lines), names.get(id(m), ""), out_shape[0] if out_shape else c_out, size))
    return blocks


def _shape(c: int, size: int | None) -> str:
    return str(c) if size is None else f"{c}×{size}×{size}"


def gan_plan(generator: Any, discriminator: Any, names: dict[int, str], compact: bool) -> Plan:
    """G's row (its inputs, its layers, the sample) above D's (the sample or pack, its layers, the
    logit); either may be ``None``. A conditional pair (``cfg.num_classes`` > 0) shows the label
    ``y`` beside ``z`` and beside D's input, and the concatenation that brings it in."""
    blocks: list[Block] = []
    rows = []  # (heading, inputs, items)

    def put(*new: Block) -> list[tuple[int, str, str]]:
        blocks.extend(new)
        return [(len(blocks) - len(new) + i, b.kind, b.label) for i, b in enumerate(new)]

    g_cfg = getattr(generator, "cfg", None) or getattr(discriminator, "cfg", None)
    classes = getattr(g_cfg, "num_classes", 0) or 0
    size = getattr(g_cfg, "image_size", None)
    label = Block("data", f"label y\n{classes} classes", "", classes)
    notes = []
    if generator is not None:
        layers = _layer_blocks(generator, names, None, compact)
        z = generator.z_dim
        out = layers[-1]
        sample = Block("data", f"G(z{', y' if classes else ''})\n{_shape(out.channels, out.size)}", "",
                       out.channels, out.size)
        if classes:
            inputs = put(Block("data", f"noise z\n{z}", "", z), label)
            d_in = _groups(generator)[0]["layer"].in_features
            items = put(Block("concat", f"concat z, one-hot y\n{z} + {classes} → {d_in}", "", d_in), *layers, sample)
        else:
            inputs, items = [], put(Block("data", f"noise z\n{z}", "", z), *layers, sample)
        rows.append((f"Generator G: noise z{' and label y' if classes else ''} → sample", inputs, items))
    if discriminator is not None:
        pack = getattr(discriminator, "pack", 1)
        first = _groups(discriminator)[0]["layer"]
        c = getattr(first, "in_features", None) or first.in_channels
        c_x = c // pack if pack > 1 else (c - classes if classes else c)
        layers = _layer_blocks(discriminator, names, size, compact)
        logit = Block("data", "logit per pack\nreal / fake" if pack > 1 else "logit\nreal / fake", "", 1)
        x = Block("data", f"x or G(z{', y' if classes else ''})\n{_shape(c_x, size)}", "", c_x, size)
        if pack > 1:
            x = Block("data", f"{pack} samples, all\nx or all G(z)\n{pack} × {c_x}", "", c_x)
            inputs, items = [], put(x, Block("concat", f"pack\n{pack} × {c_x} → {c}", "", c), *layers, logit)
            notes.append(f"PacGAN: D judges {pack} samples at once, all real or all generated, concatenated "
                         f"into one {c}-vector; a generator that collapses onto few modes makes packs that look "
                         f"alike.")
        elif classes:
            inputs = put(x, label)
            items = put(Block("concat", f"concat one-hot y\nas maps: {c_x} + {classes} → {c}", "", c, size),
                        *layers, logit)
        else:
            inputs, items = [], put(x, *layers, logit)
        rows.append(("Discriminator D: " + ("a pack of samples" if pack > 1 else "sample") + " → real/fake logit",
                     inputs, items))
        notes.append("D outputs a logit l; D(x) = sigmoid(l) is its probability that x is real.")
    if classes:
        notes.append(f"cGAN: the label y enters G as a one-hot vector beside z, and D as {classes} constant "
                     f"one-hot channels beside the image, so D also rejects a good image of the wrong class.")
    if compact:
        notes.append("Boxes show output widths.")
    avail = TEXT_WIDTH - 2 * D.MARGIN

    def layout(sheet):
        y, right = D.MARGIN, 0.0
        for heading, inputs, items in rows:
            sheet.texts.append((D.MARGIN, y, heading, "left"))
            y += D.HEAD
            if inputs:
                _, r, bottom = D.fan_in(sheet, inputs, items, D.MARGIN, y, avail)
            else:
                _, r, bottom = D.chain(sheet, items, D.MARGIN, y, avail)
            right, y = max(right, r), bottom + 0.14
        return right + D.MARGIN, y - 0.14 + 0.05

    return Plan(blocks, layout, notes)
