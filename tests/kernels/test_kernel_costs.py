"""The FLOP and byte counts behind the roofline of Appendix E."""

import pytest

from genlib.kernels import costs


def test_attention_intensity_is_half_the_sequence_length_in_bf16():
    """4 n^2 d FLOPs over 4 n d values of 2 bytes: I = n / 2 FLOP per byte."""
    for n in (16, 32, 4096):
        flops, nbytes = costs.attention_cost(2, 3, n, n, 64, 2)
        assert flops / nbytes == pytest.approx(n / 2)
    full, _ = costs.attention_cost(1, 1, 128, 128, 64, 2)
    half, _ = costs.attention_cost(1, 1, 128, 128, 64, 2, causal=True)
    assert half * 2 == full


def test_roofline_is_the_lower_of_the_two_roofs():
    p, w = 700e12, 3e12
    ridge = costs.ridge(p, w)
    assert costs.roofline(ridge, p, w) == pytest.approx(p)
    assert costs.roofline(ridge / 10, p, w) == pytest.approx(p / 10)
    assert costs.roofline(ridge * 10, p, w) == p


def test_memory_bound_kernels_count_one_read_and_one_write():
    assert costs.group_norm_silu_cost(1000, 2)[1] == 4000
    assert costs.sampler_step_cost(1000, 4)[1] == 4 * 1000 * 6  # x_t, eps_c, eps_u, noise in; x_prev, x0 out
    assert costs.sampler_step_cost(1000, 4, guided=False, noise=False)[1] == 4 * 1000 * 4
    flops, nbytes = costs.vq_cost(100, 10, 8, 4)
    assert flops == 2 * 100 * 10 * 8 and nbytes == 4 * (800 + 80) + 8 * 100
