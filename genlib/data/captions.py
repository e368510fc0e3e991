"""Captions of the shapes world: the structured prompt, its text, a parser, and the check.

Every shapes image is described by a :class:`Prompt`: which objects it holds, as (colour, shape)
pairs, and for ``position`` prompts how the first object sits relative to the second. The four
prompt *kinds* are the categories the book scores text-image alignment by, like DrawBench's
categories but judged by a program:

============  =============================================  ===================================
kind          example                                        what it tests
============  =============================================  ===================================
``shape``     "a red circle"                                 one object, its shape and colour
``colour``    "a red circle and a blue square"               binding two colours to two shapes
``count``     "three green triangles"                        the number of objects
``position``  "a red circle to the left of a blue square"    the spatial relation
============  =============================================  ===================================

A scene satisfies a prompt when its objects are exactly the named ones (as a multiset) and, for
``position``, the relation holds between their grid cells. Scenes are read as two ``9``-vectors,
one per cell of the 3x3 layout grid (row-major), holding ``0`` for an empty cell and ``1 + index``
of the colour (or shape) otherwise; the world's evaluator predicts exactly that.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

import torch

from .render import COLOURS, SHAPES, colour_index, shape_index

KINDS: tuple[str, ...] = ("shape", "colour", "count", "position")
RELATIONS: tuple[str, ...] = ("left of", "right of", "above", "below")
NUMBERS: tuple[str, ...] = ("one", "two", "three")
GRID = 3  # objects sit in the cells of a GRID x GRID layout

_RELATION_TEXT = {"left of": "to the left of", "right of": "to the right of", "above": "above", "below": "below"}


def plural(shape: str) -> str:
    """'circle' -> 'circles', 'cross' -> 'crosses'."""
    return shape + ("es" if shape.endswith("s") else "s")


@dataclass(frozen=True)
class Prompt:
    """What a shapes image shows, as data.

    ``objects`` lists one (colour, shape) pair per object (a ``count`` prompt repeats its pair);
    ``relation`` (``position`` prompts only) says where ``objects[0]`` is relative to ``objects[1]``.
    """

    kind: str
    objects: tuple[tuple[str, str], ...]
    relation: str | None = None

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"unknown prompt kind {self.kind!r}; expected one of {', '.join(KINDS)}")
        for colour, shape in self.objects:
            colour_index(colour)
            shape_index(shape)
        n = len(self.objects)
        if self.kind == "shape" and n != 1:
            raise ValueError(f"a 'shape' prompt names exactly one object, got {n}")
        if self.kind in ("colour", "position") and n != 2:
            raise ValueError(f"a {self.kind!r} prompt names exactly two objects, got {n}")
        if self.kind == "count" and not (1 <= n <= len(NUMBERS) and len(set(self.objects)) == 1):
            raise ValueError(f"a 'count' prompt repeats one (colour, shape) pair 1-{len(NUMBERS)} times, got {self.objects}")
        if self.kind in ("colour", "position") and self.objects[0][0] == self.objects[1][0]:
            raise ValueError(f"a {self.kind!r} prompt names two objects of different colours, got {self.objects}")
        if (self.kind == "position") != (self.relation is not None):
            raise ValueError("a relation is given exactly for 'position' prompts")
        if self.relation is not None and self.relation not in RELATIONS:
            raise ValueError(f"unknown relation {self.relation!r}; expected one of {', '.join(RELATIONS)}")

    @property
    def text(self) -> str:
        """The caption, e.g. ``"two blue squares"``."""
        (c0, s0), *rest = self.objects
        if self.kind == "shape":
            return f"a {c0} {s0}"
        if self.kind == "count":
            n = len(self.objects)
            return f"{NUMBERS[n - 1]} {c0} {s0 if n == 1 else plural(s0)}"
        c1, s1 = rest[0]
        if self.kind == "colour":
            return f"a {c0} {s0} and a {c1} {s1}"
        return f"a {c0} {s0} {_RELATION_TEXT[self.relation]} a {c1} {s1}"


_C = "(" + "|".join(COLOURS) + ")"
_S = "(" + "|".join(SHAPES) + ")"
_SP = "(" + "|".join(list(SHAPES) + [plural(s) for s in SHAPES]) + ")"
_SINGULAR = {plural(s): s for s in SHAPES}
_PATTERNS = (
    ("count", re.compile(rf"^({'|'.join(NUMBERS)}) {_C} {_SP}$")),
    ("shape", re.compile(rf"^an? {_C} {_S}$")),
    ("colour", re.compile(rf"^an? {_C} {_S} and an? {_C} {_S}$")),
    ("position", re.compile(rf"^an? {_C} {_S} (to the left of|to the right of|above|below) an? {_C} {_S}$")),
)


def parse_caption(text: str) -> Prompt:
    """Read a caption of the shapes grammar back into a :class:`Prompt`.

    Case, extra spaces and one final full stop are ignored. Text outside the grammar raises a ``ValueError`` that
    shows the four templates.
    """
    clean = " ".join(text.lower().split())
    clean = clean[:-1].rstrip() if clean.endswith(".") else clean
    for kind, pattern in _PATTERNS:
        m = pattern.match(clean)
        if not m:
            continue
        g = m.groups()
        if kind == "count":
            n = NUMBERS.index(g[0]) + 1
            if (n == 1) != (g[2] in SHAPES):  # "one circle", "two circles"
                break
            return Prompt("count", ((g[1], _SINGULAR.get(g[2], g[2])),) * n)
        if kind == "shape":
            return Prompt("shape", ((g[0], g[1]),))
        if kind == "colour":
            return Prompt("colour", ((g[0], g[1]), (g[2], g[3])))
        relation = {v: k for k, v in _RELATION_TEXT.items()}[g[2]]
        return Prompt("position", ((g[0], g[1]), (g[3], g[4])), relation)
    raise ValueError(
        f"caption {text!r} is outside the shapes grammar; expected one of: 'a <colour> <shape>', "
        "'a <colour> <shape> and a <colour> <shape>', '<one|two|three> <colour> <shapes>', "
        "'a <colour> <shape> <to the left of|to the right of|above|below> a <colour> <shape>' "
        f"with colours {', '.join(COLOURS)} and shapes {', '.join(SHAPES)}"
    )


def scene_objects(cell_colour, cell_shape) -> list[tuple[int, str, str]]:
    """The objects of one scene as (cell, colour, shape), from its two 9-vectors of cell labels.

    A cell counts as holding an object when both its colour and its shape label are non-zero.
    """
    cc = [int(v) for v in torch.as_tensor(cell_colour).reshape(-1).tolist()]
    cs = [int(v) for v in torch.as_tensor(cell_shape).reshape(-1).tolist()]
    if len(cc) != GRID * GRID or len(cs) != GRID * GRID:
        raise ValueError(f"a scene is two vectors of {GRID * GRID} cell labels, got {len(cc)} and {len(cs)}")
    return [(i, COLOURS[c - 1], SHAPES[s - 1]) for i, (c, s) in enumerate(zip(cc, cs)) if c > 0 and s > 0]


def matches(prompt: Prompt, cell_colour, cell_shape) -> bool:
    """Whether one scene (its cell labels) shows exactly what ``prompt`` says."""
    objects = scene_objects(cell_colour, cell_shape)
    if Counter((c, s) for _, c, s in objects) != Counter(prompt.objects):
        return False
    if prompt.kind != "position":
        return True
    cell = {(c, s): i for i, c, s in objects}  # position prompts name two different colours
    (r0, c0), (r1, c1) = divmod(cell[prompt.objects[0]], GRID), divmod(cell[prompt.objects[1]], GRID)
    return {"left of": c0 < c1, "right of": c0 > c1, "above": r0 < r1, "below": r0 > r1}[prompt.relation]


def category_match(prompt: Prompt, cell_colour, cell_shape) -> bool:
    """A lenient check of the one thing ``prompt``'s kind tests, ignoring everything else in the
    scene (DrawBench's categories): ``shape``: an object of the named colour and shape is there;
    ``colour``: both named colour-shape pairs are there (the binding); ``count``: exactly the named
    number of objects is there; ``position``: an object of each named colour is there, the first
    in the named relation to the second. :func:`matches` is the strict check."""
    objects = scene_objects(cell_colour, cell_shape)
    present = {(c, s) for _, c, s in objects}
    if prompt.kind in ("shape", "colour"):
        return all(o in present for o in prompt.objects)
    if prompt.kind == "count":
        return len(objects) == len(prompt.objects)
    (c0, _), (c1, _) = prompt.objects
    cells0 = [divmod(i, GRID) for i, c, _ in objects if c == c0]
    cells1 = [divmod(i, GRID) for i, c, _ in objects if c == c1]
    holds = {"left of": lambda a, b: a[1] < b[1], "right of": lambda a, b: a[1] > b[1],
             "above": lambda a, b: a[0] < b[0], "below": lambda a, b: a[0] > b[0]}[prompt.relation]
    return any(holds(a, b) for a in cells0 for b in cells1)


def match_batch(prompts, cell_colour: torch.Tensor, cell_shape: torch.Tensor, *, lenient: bool = False) -> torch.Tensor:
    """:func:`matches` (or, with ``lenient``, :func:`category_match`) for a batch: ``prompts``
    (length b), labels ``b 9`` -> ``b`` bool tensor."""
    if cell_colour.shape != cell_shape.shape or cell_colour.ndim != 2 or cell_colour.shape[0] != len(prompts):
        raise ValueError(
            f"expected {len(prompts)} prompts and two 'b {GRID * GRID}' label tensors, "
            f"got {tuple(cell_colour.shape)} and {tuple(cell_shape.shape)}"
        )
    match = category_match if lenient else matches
    return torch.tensor([match(p, c, s) for p, c, s in zip(prompts, cell_colour, cell_shape)], dtype=torch.bool)


# ----------------------------------------------------------------------------- word tokens


class CaptionVocab:
    """The words of the shapes grammar as token ids, for sequence models of captions.

    Ids 0, 1, 2 are ``<pad>``, ``<bos>`` (start) and ``<eos>`` (end); then every word the four
    templates can produce, in a fixed order. :meth:`encode` turns captions into ``b length`` id
    tensors ``<bos> w1 ... wk <eos> <pad> ...``; :meth:`decode` reads ids back up to ``<eos>``.
    """

    PAD, BOS, EOS = 0, 1, 2
    SPECIAL = ("<pad>", "<bos>", "<eos>")

    def __init__(self):
        relation_words = dict.fromkeys(w for text in _RELATION_TEXT.values() for w in text.split())
        grammar = ("a", "an", "and", *relation_words, *NUMBERS)
        self.words = self.SPECIAL + grammar + tuple(COLOURS) + tuple(SHAPES) + tuple(plural(s) for s in SHAPES)
        self.index = {w: i for i, w in enumerate(self.words)}

    def __len__(self) -> int:
        return len(self.words)

    def encode(self, texts: list[str], length: int) -> torch.Tensor:
        """``b length`` int64 ids; a caption longer than ``length - 2`` words raises ``ValueError``."""
        out = torch.full((len(texts), length), self.PAD, dtype=torch.long)
        for row, text in enumerate(texts):
            words = " ".join(text.lower().split()).rstrip(".").split()
            unknown = [w for w in words if w not in self.index]
            if unknown:
                raise ValueError(f"caption {text!r} has words outside the shapes grammar: {unknown}")
            if len(words) + 2 > length:
                raise ValueError(f"caption {text!r} needs {len(words) + 2} tokens with <bos> and <eos>; length is {length}")
            ids = [self.BOS, *(self.index[w] for w in words), self.EOS]
            out[row, : len(ids)] = torch.tensor(ids)
        return out

    def decode(self, ids: torch.Tensor) -> list[str]:
        """The words of each row of ``ids: b n`` after an optional leading ``<bos>``, up to ``<eos>``
        (or the end); a special token in the middle is kept as its name, so it fails to parse."""
        if ids.ndim != 2 or ids.dtype != torch.long or (ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= len(self))):
            raise ValueError(f"decode expects ids of layout b n (int64, in [0, {len(self) - 1}]), got {tuple(ids.shape)} {ids.dtype}")
        texts = []
        for row in ids.tolist():
            if row and row[0] == self.BOS:
                row = row[1:]
            if self.EOS in row:
                row = row[: row.index(self.EOS)]
            texts.append(" ".join(self.words[i] for i in row))
        return texts


# ----------------------------------------------------------------------------- the whole grammar


def all_prompts() -> list[Prompt]:
    """Every prompt the four templates can produce, in a fixed order (2,496 of them): ``shape``
    (colour x shape), ``colour`` (two different colours, any two shapes), ``count`` (one to
    three of one colour-shape pair) and ``position`` (as ``colour``, times the four relations).

    The caption set is finite, so anything computed per caption (a frozen text encoder's states)
    can be computed once for all of them.
    """
    pairs = [(c, s) for c in COLOURS for s in SHAPES]
    two = [(a, b) for a in pairs for b in pairs if a[0] != b[0]]
    out = [Prompt("shape", (p,)) for p in pairs]
    out += [Prompt("colour", (a, b)) for a, b in two]
    out += [Prompt("count", (p,) * n) for p in pairs for n in range(1, len(NUMBERS) + 1)]
    out += [Prompt("position", (a, b), r) for a, b in two for r in RELATIONS]
    return out
