"""The GroupNorm + SiLU kernels equal F.silu(F.group_norm(...)) on random ragged shapes."""

import random

import pytest
import torch
import torch.nn.functional as F

from genlib.kernels import group_norm_silu, group_norm_silu_reference
from genlib.kernels.groupnorm_triton import group_norm_silu_triton

# (atol, rtol) against the fp32 reference; the outputs are rounded to the input dtype (bf16: the
# interpreter truncates, 1 ulp).
TOLERANCE = {torch.float32: (1e-5, 1e-5), torch.float16: (2e-3, 2e-3), torch.bfloat16: (2e-2, 2e-2)}


def random_case(rng: random.Random):
    b = rng.choice([1, 1, 2])
    groups = rng.choice([1, 2, 3]) if b == 1 else rng.choice([1, 2])
    c = groups * rng.randint(1, 3)
    # (t) h w, with w > 1: F.group_norm refuses groups of a single value.
    spatial = [rng.randint(1, 4), rng.randint(1, 9), rng.randint(2, 9)][rng.choice([1, 0]) :]
    pieces = rng.choice([None, 1, 3])  # None: the launcher's choice
    l2_reuse = rng.random() < 0.5  # split path: reversed order, cache hints (or neither)
    return (b, c, *spatial), groups, pieces, l2_reuse, rng.random() < 0.8, rng.choice([1e-5, 1e-3])


def random_inputs(dtype, name: str, seed: int, n: int = 50):
    """``n`` random cases: ``(case, x, weight, bias, ref)`` with the fp32 reference output."""
    rng = random.Random(name)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(n):
        shape, groups, pieces, l2_reuse, affine, eps = case = random_case(rng)
        x = (torch.randn(shape, generator=gen) * 2 + 0.5).to(dtype)
        weight = torch.randn(shape[1], generator=gen).to(dtype) if affine else None
        bias = torch.randn(shape[1], generator=gen).to(dtype) if affine else None
        w, b = (None, None) if not affine else (weight.float(), bias.float())
        yield case, x, weight, bias, group_norm_silu_reference(x.float(), w, b, num_groups=groups, eps=eps)


@pytest.mark.parametrize("dtype", list(TOLERANCE), ids=str)
def test_group_norm_silu_matches_reference_on_random_shapes(dtype, force_triton):
    atol, rtol = TOLERANCE[dtype]
    for case, x, weight, bias, ref in random_inputs(dtype, f"groupnorm-{dtype}", 0):
        shape, groups, pieces, l2_reuse, _, eps = case
        out = group_norm_silu_triton(x, weight, bias, num_groups=groups, eps=eps, pieces=pieces, l2_reuse=l2_reuse)
        assert out.dtype == dtype and out.shape == x.shape
        torch.testing.assert_close(out.float(), ref, atol=atol, rtol=rtol, msg=lambda s: f"{case}: {s}")


def test_statistics_survive_a_large_mean(force_triton):
    """Values 1e4 +- 1: the shifted sums keep the variance that E[x^2] - E[x]^2 in fp32 loses."""
    gen = torch.Generator().manual_seed(1)
    x = 1e4 + torch.randn(2, 4, 16, 16, generator=gen)
    expected = F.silu(F.group_norm(x.double(), 2, eps=1e-5)).float()
    for pieces, l2_reuse in ((1, True), (4, True), (4, False)):
        out = group_norm_silu_triton(x, num_groups=2, pieces=pieces, l2_reuse=l2_reuse)
        torch.testing.assert_close(out, expected, atol=2e-3, rtol=2e-3)


def test_public_function_uses_the_kernel_and_splits_groups(force_triton):
    """Through the dispatcher, with a group large enough to be cut into several pieces."""
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(1, 4, 3, 20, 20, generator=gen)  # b c t h w, groups of 2 * 1200 values
    weight, bias = torch.randn(4, generator=gen), torch.randn(4, generator=gen)
    torch.testing.assert_close(
        group_norm_silu(x, 2, weight, bias),
        group_norm_silu_reference(x, weight, bias, num_groups=2),
        atol=1e-5,
        rtol=1e-5,
    )


