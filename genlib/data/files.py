"""Loaders for a reader's own data: a folder of images, or an ``.npz`` file of arrays.

Both return float32 images laid out ``b c h w`` with values in ``[-1, 1]``, the convention of every
data world in the book, so a reader's own pictures drop into any chapter in place of ``shapes``
or ``digits``.

**Folders** (:func:`load_folder`): files ending ``.png``, ``.jpg``, ``.jpeg``, ``.bmp`` or
``.webp`` (any case), read with PIL in sorted name order, at 8 bits per channel. Each image is

1. checked, if it is a PNG, before PIL decodes it: every chunk's CRC must match and the
   compressed pixel data must inflate to exactly the bytes its header announces (PIL alone
   returns black rows for a short stream and never checks the pixel chunks' CRCs; the check
   lives in :mod:`genlib.data._png`);
2. turned upright by its EXIF orientation;
3. brought to 8 bits: a 16-bit greyscale value ``v`` becomes ``round(v / 257)`` (so
   ``65535 -> 255``; PIL's own conversion would clip everything above 255 to white); 16-bit
   colour PNGs PIL already reads at 8 bits (it keeps each value's high byte);
4. **composited over** ``background`` (black by default) if it has transparency (an alpha
   channel, a transparent palette entry or a transparent colour):
   ``out = alpha * colour + (1 - alpha) * background``;
5. converted to RGB (``channels=3``) or greyscale ``L`` (``channels=1``), **centre-cropped to a
   square** (the largest square in the middle, so nothing is squashed) and resized to
   ``size x size`` with PIL's bicubic filter (antialiased when shrinking).

**npz files** (:func:`load_npz`, :func:`save_npz`). The images may be stored as

* ``uint8``, or another integer type read as 0..255 (below): ``0 -> -1``, ``255 -> +1``;
* floats in ``[0, 1]``: mapped by ``2 x - 1``;
* floats in ``[-1, 1]``: kept;

in one of the layouts ``b h w`` (greyscale), ``b h w c`` or ``b c h w`` with ``c`` in {1, 3}. The
layout is inferred by this rule: rank 3 is ``b h w``; at rank 4 the channel axis is whichever of
axis 1 and axis 3 has size 1 or 3. When both could be (a ``b 3 h 3`` array) or a rank-3 array
looks like a single ``h w c`` image, pass ``layout=`` instead of guessing. An optional array
``labels`` (one entry per image) comes back as the second result.

*Which range an integer array is in*: ``uint8`` is always 0..255, since that is what 8-bit
pictures are stored as. Any other integer type (``int64``, ``uint16``, ...) is read as 0..255
only when all its values lie in 0..255 **and its maximum is above 127**; otherwise
:func:`load_npz` stops and asks for ``value_range=``: for values outside 0..255 (16-bit
pictures, signed data) and for a maximum of 127 or less. Why 127: the other scales that integer
images and masks come in are small (a 0/1 mask, scikit-learn's 0..16 digits, 0..100 percent,
0..127 for a non-negative ``int8``), and reading one of them as 0..255 would return nearly black
pictures without a word; a set of 8-bit pictures whose brightest pixel is darker than half grey
is rare, and for it the rule costs only a request. A scale whose top lies between 128 and 254
would be misread; pass ``value_range=`` for one.

*Which range a float array is in* is guessed only with a clear margin: ``[0, 1]`` when its
minimum is at least ``-0.0005`` (the tolerance for resampling ringing, below), ``[-1, 1]`` when
its minimum is below ``-0.25``. In between :func:`load_npz` stops and asks for
``value_range=(lo, hi)`` (which you can always pass to say it yourself). Why ``-0.25``:
unclamped ``[0, 1]`` pictures resampled by a common filter dip below 0 by up to about 7%
(bicubic) or 11% (Lanczos) of the range, while a set of ``[-1, 1]`` pictures whose darkest pixel
is lighter than 37.5% grey is rare; a wrong guess would silently halve or double the contrast.

*Arrays of Python objects* (``dtype object``, e.g. what ``np.savez`` makes of a list of pictures
of different sizes) are refused with their own message: reading them needs pickle, which can
run code, so ``allow_pickle`` stays off.
"""

