"""Tests of the loaders for a reader's own data, on files the tests write themselves."""

import struct
import tempfile
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from genlib.data import files

RED, BLUE = (255, 0, 0), (0, 0, 255)


def solid(path, colour, size=(20, 20)):
    Image.new("RGB", size, colour).save(path)


# ----------------------------------------------------------------------------- folders


def test_folder_reads_png_jpg_in_sorted_order(tmp_path):
    solid(tmp_path / "b.png", BLUE)
    solid(tmp_path / "a.jpg", RED)
    solid(tmp_path / "c.PNG", RED, size=(7, 5))
    Image.new("RGB", (9, 9), BLUE).save(tmp_path / "d.webp", lossless=True)
    (tmp_path / "notes.txt").write_text("not an image")
    x = files.load_folder(tmp_path, size=16)
    assert x.shape == (4, 3, 16, 16) and x.dtype == torch.float32
    assert x.min() >= -1 and x.max() <= 1
    red, blue = torch.tensor([1.0, -1.0, -1.0]), torch.tensor([-1.0, -1.0, 1.0])
    means = x.mean(dim=(2, 3))
    assert torch.allclose(means[0], red, atol=0.05)  # a.jpg: lossy, close to red
    assert torch.allclose(means[1], blue, atol=1e-6)  # b.png: exact
    assert torch.allclose(means[2], red, atol=1e-6)  # c.PNG: upper-case suffix counts too
    assert torch.allclose(means[3], blue, atol=1e-6)  # d.webp (lossless), upsampled from 9x9


def test_folder_centre_crops_before_resizing(tmp_path):
    img = Image.new("RGB", (60, 40), BLUE)  # w 60, h 40: the centre square is columns 10..49
    img.paste(Image.new("RGB", (40, 40), RED), (10, 0))
    img.save(tmp_path / "wide.png")
    x = files.load_folder(tmp_path, size=40)
    assert torch.equal(x[0], torch.tensor([1.0, -1.0, -1.0])[:, None, None].expand(3, 40, 40))
    assert files.load_folder(tmp_path, size=10).shape == (1, 3, 10, 10)
    assert files.load_folder(tmp_path, size=None).shape == (1, 3, 40, 60)


def test_folder_greyscale_limit_and_subfolders(tmp_path):
    for i in range(4):
        solid(tmp_path / f"{i}.png", (i * 60, i * 60, i * 60))
    (tmp_path / "sub").mkdir()
    solid(tmp_path / "sub" / "z.bmp", RED)
    grey = files.load_folder(tmp_path, size=8, channels=1)
    assert grey.shape == (4, 1, 8, 8)
    assert torch.allclose(grey[:, 0, 0, 0], torch.tensor([i * 60 / 127.5 - 1 for i in range(4)]))
    assert files.load_folder(tmp_path, size=8, limit=2).shape[0] == 2
    assert files.load_folder(tmp_path, size=8, recursive=True).shape[0] == 5


def test_folder_errors_are_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such folder"):
        files.load_folder(tmp_path / "missing")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match=r"no images found in .*empty \(looked for \.png, \.jpg, \.jpeg"):
        files.load_folder(empty)
    (empty / "readme.md").write_text("hi")
    with pytest.raises(ValueError, match="1 other file"):
        files.load_folder(empty)
    solid(tmp_path / "good.png", RED)
    (tmp_path / "broken.png").write_bytes(b"this is not a png at all" * 10)
    with pytest.raises(ValueError, match="cannot read image file .*broken.png"):
        files.load_folder(tmp_path)
    with pytest.raises(NotADirectoryError):
        files.load_folder(tmp_path / "good.png")
    with pytest.raises(ValueError, match="channels must be 1"):
        files.load_folder(tmp_path, channels=4)
    with pytest.raises(ValueError, match="size must be an integer >= 1"):
        files.load_folder(tmp_path, size=0)


def test_folder_truncated_png_names_the_file(tmp_path):
    solid(tmp_path / "whole.png", RED, size=(64, 64))
    data = (tmp_path / "whole.png").read_bytes()
    (tmp_path / "whole.png").unlink()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="cut.png"):
        files.load_folder(tmp_path)


