"""Moving shapes: short clips of one or two shapes sliding across the frame and bouncing off walls.

Each object moves along one axis (left, right, up or down) at a constant speed; when it reaches a
wall it bounces back, so its direction can flip inside a clip. The caption names each object and
its direction in the first frame ("a red circle moving right and a blue square moving up"); the
attributes give every frame's centres and directions, which the VQ-VAE chapter uses as actions.

Clips are ``b t c h w`` float32 in [-1, 1], like images with a time axis after the batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from einops import rearrange

from .render import COLOURS, SHAPES, render_objects
from .shapes import OBJECT_SIZES, SIZES

DIRECTIONS: tuple[str, ...] = ("left", "right", "up", "down")
UNIT_MOVES = np.array([[-1.0, 0.0], [1.0, 0.0], [0.0, -1.0], [0.0, 1.0]])  # (dx, dy) of DIRECTIONS; image y points down
RADIUS = {"small": 0.09, "large": 0.13}  # object radius as a fraction of the frame side
SPEED = (0.04, 0.10)  # pixels per frame, as fractions of the frame side (uniform range)


@dataclass
class MovingBatch:
    """A batch of clips.

    Attributes:
        videos: ``b t 3 h w`` float32 in [-1, 1].
        captions: one caption per clip, naming each object's direction in the first frame.
        attrs: ``colour``, ``shape``, ``size`` (``b k``, long; index into ``COLOURS``, ``SHAPES``,
            ``OBJECT_SIZES``; -1 in empty slots), ``present`` (``b k`` bool), ``centers``
            (``b t k 2`` float, (x, y) as fractions of the side), ``direction`` (``b t k`` long,
            index into ``DIRECTIONS``, -1 in empty slots).
    """

    videos: torch.Tensor
    captions: list[str]
    attrs: dict[str, torch.Tensor]

    def __len__(self) -> int:
        return self.videos.shape[0]


def _direction_of(velocity: np.ndarray) -> np.ndarray:
    """Index into DIRECTIONS of axis-aligned velocities ``... 2``."""
    return np.argmax(np.einsum("...i,di->...d", velocity, UNIT_MOVES), axis=-1)


def sample(n: int, frames: int = 8, size: int = 32, seed: int = 0, max_objects: int = 2) -> MovingBatch:
    """Draw ``n`` clips of ``frames`` frames at ``size`` x ``size`` pixels.

    Deterministic for ``seed``. Each clip holds 1 to ``max_objects`` (at most 3) objects of
    different colours.
    """
    if not isinstance(n, (int, np.integer)) or n < 0:
        raise ValueError(f"n must be a non-negative integer, got {n!r}")
    if size not in SIZES:
        raise ValueError(f"size must be one of {', '.join(map(str, SIZES))} pixels, got {size!r}")
    if not isinstance(frames, (int, np.integer)) or frames < 1:
        raise ValueError(f"frames must be a positive integer, got {frames!r}")
    if max_objects not in (1, 2, 3):
        raise ValueError(f"max_objects must be 1, 2 or 3, got {max_objects!r}")

    rng = np.random.Generator(np.random.PCG64(seed))
    k = max_objects
    count = rng.integers(1, k + 1, size=n)
    present = np.arange(k)[None, :] < count[:, None]
    colour = np.argsort(rng.random((n, len(COLOURS))), axis=1)[:, :k]  # distinct colours per clip
    shape = rng.integers(len(SHAPES), size=(n, k))
    obj_size = rng.integers(len(OBJECT_SIZES), size=(n, k))
    radius = np.asarray([RADIUS[s] for s in OBJECT_SIZES])[obj_size] * size
    direction = rng.integers(len(DIRECTIONS), size=(n, k))
    speed = rng.uniform(*SPEED, size=(n, k)) * size
    lo, hi = radius, size - radius
    pos = lo[..., None] + rng.random((n, k, 2)) * (hi - lo)[..., None]
    vel = UNIT_MOVES[direction] * speed[..., None]

    centers = np.empty((n, frames, k, 2))
    velocities = np.empty((n, frames, k, 2))
    for f in range(frames):
        centers[:, f], velocities[:, f] = pos, vel
        pos = pos + vel
        # Bounce: reflect the position about the wall it crossed and flip that velocity component.
        below, above = pos < lo[..., None], pos > hi[..., None]
        pos = np.where(below, 2 * lo[..., None] - pos, np.where(above, 2 * hi[..., None] - pos, pos))
        vel = np.where(below | above, -vel, vel)

    frame_dir = _direction_of(velocities)
    flat = lambda a: rearrange(np.broadcast_to(a[:, None], (n, frames) + a.shape[1:]), "b t ... -> (b t) ...")
    images = render_objects(
        rearrange(centers, "b t k xy -> (b t) k xy"), flat(radius), flat(shape), flat(colour), flat(present), size
    )
    videos = rearrange(images, "(b t) c h w -> b t c h w", t=frames)

    captions = []
    for i in range(n):
        parts = [
            f"a {COLOURS[colour[i, j]]} {SHAPES[shape[i, j]]} moving {DIRECTIONS[frame_dir[i, 0, j]]}"
            for j in range(k)
            if present[i, j]
        ]
        captions.append(" and ".join(parts))

    empty = ~present
    attrs = {
        "colour": torch.from_numpy(np.where(empty, -1, colour)),
        "shape": torch.from_numpy(np.where(empty, -1, shape)),
        "size": torch.from_numpy(np.where(empty, -1, obj_size)),
        "present": torch.from_numpy(present),
        "centers": torch.from_numpy((centers / size).astype(np.float32)),
        "direction": torch.from_numpy(np.where(empty[:, None, :], -1, frame_dir)),
    }
    return MovingBatch(videos, captions, attrs)
