import math

import pytest
import torch

from genlib.nn.embeddings import TimestepEmbedding, ddpm_timestep_embedding, timestep_embedding


def test_pinned_convention_cos_first_divisor_half():
    dim, t = 8, torch.tensor([0.0, 3.0, 999.0])
    emb = timestep_embedding(t, dim)
    half = dim // 2
    for j in range(half):
        f = 10000.0 ** (-j / half)
        assert torch.allclose(emb[:, j], torch.cos(t * f), atol=1e-5)
        assert torch.allclose(emb[:, half + j], torch.sin(t * f), atol=1e-5)


def test_t_zero_is_ones_then_zeros_and_norm_is_constant():
    emb = timestep_embedding(torch.tensor([0, 7, 500]), 16)
    assert torch.equal(emb[0], torch.cat([torch.ones(8), torch.zeros(8)]))
    assert torch.allclose(emb.norm(dim=1), torch.full((3,), math.sqrt(8)), atol=1e-5)


def test_ddpm_convention_differs_but_is_sin_first():
    t = torch.tensor([5.0])
    a, b = timestep_embedding(t, 8), ddpm_timestep_embedding(t, 8)
    assert not torch.allclose(a, b)
    assert torch.allclose(b[0, 0], torch.sin(t[0]))  # first frequency is 1 in both
    assert torch.allclose(b[0, 3], torch.sin(t[0] * 1e-4), atol=1e-6)  # last is 1/max_period exactly


@pytest.mark.parametrize("seed", range(5))
def test_integer_and_float_timesteps_agree(seed):
    t = torch.randint(0, 1000, (6,), generator=torch.Generator().manual_seed(seed))
    assert torch.allclose(timestep_embedding(t, 32), timestep_embedding(t.float(), 32))


def test_scalar_timestep_gives_one_row():
    assert timestep_embedding(3, 10).shape == (1, 10)


@pytest.mark.parametrize("bad", [torch.zeros(2, 3), torch.tensor([True])])
def test_bad_timesteps(bad):
    with pytest.raises(ValueError, match="timesteps"):
        timestep_embedding(bad, 8)


@pytest.mark.parametrize("dim", [0, 7])
def test_bad_dim(dim):
    with pytest.raises(ValueError, match="even"):
        timestep_embedding(torch.tensor([1]), dim)


def test_mlp_shape():
    m = TimestepEmbedding(16, 64)
    assert m(torch.tensor([1, 2, 3])).shape == (3, 64)
