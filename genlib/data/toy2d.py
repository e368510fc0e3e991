"""Toy 2-D worlds: point clouds small enough to see every sample at once.

The GAN chapter uses the ring and the grid of Gaussians to show mode collapse (a generator that
lands on 3 of 8 modes is obvious in a scatter plot); the VQ chapter quantises these points with a
2-D codebook; the sampler appendix draws DDPM and DDIM paths over the moons, the spiral, the swiss
roll and the checkerboard.

Every world is a function ``world(n, ..., seed=0) -> (x, y)``:

* ``x``: the points, float32, layout ``n d`` with ``d = 2``;
* ``y``: the ground truth of each point, layout ``n``: the index of the component a point was
  drawn from (int64: the mode of the ring or grid, the moon, the spiral arm, the checkerboard
  square) or, for the swiss roll, the position along the roll in ``[0, 1]`` (float32).

All worlds lie roughly in the square ``[-2, 2]^2`` (noise reaches a little past it), with a spread
of about 1 to 1.5 per axis, so one model configuration fits every world. The draws come from a
NumPy ``Generator(PCG64(seed))``: the same seed gives the same points.

:func:`sample` picks a world by name; :func:`mode_coverage` scores generated points against the
known centres of the ring or grid (how many modes a GAN covers, and how many of its samples are
close to any mode).
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass

import numpy as np
import torch

from . import _checks as check


def _out(x: np.ndarray, y: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Points as float32 ``n 2``; integer ground truth as int64, real ground truth as float32."""
    y_dtype = np.int64 if np.issubdtype(y.dtype, np.integer) else np.float32
    return torch.from_numpy(x.astype(np.float32)), torch.from_numpy(y.astype(y_dtype))


# ----------------------------------------------------------------------------- mixtures of Gaussians


def ring_centers(modes: int = 8, radius: float = 2.0) -> torch.Tensor:
    """The ``modes`` centres of the ring, evenly spaced on a circle: layout ``m 2``.

    Centre ``k`` sits at angle ``2 pi k / modes``, i.e. ``radius * (cos, sin)``; centre 0 is on the
    positive x axis.
    """
    modes = check.integer("modes", modes, minimum=1)
    radius = check.real("radius", radius, strict=True)
    angle = 2 * math.pi * torch.arange(modes, dtype=torch.float64) / modes
    return (radius * torch.stack([angle.cos(), angle.sin()], dim=1)).float()


def grid_centers(side: int = 5, spacing: float = 1.0) -> torch.Tensor:
    """The ``side * side`` centres of the grid, centred on the origin: layout ``(side side) 2``.

    Centre ``k = row * side + col`` sits at ``((col - (side - 1) / 2), (row - (side - 1) / 2))``
    times ``spacing``; with the defaults the centres are the integer points of ``[-2, 2]^2``.
    """
    side = check.integer("side", side, minimum=1)
    spacing = check.real("spacing", spacing, strict=True)
    axis = (torch.arange(side, dtype=torch.float64) - (side - 1) / 2) * spacing
    row, col = torch.meshgrid(axis, axis, indexing="ij")
    return torch.stack([col.reshape(-1), row.reshape(-1)], dim=1).float()


