"""Loaders for a reader's own data: a folder of images, or an ``.npz`` file of arrays.

Both return float32 images laid out ``b c h w`` with values in ``[-1, 1]``, the convention of every
data world in the book, so a reader's own pictures drop into any chapter in place of ``shapes``
or ``digits``.

**Folders** (:func:`load_folder`): files ending ``.png``, ``.jpg``, ``.jpeg``, ``.bmp`` or
``.webp`` (any case), read with PIL in sorted name order. Each image is turned upright by its EXIF
orientation, converted to RGB (``channels=3``; an alpha channel is dropped) or greyscale ``L``
(``channels=1``), **centre-cropped to a square** (the largest square in the middle, so nothing is
squashed) and resized to ``size x size`` with PIL's bicubic filter (antialiased when shrinking).

**npz files** (:func:`load_npz`, :func:`save_npz`). The images may be stored as

* ``uint8`` (or another integer type with values in 0..255): ``0 -> -1``, ``255 -> +1``;
* floats in ``[0, 1]``: mapped by ``2 x - 1``;
* floats in ``[-1, 1]``: kept. A float array with **any negative value** is read as ``[-1, 1]``,
  one with none as ``[0, 1]``; pass ``value_range=(lo, hi)`` to say it yourself;

in one of the layouts ``b h w`` (greyscale), ``b h w c`` or ``b c h w`` with ``c`` in {1, 3}. The
layout is inferred by this rule: rank 3 is ``b h w``; at rank 4 the channel axis is whichever of
axis 1 and axis 3 has size 1 or 3. When both could be (a ``b 3 h 3`` array) or a rank-3 array
looks like a single ``h w c`` image, pass ``layout=`` instead of guessing. An optional array
``labels`` (one entry per image) comes back as the second result.
"""

from __future__ import annotations

import zipfile
import zlib
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from . import _checks as check

EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
LAYOUTS = ("b h w", "b h w c", "b c h w")
CHANNELS = (1, 3)
_META = ("layout", "value_range")  # written by save_npz beside the images
_TOLERANCE = 1e-3  # float images may overshoot their range by this much (resampling ringing)
_NPZ_ERRORS = (zipfile.BadZipFile, zlib.error, ValueError, OSError, EOFError, KeyError)


# ----------------------------------------------------------------------------- folders of images


def _image_files(folder: Path, recursive: bool) -> list[Path]:
    """The image files under ``folder``, sorted by their path relative to it."""
    if not folder.exists():
        raise FileNotFoundError(f"no such folder: {folder}")
    if not folder.is_dir():
        raise NotADirectoryError(f"{folder} is a file; load_folder expects a folder of images")
    found = folder.rglob("*") if recursive else folder.iterdir()
    files = [p for p in found if p.is_file()]
    images = [p for p in files if p.suffix.lower() in EXTENSIONS]
    images.sort(key=lambda p: p.relative_to(folder).as_posix())
    if not images:
        others = f"; it holds {len(files)} other file(s), e.g. {files[0].name}" if files else ""
        raise ValueError(
            f"no images found in {folder} (looked for {', '.join(EXTENSIONS)}"
            f"{', in subfolders too' if recursive else ''}){others}"
        )
    return images


def _read_image(path: Path, channels: int, size: int | None) -> np.ndarray:
    """One image file as uint8 ``h w c``: upright, RGB or L, centre-cropped and resized."""
    from PIL import Image, ImageOps

    try:
        with Image.open(path) as img:
            img = ImageOps.exif_transpose(img).convert("RGB" if channels == 3 else "L")
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise ValueError(f"cannot read image file {path}: {e}") from e
    if size is not None:
        w, h = img.size
        side = min(w, h)
        left, top = (w - side) // 2, (h - side) // 2
        img = img.crop((left, top, left + side, top + side))
        if side != size:
            img = img.resize((size, size), Image.Resampling.BICUBIC)
    array = np.asarray(img, dtype=np.uint8)
    return array[:, :, None] if array.ndim == 2 else array


