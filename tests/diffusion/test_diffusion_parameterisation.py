"""epsilon / sample / v_prediction conversions are exact inverses of each other."""

import pytest
import torch

from genlib.diffusion import PREDICTION_TYPES, convert, target, to_x0_eps, v_from


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("kind", PREDICTION_TYPES)
def test_round_trips(seed, kind):
    g = torch.Generator().manual_seed(seed)
    x0, eps = torch.randn(6, 3, 4, generator=g, dtype=torch.float64), torch.randn(6, 3, 4, generator=g, dtype=torch.float64)
    abar = torch.rand(6, 1, 1, generator=g, dtype=torch.float64) * 0.98 + 0.01
    x_t = abar.sqrt() * x0 + (1 - abar).sqrt() * eps
    pred = target(kind, x0, eps, abar)
    x0_back, eps_back = to_x0_eps(pred, x_t, abar, kind)
    assert torch.allclose(x0_back, x0) and torch.allclose(eps_back, eps)
    for other in PREDICTION_TYPES:
        assert torch.allclose(convert(convert(pred, x_t, abar, kind, other), x_t, abar, other, kind), pred)


def test_v_definition_and_inverse():
    x0, eps, abar = torch.randn(4, 2, dtype=torch.float64), torch.randn(4, 2, dtype=torch.float64), 0.3
    v = v_from(x0, eps, abar)
    assert torch.allclose(v, abar**0.5 * eps - (1 - abar) ** 0.5 * x0)
    x_t = abar**0.5 * x0 + (1 - abar) ** 0.5 * eps
    assert torch.allclose(abar**0.5 * x_t - (1 - abar) ** 0.5 * v, x0)  # x = alpha z - sigma v


def test_bad_input():
    x = torch.zeros(2, 3)
    with pytest.raises(ValueError, match="unknown prediction_type"):
        to_x0_eps(x, x, 0.5, "score")
    with pytest.raises(ValueError, match="x_t's layout"):
        to_x0_eps(x[:1], x, 0.5, "epsilon")
