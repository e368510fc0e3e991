"""NoiseSchedule: the three kinds, their endpoints, indexing and bad input."""

import math

import pytest
import torch

from genlib.diffusion import KINDS, NoiseSchedule
from genlib.diffusion.schedules import cosine_alpha_bar


def test_linear_matches_ddpm_at_T_1000():
    s = NoiseSchedule("linear", 1000)
    assert s.betas.dtype == torch.float64
    assert s.betas[0].item() == pytest.approx(1e-4) and s.betas[-1].item() == pytest.approx(0.02)
    assert torch.allclose(s.alphas_cumprod, torch.cumprod(1 - s.betas, 0))


@pytest.mark.parametrize("T", [50, 100, 250, 1000, 4000])
@pytest.mark.parametrize("kind", KINDS)
def test_every_T_ends_in_noise(kind, T):
    s = NoiseSchedule(kind, T)
    assert s.alphas_cumprod[-1] < 0.01
    assert (s.alphas_cumprod[1:] < s.alphas_cumprod[:-1]).all()  # strictly noisier each step
    assert s.num_train_timesteps == T == len(s) == s.T


def test_unrescaled_linear_at_T_100_does_not_reach_noise():
    betas = torch.linspace(1e-4, 0.02, 100, dtype=torch.float64)
    assert torch.cumprod(1 - betas, 0)[-1].item() == pytest.approx(0.36, abs=0.01)


def test_cosine_alphas_cumprod_follows_the_formula_before_clipping():
    T = 1000
    s = NoiseSchedule("cosine", T)
    u = torch.arange(1, T + 1, dtype=torch.float64) / T
    expect = cosine_alpha_bar(u)
    assert torch.allclose(s.alphas_cumprod[:-5], expect[:-5], rtol=1e-9)
    assert s.betas.max() <= 0.999


def test_scaled_linear_is_square_of_linear_sqrt():
    s = NoiseSchedule("scaled_linear", 1000)
    assert torch.allclose(s.betas.sqrt(), torch.linspace(math.sqrt(0.00085), math.sqrt(0.012), 1000, dtype=torch.float64))


def test_snr_and_posterior_variance():
    s = NoiseSchedule("cosine", 200)
    assert torch.allclose(s.log_snr, torch.log(s.alphas_cumprod / (1 - s.alphas_cumprod)))
    assert s.posterior_variance[0] == 0
    assert (s.posterior_variance[1:] <= s.betas[1:]).all()


def test_bad_input():
    with pytest.raises(ValueError, match="unknown schedule kind"):
        NoiseSchedule("quadratic")
    with pytest.raises(ValueError, match="T must be"):
        NoiseSchedule("linear", 1)
    with pytest.raises(ValueError, match="betas must lie"):
        NoiseSchedule("linear", 10)
    with pytest.raises(ValueError, match="open interval"):
        NoiseSchedule.from_betas([0.1, 1.0])
    s = NoiseSchedule("linear", 100)
    x = torch.zeros(3, 2)
    with pytest.raises(ValueError, match=r"\[0, 99\]"):
        s.check_t(100)
    with pytest.raises(ValueError, match=r"\[0, 99\]"):
        s.gather(s.betas, torch.tensor([-1, 0, 1]), x)
    with pytest.raises(ValueError, match="one t per sample"):
        s.gather(s.betas, torch.tensor([1, 2]), x)


@pytest.mark.parametrize("bad", ["5", None, True, torch.tensor([True, False])])
def test_timesteps_that_are_not_numbers_get_a_clear_message(bad):
    """A string once raised torch's "new(): invalid data type 'str'"; a bool passed as timestep 1."""
    with pytest.raises(ValueError, match=r"t must be integer timesteps in \[0, 99\]"):
        NoiseSchedule("linear", 100).check_t(bad)


def test_numpy_timesteps_are_timesteps():
    import numpy as np

    s = NoiseSchedule("linear", 100)
    assert torch.equal(s.check_t(np.int64(5)), torch.tensor(5))
    assert torch.equal(s.check_t(np.array([1, 99])), torch.tensor([1, 99]))
