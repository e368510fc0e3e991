"""The shapes world: procedural scenes of 1-3 flat shapes, each with its caption and ground truth.

A scene places its objects in distinct cells of a 3x3 layout grid, each near its cell's centre
(a small jitter), so every object has an unambiguous cell and the position words of a caption
("to the left of", "above") are facts about cells. Each object has a colour from a named palette
(:data:`COLOURS`), a shape (:data:`SHAPES`) and a size (small or large). The caption comes from one
of four templates, the prompt kinds of :mod:`genlib.data.captions`.

Everything is drawn from one NumPy generator seeded by ``seed``: the same call returns the same
images, captions and attributes on any machine.

>>> batch = sample(8, size=32, seed=0)
>>> batch.images.shape, batch.captions[0]                  # doctest: +SKIP
(torch.Size([8, 3, 32, 32]), 'two blue squares')
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from .captions import GRID, KINDS, RELATIONS, Prompt
from .render import COLOURS, SHAPES, colour_index, render_objects, shape_index

SIZES: tuple[int, ...] = (16, 32, 64)
OBJECT_SIZES: tuple[str, ...] = ("small", "large")
RADIUS = {"small": 0.26, "large": 0.38}  # object radius as a fraction of a cell's side
JITTER = 0.12  # largest offset of an object's centre from its cell's centre, in cell sides
MAX_OBJECTS = 3


@dataclass
class ShapesBatch:
    """A batch of shapes scenes.

    Attributes:
        images: ``b 3 h w`` float32 in [-1, 1].
        prompts: one :class:`~genlib.data.captions.Prompt` per image (``.captions`` gives the text).
        attrs: ground truth, all tensors with ``b`` first:
            ``cell_colour``, ``cell_shape``, ``cell_size`` (``b 9``, long): per layout cell
            (row-major) 0 when empty, else 1 + the index into ``COLOURS`` / ``SHAPES`` /
            ``OBJECT_SIZES``; ``count`` (``b``): number of objects; ``kind`` (``b``): index into
            ``KINDS``; ``centers`` (``b 3 2``, float): object centres (x, y) as fractions of the
            image side, NaN for empty slots; ``slot_cell`` (``b 3``): each slot's cell, -1 if empty.
    """

    images: torch.Tensor
    prompts: list[Prompt]
    attrs: dict[str, torch.Tensor]

    @property
    def captions(self) -> list[str]:
        return [p.text for p in self.prompts]

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, idx) -> "ShapesBatch":
        """Index or slice the batch (images, prompts and attributes together)."""
        index = torch.arange(len(self))[idx].reshape(-1)
        return ShapesBatch(
            images=self.images[index],
            prompts=[self.prompts[i] for i in index.tolist()],
            attrs={k: v[index] for k, v in self.attrs.items()},
        )


def _check_names(given, allowed, lookup, what):
    if given is None:
        return list(range(len(allowed)))
    if isinstance(given, str):
        given = [given]
    if len(given) == 0:
        raise ValueError(f"{what} must name at least one of {', '.join(allowed)}")
    return sorted({lookup(name) for name in given})


def _choose_distinct(rng, m, pool_size, k):
    """``m`` rows of ``k`` distinct integers from ``range(pool_size)``, in random order."""
    return np.argsort(rng.random((m, pool_size)), axis=1)[:, :k]


def sample(
    n: int,
    size: int = 32,
    seed: int = 0,
    *,
    kinds: Sequence[str] | None = None,
    colours: Sequence[str] | None = None,
    shapes: Sequence[str] | None = None,
) -> ShapesBatch:
    """Draw ``n`` scenes with their captions and ground truth.

    Args:
        n: number of images.
        size: image side, one of 16, 32, 64.
        seed: the scenes are a deterministic function of ``seed`` (and of the other arguments).
        kinds: prompt kinds to draw from (default all four, equally often).
        colours, shapes: restrict the palette or the shapes, e.g. to show what a metric does when a
            model drops a class. ``colour`` and ``position`` scenes need two colours.
    """
    if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 0:
        raise ValueError(f"n must be a non-negative integer, got {n!r}")
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if size not in SIZES:
        raise ValueError(f"size must be one of {', '.join(map(str, SIZES))} pixels, got {size!r}")
    kind_ids = _check_names(kinds, KINDS, _kind_index, "kinds")
    colour_ids = np.asarray(_check_names(colours, COLOURS, colour_index, "colours"))
    shape_ids = np.asarray(_check_names(shapes, SHAPES, shape_index, "shapes"))
    if len(colour_ids) < 2 and any(KINDS[k] in ("colour", "position") for k in kind_ids):
        raise ValueError("'colour' and 'position' scenes need at least two colours; pass kinds=['shape', 'count']")

    rng = np.random.Generator(np.random.PCG64(seed))
    kind = np.asarray(kind_ids)[rng.integers(len(kind_ids), size=n)]
    cells = np.full((n, MAX_OBJECTS), -1, dtype=np.int64)
    col = np.zeros((n, MAX_OBJECTS), dtype=np.int64)
    shp = np.zeros((n, MAX_OBJECTS), dtype=np.int64)
    relation = np.full(n, -1, dtype=np.int64)

    def pick(pool, shape_):
        return pool[rng.integers(len(pool), size=shape_)]

    for k in range(len(KINDS)):
        idx = np.nonzero(kind == k)[0]
        m = idx.size
        if m == 0:
            continue
        name = KINDS[k]
        if name == "shape":
            cells[idx, 0] = rng.integers(GRID * GRID, size=m)
            col[idx, 0] = pick(colour_ids, m)
            shp[idx, 0] = pick(shape_ids, m)
        elif name == "count":
            count = rng.integers(1, MAX_OBJECTS + 1, size=m)
            chosen = _choose_distinct(rng, m, GRID * GRID, MAX_OBJECTS)
            used = np.arange(MAX_OBJECTS)[None, :] < count[:, None]
            cells[idx] = np.where(used, chosen, -1)
            col[idx] = pick(colour_ids, m)[:, None]
            shp[idx] = pick(shape_ids, m)[:, None]
        else:  # two objects of different colours
            two = colour_ids[_choose_distinct(rng, m, len(colour_ids), 2)]
            col[idx, :2] = two
            shp[idx, :2] = pick(shape_ids, (m, 2))
            if name == "colour":
                cells[idx, :2] = _choose_distinct(rng, m, GRID * GRID, 2)
            else:
                rel = rng.integers(len(RELATIONS), size=m)
                relation[idx] = rel
                # Two different lines along the relation's axis, sorted so line[0] < line[1];
                # the other coordinate is free.
                lines = np.sort(_choose_distinct(rng, m, GRID, 2), axis=1)
                free = rng.integers(GRID, size=(m, 2))
                first_smaller = np.isin(rel, [RELATIONS.index("left of"), RELATIONS.index("above")])
                lines = np.where(first_smaller[:, None], lines, lines[:, ::-1])
                horizontal = rel < 2  # left of / right of compare columns
                rows = np.where(horizontal[:, None], free, lines)
                cols = np.where(horizontal[:, None], lines, free)
                cells[idx, :2] = rows * GRID + cols

    present = cells >= 0
    obj_size = rng.integers(len(OBJECT_SIZES), size=(n, MAX_OBJECTS))
    jitter = rng.uniform(-JITTER, JITTER, size=(n, MAX_OBJECTS, 2))
    cell_side = size / GRID
    row, column = np.divmod(np.maximum(cells, 0), GRID)
    centers = (np.stack([column, row], axis=-1) + 0.5 + jitter) * cell_side  # pixels, (x, y)
    radii = np.asarray([RADIUS[s] for s in OBJECT_SIZES])[obj_size] * cell_side

    images = render_objects(centers, radii, shp, col, present, size)
    return ShapesBatch(images, _prompts(kind, col, shp, present, relation), _attrs(kind, cells, col, shp, obj_size, present, centers / size))


def _kind_index(name: str) -> int:
    try:
        return KINDS.index(name)
    except ValueError:
        raise ValueError(f"unknown prompt kind {name!r}; expected one of {', '.join(KINDS)}") from None


def _prompts(kind, col, shp, present, relation) -> list[Prompt]:
    prompts = []
    for i in range(len(kind)):
        objects = tuple((COLOURS[col[i, j]], SHAPES[shp[i, j]]) for j in range(MAX_OBJECTS) if present[i, j])
        rel = RELATIONS[relation[i]] if relation[i] >= 0 else None
        prompts.append(Prompt(KINDS[kind[i]], objects, rel))
    return prompts


def _attrs(kind, cells, col, shp, obj_size, present, centers) -> dict[str, torch.Tensor]:
    n = len(kind)
    cell_colour = np.zeros((n, GRID * GRID), dtype=np.int64)
    cell_shape = np.zeros_like(cell_colour)
    cell_size = np.zeros_like(cell_colour)
    rows, slots = np.nonzero(present)
    cell_colour[rows, cells[rows, slots]] = col[rows, slots] + 1
    cell_shape[rows, cells[rows, slots]] = shp[rows, slots] + 1
    cell_size[rows, cells[rows, slots]] = obj_size[rows, slots] + 1
    centers = np.where(present[..., None], centers, np.nan).astype(np.float32)
    return {
        "cell_colour": torch.from_numpy(cell_colour),
        "cell_shape": torch.from_numpy(cell_shape),
        "cell_size": torch.from_numpy(cell_size),
        "count": torch.from_numpy(present.sum(axis=1).astype(np.int64)),
        "kind": torch.from_numpy(kind.astype(np.int64)),
        "centers": torch.from_numpy(centers),
        "slot_cell": torch.from_numpy(cells),
    }


def image_stream(batch_size: int, size: int = 32, seed: int = 0, **kwargs) -> Iterator[torch.Tensor]:
    """The images of :func:`stream`'s batches, ``b 3 size size`` each (a module-level function, so a
    data-loading worker process can be sent it: see ``genlib.train.prefetched``)."""
    for batch in stream(batch_size, size, seed, **kwargs):
        yield batch.images


def captioned_stream(batch_size: int, size: int = 32, seed: int = 0, **kwargs) -> Iterator[tuple[torch.Tensor, list[str]]]:
    """``(images, captions)`` of :func:`stream`'s batches (module level, like :func:`image_stream`)."""
    for batch in stream(batch_size, size, seed, **kwargs):
        yield batch.images, batch.captions


def stream(batch_size: int, size: int = 32, seed: int = 0, **kwargs) -> Iterator[ShapesBatch]:
    """An endless stream of fresh batches for training; batch ``i`` is ``sample(..., seed=(seed, i))``.

    Deterministic for ``seed``; two streams with different seeds never share a batch seed.
    """
    step = 0
    while True:
        sub = int(np.random.SeedSequence([seed, step]).generate_state(1)[0])
        yield sample(batch_size, size=size, seed=sub, **kwargs)
        step += 1
