"""Tests of the scikit-learn digits world."""

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from genlib.data import digits

TOTAL = 1797


@pytest.mark.parametrize("size", digits.SIZES)
def test_shapes_dtypes_and_range(size):
    images, labels = digits.load(size=size, split="train")
    assert images.shape[1:] == (1, size, size) and images.dtype == torch.float32
    assert labels.shape == (images.shape[0],) and labels.dtype == torch.int64
    assert images.min() >= -1 and images.max() <= 1
    assert images.min() < -0.99 and images.max() > 0.9  # background and full ink both present
    assert set(labels.tolist()) == set(range(10))


def test_native_size_is_the_sklearn_data_rescaled():
    images, labels = digits.load(size=8, split="all")
    bunch = load_digits()
    assert torch.allclose(images[:, 0], torch.from_numpy(bunch.images / 8.0 - 1.0).float(), atol=1e-6)
    assert np.array_equal(labels.numpy(), bunch.target)


def test_resized_digits_keep_the_mean_ink():
    small, _ = digits.load(size=8, split="test")
    big, _ = digits.load(size=32, split="test")
    assert abs(small.mean().item() - big.mean().item()) < 0.02


def test_split_sizes_no_overlap_and_stratified():
    train_idx, test_idx = digits.split_indices(seed=0)
    assert len(train_idx) + len(test_idx) == TOTAL
    assert len(np.intersect1d(train_idx, test_idx)) == 0
    assert np.array_equal(np.union1d(train_idx, test_idx), np.arange(TOTAL))
    _, test_labels = digits.load(size=8, split="test")
    _, train_labels = digits.load(size=8, split="train")
    assert len(train_labels) == len(train_idx) and len(test_labels) == len(test_idx)
    share = torch.bincount(test_labels, minlength=10) / torch.bincount(
        torch.cat([train_labels, test_labels]), minlength=10
    )
    assert torch.allclose(share, torch.full((10,), 0.2, dtype=share.dtype), atol=0.01)


def test_no_test_image_appears_in_train():
    train, _ = digits.load(size=8, split="train", seed=3)
    test, _ = digits.load(size=8, split="test", seed=3)
    train_rows = {row.tobytes() for row in train.flatten(1).numpy()}
    test_rows = {row.tobytes() for row in test.flatten(1).numpy()}
    # the sklearn set has a few exact duplicate digits; almost every test image is new to train
    assert len(test_rows & train_rows) <= 3


def test_split_is_fixed_by_the_seed():
    a = digits.split_indices(seed=5)[1]
    assert np.array_equal(a, digits.split_indices(seed=5)[1])
    assert not np.array_equal(a, digits.split_indices(seed=6)[1])
    x1, y1 = digits.load(16, "test", seed=5)
    x2, y2 = digits.load(16, "test", seed=5)
    assert torch.equal(x1, x2) and torch.equal(y1, y2)


def test_test_fraction_sets_the_test_share():
    _, test_idx = digits.split_indices(seed=0, test_fraction=0.5)
    assert abs(len(test_idx) - TOTAL / 2) <= 10


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"size": 12}, "size must be one of 8, 16, 32"),
        ({"size": "16"}, "size must be one of"),
        ({"split": "val"}, "split must be one of 'train', 'test', 'all'"),
        ({"seed": -1}, "seed must be an integer >= 0"),
        ({"test_fraction": 1.0}, "test_fraction must lie strictly between 0 and 1"),
    ],
)
def test_bad_arguments_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        digits.load(**kwargs)
