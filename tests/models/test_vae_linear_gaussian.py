"""Chapter 03: the linear-Gaussian model's exact posterior and evidence, the full-covariance
Gaussian KL, and the ELBO identity log p(x) = ELBO(q) + KL(q || p(z|x)) they make checkable."""

import math

import pytest
import torch
from torch.distributions import MultivariateNormal, Normal, kl_divergence as torch_kl

from genlib.models.vae import (gaussian_kl, kl_divergence, linear_gaussian_log_evidence,
                               linear_gaussian_posterior)


def _model(seed, D=5, d=3):
    g = torch.Generator().manual_seed(seed)
    weight = torch.randn(D, d, generator=g, dtype=torch.float64)
    bias = torch.randn(D, generator=g, dtype=torch.float64)
    x = torch.randn(4, D, generator=g, dtype=torch.float64) * 2
    return x, weight, bias, 0.3 + torch.rand(1, generator=g).item(), g


def _log_joint(x, z, weight, bias, s):
    """log p(x|z) + log p(z) for z ``n b d`` -> ``n b``."""
    rec = Normal(z @ weight.T + bias, s).log_prob(x).sum(-1)
    return rec + Normal(0.0, 1.0).log_prob(z).sum(-1)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_bayes_rule_holds_pointwise(seed):
    # log p(x|z) + log p(z) - log p(x) must equal log p(z|x) at every z (eq. 3)
    x, weight, bias, s, g = _model(seed)
    mean, cov = linear_gaussian_posterior(x, weight, bias, s)
    z = torch.randn(7, *mean.shape, generator=g, dtype=torch.float64) * 1.5
    lhs = _log_joint(x, z, weight, bias, s) - linear_gaussian_log_evidence(x, weight, bias, s)
    rhs = MultivariateNormal(mean, cov).log_prob(z)
    assert torch.allclose(lhs, rhs, atol=1e-9)


def test_evidence_by_quadrature_in_one_dimension():
    # the integral of eq. 3's denominator, done numerically on a fine grid (d = 1)
    x, weight, bias, s, _ = _model(3, D=3, d=1)
    z = torch.linspace(-12, 12, 200001, dtype=torch.float64)[:, None, None]   # n 1 1
    joint = _log_joint(x, z, weight, bias, s)                                   # n b
    numeric = torch.logsumexp(joint, 0) + math.log(24 / 200000)
    assert torch.allclose(numeric, linear_gaussian_log_evidence(x, weight, bias, s), atol=1e-8)


@pytest.mark.parametrize("seed", [0, 1])
def test_gaussian_kl_matches_torch_and_the_diagonal_form(seed):
    g = torch.Generator().manual_seed(seed)
    a, b = (torch.randn(3, 4, 4, generator=g, dtype=torch.float64) for _ in range(2))
    cov_q, cov_p = a @ a.mT + 0.1 * torch.eye(4), b @ b.mT + 0.1 * torch.eye(4)
    m_q, m_p = (torch.randn(3, 4, generator=g, dtype=torch.float64) for _ in range(2))
    ref = torch_kl(MultivariateNormal(m_q, cov_q), MultivariateNormal(m_p, cov_p))
    assert torch.allclose(gaussian_kl(m_q, cov_q, m_p, cov_p), ref, rtol=1e-9)
    logvar = torch.randn(3, 4, generator=g, dtype=torch.float64)
    eye = torch.eye(4, dtype=torch.float64)
    assert torch.allclose(gaussian_kl(m_q, torch.diag_embed(logvar.exp()), torch.zeros(4), eye),
                          kl_divergence(m_q, logvar), rtol=1e-12)
    assert torch.allclose(gaussian_kl(m_q, cov_q, m_q, cov_q),
                          torch.zeros(3, dtype=torch.float64), atol=1e-12)
    with pytest.raises(ValueError, match="d d"):
        gaussian_kl(m_q, cov_q[..., :3, :3], m_p, cov_p)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_elbo_gap_is_the_kl_to_the_posterior(seed):
    # ELBO by Monte Carlo of its definition, E_q[log p(x, z) - log q(z)], for a wrong diagonal q
    x, weight, bias, s, g = _model(seed)
    mu = torch.randn(4, 3, generator=g, dtype=torch.float64)
    logvar = torch.randn(4, 3, generator=g, dtype=torch.float64) - 1
    q = Normal(mu, (0.5 * logvar).exp())
    eps = torch.randn(100_000, *mu.shape, generator=g, dtype=torch.float64)
    z = mu + (0.5 * logvar).exp() * eps
    terms = _log_joint(x, z, weight, bias, s) - q.log_prob(z).sum(-1)
    elbo, se = terms.mean(0), terms.std(0) / math.sqrt(len(terms))
    mean, cov = linear_gaussian_posterior(x, weight, bias, s)
    gap = gaussian_kl(mu, torch.diag_embed(logvar.exp()), mean, cov)
    log_px = linear_gaussian_log_evidence(x, weight, bias, s)
    assert (gap > 0.1).all()                                  # q is wrong, the bound is loose
    assert ((log_px - elbo - gap).abs() < 4 * se + 1e-9).all()


def test_bad_layouts():
    x, weight, bias, s, _ = _model(0)
    with pytest.raises(ValueError, match="b D"):
        linear_gaussian_posterior(x[0], weight, bias, s)
    with pytest.raises(ValueError, match="b D"):
        linear_gaussian_log_evidence(x, weight.T, bias, s)
