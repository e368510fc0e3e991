"""Tests of the photo-patch world for super-resolution."""

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from genlib.data import photos


def test_whole_photos_are_the_sklearn_images():
    from sklearn.datasets import load_sample_images

    bunch = load_sample_images()
    for name in photos.NAMES:
        index = [i for i, f in enumerate(bunch.filenames) if f.endswith(f"{name}.jpg")][0]
        expected = torch.tensor(bunch.images[index]).permute(2, 0, 1).float() / 127.5 - 1
        got = photos.photo(name)
        assert got.shape == (1, 3, photos.HEIGHT, photos.WIDTH)
        assert torch.allclose(got[0], expected, atol=1e-6)


@pytest.mark.parametrize("split", photos.SPLITS)
def test_patch_shapes_range_and_determinism(split):
    x = photos.patches(50, size=32, seed=1, split=split)
    assert x.shape == (50, 3, 32, 32) and x.dtype == torch.float32
    assert x.min() >= -1 and x.max() <= 1 and x.std() > 0.1
    assert torch.equal(x, photos.patches(50, size=32, seed=1, split=split))
    assert not torch.equal(x, photos.patches(50, size=32, seed=2, split=split))


def test_patches_are_the_pixels_at_their_boxes():
    boxes = photos.crop_boxes(20, size=24, seed=4, source="both")
    x = photos.patches(20, size=24, seed=4, source="both")
    whole = [photos.photo(name)[0] for name in photos.NAMES]
    for patch, (p, top, left) in zip(x, boxes.tolist()):
        assert torch.equal(patch, whole[p][:, top : top + 24, left : left + 24])
    assert set(boxes[:, 0].tolist()) == {0, 1}


@pytest.mark.parametrize("source", photos.NAMES)
def test_one_source_crops_only_that_photo(source):
    boxes = photos.crop_boxes(100, size=16, seed=0, source=source)
    assert (boxes[:, 0] == photos.NAMES.index(source)).all()


def test_train_and_test_crops_share_no_pixel():
    covered = {}
    for split in photos.SPLITS:
        mask = torch.zeros(len(photos.NAMES), photos.HEIGHT, photos.WIDTH, dtype=torch.bool)
        for size in (8, 32, 128):
            for p, top, left in photos.crop_boxes(500, size=size, seed=size, split=split).tolist():
                mask[p, top : top + size, left : left + size] = True
        covered[split] = mask
    assert not (covered["train"] & covered["test"]).any()
    # the crops reach both sides of the boundary between the regions
    assert covered["train"][:, :, photos.SPLIT_COLUMN - 1].any()
    assert covered["test"][:, :, photos.SPLIT_COLUMN].any()


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(0, 64),
    size=st.integers(1, 128),
    seed=st.integers(0, 2**63),
    source=st.sampled_from(photos.SOURCES),
    split=st.sampled_from(photos.SPLITS),
)
def test_any_crop_lies_inside_its_region(n, size, seed, source, split):
    boxes = photos.crop_boxes(n, size=size, seed=seed, source=source, split=split)
    start, stop = photos.region(split)
    assert boxes.shape == (n, 3)
    assert (boxes[:, 1] >= 0).all() and (boxes[:, 1] + size <= photos.HEIGHT).all()
    assert (boxes[:, 2] >= start).all() and (boxes[:, 2] + size <= stop).all()


def test_low_res_averages_blocks():
    x = torch.rand(2, 3, 8, 12) * 2 - 1
    lo = photos.low_res(x, 4)
    assert lo.shape == (2, 3, 2, 3)
    assert torch.allclose(lo, F.avg_pool2d(x, 4), atol=1e-6)
    assert torch.allclose(lo[0, 0, 0, 0], x[0, 0, :4, :4].mean(), atol=1e-6)
    assert torch.equal(photos.low_res(x, 1), x)


def test_pairs_match_patches_and_low_res():
    lo, hi = photos.pairs(10, size=32, factor=4, seed=3, split="test")
    assert lo.shape == (10, 3, 8, 8) and hi.shape == (10, 3, 32, 32)
    assert torch.equal(hi, photos.patches(10, size=32, seed=3, split="test"))
    assert torch.allclose(lo, photos.low_res(hi, 4))


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: photos.patches(4, size=129, split="test"), r"size must be an integer in \[1, 128\]"),
        (lambda: photos.patches(4, size=0), r"size must be an integer in \[1, 427\]"),
        (lambda: photos.patches(4, source="dog"), "source must be one of 'both', 'china', 'flower'"),
        (lambda: photos.patches(4, split="val"), "split must be one of 'train', 'test'"),
        (lambda: photos.photo("both"), "name must be one of 'china', 'flower'"),
        (lambda: photos.pairs(4, size=30, factor=4), "size=30 must be a multiple of factor=4"),
        (lambda: photos.low_res(torch.zeros(3, 8, 8), 2), r"'b c h w' \(rank 4\)"),
        (lambda: photos.low_res(torch.zeros(1, 3, 8, 9), 2), "multiples of factor=2"),
        (lambda: photos.low_res(torch.zeros(1, 3, 8, 8), 0), "factor must be an integer >= 1"),
    ],
)
def test_bad_arguments_are_named(call, match):
    with pytest.raises(ValueError, match=match):
        call()
