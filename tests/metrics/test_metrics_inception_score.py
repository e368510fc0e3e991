"""Tests of the Inception-Score-style score (genlib.metrics.inception_score) on predictions whose
score is known in closed form."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from genlib.metrics.inception_score import entropy_terms, inception_score

PROPERTY = settings(max_examples=50, deadline=None)
seeds = st.integers(min_value=0, max_value=2**31 - 1)


def random_probs(seed: int, n: int, k: int, sharpness: float = 1.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (sharpness * torch.randn(n, k, generator=g, dtype=torch.float64)).softmax(1)


@PROPERTY
@given(n=st.integers(1, 50), k=st.integers(1, 30))
def test_uniform_predictions_score_one(n, k):
    mean, std = inception_score(torch.full((n, k), 1.0 / k))
    assert mean == pytest.approx(1.0, abs=1e-9) and std == 0.0


@PROPERTY
@given(k=st.integers(1, 30), per_class=st.integers(1, 5), seed=seeds)
def test_one_hot_used_equally_scores_k(k, per_class, seed):
    labels = torch.arange(k).repeat(per_class)
    labels = labels[torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))]
    probs = torch.nn.functional.one_hot(labels, k).float()
    mean, _ = inception_score(probs)
    assert mean == pytest.approx(k, rel=1e-6)


@PROPERTY
@given(n=st.integers(1, 40), k=st.integers(2, 20), cls=st.integers(0, 19))
def test_all_one_class_scores_one(n, k, cls):
    probs = torch.zeros(n, k)
    probs[:, cls % k] = 1.0
    assert inception_score(probs)[0] == pytest.approx(1.0, abs=1e-9)


def test_one_hot_on_m_of_k_classes_scores_m():
    probs = torch.nn.functional.one_hot(torch.tensor([0, 3, 3, 0, 5, 5]), 10).double()
    assert inception_score(probs)[0] == pytest.approx(3.0)


def test_identical_soft_predictions_score_one():
    row = torch.tensor([0.7, 0.2, 0.1])
    assert inception_score(row.repeat(9, 1))[0] == pytest.approx(1.0)


@PROPERTY
@given(seed=seeds, n=st.integers(2, 60), k=st.integers(2, 20), sharp=st.floats(0.1, 8.0))
def test_log_is_is_marginal_entropy_minus_mean_conditional_entropy(seed, n, k, sharp):
    probs = random_probs(seed, n, k, sharp)
    h_y, h_y_given_x = entropy_terms(probs)
    mean, _ = inception_score(probs)
    assert math.log(mean) == pytest.approx(h_y - h_y_given_x, abs=1e-9)
    assert 0 <= h_y_given_x <= h_y + 1e-12 <= math.log(k) + 1e-9  # I(x;y) >= 0, H(y) <= log k
    assert 1 - 1e-9 <= mean <= k + 1e-9


def test_entropy_terms_closed_forms():
    k = 8
    h_y, h_cond = entropy_terms(torch.eye(k))
    assert h_y == pytest.approx(math.log(k)) and h_cond == pytest.approx(0.0)
    h_y, h_cond = entropy_terms(torch.full((5, k), 1.0 / k))
    assert h_y == pytest.approx(math.log(k)) and h_cond == pytest.approx(math.log(k))


def test_splits_mean_and_std():
    # first half uses 2 classes, second half 4: split scores 2 and 4
    first = torch.nn.functional.one_hot(torch.tensor([0, 1, 0, 1]), 4)
    second = torch.nn.functional.one_hot(torch.tensor([0, 1, 2, 3]), 4)
    probs = torch.cat([first, second]).double()
    mean, std = inception_score(probs, splits=2)
    assert mean == pytest.approx(3.0)
    assert std == pytest.approx(1.0, rel=0.5)  # 1.0 as np.std, 1.41 as the unbiased std
    # the whole set: classes 0 and 1 take 3/8 each, classes 2 and 3 1/8 each, every row one-hot
    whole, zero = inception_score(probs, splits=1)
    h_marginal = -(2 * 0.375 * math.log(0.375) + 2 * 0.125 * math.log(0.125))
    assert zero == 0.0 and whole == pytest.approx(math.exp(h_marginal))


def test_splits_std_is_the_original_recipes_population_std():
    first = torch.nn.functional.one_hot(torch.tensor([0, 1, 0, 1]), 4)
    second = torch.nn.functional.one_hot(torch.tensor([0, 1, 2, 3]), 4)
    _, std = inception_score(torch.cat([first, second]).double(), splits=2)
    assert std == pytest.approx(1.0)


@PROPERTY
@given(seed=seeds, n=st.integers(4, 40), splits=st.integers(1, 4))
def test_splits_equal_the_score_of_each_part(seed, n, splits):
    probs = random_probs(seed, n, 6, 2.0)
    mean, std = inception_score(probs, splits=splits)
    parts = torch.tensor([inception_score(part)[0] for part in torch.tensor_split(probs, splits)], dtype=torch.float64)
    assert mean == pytest.approx(parts.mean().item(), rel=1e-9)
    if splits == 1:
        assert std == 0.0
    else:  # either convention here; test_splits_std_is_the_original_recipes_population_std pins it
        assert any(std == pytest.approx(parts.std(correction=c).item(), abs=1e-9) for c in (0, 1))


def test_float32_input_and_zero_probabilities():
    probs = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float32)
    mean, _ = inception_score(probs)
    assert math.isfinite(mean) and mean == pytest.approx(2.0)


@pytest.mark.parametrize(
    "probs",
    [
        torch.tensor([[0.5, 0.6]]),  # sums to 1.1
        torch.tensor([[1.2, -0.2]]),  # negative entry
        torch.randn(4, 5),  # logits, not probabilities
        torch.zeros(3, 4),
    ],
)
def test_rejects_non_probabilities(probs):
    with pytest.raises(ValueError, match="must be probabilities.*apply softmax first"):
        inception_score(probs)


@pytest.mark.parametrize("probs", [torch.randn(4, 3, generator=torch.Generator().manual_seed(0)), torch.full((5,), 0.2)])
def test_entropy_terms_rejects_what_inception_score_rejects(probs):
    with pytest.raises(ValueError):
        inception_score(probs)
    with pytest.raises(ValueError):
        entropy_terms(probs)


@pytest.mark.parametrize("shape", [(5,), (2, 3, 4)])
def test_rejects_wrong_rank(shape):
    with pytest.raises(ValueError, match="layout 'n k'"):
        inception_score(torch.full(shape, 0.5))


@pytest.mark.parametrize("splits", [0, 5, -1])
def test_rejects_bad_splits(splits):
    with pytest.raises(ValueError, match=r"splits must be between 1 and the number of images \(4\)"):
        inception_score(torch.full((4, 2), 0.5), splits=splits)