def _mixture(n: int, centers: torch.Tensor, std: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Equal-weight isotropic Gaussians around ``centers``: pick a mode, add ``std`` noise."""
    n = check.integer("n", n, minimum=0)
    std = check.real("std", std)
    gen = check.rng(seed)
    mode = gen.integers(0, centers.shape[0], size=n)
    x = centers.double().numpy()[mode] + std * gen.standard_normal((n, 2))
    return _out(x, mode)


def ring(n: int, modes: int = 8, radius: float = 2.0, std: float = 0.05, seed: int = 0):
    """A ring of ``modes`` Gaussians of standard deviation ``std`` (the GAN mode-collapse world).

    Returns ``(x, mode)``: points ``n 2`` and the index ``n`` of the centre each point was drawn
    around (see :func:`ring_centers`). Every mode has the same weight ``1 / modes``.
    """
    return _mixture(n, ring_centers(modes, radius), std, seed)


def grid(n: int, side: int = 5, spacing: float = 1.0, std: float = 0.05, seed: int = 0):
    """A ``side x side`` grid of Gaussians of standard deviation ``std`` (25 modes by default).

    Returns ``(x, mode)``: points ``n 2`` and the index ``n`` of the centre each point was drawn
    around (see :func:`grid_centers`). Every mode has the same weight.
    """
    return _mixture(n, grid_centers(side, spacing), std, seed)


# ----------------------------------------------------------------------------- curves and regions


def moons(n: int, noise: float = 0.1, seed: int = 0):
    """Two interleaved half circles, centred on the origin and scaled by 1.5.

    Moon 0 is the upper arc ``(cos a, sin a)``, moon 1 the lower arc ``(1 - cos a, 1/2 - sin a)``,
    ``a`` uniform in ``[0, pi]``; both are shifted by ``(-1/2, -1/4)``, scaled by 1.5, and get
    Gaussian noise of standard deviation ``noise``. Returns ``(x, moon)``: points ``n 2`` and the
    moon index ``n``.
    """
    n = check.integer("n", n, minimum=0)
    noise = check.real("noise", noise)
    gen = check.rng(seed)
    moon = gen.integers(0, 2, size=n)
    a = math.pi * gen.random(n)
    upper = np.stack([np.cos(a), np.sin(a)], axis=1)
    lower = np.stack([1 - np.cos(a), 0.5 - np.sin(a)], axis=1)
    x = np.where(moon[:, None] == 0, upper, lower)
    x = 1.5 * (x - np.array([0.5, 0.25])) + noise * gen.standard_normal((n, 2))
    return _out(x, moon)


def spiral(n: int, arms: int = 2, turns: float = 1.5, noise: float = 0.05, seed: int = 0):
    """``arms`` interleaved Archimedean spirals reaching radius 2.

    A point on arm ``k`` sits at radius ``r = 2 t`` and angle ``2 pi (turns t + k / arms)``, with
    ``t = sqrt(u)``, ``u`` uniform in ``[0, 1]`` (the square root spreads points evenly along the
    arm instead of crowding the centre), plus Gaussian noise of standard deviation ``noise``.
    Returns ``(x, arm)``: points ``n 2`` and the arm index ``n``.
    """
    n = check.integer("n", n, minimum=0)
    arms = check.integer("arms", arms, minimum=1)
    turns = check.real("turns", turns, strict=True)
    noise = check.real("noise", noise)
    gen = check.rng(seed)
    arm = gen.integers(0, arms, size=n)
    t = np.sqrt(gen.random(n))
    angle = 2 * math.pi * (turns * t + arm / arms)
    x = 2 * t[:, None] * np.stack([np.cos(angle), np.sin(angle)], axis=1)
    x = x + noise * gen.standard_normal((n, 2))
    return _out(x, arm)


def swiss_roll_2d(n: int, noise: float = 0.05, seed: int = 0):
    """The 2-D swiss roll of the diffusion literature, scaled to reach radius 2.

    With ``u`` uniform in ``[0, 1]`` and ``t = 1.5 pi (1 + 2 u)`` the point is ``t (cos t, sin t)``
    times ``2 / (4.5 pi)``, plus Gaussian noise of standard deviation ``noise``. Returns
    ``(x, u)``: points ``n 2`` and the position ``u`` along the roll (float32, 0 at the inner end),
    handy for colouring a scatter plot.
    """
    n = check.integer("n", n, minimum=0)
    noise = check.real("noise", noise)
    gen = check.rng(seed)
    u = gen.random(n)
    t = 1.5 * math.pi * (1 + 2 * u)
    x = (2 / (4.5 * math.pi)) * t[:, None] * np.stack([np.cos(t), np.sin(t)], axis=1)
    x = x + noise * gen.standard_normal((n, 2))
    return _out(x, u)


def checkerboard(n: int, squares: int = 4, seed: int = 0):
    """Uniform points on the dark squares of a ``squares x squares`` board covering ``[-2, 2]^2``.

    Square ``(row, col)`` spans ``x`` in ``[-2 + col w, -2 + (col + 1) w]`` and ``y`` likewise with
    ``row``, ``w = 4 / squares``; it is dark when ``row + col`` is even. Each point picks a dark
    square uniformly, then a uniform position inside it. Returns ``(x, square)``: points ``n 2``
    and the square index ``row * squares + col``. No noise: the edges are sharp on purpose.
    """
    n = check.integer("n", n, minimum=0)
    squares = check.integer("squares", squares, minimum=2)
    gen = check.rng(seed)
    rows, cols = np.divmod(np.arange(squares * squares), squares)
    dark = np.flatnonzero((rows + cols) % 2 == 0)
    square = dark[gen.integers(0, dark.size, size=n)]
    row, col = np.divmod(square, squares)
    w = 4.0 / squares
    x = np.stack([col, row], axis=1) * w - 2.0 + w * gen.random((n, 2))
    return _out(x, square)


# ----------------------------------------------------------------------------- dispatcher

WORLDS = {
    "ring": ring,
    "grid": grid,
    "moons": moons,
    "spiral": spiral,
    "swiss_roll_2d": swiss_roll_2d,
    "checkerboard": checkerboard,
}


def sample(name: str, n: int, seed: int = 0, **kw):
    """Draw ``n`` points from the world called ``name``: ``sample("ring", 512, modes=8)``.

    Keyword arguments go to the world's function (see :data:`WORLDS` for the names). Returns
    ``(x, y)`` as that function does.
    """
    world = WORLDS.get(name) if isinstance(name, str) else None
    if world is None:
        raise ValueError(f"unknown toy world {name!r}; known worlds: {', '.join(WORLDS)}")
    params = [p for p in inspect.signature(world).parameters if p not in ("n", "seed")]
    unknown = sorted(set(kw) - set(params))
    if unknown:
        raise ValueError(
            f"toy world {name!r} takes {', '.join(params) or 'no options'}; got unknown {', '.join(unknown)}"
        )
    return world(n, seed=seed, **kw)


# ----------------------------------------------------------------------------- scoring against modes


def nearest_mode(points: torch.Tensor, centers: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Index and distance of the nearest centre for each point.

    ``points`` is ``n d``, ``centers`` is ``m d``; returns ``(index, distance)``, both ``n``.
    """
    for name, t, layout in (("points", points, "n d"), ("centers", centers, "m d")):
        if not isinstance(t, torch.Tensor) or t.ndim != 2:
            shape = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
            raise ValueError(f"{name} must be a tensor laid out '{layout}' (rank 2), got {shape}")
    if points.shape[1] != centers.shape[1] or centers.shape[0] == 0:
        raise ValueError(
            f"points 'n d' and centers 'm d' need the same d and m >= 1; "
            f"got points {tuple(points.shape)}, centers {tuple(centers.shape)}"
        )
    dist = torch.cdist(points.double(), centers.double().to(points.device))
    distance, index = dist.min(dim=1)
    return index, distance.to(points.dtype if points.is_floating_point() else torch.float32)


@dataclass(frozen=True)
class Coverage:
    """How well a set of points covers the modes of a Gaussian mixture.

    * ``counts``: high-quality points per mode, layout ``m`` (int64);
    * ``covered``: ``counts >= min_count`` per mode, layout ``m`` (bool);
    * ``modes_covered``: how many modes are covered;
    * ``high_quality``: fraction of all points that are high quality;
    * ``nearest``: the nearest centre of every point, layout ``n``.
    """

    counts: torch.Tensor
    covered: torch.Tensor
    modes_covered: int
    high_quality: float
    nearest: torch.Tensor


def mode_coverage(
    points: torch.Tensor, centers: torch.Tensor, std: float, k: float = 3.0, min_count: int = 1
) -> Coverage:
    """Score generated points against the true centres of the ring or grid.

    The usual GAN mode-collapse protocol: a point is *high quality* when it lies within ``k``
    standard deviations (``k * std``) of its nearest centre; a mode is *covered* when at least
    ``min_count`` high-quality points fall on it. A collapsed generator covers few modes; a blurry
    one covers many but has a low high-quality fraction.

    ``points`` is ``n 2`` (any ``n d`` works), ``centers`` is ``m d`` (e.g. :func:`ring_centers`),
    ``std`` the standard deviation the world was drawn with.
    """
    std = check.real("std", std, strict=True)
    k = check.real("k", k, strict=True)
    min_count = check.integer("min_count", min_count, minimum=1)
    index, distance = nearest_mode(points, centers)
    good = distance <= k * std
    counts = torch.bincount(index[good].cpu(), minlength=centers.shape[0])
    covered = counts >= min_count
    return Coverage(
        counts=counts,
        covered=covered,
        modes_covered=int(covered.sum()),
        high_quality=float(good.float().mean()) if len(good) else 0.0,
        nearest=index,
    )