from __future__ import annotations

import zipfile
import zlib
from numbers import Integral
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from . import _checks as check
from . import _png

EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
LAYOUTS = ("b h w", "b h w c", "b c h w")
CHANNELS = (1, 3)
_META = ("layout", "value_range")  # written by save_npz beside the images
_TOLERANCE = 1e-3  # float images may overshoot their range by this much (resampling ringing)
_CLEARLY_NEGATIVE = -0.25  # a float minimum below this reads as [-1, 1] (module notes)
_INTEGER_GUESS_ABOVE = 127  # integers other than uint8 read as 0..255 only with a larger maximum (module notes)
_NPZ_ERRORS = (zipfile.BadZipFile, zlib.error, ValueError, OSError, EOFError, KeyError)
_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")  # PIL modes that carry an alpha channel
_SIXTEEN_BIT = ("I;16", "I;16B", "I;16L", "I;16N", "I")  # PIL's modes for 16-bit greyscale


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


def _background(value: object) -> tuple[int, int, int]:
    """``value`` as ``(r, g, b)``: a PIL colour name (``"black"``, ``"white"``, ``"#808080"``) or a triple."""
    from PIL import ImageColor

    rgb = None
    if isinstance(value, str):
        try:
            rgb = ImageColor.getrgb(value)
        except ValueError:
            pass
    elif isinstance(value, (tuple, list)):
        rgb = tuple(value)
    if (
        rgb is not None
        and len(rgb) == 3
        and all(isinstance(v, Integral) and not isinstance(v, bool) and 0 <= v <= 255 for v in rgb)
    ):
        return tuple(int(v) for v in rgb)
    raise ValueError(
        f"background must be a colour name such as 'black' or 'white', or an (r, g, b) tuple of "
        f"integers in 0..255; got {value!r}"
    )


def _eight_bit(img):
    """A 16-bit greyscale image at 8 bits, ``v -> round(v / 257)``; a transparent value becomes alpha."""
    from PIL import Image

    if img.mode not in _SIXTEEN_BIT:
        return img
    values = np.asarray(img)
    if values.min() < 0 or values.max() > 65535:
        raise ValueError(
            f"a {img.mode} image holds values in [{values.min()}, {values.max()}]; expected 16-bit 0..65535"
        )
    grey = Image.fromarray(np.round(values / 257).astype(np.uint8))  # 65535 / 255 = 257 exactly
    transparent = img.info.get("transparency")  # PNG tRNS: one grey value that is transparent
    if isinstance(transparent, int):
        alpha = Image.fromarray(np.where(values == transparent, 0, 255).astype(np.uint8))
        return Image.merge("LA", (grey, alpha))
    return grey


def _composite(img, background: tuple[int, int, int], mode: str):
    """``img`` in ``mode`` (RGB or L), its transparent pixels blended over ``background``.

    ``out = alpha * colour + (1 - alpha) * background`` (Porter-Duff *over*, PIL's ``alpha_composite``).
    """
    from PIL import Image

    if img.mode in _ALPHA_MODES or "transparency" in img.info:
        rgba = img.convert("RGBA")
        img = Image.alpha_composite(Image.new("RGBA", rgba.size, (*background, 255)), rgba)
    return img.convert(mode)


