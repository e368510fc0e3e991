"""The fused nearest-code kernel picks the reference's code on random ragged shapes."""

import random

import pytest
import torch

from genlib.kernels import vq_nearest, vq_nearest_reference

DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def log_uniform(rng: random.Random, high: int) -> int:
    """An integer in [1, high], log-uniform: mostly small (cheap in the interpreter), some large."""
    return max(1, round(high ** rng.random()))


def squared_distances(z: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """The full ``n k`` matrix, in float64: the ground truth the kernel must be close to."""
    return torch.cdist(z.double(), codebook.double()).pow(2)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_vq_matches_reference_on_random_shapes(dtype, force_triton):
    rng = random.Random(f"vq-{dtype}")
    gen = torch.Generator().manual_seed(0)
    for _ in range(50):
        n, k, d = case = log_uniform(rng, 512), log_uniform(rng, 200), rng.randint(1, 48)
        z = torch.randn(n, d, generator=gen).to(dtype)
        codebook = torch.randn(k, d, generator=gen).to(dtype)
        idx, dist = vq_nearest(z, codebook, return_distance=True)
        ref_idx, ref_dist = vq_nearest_reference(z, codebook, return_distance=True)
        assert idx.dtype == torch.int64 and idx.shape == (n,) and dist.shape == (n,)
        # Both pick a nearest code: equal indices, up to near-ties that rounding may order either way.
        exact = squared_distances(z, codebook)
        chosen = exact.gather(1, idx[:, None])[:, 0]
        assert (chosen <= exact.min(1).values + 1e-4 * (1 + exact.min(1).values)).all(), case
        assert (idx == ref_idx).float().mean() >= 0.99, case
        torch.testing.assert_close(dist, ref_dist, atol=1e-4, rtol=1e-4, msg=lambda s: f"{case}: {s}")


def test_ties_go_to_the_lowest_index(force_triton):
    """A codebook of two identical halves: every row's nearest code is in the first half.

    The rule is tested on small integers, where every product and sum is exact in fp32, so tied
    distances are bitwise equal whichever tile column or BLAS kernel computes them. (On random
    floats two copies of a code can get distances a last bit apart: under the interpreter tl.dot
    is numpy's matmul, whose rounding on AMD CPUs depends on the column a code sits in.)
    """
    gen = torch.Generator().manual_seed(1)
    half = torch.randint(-3, 4, (70, 12), generator=gen).float()
    codebook = torch.cat([half, half, half[:5]])  # copies in the same and in later code blocks
    z = torch.randint(-3, 4, (200, 12), generator=gen).float()
    idx = vq_nearest(z, codebook)
    assert (idx < 70).all()
    # Small integers also tie between different codes: the reference (torch.argmin's rule, the
    # lowest index) must agree exactly, and the ties must really be there to test.
    exact = squared_distances(z, codebook)
    assert ((exact[:, :70] == exact[:, :70].min(1, keepdim=True).values).sum(1) > 1).any()
    assert torch.equal(idx, exact.argmin(1))
    assert torch.equal(idx, vq_nearest_reference(z, codebook))


def test_codes_equal_to_inputs_are_found_exactly(force_triton):
    gen = torch.Generator().manual_seed(2)
    codebook = torch.randn(90, 20, generator=gen)
    pick = torch.randint(0, 90, (150,), generator=gen)
    idx, dist = vq_nearest(codebook[pick], codebook, return_distance=True)
    assert torch.equal(idx, pick)
    assert dist.abs().max() < 1e-4


def test_vq_through_autograd_uses_the_reference(force_triton):
    """Indices carry no gradient; the distance does, through the reference."""
    gen = torch.Generator().manual_seed(3)
    z = torch.randn(10, 4, generator=gen, requires_grad=True)
    codebook = torch.randn(6, 4, generator=gen)
    idx, dist = vq_nearest(z, codebook, return_distance=True)
    dist.sum().backward()
    torch.testing.assert_close(z.grad, 2 * (z - codebook[idx]).detach(), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    "z_shape, e_shape, match",
    [
        ((2, 5, 8), (16, 8), "z of layout n d"),
        ((5, 8), (16, 8, 1), "codebook of layout k d"),
        ((5, 8), (16, 7), "code dim mismatch"),
        ((5, 8), (0, 8), "at least one code"),
    ],
)
def test_vq_rejects_bad_layouts(z_shape, e_shape, match):
    with pytest.raises(ValueError, match=match):
        vq_nearest(torch.zeros(z_shape), torch.zeros(e_shape))


def test_vq_rejects_unknown_precision():
    with pytest.raises(ValueError, match="input_precision"):
        vq_nearest(torch.zeros(3, 2), torch.zeros(4, 2), input_precision="tf16")
