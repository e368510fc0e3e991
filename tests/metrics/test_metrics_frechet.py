"""Tests of the Fréchet distance (genlib.metrics.frechet, survey eq. 1) against closed forms and
scipy's general matrix square root."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.linalg
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from genlib.metrics.frechet import frechet_distance, frechet_distance_features, gaussian_stats
from genlib.metrics.frechet import trace_sqrt_product

PROPERTY = settings(max_examples=40, deadline=None)
seeds = st.integers(min_value=0, max_value=2**32 - 1)


def random_spd(rng: np.random.Generator, d: int, rank: int | None = None) -> np.ndarray:
    a = rng.standard_normal((d, rank or d))
    return a @ a.T + (1e-3 * np.eye(d) if rank is None else 0.0)


def reference(mu1, s1, mu2, s2) -> float:
    """Eq. 1 with scipy's general sqrtm, as the FID reference code computes it."""
    covmean = scipy.linalg.sqrtm(s1 @ s2)
    covmean = np.real(covmean)
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


@PROPERTY
@given(m1=st.floats(-5, 5), m2=st.floats(-5, 5), s1=st.floats(0.01, 5), s2=st.floats(0.01, 5))
def test_one_dimension_closed_form(m1, m2, s1, s2):
    # N(m1, s1^2) vs N(m2, s2^2): d^2 = (m1 - m2)^2 + (s1 - s2)^2
    got = frechet_distance([m1], [[s1 * s1]], [m2], [[s2 * s2]])
    assert got == pytest.approx((m1 - m2) ** 2 + (s1 - s2) ** 2, rel=1e-9, abs=1e-9)


@PROPERTY
@given(seed=seeds, d=st.integers(1, 12))
def test_diagonal_covariances_closed_form(seed, d):
    # commuting covariances: d^2 = ||mu||^2 + sum_i (sqrt a_i - sqrt b_i)^2
    rng = np.random.default_rng(seed)
    mu1, mu2 = rng.standard_normal(d), rng.standard_normal(d)
    a, b = rng.uniform(0.0, 4.0, d), rng.uniform(0.0, 4.0, d)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    got = frechet_distance(torch.tensor(mu1), torch.diag(torch.tensor(a)), torch.tensor(mu2), torch.diag(torch.tensor(b)))
    assert got == pytest.approx(expected, rel=1e-8, abs=1e-9)


@PROPERTY
@given(seed=seeds, d=st.integers(2, 16))
def test_commuting_non_diagonal_covariances(seed, d):
    # same eigenvectors Q, eigenvalues a and b: the distance only sees the eigenvalues
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    a, b = rng.uniform(0.1, 3.0, d), rng.uniform(0.1, 3.0, d)
    s1, s2 = q @ np.diag(a) @ q.T, q @ np.diag(b) @ q.T
    mu = np.zeros(d)
    assert frechet_distance(mu, s1, mu, s2) == pytest.approx(np.sum((np.sqrt(a) - np.sqrt(b)) ** 2), rel=1e-7, abs=1e-8)


@PROPERTY
@given(seed=seeds, d=st.integers(1, 24))
def test_general_spd_matches_scipy_sqrtm(seed, d):
    rng = np.random.default_rng(seed)
    mu1, mu2 = rng.standard_normal(d), rng.standard_normal(d)
    s1, s2 = random_spd(rng, d), random_spd(rng, d)
    got = frechet_distance(mu1, s1, mu2, s2)
    assert got == pytest.approx(reference(mu1, s1, mu2, s2), rel=1e-6, abs=1e-6)
    assert got >= -1e-9


@PROPERTY
@given(seed=seeds, d=st.integers(2, 12), rank=st.integers(1, 4))
def test_singular_covariances(seed, d, rank):
    # rank-deficient (PSD, not PD) covariances, where sqrtm is ill-conditioned: compare with
    # Tr (S1 S2)^{1/2} = sum sqrt(eig(S1 S2)) from a general (non-symmetric) eigensolver
    rng = np.random.default_rng(seed)
    s1, s2 = random_spd(rng, d, rank=min(rank, d)), random_spd(rng, d, rank=min(rank, d))
    mu = np.zeros(d)
    got = frechet_distance(mu, s1, mu, s2)
    tr_sqrt = np.sqrt(np.clip(np.linalg.eigvals(s1 @ s2).real, 0, None)).sum()
    assert got == pytest.approx(np.trace(s1) + np.trace(s2) - 2 * tr_sqrt, rel=1e-5, abs=1e-5)
    assert frechet_distance(mu, s1, mu, s1) == pytest.approx(0.0, abs=1e-6 * np.trace(s1))


@PROPERTY
@given(seed=seeds, d=st.integers(1, 16))
def test_symmetric_and_zero_for_identical(seed, d):
    rng = np.random.default_rng(seed)
    mu1, mu2 = rng.standard_normal(d), rng.standard_normal(d)
    s1, s2 = random_spd(rng, d), random_spd(rng, d)
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(frechet_distance(mu2, s2, mu1, s1), rel=1e-9, abs=1e-9)
    assert frechet_distance(mu1, s1, mu1, s1) == pytest.approx(0.0, abs=1e-8 * (1 + np.trace(s1)))
    # translating both means together changes nothing
    shift = rng.standard_normal(d)
    assert frechet_distance(mu1 + shift, s1, mu2 + shift, s2) == pytest.approx(frechet_distance(mu1, s1, mu2, s2), rel=1e-8, abs=1e-9)