def test_folder_mixed_sizes_need_a_size(tmp_path):
    solid(tmp_path / "a.png", RED, size=(8, 8))
    solid(tmp_path / "b.png", RED, size=(9, 8))
    with pytest.raises(ValueError, match="pass size="):
        files.load_folder(tmp_path, size=None)


# ----------------------------------------------------------------------------- PNGs written byte by byte

ADAM7 = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]


def chunk(kind, body):
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_bytes(pixels, colour_type, bit_depth=8, interlaced=False, rows=None, extra=b""):
    """A PNG of ``pixels`` (h w c, uint8 or uint16) with filter 0 on every row; ``rows`` replaces
    the uncompressed scanlines (to write a file whose data does not fit its header)."""
    h, w = pixels.shape[:2]
    big_endian = pixels.astype(">u2") if bit_depth == 16 else pixels.astype(np.uint8)
    if rows is None:
        passes = ADAM7 if interlaced else [(0, 0, 1, 1)]
        parts = [big_endian[y0::dy, x0::dx] for x0, y0, dx, dy in passes]
        rows = b"".join(b"\0" + row.tobytes() for part in parts if part.shape[1] for row in part)
    header = struct.pack(">IIBBBBB", w, h, bit_depth, colour_type, 0, 0, int(interlaced))
    body = chunk(b"IHDR", header) + extra + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + body


def test_folder_png_with_any_damaged_byte_is_refused(tmp_path):
    pixels = (np.arange(24 * 24 * 3).reshape(24, 24, 3) % 251).astype(np.uint8)
    Image.fromarray(pixels).save(tmp_path / "whole.png")
    data = (tmp_path / "whole.png").read_bytes()
    (tmp_path / "whole.png").unlink()
    for position in range(8, len(data)):  # every byte after the signature, one at a time
        damaged = bytearray(data)
        damaged[position] ^= 0x10
        (tmp_path / "damaged.png").write_bytes(bytes(damaged))
        with pytest.raises(ValueError, match="damaged.png"):
            files.load_folder(tmp_path, size=None)


def test_folder_png_crc_error_is_named(tmp_path):
    """A pixel changed inside a stored (uncompressed) deflate block, the stream's own checksum
    rewritten to match: only the chunk's CRC can tell, and PIL alone would return the pixel."""
    pixels = np.full((4, 4, 3), 200, np.uint8)
    rows = bytearray(b"".join(b"\0" + row.tobytes() for row in pixels))
    stream = zlib.compress(bytes(rows), 0)
    rows[1] = 7  # the first pixel's red value
    damaged = stream[:7] + bytes(rows) + struct.pack(">I", zlib.adler32(bytes(rows)))  # 2 + 5 header bytes
    idat = struct.pack(">I", len(damaged)) + b"IDAT" + damaged + struct.pack(">I", zlib.crc32(b"IDAT" + stream))
    good = png_bytes(pixels, colour_type=2)
    start = good.index(b"IDAT") - 4
    (tmp_path / "flip.png").write_bytes(good[:start] + idat + chunk(b"IEND", b""))
    with pytest.raises(ValueError, match=r"flip.png: the CRC of its IDAT chunk"):
        files.load_folder(tmp_path, size=None)