def test_group_norm_silu_gradient_is_the_reference_gradient(force_triton):
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(2, 4, 5, 6, generator=gen, requires_grad=True)
    weight = torch.randn(4, generator=gen, requires_grad=True)
    bias = torch.randn(4, generator=gen, requires_grad=True)
    grad_out = torch.randn(2, 4, 5, 6, generator=gen)
    got = torch.autograd.grad(group_norm_silu(x, 2, weight, bias), (x, weight, bias), grad_out)
    ref = group_norm_silu_reference(x, weight, bias, num_groups=2)
    expected = torch.autograd.grad(ref, (x, weight, bias), grad_out)
    for g, e in zip(got, expected):
        torch.testing.assert_close(g, e, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    "shape, groups, weight_shape, match",
    [
        ((2, 4, 8), 2, None, "b c h w or b c t h w"),
        ((2, 6, 4, 4), 4, None, "not divisible by num_groups=4"),
        ((2, 6, 4, 4), 3, (5,), "weight of shape"),
    ],
)
def test_group_norm_silu_rejects_bad_layouts(shape, groups, weight_shape, match):
    weight = None if weight_shape is None else torch.ones(weight_shape)
    with pytest.raises(ValueError, match=match):
        group_norm_silu(torch.zeros(shape), groups, weight)


@pytest.mark.parametrize("dtype", list(TOLERANCE), ids=str)
def test_one_pass_kernel_matches_reference(dtype, force_triton):
    """The one-launch kernel (sums, per-group arrival counter, normalisation). The interpreter runs
    programs one at a time, so here each group is one piece and the wait returns at once; pieces
    that wait for each other are checked on a GPU by ``benchmarks/kernels.py``."""
    atol, rtol = TOLERANCE[dtype]
    for case, x, weight, bias, ref in random_inputs(dtype, f"groupnorm-one-pass-{dtype}", 4):
        _, groups, _, _, _, eps = case
        out = group_norm_silu_triton(x, weight, bias, num_groups=groups, eps=eps, one_pass=True)
        torch.testing.assert_close(out.float(), ref, atol=atol, rtol=rtol, msg=lambda s: f"{case}: {s}")


def test_one_pass_plan_never_launches_more_programs_than_the_gpu_holds(monkeypatch):
    """On a GPU (faked here: no interpreter, 132 multiprocessors x 2) the plan's grid, groups x
    pieces, fits in what runs at once; with fewer than two pieces a group it declines."""
    from genlib.kernels import groupnorm_triton as gt

    monkeypatch.setattr(gt, "interpreting", lambda: False)
    monkeypatch.setattr(gt, "resident_programs", lambda device, per_sm=1: 132 * per_sm)
    x = torch.empty(0)
    for groups, s, cpg in [(32, 65536, 8), (64, 4096, 4), (2, 5000, 3), (16, 1000, 16), (8, 70000, 64)]:
        plan = gt._one_pass_plan(x, groups, s, cpg, None, 2)
        assert plan is not None, (groups, s, cpg)
        block_c, block_s, pieces, s_chunks, chunk_s = plan
        assert pieces >= 2 and groups * pieces <= 264
        assert pieces == triton_cdiv(cpg, block_c) * s_chunks
        assert s_chunks * chunk_s >= s and (s_chunks - 1) * chunk_s < s  # the chunks cover s once
    assert gt._one_pass_plan(x, 200, 65536, 8, None, 1) is None  # 200 groups on 132 programs
    assert gt._one_pass_plan(x, 2048, 1024, 4, None, 2) is None  # U-Net shapes: the usual path
    assert gt._one_pass_plan(x, 2, 100, 3, None, 2) is None  # a group fits one tile: nothing to split


def triton_cdiv(a, b):
    return -(-a // b)