def load_folder(
    path: str | Path,
    size: int | None = 32,
    channels: int = 3,
    limit: int | None = None,
    recursive: bool = False,
) -> torch.Tensor:
    """Read a folder of images as ``b c size size`` in ``[-1, 1]`` (``c`` = ``channels``).

    * ``size``: side of the square output; each image is centre-cropped to a square and resized
      (see the module notes). ``None`` keeps every image as it is; they must then share a size.
    * ``channels``: 3 for RGB, 1 for greyscale.
    * ``limit``: read only the first ``limit`` files in sorted order.
    * ``recursive``: also look in subfolders (sorted by relative path).

    Raises ``FileNotFoundError`` for a missing folder and ``ValueError`` for a folder without
    images or a file PIL cannot read (naming the file).
    """
    if size is not None:
        size = check.integer("size", size, minimum=1)
    if channels not in CHANNELS or isinstance(channels, bool):
        raise ValueError(f"channels must be 1 (greyscale) or 3 (RGB); got {channels!r}")
    files = _image_files(Path(path), recursive)
    if limit is not None:
        files = files[: check.integer("limit", limit, minimum=1)]
    arrays = [_read_image(p, channels, size) for p in files]
    for p, a in zip(files, arrays):
        if a.shape != arrays[0].shape:
            raise ValueError(
                f"with size=None all images must share one size, but {files[0].name} is "
                f"{arrays[0].shape[1]}x{arrays[0].shape[0]} and {p.name} is {a.shape[1]}x{a.shape[0]}; "
                f"pass size= to crop and resize them"
            )
    stack = np.stack(arrays)  # b h w c
    return check.to_signed(stack, 255.0).permute(0, 3, 1, 2).contiguous()  # -> b c h w


# ----------------------------------------------------------------------------- npz files


def infer_layout(shape: tuple[int, ...]) -> str:
    """The layout :func:`load_npz` assumes for an array of this ``shape`` (see the module notes)."""
    shape = tuple(shape)
    if len(shape) == 3:
        if shape[2] in CHANNELS:
            raise ValueError(
                f"an array of shape {shape} could be b h w (greyscale) or a single h w c image; "
                f"pass layout='b h w', or add a batch axis to a single image"
            )
        return "b h w"
    if len(shape) == 4:
        first, last = shape[1] in CHANNELS, shape[3] in CHANNELS
        if first and last:
            raise ValueError(
                f"cannot tell the channel axis of shape {shape}: axis 1 and axis 3 both have size 1 or 3; "
                f"pass layout='b c h w' or layout='b h w c'"
            )
        if first or last:
            return "b c h w" if first else "b h w c"
        raise ValueError(
            f"no channel axis of size 1 or 3 in shape {shape}: expected b h w c or b c h w with c in {{1, 3}} "
            f"(drop an alpha channel first)"
        )
    raise ValueError(
        f"images must have rank 3 (b h w) or 4 (b h w c, b c h w); got rank {len(shape)} with shape {shape}"
    )


def _to_bchw(array: np.ndarray, layout: str | None) -> np.ndarray:
    """Rearrange ``array`` from ``layout`` (inferred when None) to ``b c h w``."""
    if layout is None:
        layout = infer_layout(array.shape)
    layout = check.choice("layout", layout, LAYOUTS)
    rank = len(layout.split())
    if array.ndim != rank:
        raise ValueError(f"layout {layout!r} needs rank {rank}; the array has shape {array.shape}")
    if layout == "b h w":
        array = array[:, None]
    elif layout == "b h w c":
        array = array.transpose(0, 3, 1, 2)
    if array.shape[1] not in CHANNELS:
        raise ValueError(f"images need 1 or 3 channels in layout {layout!r}; got shape {array.shape}")
    return array