def _read_image(path: Path, channels: int, size: int | None, background: tuple[int, int, int]) -> np.ndarray:
    """One image file as uint8 ``h w c``: checked, upright, 8-bit, composited, RGB or L, cropped and resized."""
    from PIL import Image, ImageOps

    try:
        with Image.open(path) as img:  # reads the header only
            if img.format == "PNG":
                _png.verify(path)
            img = _eight_bit(ImageOps.exif_transpose(img))
            img = _composite(img, background, "RGB" if channels == 3 else "L")
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
    background: str | tuple[int, int, int] = "black",
) -> torch.Tensor:
    """Read a folder of images as ``b c size size`` in ``[-1, 1]`` (``c`` = ``channels``).

    * ``size``: side of the square output; each image is centre-cropped to a square and resized
      (see the module notes). ``None`` keeps every image as it is; they must then share a size.
    * ``channels``: 3 for RGB, 1 for greyscale.
    * ``limit``: read only the first ``limit`` files in sorted order.
    * ``recursive``: also look in subfolders (sorted by relative path).
    * ``background``: the colour transparent pixels are composited over, a PIL colour name
      (``"black"``, ``"white"``, ``"#808080"``) or ``(r, g, b)`` in 0..255. Black by default: the
      book's worlds draw on black (``-1``), so a transparent sprite reads like a shape of ``shapes``.

    Raises ``FileNotFoundError`` for a missing folder and ``ValueError`` for a folder without
    images or a file that cannot be read or is damaged (naming the file).
    """
    if size is not None:
        size = check.integer("size", size, minimum=1)
    if channels not in CHANNELS or isinstance(channels, bool):
        raise ValueError(f"channels must be 1 (greyscale) or 3 (RGB); got {channels!r}")
    background = _background(background)
    files = _image_files(Path(path), recursive)
    if limit is not None:
        files = files[: check.integer("limit", limit, minimum=1)]
    arrays = [_read_image(p, channels, size, background) for p in files]
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


def _value_range(value_range: object) -> tuple[float, float]:
    """``value_range`` checked to be ``(lo, hi)``: two finite numbers with ``hi > lo``."""
    try:
        lo, hi = (float(v) for v in value_range)  # wrong length, a scalar or a non-number fails here
        valid = not isinstance(value_range, str) and np.isfinite(lo) and np.isfinite(hi) and hi > lo
    except (TypeError, ValueError):
        valid = False
    if not valid:
        raise ValueError(
            f"value_range must be a pair (lo, hi) of finite numbers with hi > lo, such as (0, 255) "
            f"or (-1, 1); got {value_range!r}"
        )
    return lo, hi


def _integer_range(dtype: np.dtype, lo_seen: int, hi_seen: int, where: str) -> tuple[float, float]:
    """``(0, 255)`` for integer pixels that are 8-bit by the rule in the module notes; else a
    ``ValueError`` asking for ``value_range``."""
    if dtype == np.uint8:
        return 0.0, 255.0
    values = f"{where} holds {dtype} values in [{lo_seen}, {hi_seen}]"
    if lo_seen < 0 or hi_seen > 255:
        raise ValueError(
            f"{values}, outside 0..255, so they are not 8-bit pixels; pass value_range=(lo, hi), the range "
            f"they are stored in, e.g. value_range=(0, 65535) for 16-bit pictures"
        )
    if hi_seen <= _INTEGER_GUESS_ABOVE:
        own_scale = f"value_range=(0, {hi_seen}) if {hi_seen} is full brightness, or " if hi_seen > 0 else ""
        raise ValueError(
            f"{values}: integers other than uint8 are read as 0..255 only when their maximum is above "
            f"{_INTEGER_GUESS_ABOVE}, since a smaller one could be another scale (0..16 digits, a 0/1 mask) "
            f"or dark 8-bit pixels; pass {own_scale}value_range=(0, 255) if they are 8-bit pixels"
        )
    return 0.0, 255.0


def _scale(array: np.ndarray, value_range: tuple[float, float] | None, where: str) -> torch.Tensor:
    """Map stored pixel values onto float32 ``[-1, 1]`` by the rules in the module notes."""
    if not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
        raise ValueError(f"{where} has dtype {array.dtype}; expected integer (uint8) or float images")
    lo_seen, hi_seen = float(array.min()), float(array.max())  # NaN or inf shows up here
    if not (np.isfinite(lo_seen) and np.isfinite(hi_seen)):
        raise ValueError(f"{where} holds NaN or infinite values")
    if value_range is not None:
        lo, hi = value_range
    elif np.issubdtype(array.dtype, np.integer):
        lo, hi = _integer_range(array.dtype, int(array.min()), int(array.max()), where)
    elif lo_seen >= -_TOLERANCE / 2:  # [0, 1] within the tolerance tol below (for lo, hi = 0, 1)
        lo, hi = 0.0, 1.0
    elif lo_seen < _CLEARLY_NEGATIVE:
        lo, hi = -1.0, 1.0
    else:
        raise ValueError(
            f"{where} holds floats in [{lo_seen:g}, {hi_seen:g}]: the minimum is below 0 but not below "
            f"{_CLEARLY_NEGATIVE:g}, so they could be [0, 1] with resampling ringing or [-1, 1] without "
            f"dark pixels; pass value_range=(0, 1) or value_range=(-1, 1)"
        )
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


