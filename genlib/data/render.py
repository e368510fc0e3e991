"""Drawing flat-coloured shapes with signed distance functions, for a whole batch at once.

Every shape is a signed distance function (SDF): negative inside, positive outside, in pixels.
A pixel's coverage is ``clip(0.5 - sdf, 0, 1)``, so edges get one pixel of anti-aliasing and a
batch of thousands of 32x32 images renders in a few vectorised NumPy passes (no Python loop over
images). The shapes world (:mod:`genlib.data.shapes`) and moving shapes
(:mod:`genlib.data.moving`) both draw through :func:`render_objects`.
"""

from __future__ import annotations

import numpy as np
import torch

#: Named palette, RGB in [0, 1]. Hues far apart so a 16x16 image still tells them apart.
PALETTE: dict[str, tuple[float, float, float]] = {
    "red": (0.92, 0.16, 0.14),
    "green": (0.18, 0.78, 0.22),
    "blue": (0.20, 0.36, 0.98),
    "yellow": (0.96, 0.86, 0.12),
    "purple": (0.66, 0.26, 0.88),
    "cyan": (0.10, 0.82, 0.86),
}
COLOURS: tuple[str, ...] = tuple(PALETTE)
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "cross")
BACKGROUND = (0.0, 0.0, 0.0)


def _sdf_circle(dx, dy, r):
    return np.sqrt(dx * dx + dy * dy) - r


def _sdf_square(dx, dy, r):
    # A square with half-side 0.85 r has about the area of a circle of radius r.
    return np.maximum(np.abs(dx), np.abs(dy)) - 0.85 * r


def _sdf_triangle(dx, dy, r):
    # Upward isosceles triangle, apex at (0, -r), base at dy = 0.8 r (image y points down).
    # A convex polygon's SDF inside is the largest signed distance to its edge lines; outside that
    # is a close under-estimate near the edges, which is all one pixel of anti-aliasing needs.
    base = dy - 0.8 * r
    # Side edges through the apex (0, -r) and (+-r, 0.8 r); outward normals (+-1.8, -1)/|.|.
    n = 1.0 / np.sqrt(1.8**2 + 1.0)
    right = (1.8 * dx - (dy + r)) * n
    left = (-1.8 * dx - (dy + r)) * n
    return np.maximum(base, np.maximum(left, right))


def _sdf_cross(dx, dy, r):
    # A plus sign: the union (min) of a wide and a tall bar.
    adx, ady = np.abs(dx), np.abs(dy)
    wide = np.maximum(adx - r, ady - 0.36 * r)
    tall = np.maximum(adx - 0.36 * r, ady - r)
    return np.minimum(wide, tall)


_SDFS = (_sdf_circle, _sdf_square, _sdf_triangle, _sdf_cross)


def render_objects(
    centers: np.ndarray,
    radii: np.ndarray,
    shape_ids: np.ndarray,
    colour_ids: np.ndarray,
    present: np.ndarray,
    size: int,
) -> torch.Tensor:
    """Draw up to ``k`` objects per image on a black background.

    Args:
        centers: ``b k 2`` float, (x, y) object centres in pixels (0 is the left/top edge).
        radii: ``b k`` float, object radius in pixels.
        shape_ids: ``b k`` int, index into :data:`SHAPES`.
        colour_ids: ``b k`` int, index into :data:`COLOURS`.
        present: ``b k`` bool, which slots hold an object (absent slots draw nothing).
        size: image side in pixels.

    Returns:
        ``b 3 size size`` float32 tensor in [-1, 1]. Later slots are drawn over earlier ones.
    """
    centers = np.asarray(centers, dtype=np.float32)
    if centers.ndim != 3 or centers.shape[-1] != 2:
        raise ValueError(f"centers must have layout 'b k 2', got shape {centers.shape}")
    b, k, _ = centers.shape
    for name, arr in (("radii", radii), ("shape_ids", shape_ids), ("colour_ids", colour_ids), ("present", present)):
        if np.shape(arr) != (b, k):
            raise ValueError(f"{name} must have layout 'b k' = {(b, k)}, got shape {np.shape(arr)}")
    radii = np.asarray(radii, dtype=np.float32)
    shape_ids = np.asarray(shape_ids)
    colour_ids = np.asarray(colour_ids)
    present = np.asarray(present, dtype=bool)
    palette = np.asarray([PALETTE[c] for c in COLOURS], dtype=np.float32)

    # Pixel centres sit at i + 0.5.
    coords = np.arange(size, dtype=np.float32) + 0.5
    img = np.empty((b, size, size, 3), dtype=np.float32)
    img[...] = np.asarray(BACKGROUND, dtype=np.float32)
    for slot in range(k):
        for sid, sdf_fn in enumerate(_SDFS):
            idx = np.nonzero(present[:, slot] & (shape_ids[:, slot] == sid))[0]
            if idx.size == 0:
                continue
            cx = centers[idx, slot, 0][:, None, None]
            cy = centers[idx, slot, 1][:, None, None]
            r = radii[idx, slot][:, None, None]
            dx = coords[None, None, :] - cx  # columns vary along x
            dy = coords[None, :, None] - cy  # rows vary along y
            cover = np.clip(0.5 - sdf_fn(dx, dy, r), 0.0, 1.0)[..., None]  # b h w 1
            colour = palette[colour_ids[idx, slot]][:, None, None, :]  # b 1 1 3
            img[idx] = img[idx] * (1.0 - cover) + colour * cover
    out = torch.from_numpy(img).permute(0, 3, 1, 2)  # b h w c -> b c h w
    return (out * 2.0 - 1.0).contiguous()


def colour_index(name: str) -> int:
    """Index of a palette colour, with an error listing the palette for unknown names."""
    try:
        return COLOURS.index(name)
    except ValueError:
        raise ValueError(f"unknown colour {name!r}; expected one of {', '.join(COLOURS)}") from None


def shape_index(name: str) -> int:
    """Index of a shape name, with an error listing the shapes for unknown names."""
    try:
        return SHAPES.index(name)
    except ValueError:
        raise ValueError(f"unknown shape {name!r}; expected one of {', '.join(SHAPES)}") from None
