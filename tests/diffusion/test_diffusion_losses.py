"""The simple loss (eq. 14) and its weighted variants."""

import pytest
import torch

from genlib.diffusion import NoiseSchedule, diffusion_loss, loss_weight, q_sample, to_x0_eps


class Linear(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.tensor(0.7))

    def forward(self, x, t, cond=None):
        return self.w * x + 0.01 * t.float().reshape(-1, 1)


def test_simple_loss_is_eq14():
    s = NoiseSchedule("linear", 100)
    g = torch.Generator().manual_seed(0)
    x0, eps, t = torch.randn(8, 3, generator=g), torch.randn(8, 3, generator=g), torch.randint(0, 100, (8,), generator=g)
    model = Linear()
    loss = diffusion_loss(model, s, x0, t=t, noise=eps)
    expect = ((eps - model(q_sample(s, x0, t, eps), t)) ** 2).mean()
    assert torch.allclose(loss, expect)
    loss.backward()
    assert model.w.grad is not None


@pytest.mark.parametrize("kind", ["epsilon", "sample", "v_prediction"])
def test_x0_weighting_is_the_x0_error(kind):
    s = NoiseSchedule("cosine", 100)
    g = torch.Generator().manual_seed(1)
    x0, eps, t = torch.randn(8, 3, generator=g), torch.randn(8, 3, generator=g), torch.randint(0, 100, (8,), generator=g)
    model = Linear()
    loss = diffusion_loss(model, s, x0, t=t, noise=eps, prediction_type=kind, weighting="x0")
    x_t = q_sample(s, x0, t, eps)
    x0_hat, _ = to_x0_eps(model(x_t, t), x_t, s.gather(s.alphas_cumprod, t, x_t), kind)
    assert torch.allclose(loss, ((x0_hat - x0) ** 2).mean(1).mean(), rtol=1e-4)


def test_min_snr_weights():
    s = NoiseSchedule("linear", 100)
    t = torch.arange(100)
    w = loss_weight(s, t, "epsilon", "min_snr", gamma=5.0)
    snr = s.snr.float()
    assert torch.allclose(w, torch.minimum(snr, torch.tensor(5.0)) / snr)
    assert torch.allclose(loss_weight(s, t, "sample", "min_snr", 5.0), snr.clamp(max=5.0))


def test_bad_input():
    s = NoiseSchedule("linear", 100)
    x0 = torch.zeros(4, 3)
    with pytest.raises(ValueError, match="unknown weighting"):
        diffusion_loss(Linear(), s, x0, weighting="elbo")
    with pytest.raises(ValueError, match="unknown prediction_type"):
        diffusion_loss(Linear(), s, x0, prediction_type="score")
    with pytest.raises(ValueError, match=r"\[0, 99\]"):
        diffusion_loss(Linear(), s, x0, t=torch.tensor([0, 1, 2, 100]))
    with pytest.raises(ValueError, match="one timestep per sample"):
        diffusion_loss(Linear(), s, x0, t=torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="noise must have"):
        diffusion_loss(Linear(), s, x0, noise=torch.zeros(4, 2))


def test_empty_or_non_finite_batch_is_an_error():
    """An empty batch once gave a NaN loss (then fit's "try a lower lr"); NaN data the same."""
    s = NoiseSchedule("linear", 100)
    with pytest.raises(ValueError, match="empty batch"):
        diffusion_loss(Linear(), s, torch.zeros(0, 3))
    x0 = torch.zeros(4, 3)
    x0[2, 1] = float("nan")
    with pytest.raises(ValueError, match="x0 holds NaN or inf"):
        diffusion_loss(Linear(), s, x0)
