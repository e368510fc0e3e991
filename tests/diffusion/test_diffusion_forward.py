"""The forward process: iterated steps agree with eq. 12; the posterior is DDPM's eq. 6-7."""

import pytest
import torch

from genlib.diffusion import NoiseSchedule, q_mean_variance, q_posterior, q_sample, q_step


def random_schedule(seed, T):
    g = torch.Generator().manual_seed(seed)
    return NoiseSchedule.from_betas(torch.rand(T, generator=g, dtype=torch.float64) * 0.2 + 1e-4)


@pytest.mark.parametrize("seed", range(5))
def test_iterated_mean_and_variance_equal_closed_form(seed):
    """Push the mean and variance of x_t | x0 through each step; they must equal eq. 12."""
    s = random_schedule(seed, 30)
    x0 = torch.randn(4, 3, dtype=torch.float64)
    mean, var = x0.clone(), torch.zeros_like(x0)
    for t in range(len(s)):
        beta = s.betas[t]
        mean, var = (1 - beta).sqrt() * mean, (1 - beta) * var + beta
        m, v = q_mean_variance(s, x0, t)
        assert torch.allclose(mean, m) and torch.allclose(var, v)


def test_iterated_samples_match_closed_form_statistics():
    s = NoiseSchedule("linear", 100)
    x0 = torch.full((20000, 1), 0.7, dtype=torch.float64)
    g = torch.Generator().manual_seed(0)
    x = x0
    for t in range(60):
        x = q_step(s, x, t, torch.randn(x.shape, generator=g, dtype=torch.float64))
    abar = s.alphas_cumprod[59]
    assert x.mean().item() == pytest.approx(0.7 * abar.sqrt().item(), abs=0.02)
    assert x.var().item() == pytest.approx(1 - abar.item(), abs=0.03)


def test_q_sample_per_sample_t_and_shapes():
    s = NoiseSchedule("cosine", 50)
    x0, eps = torch.randn(3, 2, 4, 4), torch.randn(3, 2, 4, 4)
    t = torch.tensor([0, 10, 49])
    x = q_sample(s, x0, t, eps)
    for i in range(3):
        a = s.alphas_cumprod[t[i]].float()
        assert torch.allclose(x[i], a.sqrt() * x0[i] + (1 - a).sqrt() * eps[i], atol=1e-6)
    with pytest.raises(ValueError, match="noise must have x0's layout"):
        q_sample(s, x0, t, eps[:2])
    with pytest.raises(ValueError, match=r"\[0, 49\]"):
        q_sample(s, x0, torch.tensor([0, 1, 50]), eps)


@pytest.mark.parametrize("seed", range(3))
def test_posterior_is_the_gaussian_conditional(seed):
    """q(x_{t-1}|x_t,x0) from Bayes on the joint Gaussian of (x_{t-1}, x_t) given x0."""
    s = random_schedule(seed, 20)
    x0 = torch.randn(5, 3, dtype=torch.float64)
    x_t = torch.randn(5, 3, dtype=torch.float64)
    for t in range(1, len(s)):
        ap, a, beta = s.alphas_cumprod[t - 1], s.alphas_cumprod[t], s.betas[t]
        # x_{t-1} ~ N(sqrt(ap) x0, 1-ap); x_t = sqrt(1-beta) x_{t-1} + sqrt(beta) e
        cov = (1 - beta).sqrt() * (1 - ap)
        mean = ap.sqrt() * x0 + cov / (1 - a) * (x_t - a.sqrt() * x0)
        var = (1 - ap) - cov**2 / (1 - a)
        m, v = q_posterior(s, x0, x_t, t)
        assert torch.allclose(m, mean) and torch.allclose(v, var.expand_as(v))
    m, v = q_posterior(s, x0, x_t, 0)
    assert torch.allclose(m, x0) and (v == 0).all()