def _scale(array: np.ndarray, value_range, where: str) -> torch.Tensor:
    """Map stored pixel values onto float32 ``[-1, 1]`` by the rule in the module notes."""
    if not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
        raise ValueError(f"{where} has dtype {array.dtype}; expected uint8 or float images")
    lo_seen, hi_seen = float(array.min()), float(array.max())  # NaN or inf shows up here
    if not (np.isfinite(lo_seen) and np.isfinite(hi_seen)):
        raise ValueError(f"{where} holds NaN or infinite values")
    if value_range is not None:
        lo, hi = (float(v) for v in value_range)
        if not hi > lo:
            raise ValueError(f"value_range must be (lo, hi) with hi > lo; got {value_range!r}")
    elif np.issubdtype(array.dtype, np.integer):
        lo, hi = 0.0, 255.0
    elif lo_seen < 0:
        lo, hi = -1.0, 1.0
    else:
        lo, hi = 0.0, 1.0
    tol = _TOLERANCE * (hi - lo) / 2
    if lo_seen < lo - tol or hi_seen > hi + tol:
        raise ValueError(
            f"{where} has values in [{lo_seen:g}, {hi_seen:g}], outside the range [{lo:g}, {hi:g}] assumed "
            f"for it; store uint8 0..255 or floats in [0, 1] or [-1, 1], or pass value_range=(lo, hi)"
        )
    return check.to_signed(array, hi, bottom=lo)


def _resize(images: torch.Tensor, size: int) -> torch.Tensor:
    """Centre-crop ``b c h w`` to a square, then resize to ``size`` (bilinear, antialiased)."""
    h, w = images.shape[-2:]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    images = images[:, :, top : top + side, left : left + side]
    if side == size:
        return images.contiguous()
    out = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return out.clamp_(-1.0, 1.0)


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    """Every array of an ``.npz`` (or a single ``.npy``, under the name ``images``)."""
    if not path.exists():
        raise FileNotFoundError(f"no such file: {path}")
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a folder; load_npz expects an .npz file (use load_folder)")
    try:
        loaded = np.load(path, allow_pickle=False)
        if isinstance(loaded, np.ndarray):
            return {"images": loaded}
        with loaded:
            return {name: loaded[name] for name in loaded.files}
    except _NPZ_ERRORS as e:
        reason = str(e)
        if isinstance(e, ValueError) and "pickle" in reason:
            reason = "its bytes are neither a zip archive nor a .npy array"
        raise ValueError(
            f"{path} is not a valid .npz file (a zip archive of arrays written by numpy.savez); "
            f"it may be truncated or corrupt: {reason}"
        ) from e