class _Objects(NamedTuple):
    """An array of Python objects, left unread: reading it would need pickle."""

    shape: tuple[int, ...]


def _header(fp) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype from the header of a ``.npy`` stream, without reading (or unpickling) the data."""
    version = np.lib.format.read_magic(fp)
    read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    shape, _, dtype = read(fp)
    return shape, dtype


def _read_npz(path: Path) -> dict[str, np.ndarray | _Objects]:
    """Every array of an ``.npz`` (or a single ``.npy``, under the name ``images``); arrays of
    Python objects come back as :class:`_Objects` (``allow_pickle`` stays off)."""
    if not path.exists():
        raise FileNotFoundError(f"no such file: {path}")
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a folder; load_npz expects an .npz file (use load_folder)")
    try:
        with open(path, "rb") as fp:
            if fp.read(6) == b"\x93NUMPY":  # a single .npy array
                fp.seek(0)
                shape, dtype = _header(fp)
                return {"images": _Objects(shape) if dtype.hasobject else np.load(path, allow_pickle=False)}
        with np.load(path, allow_pickle=False) as loaded:
            arrays = {}
            for member in loaded.zip.namelist():
                if member.endswith(".npy"):  # other members (a README) are not arrays
                    with loaded.zip.open(member) as fp:
                        shape, dtype = _header(fp)
                    name = member[: -len(".npy")]
                    arrays[name] = _Objects(shape) if dtype.hasobject else loaded[name]
            return arrays
    except _NPZ_ERRORS as e:
        reason = str(e)
        if isinstance(e, ValueError) and "pickle" in reason:
            reason = "its bytes are neither a zip archive nor a .npy array"
        raise ValueError(
            f"{path} is not a valid .npz file (a zip archive of arrays written by numpy.savez); "
            f"it may be truncated or corrupt: {reason}"
        ) from e


def _stored(arrays: dict[str, np.ndarray | _Objects], name: str, path: Path, advice: str) -> np.ndarray:
    """The array ``name`` read by :func:`_read_npz`; an array of Python objects is refused, with ``advice``."""
    array = arrays[name]
    if isinstance(array, _Objects):
        raise ValueError(
            f"array {name!r} in {path} holds Python objects (dtype object, shape {array.shape}), which "
            f"load_npz does not read: that needs pickle, which can run code, so allow_pickle stays off; "
            f"{advice}"
        )
    return array


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
    if value_range is not None:
        value_range = _value_range(value_range)
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
    advice = (
        "store the images as one array of numbers laid out b h w c, np.stack(images) (np.savez turns a list "
        "of pictures of different sizes into an object array; resize them to one size first)"
    )
    array = _stored(arrays, key, path, advice)
    where = f"array {key!r} in {path}"
    if key == "images":  # metadata written by save_npz describes the 'images' array
        if layout is None and "layout" in arrays:
            layout = str(_stored(arrays, "layout", path, "store it as a string, np.array('b h w c')"))
        if value_range is None and "value_range" in arrays:
            stored = _stored(arrays, "value_range", path, "store it as numbers, np.array([lo, hi])")
            try:
                value_range = _value_range(stored.tolist())
            except ValueError as e:
                raise ValueError(f"array 'value_range' in {path}: {e}") from None
    if array.ndim == 0 or array.shape[0] == 0:
        raise ValueError(f"{where} holds no images (shape {array.shape})")
    try:
        bchw = _to_bchw(array, layout)
    except ValueError as e:
        raise ValueError(f"{where}: {e}") from None
    images = _scale(bchw, value_range, where)
    if size is not None:
        images = _resize(images, check.integer("size", size, minimum=1))

    labels = None
    if labels_key in arrays:
        advice = "store labels as numbers, e.g. np.unique(names, return_inverse=True)[1] for names"
        labels = _stored(arrays, labels_key, path, advice)
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
