"""What each kernel must compute and move: FLOPs and bytes, for the roofline.

A kernel that does ``F`` floating-point operations and must move at least ``B`` bytes between
memory and the chip has the *arithmetic intensity* ``I = F / B`` (FLOP per byte). On a card with
matmul rate ``P`` (FLOP/s) and copy bandwidth ``W`` (bytes/s) it cannot run faster than

    time >= max(F / P, B / W),   so   achieved FLOP/s <= min(P, I * W)      (the roofline)

``I`` above ``P / W`` (about 240 FLOP/byte on an H100 in bf16) makes a kernel compute bound; below
it, memory bound. The bytes here are the least any implementation must move (every input read once,
every output written once); FLOPs count a multiply-add as 2 and leave out what the matrix product
dwarfs. The benchmark (``benchmarks/kernels.py``) records both for every timed case.
"""

from __future__ import annotations


def attention_cost(b: int, h: int, n: int, m: int, d: int, itemsize: int, *, causal: bool = False):
    """``(flops, bytes)`` of attention on ``q: b h n d``, ``k, v: b h m d``: two products of
    ``2 n m d`` each (``S = Q K^T`` and ``P V``; half of them under a square causal mask); read q, k,
    v and write o."""
    flops = 4 * b * h * n * m * d
    if causal:
        flops //= 2
    return flops, itemsize * b * h * (2 * n * d + 2 * m * d)


def vq_cost(n: int, k: int, d: int, itemsize: int):
    """``(flops, bytes)`` of the nearest-code search ``z: n d, e: k d -> n``: the product ``z e^T``;
    read z and the codebook, write int64 indices."""
    return 2 * n * k * d, itemsize * (n * d + k * d) + 8 * n


def group_norm_silu_cost(numel: int, itemsize: int):
    """``(flops, bytes)`` of GroupNorm + SiLU: about 10 operations a value (sums, one multiply-add,
    SiLU's exp, add, divide, multiply); read x once and write the output once."""
    return 10 * numel, 2 * itemsize * numel


def sampler_step_cost(numel: int, itemsize: int, *, guided: bool = True, noise: bool = True):
    """``(flops, bytes)`` of one sampler step: about 20 operations a value; read x_t, eps_cond (and
    eps_uncond, noise), write x_prev and x0."""
    reads = 2 + guided + noise
    return 20 * numel, itemsize * numel * (reads + 2)


def roofline(intensity: float, matmul_flops: float, copy_bytes: float) -> float:
    """The highest FLOP/s a kernel of ``intensity`` FLOP/byte can reach: ``min(P, I * W)``."""
    return min(matmul_flops, intensity * copy_bytes)


def ridge(matmul_flops: float, copy_bytes: float) -> float:
    """The intensity (FLOP/byte) where the memory roof meets the compute roof, ``P / W``."""
    return matmul_flops / copy_bytes