def load_npz(
    path: str | Path,
    key: str | None = None,
    size: int | None = None,
    layout: str | None = None,
    value_range: tuple[float, float] | None = None,
    labels_key: str = "labels",
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Read images (and labels) from an ``.npz``: returns ``(images b c h w in [-1, 1], labels)``.

    * ``key``: the array holding the images. By default ``images`` if present, else the only
      array that is not ``labels``; with several candidates the error lists them.
    * ``size``: ``None`` keeps the stored size; an int centre-crops to a square and resizes to
      ``size x size`` (bilinear, antialiased).
    * ``layout``: ``"b h w"``, ``"b h w c"`` or ``"b c h w"``; ``None`` infers it (module notes).
    * ``value_range``: ``(lo, hi)`` of the stored values; ``None`` detects it (module notes).
    * ``labels_key``: the array of labels, ``b ...``; ``None`` is returned when it is absent.
      Integer labels come back as int64, float labels as float32.

    Files written by :func:`save_npz` carry their layout and range, so they read back exactly.
    """
    path = Path(path)
    arrays = _read_npz(path)
    candidates = [k for k in arrays if k not in (labels_key, *_META)]
    if key is None:
        if "images" in arrays:
            key = "images"
        elif len(candidates) == 1:
            key = candidates[0]
        else:
            raise ValueError(
                f"{path} holds arrays {', '.join(arrays) or '(none)'}; pass key= naming the one with the images"
            )
    elif key not in arrays:
        raise ValueError(f"{path} has no array {key!r}; it holds: {', '.join(arrays) or '(none)'}")
    array = arrays[key]
    where = f"array {key!r} in {path}"
    if key == "images":  # metadata written by save_npz describes the 'images' array
        if layout is None and "layout" in arrays:
            layout = str(arrays["layout"])
        if value_range is None and "value_range" in arrays:
            value_range = tuple(arrays["value_range"].tolist())
    if array.ndim == 0 or array.shape[0] == 0:
        raise ValueError(f"{where} holds no images (shape {array.shape})")
    try:
        bchw = _to_bchw(array, layout)
    except ValueError as e:
        raise ValueError(f"{where}: {e}") from None
    images = _scale(bchw, value_range, where)
    if size is not None:
        images = _resize(images, check.integer("size", size, minimum=1))

    labels = arrays.get(labels_key)
    if labels is not None:
        if labels.ndim == 0 or labels.shape[0] != images.shape[0]:
            raise ValueError(
                f"array {labels_key!r} in {path} must have one entry per image ({images.shape[0]}); "
                f"got shape {labels.shape}"
            )
        if np.issubdtype(labels.dtype, np.integer) or labels.dtype == np.bool_:
            labels = torch.from_numpy(labels.astype(np.int64))
        elif np.issubdtype(labels.dtype, np.floating):
            labels = torch.from_numpy(labels.astype(np.float32))
        else:
            raise ValueError(f"array {labels_key!r} in {path} has dtype {labels.dtype}; expected numbers")
    return images, labels


def save_npz(
    path: str | Path, images: torch.Tensor, labels: torch.Tensor | None = None, dtype: str = "uint8"
) -> Path:
    """Write images ``b c h w`` in ``[-1, 1]`` (and labels ``b ...``) to a compressed ``.npz``.

    The file holds ``images`` in layout ``b h w c`` (the layout most other tools expect),
    ``labels`` if given, and two small arrays ``layout`` and ``value_range`` that let
    :func:`load_npz` read it back without guessing.

    * ``dtype="uint8"``: pixels ``round((x + 1) * 127.5)``, 4x smaller; a round trip is off by at
      most ``1/255``.
    * ``dtype="float32"``: the values as they are; a round trip is exact.

    Returns the path written (numpy adds ``.npz`` when the name lacks it).
    """
    dtype = check.choice("dtype", dtype, ("uint8", "float32"))
    if isinstance(images, np.ndarray):
        images = torch.from_numpy(images)
    x = check.images(images, "images", channels=CHANNELS).detach().cpu().float()
    if x.shape[0] == 0:
        raise ValueError("images holds no images (b = 0)")
    lo, hi = float(x.min()), float(x.max())
    if not (np.isfinite(lo) and np.isfinite(hi)) or lo < -1 - _TOLERANCE or hi > 1 + _TOLERANCE:
        raise ValueError(f"images must lie in [-1, 1]; got values in [{lo:g}, {hi:g}]")
    x = x.clamp(-1.0, 1.0).permute(0, 2, 3, 1).numpy()  # b c h w -> b h w c
    if dtype == "uint8":
        stored, value_range = np.round((x + 1.0) * 127.5).astype(np.uint8), np.array([0.0, 255.0])
    else:
        stored, value_range = x.astype(np.float32), np.array([-1.0, 1.0])
    arrays = {"images": stored, "layout": np.array("b h w c"), "value_range": value_range}
    if labels is not None:
        labels = labels.detach().cpu().numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
        if labels.ndim == 0 or labels.shape[0] != stored.shape[0] or labels.dtype == object:
            raise ValueError(
                f"labels must be numbers with one entry per image ({stored.shape[0]}); "
                f"got shape {labels.shape}, dtype {labels.dtype}"
            )
        arrays["labels"] = labels
    path = Path(path)
    if path.suffix != ".npz":
        path = path.with_name(path.name + ".npz")
    np.savez_compressed(path, **arrays)
    return path
