"""Tests of the loaders for a reader's own data, on files the tests write themselves."""

import tempfile
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