def test_trace_sqrt_product_of_identity_multiples():
    eye = torch.eye(5, dtype=torch.float64)
    assert trace_sqrt_product(4 * eye, 9 * eye).item() == pytest.approx(5 * 6)


def test_float32_inputs_are_computed_in_float64():
    rng = np.random.default_rng(0)
    s1, s2 = random_spd(rng, 8), random_spd(rng, 8)
    mu = np.zeros(8)
    f32 = dict(dtype=torch.float32)
    got = frechet_distance(torch.tensor(mu, **f32), torch.tensor(s1, **f32), torch.tensor(mu), torch.tensor(s2, **f32))
    assert isinstance(got, float)
    assert got == pytest.approx(reference(mu, s1.astype(np.float32), mu, s2.astype(np.float32)), rel=1e-5)


# ----------------------------------------------------------------------------- from features


def test_gaussian_stats_are_mean_and_unbiased_covariance():
    f = torch.randn(50, 4, generator=torch.Generator().manual_seed(0)).float()
    mu, sigma = gaussian_stats(f)
    assert mu.dtype == sigma.dtype == torch.float64
    assert torch.allclose(mu, torch.from_numpy(f.double().numpy().mean(0)))
    assert torch.allclose(sigma, torch.from_numpy(np.cov(f.double().numpy(), rowvar=False)))


def test_features_of_shifted_samples_match_the_stats():
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(400, 6, generator=g, dtype=torch.float64), torch.randn(300, 6, generator=g, dtype=torch.float64) * 2 + 1
    expected = frechet_distance(*gaussian_stats(x), *gaussian_stats(y))
    assert frechet_distance_features(x, y) == pytest.approx(expected, rel=1e-12)
    # roughly the population value: ||1||^2 * 6 + 6 * (1 - 2)^2 = 12
    assert frechet_distance_features(x, y) == pytest.approx(12.0, rel=0.2)
    assert frechet_distance_features(x, x) == pytest.approx(0.0, abs=1e-9)


def test_same_gaussian_gives_a_small_value_that_shrinks_with_n():
    """Sample-size bias: for two samples of one Gaussian the expected value is positive and falls
    roughly as 1/n (the mean term alone has expectation 2 Tr(Sigma) / n)."""
    d = 8
    mean = torch.linspace(-1, 1, d, dtype=torch.float64)
    chol = torch.linalg.cholesky(torch.from_numpy(random_spd(np.random.default_rng(7), d)))
    values = []
    for n in (100, 400, 1600, 6400):
        runs = []
        for rep in range(4):
            g = torch.Generator().manual_seed(1000 * n + rep)
            x = torch.randn(n, d, generator=g, dtype=torch.float64) @ chol.T + mean
            y = torch.randn(n, d, generator=g, dtype=torch.float64) @ chol.T + mean
            runs.append(frechet_distance_features(x, y))
        assert all(v > 0 for v in runs)
        values.append(float(np.mean(runs)))
    assert all(a > b for a, b in zip(values, values[1:])), values
    scale = torch.trace(chol @ chol.T).item()
    assert values[-1] < 0.01 * scale, (values, scale)
    # the bias is roughly 1/n: quadrupling n cuts it by 2-8x each time
    ratios = [a / b for a, b in zip(values, values[1:])]
    assert all(2 < r < 8 for r in ratios), ratios


# ----------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "args",
    [
        (np.zeros(3), np.eye(3), np.zeros(2), np.eye(3)),
        (np.zeros(3), np.eye(2), np.zeros(3), np.eye(3)),
        (np.zeros(3), np.eye(3), np.zeros(3), np.ones((3, 2))),
        (np.zeros((1, 3)), np.eye(3), np.zeros(3), np.eye(3)),
    ],
)
def test_bad_stat_shapes(args):
    with pytest.raises(ValueError, match=r"expected means of shape \(d,\) and covariances \(d, d\)"):
        frechet_distance(*args)


def test_scalar_stats_give_the_shape_error():
    with pytest.raises(ValueError, match="expected means of shape"):
        frechet_distance(1.0, 1.0, 2.0, 1.0)


def test_bad_feature_shapes_and_too_few_vectors():
    with pytest.raises(ValueError, match="same d"):
        frechet_distance_features(torch.zeros(5, 3), torch.zeros(5, 4))
    with pytest.raises(ValueError, match="same d"):
        frechet_distance_features(torch.zeros(5), torch.zeros(5, 1))
    with pytest.raises(ValueError, match="layout 'n d'"):
        gaussian_stats(torch.zeros(2, 3, 4))
    with pytest.raises(ValueError, match="at least 2 feature vectors.*got 1"):
        frechet_distance_features(torch.zeros(1, 3), torch.zeros(5, 3))
    with pytest.raises(ValueError, match="at least 2 feature vectors.*got 0"):
        gaussian_stats(torch.zeros(0, 3))


def test_no_nan_for_nearly_equal_covariances():
    rng = np.random.default_rng(3)
    s = random_spd(rng, 10)
    val = frechet_distance(np.zeros(10), s, np.zeros(10), s + 1e-12 * np.eye(10))
    assert math.isfinite(val) and abs(val) < 1e-6
