"""Fréchet distance between two Gaussians fitted to features (FID-style, survey eq. 1).

Fit a Gaussian to each set of feature vectors, ``N(mu_x, Sigma_x)`` for real data and
``N(mu_g, Sigma_g)`` for generated data. The Fréchet (2-Wasserstein) distance between them, squared,
is

    d^2 = ||mu_x - mu_g||^2 + Tr(Sigma_x + Sigma_g - 2 (Sigma_x Sigma_g)^{1/2})        (eq. 1)

FID is this number on Inception-v3 features; the book uses the features of each data world's own
evaluator instead (see :mod:`genlib.metrics.evaluator`). Note that eq. 1 is already the *squared*
distance: no square root is taken.

The matrix square root: ``Sigma_x Sigma_g`` is not symmetric, but with ``A = Sigma_x^{1/2}``,
``Sigma_x Sigma_g = A (A Sigma_g A) A^{-1}`` is similar to the symmetric positive semi-definite
``A Sigma_g A``, so ``Tr (Sigma_x Sigma_g)^{1/2} = sum_i sqrt(lambda_i(A Sigma_g A))``. Two
symmetric eigendecompositions in float64 give it without a general (and fragile) ``sqrtm``.
"""

from __future__ import annotations

import torch


def gaussian_stats(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean ``d`` and unbiased covariance ``d d`` (float64) of features ``n d``, with ``n >= 2``."""
    if features.ndim != 2:
        raise ValueError(f"features must have layout 'n d', got shape {tuple(features.shape)}")
    if features.shape[0] < 2:
        raise ValueError(f"need at least 2 feature vectors to estimate a covariance, got {features.shape[0]}")
    f = features.detach().to(torch.float64)
    mu = f.mean(0)
    centred = f - mu
    return mu, centred.T @ centred / (f.shape[0] - 1)


def _sqrt_psd(matrix: torch.Tensor) -> torch.Tensor:
    """Symmetric square root of a symmetric positive semi-definite matrix (negative round-off
    eigenvalues are set to zero)."""
    vals, vecs = torch.linalg.eigh((matrix + matrix.mT) / 2)
    return (vecs * vals.clamp_min(0).sqrt()[..., None, :]) @ vecs.mT


def trace_sqrt_product(sigma_x: torch.Tensor, sigma_g: torch.Tensor) -> torch.Tensor:
    """``Tr (Sigma_x Sigma_g)^{1/2}`` for symmetric PSD matrices (``... d d``: batches too)."""
    a = _sqrt_psd(sigma_x)
    middle = a @ sigma_g @ a
    return torch.linalg.eigvalsh((middle + middle.mT) / 2).clamp_min(0).sqrt().sum(-1)


def frechet_distance(mu_x, sigma_x, mu_g, sigma_g) -> float:
    """Eq. 1 from the two Gaussians' parameters (any float dtype; computed in float64)."""
    mu_x, mu_g = torch.as_tensor(mu_x, dtype=torch.float64), torch.as_tensor(mu_g, dtype=torch.float64)
    sigma_x, sigma_g = torch.as_tensor(sigma_x, dtype=torch.float64), torch.as_tensor(sigma_g, dtype=torch.float64)
    d = mu_x.shape[-1] if mu_x.ndim == 1 else -1
    if mu_x.shape != (d,) or mu_g.shape != (d,) or sigma_x.shape != (d, d) or sigma_g.shape != (d, d):
        raise ValueError(
            f"expected means of shape (d,) and covariances (d, d) with one d; got {tuple(mu_x.shape)}, "
            f"{tuple(sigma_x.shape)}, {tuple(mu_g.shape)}, {tuple(sigma_g.shape)}"
        )
    mean_term = (mu_x - mu_g).pow(2).sum()
    cov_term = torch.trace(sigma_x) + torch.trace(sigma_g) - 2 * trace_sqrt_product(sigma_x, sigma_g)
    return float(mean_term + cov_term)


def frechet_distance_features(features_x: torch.Tensor, features_g: torch.Tensor) -> float:
    """Eq. 1 between Gaussians fitted to two feature sets ``n d`` and ``m d``."""
    if features_x.ndim != 2 or features_g.ndim != 2 or features_x.shape[1] != features_g.shape[1]:
        raise ValueError(
            f"expected features 'n d' and 'm d' with the same d, got {tuple(features_x.shape)} and {tuple(features_g.shape)}"
        )
    return frechet_distance(*gaussian_stats(features_x), *gaussian_stats(features_g))


def bootstrap_gap(real: torch.Tensor, better: torch.Tensor, worse: torch.Tensor, *, rounds: int = 100,
                  seed: int = 0) -> tuple[float, float]:
    """How much closer ``better`` is to ``real`` than ``worse``: ``d^2(real, worse) - d^2(real,
    better)`` on features ``n d``, and its standard error over ``rounds`` bootstrap resamples (each
    set drawn again with replacement, independently). Positive when ``better`` is closer; the pair
    is what :func:`genlib.verdicts.verdict` takes as effect and SE."""
    for name, f in (("real", real), ("better", better), ("worse", worse)):
        if f.ndim != 2 or f.shape[0] < 2 or f.shape[1] != real.shape[-1]:
            raise ValueError(f"{name} features must be 'n d' with n >= 2 and d = {real.shape[-1]}, got {tuple(f.shape)}")
    if rounds < 2:
        raise ValueError(f"rounds must be at least 2 for a standard error, got {rounds}")
    sets = [f.detach().to("cpu", torch.float64) for f in (real, better, worse)]
    gen = torch.Generator().manual_seed(seed)
    draws = [[torch.randint(len(f), (len(f),), generator=gen) for f in sets] for _ in range(rounds)]
    # every round's three Gaussians at once: batched covariances and eigendecompositions
    stats = []
    for j, f in enumerate(sets):
        x = f[torch.stack([d[j] for d in draws])]  # rounds n d
        mu = x.mean(1)
        centred = x - mu[:, None]
        stats.append((mu, centred.transpose(1, 2) @ centred / (f.shape[0] - 1)))
    (mu_r, cov_r), (mu_b, cov_b), (mu_w, cov_w) = stats

    def distance(mu_g, cov_g):  # eq. 1 per round
        trace = torch.diagonal(cov_r, dim1=1, dim2=2).sum(-1) + torch.diagonal(cov_g, dim1=1, dim2=2).sum(-1)
        return (mu_r - mu_g).pow(2).sum(-1) + trace - 2 * trace_sqrt_product(cov_r, cov_g)

    gaps = distance(mu_w, cov_w) - distance(mu_b, cov_b)
    full = frechet_distance_features(sets[0], sets[2]) - frechet_distance_features(sets[0], sets[1])
    return full, float(gaps.std())