@pytest.mark.parametrize(
    "name, rows, match",
    [
        ("short.png", lambda r: r[: len(r) // 2], r"decompresses to 392 bytes; a 16x16 .* needs 784"),
        ("long.png", lambda r: r + bytes(300), r"decompresses to more than 784 bytes"),
    ],
)
def test_folder_png_whose_pixel_data_does_not_fit_its_header_is_refused(tmp_path, name, rows, match):
    pixels = np.full((16, 16, 3), 200, np.uint8)
    scanlines = b"".join(b"\0" + row.tobytes() for row in pixels)
    (tmp_path / name).write_bytes(png_bytes(pixels, colour_type=2, rows=rows(scanlines)))
    with pytest.raises(ValueError, match=rf"{name}: .*{match}"):
        files.load_folder(tmp_path, size=None)


def test_folder_png_cut_zlib_stream_is_refused(tmp_path):
    pixels = np.full((16, 16, 3), 200, np.uint8)
    good = png_bytes(pixels, colour_type=2)
    start = good.index(b"IDAT") + 4
    length = struct.unpack(">I", good[start - 8 : start - 4])[0]
    stream = good[start : start + length][:-6]  # drop the end of the deflate stream and its checksum
    cut = good[: start - 8] + chunk(b"IDAT", stream) + chunk(b"IEND", b"")
    (tmp_path / "cut.png").write_bytes(cut)
    with pytest.raises(ValueError, match="cut.png: .*compressed pixel data stops before its end"):
        files.load_folder(tmp_path, size=None)


def test_folder_valid_pngs_of_every_kind_still_read(tmp_path):
    """Guards for the PNG check: bit depths below 8, odd widths, palettes and Adam7 interlacing."""
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 256, size=(13, 11, 3), dtype=np.uint8)
    (tmp_path / "adam7.png").write_bytes(png_bytes(rgb, colour_type=2, interlaced=True))
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    x = files.load_folder(tmp_path, size=None)
    assert torch.equal(x[0], x[1])  # interlaced and plain files hold the same pixels
    expected = torch.from_numpy(rgb.transpose(2, 0, 1).astype(np.float32) / 127.5 - 1)
    assert torch.allclose(x[0], expected, atol=1e-6)

    for stale in tmp_path.iterdir():
        stale.unlink()
    bits = rng.integers(0, 2, size=(5, 13)).astype(bool)
    Image.fromarray(bits).save(tmp_path / "a_1bit.png")  # 13 pixels a row: 2 bytes, 3 bits unused
    indices = rng.integers(0, 4, size=(5, 13), dtype=np.uint8)
    Image.fromarray(indices * 64, "L").convert("P").save(tmp_path / "b_palette.png", bits=4)
    grey = np.array([[0, 1000, 32768, 65535, 7]], np.uint16).repeat(5, 0)
    Image.fromarray(np.pad(grey, ((0, 0), (0, 8)))).save(tmp_path / "c_grey16.png")
    x = files.load_folder(tmp_path, size=None, channels=1)
    assert x.shape == (3, 1, 5, 13)
    assert torch.equal(x[0, 0], torch.from_numpy(np.where(bits, 1.0, -1.0).astype(np.float32)))


def test_folder_16bit_png_is_scaled_by_its_bit_depth(tmp_path):
    values = np.array([[0, 1000, 32768, 65535]], np.uint16)
    (tmp_path / "grey16.png").write_bytes(png_bytes(values[:, :, None], colour_type=0, bit_depth=16))
    expected = torch.from_numpy(np.round(values / 257).astype(np.float32) / 127.5 - 1)
    grey = files.load_folder(tmp_path, size=None, channels=1)
    assert torch.allclose(grey[0, 0], expected, atol=1e-6)  # 1000 -> 4/255, not clipped to 255
    assert torch.allclose(files.load_folder(tmp_path, size=None)[0], expected.expand(3, 1, 4), atol=1e-6)
    (tmp_path / "grey16.png").unlink()
    rgb = np.stack([values, values[:, ::-1], values], axis=-1)
    (tmp_path / "rgb16.png").write_bytes(png_bytes(rgb, colour_type=2, bit_depth=16))
    colour = files.load_folder(tmp_path, size=None)
    assert torch.allclose(colour[0, 0], expected, atol=1 / 127.5 + 1e-6)  # within one 8-bit level
    assert torch.allclose(colour[0, 1], expected.flip(-1), atol=1 / 127.5 + 1e-6)


# red at alpha 0, 128 and 255 (the colour under the transparent pixel is still red)
RGBA = np.array([[[255, 0, 0, 0], [255, 0, 0, 128], [255, 0, 0, 255]]], np.uint8)
HALF = 128 / 255 * 2 - 1  # red 255 at alpha 128 over black, in [-1, 1]


@pytest.mark.parametrize(
    "background, expected",
    [
        (None, [[-1, HALF, 1], [-1, -1, -1], [-1, -1, -1]]),  # the default: black
        ("black", [[-1, HALF, 1], [-1, -1, -1], [-1, -1, -1]]),
        ("white", [[1, 1, 1], [1, -HALF, -1], [1, -HALF, -1]]),
        ((0, 0, 255), [[-1, HALF, 1], [-1, -1, -1], [1, -HALF, -1]]),
    ],
)
def test_folder_rgba_is_composited_over_the_background(tmp_path, background, expected):
    Image.fromarray(RGBA, "RGBA").save(tmp_path / "rgba.png")
    kwargs = {} if background is None else {"background": background}
    x = files.load_folder(tmp_path, size=None, **kwargs)
    assert torch.allclose(x[0, :, 0, :], torch.tensor(expected), atol=1.01 / 127.5)


def test_folder_every_kind_of_transparency_is_composited(tmp_path):
    # greyscale + alpha, a palette with a transparent entry, 16-bit grey with a transparent value
    Image.fromarray(np.array([[[255, 0], [255, 255]]], np.uint8), "LA").save(tmp_path / "a_la.png")
    palette = Image.fromarray(np.array([[0, 1]], np.uint8), "P")
    palette.putpalette([255, 255, 255, 255, 255, 255])
    palette.save(tmp_path / "b_palette.png", transparency=0)
    grey16 = np.array([[[65535], [65535 // 2]]], np.uint16)
    trns = chunk(b"tRNS", struct.pack(">H", 65535))
    (tmp_path / "c_grey16.png").write_bytes(png_bytes(grey16, colour_type=0, bit_depth=16, extra=trns))
    x = files.load_folder(tmp_path, size=None, channels=1)
    assert torch.allclose(x[:, 0, 0, 0], torch.tensor([-1.0, -1.0, -1.0]))  # transparent: black
    assert torch.allclose(x[:, 0, 0, 1], torch.tensor([1.0, 1.0, 0.0]), atol=1 / 127.5)


def test_folder_background_must_be_a_colour(tmp_path):
    solid(tmp_path / "a.png", RED)
    for bad in ["no-such-colour", (0, 0), (0, 0, 256), 3]:
        with pytest.raises(ValueError, match=r"background must be a colour name .* or an \(r, g, b\)"):
            files.load_folder(tmp_path, background=bad)


# ----------------------------------------------------------------------------- npz


def base_images(b=5, h=6, w=7, c=3, seed=0):
    """uint8 ``b h w c`` test pictures and what they read as in [-1, 1] (``b c h w``)."""
    pixels = np.random.default_rng(seed).integers(0, 256, size=(b, h, w, c), dtype=np.uint8)
    pixels[0, 0, 0] = 0  # include both extremes
    pixels[0, 0, 1] = 255
    expected = torch.from_numpy(pixels.transpose(0, 3, 1, 2).astype(np.float32) / 127.5 - 1)
    return pixels, expected


STORED = {
    "uint8": lambda p: p,
    "int64": lambda p: p.astype(np.int64),
    "float [0, 1]": lambda p: p.astype(np.float32) / 255,
    "float [-1, 1]": lambda p: p.astype(np.float64) / 127.5 - 1,
}
ARRANGE = {
    "b h w c": lambda p: p,
    "b c h w": lambda p: p.transpose(0, 3, 1, 2),
    "b h w": lambda p: p[..., 0],
}


@pytest.mark.parametrize("stored", STORED)
@pytest.mark.parametrize("layout", ARRANGE)
def test_npz_reads_every_layout_and_dtype(tmp_path, stored, layout):
    pixels, expected = base_images(c=1 if layout == "b h w" else 3)
    labels = np.arange(5) % 3
    np.savez(tmp_path / "d.npz", images=ARRANGE[layout](STORED[stored](pixels)), labels=labels)
    x, y = files.load_npz(tmp_path / "d.npz")
    assert x.dtype == torch.float32 and x.shape == expected.shape
    assert torch.allclose(x, expected, atol=1e-6)
    assert y.dtype == torch.int64 and y.tolist() == labels.tolist()


def test_npz_key_choice(tmp_path):
    pixels, expected = base_images()
    np.savez(tmp_path / "one.npz", pixels)  # stored as arr_0
    x, y = files.load_npz(tmp_path / "one.npz")
    assert torch.allclose(x, expected, atol=1e-6) and y is None
    np.savez(tmp_path / "two.npz", x_train=pixels, x_test=pixels[:2])
    with pytest.raises(ValueError, match="holds arrays x_train, x_test; pass key="):
        files.load_npz(tmp_path / "two.npz")
    assert files.load_npz(tmp_path / "two.npz", key="x_test")[0].shape[0] == 2
    with pytest.raises(ValueError, match="has no array 'images'; it holds: x_train, x_test"):
        files.load_npz(tmp_path / "two.npz", key="images")


def test_npz_resize_and_npy(tmp_path):
    pixels, _ = base_images(h=10, w=12)
    np.savez(tmp_path / "d.npz", images=pixels)
    assert files.load_npz(tmp_path / "d.npz", size=4)[0].shape == (5, 3, 4, 4)
    np.save(tmp_path / "d.npy", pixels)
    assert files.load_npz(tmp_path / "d.npy")[0].shape == (5, 3, 10, 12)
    with pytest.raises(ValueError, match="size must be an integer >= 1"):
        files.load_npz(tmp_path / "d.npz", size=0)


def test_npz_ambiguous_layouts_ask_for_layout(tmp_path):
    cube = np.zeros((4, 3, 5, 3), dtype=np.uint8)
    np.savez(tmp_path / "cube.npz", images=cube)
    with pytest.raises(ValueError, match="pass layout='b c h w' or layout='b h w c'"):
        files.load_npz(tmp_path / "cube.npz")
    assert files.load_npz(tmp_path / "cube.npz", layout="b h w c")[0].shape == (4, 3, 3, 5)
    assert files.load_npz(tmp_path / "cube.npz", layout="b c h w")[0].shape == (4, 3, 5, 3)
    np.savez(tmp_path / "single.npz", images=np.zeros((8, 8, 3), dtype=np.uint8))
    with pytest.raises(ValueError, match="single h w c image"):
        files.load_npz(tmp_path / "single.npz")
    with pytest.raises(ValueError, match="layout must be one of"):
        files.load_npz(tmp_path / "cube.npz", layout="bhwc")


@pytest.mark.parametrize(
    "array, match",
    [
        (np.zeros((4, 8), np.uint8), "must have rank 3 .* got rank 2"),
        (np.zeros((2, 4, 8, 8, 3), np.uint8), "got rank 5"),
        (np.zeros((2, 8, 8, 4), np.uint8), "no channel axis of size 1 or 3"),
        (np.full((2, 8, 8, 3), 200.0), r"values in \[200, 200\], outside the range \[0, 1\]"),
        (np.full((2, 8, 8, 3), np.nan), "NaN"),
        (np.zeros((2, 8, 8, 3), bool), "dtype bool"),
        (np.zeros((0, 8, 8, 3), np.uint8), "holds no images"),
    ],
)
def test_npz_bad_arrays_are_named(tmp_path, array, match):
    np.savez(tmp_path / "bad.npz", images=array)
    with pytest.raises(ValueError, match=match):
        files.load_npz(tmp_path / "bad.npz")


def test_npz_value_range_override(tmp_path):
    pixels, expected = base_images()
    np.savez(tmp_path / "d.npz", images=pixels.astype(np.float32))  # floats 0..255
    x, _ = files.load_npz(tmp_path / "d.npz", value_range=(0, 255))
    assert torch.allclose(x, expected, atol=1e-6)


@pytest.mark.parametrize(
    "low, expected_range",
    [
        (-1e-4, (0, 1)),  # resampling ringing within the tolerance of [0, 1]
        (0.0, (0, 1)),
        (-0.5, (-1, 1)),  # clearly negative
        (-1.0, (-1, 1)),
    ],
)
def test_npz_range_is_guessed_only_with_a_clear_margin(tmp_path, low, expected_range):
    images = np.linspace(0.2, 0.9, 2 * 4 * 4 * 3).reshape(2, 4, 4, 3)
    images[0, 0, 0, 0] = low
    np.savez(tmp_path / "d.npz", images=images)
    x, _ = files.load_npz(tmp_path / "d.npz")
    lo, hi = expected_range
    expected = torch.from_numpy((images.transpose(0, 3, 1, 2) - lo) / (hi - lo) * 2 - 1).float()
    assert torch.allclose(x, expected.clamp(-1, 1), atol=1e-6)


@pytest.mark.parametrize("low", [-0.001, -0.07, -0.2])
def test_npz_ambiguous_float_range_asks_for_value_range(tmp_path, low):
    images = np.linspace(0.0, 0.9, 2 * 4 * 4 * 3).reshape(2, 4, 4, 3)
    images[0, 0, 0, 0] = low  # e.g. bicubic ringing (about -0.07) on [0, 1] data
    np.savez(tmp_path / "d.npz", images=images)
    with pytest.raises(ValueError, match=r"pass value_range=\(0, 1\) or value_range=\(-1, 1\)"):
        files.load_npz(tmp_path / "d.npz")
    x, _ = files.load_npz(tmp_path / "d.npz", value_range=(-1, 1))
    assert x.shape == (2, 3, 4, 4)


def sklearn_digits(n=10):
    """The first ``n`` scikit-learn digits as they are often stored: int64 ``b 8 8`` with ink 0..16."""
    from sklearn.datasets import load_digits

    return load_digits().images[:n].astype(np.int64)


@pytest.mark.parametrize(
    "name, make, match",
    [
        ("digits 0..16", lambda: sklearn_digits(), r"int64 values in \[0, 16\].*value_range=\(0, 16\)"),
        ("mask 0/1", lambda: np.eye(6, dtype=np.int64)[None].repeat(2, 0), r"\[0, 1\].*value_range=\(0, 1\)"),
        ("int32 0..127", lambda: np.arange(2 * 8 * 8).reshape(2, 8, 8).astype(np.int32), r"\[0, 127\]"),
        ("int8 0..100", lambda: np.full((2, 8, 8), 100, np.int8), r"int8 values in \[100, 100\]"),
        ("all zero", lambda: np.zeros((2, 8, 8), np.int16), r"\[0, 0\].*value_range=\(0, 255\)"),
    ],
)
def test_npz_integers_with_a_small_maximum_ask_for_value_range(tmp_path, name, make, match):
    """Integers other than uint8 whose maximum is at most 127 could be any scale: no guess."""
    np.savez(tmp_path / "d.npz", images=make())
    with pytest.raises(ValueError, match=r"array 'images' in .*d\.npz holds .*" + match):
        files.load_npz(tmp_path / "d.npz")


def test_npz_small_integer_scale_reads_with_its_value_range(tmp_path):
    digits = sklearn_digits()
    np.savez(tmp_path / "digits.npz", images=digits)
    x, _ = files.load_npz(tmp_path / "digits.npz", value_range=(0, 16))
    assert x.shape == (10, 1, 8, 8)
    assert torch.equal(x[:, 0], torch.from_numpy(digits / 8 - 1).float())  # 0 -> -1, 16 -> +1, exact
    mask = np.eye(6, dtype=np.int64)[None].repeat(2, 0)
    np.savez(tmp_path / "mask.npz", images=mask)
    x, _ = files.load_npz(tmp_path / "mask.npz", value_range=(0, 1))
    assert torch.equal(x[:, 0], torch.from_numpy(mask * 2.0 - 1).float())


@pytest.mark.parametrize(
    "array, match",
    [
        (np.array([0, 1000, 65535], np.uint16), r"uint16 values in \[0, 65535\], outside 0\.\.255"),
        (np.array([-100, 0, 100], np.int16), r"int16 values in \[-100, 100\], outside 0\.\.255"),
        (np.array([0, 128, 256], np.int64), r"int64 values in \[0, 256\], outside 0\.\.255"),
    ],
)
def test_npz_integers_outside_0_255_ask_for_value_range(tmp_path, array, match):
    np.savez(tmp_path / "d.npz", images=np.broadcast_to(array, (2, 5, 3)).transpose(0, 2, 1))  # b 3 5
    with pytest.raises(ValueError, match=match + r".*pass value_range="):
        files.load_npz(tmp_path / "d.npz")
    lo, hi = int(array.min()), int(array.max())
    x, _ = files.load_npz(tmp_path / "d.npz", value_range=(lo, hi))
    assert x.min() == -1 and x.max() == 1


def test_npz_uint8_is_always_0_255(tmp_path):
    """uint8 is what 8-bit images are stored as: even a dark set (maximum 1) reads as 0..255."""
    np.savez(tmp_path / "dark.npz", images=np.eye(6, dtype=np.uint8)[None].repeat(2, 0))
    x, _ = files.load_npz(tmp_path / "dark.npz")
    assert float(x.max()) == pytest.approx(1 / 127.5 - 1, abs=1e-6)


@settings(max_examples=40, deadline=None)
@given(
    dtype=st.sampled_from(["int16", "int32", "int64", "uint16", "uint32", "uint64"]),
    top=st.integers(0, 255),
    seed=st.integers(0, 2**32 - 1),
)
def test_npz_wider_integers_read_as_0_255_exactly_when_their_maximum_is_above_127(dtype, top, seed):
    values = np.random.default_rng(seed).integers(0, top + 1, size=(2, 5, 5))
    values[0, 0, 0] = top  # the maximum is attained
    with tempfile.TemporaryDirectory() as tmp:
        np.savez(Path(tmp) / "d.npz", images=values.astype(dtype))
        if top > 127:
            x, _ = files.load_npz(Path(tmp) / "d.npz")
            assert torch.allclose(x[:, 0], torch.from_numpy(values / 127.5 - 1).float(), atol=1e-6)
        else:
            with pytest.raises(ValueError, match=rf"{dtype} values in \[\d+, {top}\].*pass value_range="):
                files.load_npz(Path(tmp) / "d.npz")


def test_npz_object_arrays_get_their_own_message(tmp_path):
    ragged = np.empty(2, dtype=object)
    ragged[0], ragged[1] = np.zeros((4, 4, 3), np.uint8), np.zeros((5, 5, 3), np.uint8)
    np.savez(tmp_path / "ragged.npz", images=ragged)
    message = r"array 'images' in .*ragged.npz holds Python objects \(dtype object, shape \(2,\)\)"
    with pytest.raises(ValueError, match=message + r".*allow_pickle.*np.stack"):
        files.load_npz(tmp_path / "ragged.npz")
    np.save(tmp_path / "ragged.npy", ragged)
    with pytest.raises(ValueError, match=r"array 'images' in .*ragged.npy holds Python objects"):
        files.load_npz(tmp_path / "ragged.npy")

    pixels, expected = base_images()
    names = np.array(["cat", "dog", "owl", "eel", "ant"], dtype=object)
    np.savez(tmp_path / "named.npz", images=pixels, names=names, labels=names)
    with pytest.raises(ValueError, match=r"array 'labels' in .*named.npz holds Python objects"):
        files.load_npz(tmp_path / "named.npz")
    x, y = files.load_npz(tmp_path / "named.npz", labels_key="none")  # an object array not asked for
    assert torch.allclose(x, expected, atol=1e-6) and y is None


@pytest.mark.parametrize("value_range", [(0, 1, 2), (1,), 255, ("a", "b"), (float("nan"), 1), (1, 0)])
def test_npz_value_range_must_be_a_pair(tmp_path, value_range):
    np.savez(tmp_path / "d.npz", images=np.zeros((2, 4, 4, 3), np.float32))
    message = r"value_range must be a pair \(lo, hi\) of finite numbers with hi > lo"
    with pytest.raises(ValueError, match=message):
        files.load_npz(tmp_path / "d.npz", value_range=value_range)


def test_npz_stored_value_range_of_the_wrong_length_is_named(tmp_path):
    images = np.zeros((2, 4, 4, 3), np.float32)
    np.savez(tmp_path / "d.npz", images=images, value_range=np.array([0.0, 1.0, 2.0]))
    with pytest.raises(ValueError, match=r"array 'value_range' in .*d.npz: value_range must be a pair"):
        files.load_npz(tmp_path / "d.npz")


def test_npz_labels_must_match_the_images(tmp_path):
    pixels, _ = base_images()
    np.savez(tmp_path / "d.npz", images=pixels, labels=np.arange(4))
    with pytest.raises(ValueError, match=r"'labels' .* one entry per image \(5\)"):
        files.load_npz(tmp_path / "d.npz")


def test_npz_broken_files_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file"):
        files.load_npz(tmp_path / "missing.npz")
    pixels, _ = base_images(b=20, h=16, w=16)
    np.savez(tmp_path / "whole.npz", images=pixels)
    data = (tmp_path / "whole.npz").read_bytes()
    for name, content in [
        ("cut.npz", data[: len(data) // 2]),
        ("garbage.npz", b"definitely not numpy" * 20),
        ("empty.npz", b""),
    ]:
        (tmp_path / name).write_bytes(content)
        with pytest.raises(ValueError, match=rf"{name} is not a valid \.npz file"):
            files.load_npz(tmp_path / name)
    # a zip whose member is damaged (flip bytes inside the stored array)
    damaged = bytearray(data)
    damaged[200:400] = bytes(200)
    (tmp_path / "damaged.npz").write_bytes(bytes(damaged))
    with pytest.raises(ValueError, match=r"damaged.npz is not a valid \.npz file"):
        files.load_npz(tmp_path / "damaged.npz")
    with pytest.raises(IsADirectoryError):
        files.load_npz(tmp_path)


# ----------------------------------------------------------------------------- round trips


def test_save_load_round_trip_uint8_and_float(tmp_path):
    x = torch.rand(6, 3, 5, 5) * 2 - 1
    labels = torch.arange(6)
    path = files.save_npz(tmp_path / "u8.npz", x, labels)
    back, y = files.load_npz(path)
    assert (back - x).abs().max() <= 1 / 255 + 1e-6 and torch.equal(y, labels)
    again, _ = files.load_npz(files.save_npz(tmp_path / "again.npz", back))
    assert torch.equal(again, back)  # uint8 quantisation is stable

    path = files.save_npz(tmp_path / "f32", x.abs(), dtype="float32")  # all >= 0, still [-1, 1]
    assert path.name == "f32.npz"
    back, y = files.load_npz(path)
    assert torch.equal(back, x.abs()) and y is None


def test_save_keeps_ambiguous_shapes_readable(tmp_path):
    x = torch.rand(2, 3, 3, 3) * 2 - 1  # b 3 3 3: channel axis undecidable without the stored layout
    back, _ = files.load_npz(files.save_npz(tmp_path / "tiny.npz", x, dtype="float32"))
    assert torch.equal(back, x)


def test_save_rejects_bad_images(tmp_path):
    with pytest.raises(ValueError, match=r"'b c h w' \(rank 4\)"):
        files.save_npz(tmp_path / "a.npz", torch.zeros(3, 8, 8))
    with pytest.raises(ValueError, match=r"must lie in \[-1, 1\]"):
        files.save_npz(tmp_path / "a.npz", torch.full((1, 3, 4, 4), 2.0))
    with pytest.raises(ValueError, match="c in \\(1, 3\\)"):
        files.save_npz(tmp_path / "a.npz", torch.zeros(1, 4, 4, 4))
    with pytest.raises(ValueError, match="one entry per image"):
        files.save_npz(tmp_path / "a.npz", torch.zeros(2, 3, 4, 4), labels=torch.arange(3))


@settings(max_examples=25, deadline=None)
@given(
    b=st.integers(1, 3),
    c=st.sampled_from([1, 3]),
    h=st.integers(1, 6),
    w=st.integers(1, 6),
    dtype=st.sampled_from(["uint8", "float32"]),
    seed=st.integers(0, 2**32),
)
def test_any_images_survive_a_round_trip(b, c, h, w, dtype, seed):
    x = torch.rand(b, c, h, w, generator=torch.Generator().manual_seed(seed)) * 2 - 1
    with tempfile.TemporaryDirectory() as tmp:
        back, _ = files.load_npz(files.save_npz(Path(tmp) / "x.npz", x, dtype=dtype))
    assert back.shape == x.shape
    assert (back - x).abs().max() <= (1 / 255 + 1e-6 if dtype == "uint8" else 0)
