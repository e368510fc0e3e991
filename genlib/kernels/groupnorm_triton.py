"""GroupNorm + SiLU in Triton, with the group statistics reduced in parallel chunks.

For a contiguous ``x: b c s`` the ``(c / g) * s`` values of one (sample, group) are one contiguous
run of memory. The work is cut into ``b * g * chunks`` programs, each owning one chunk of one run.

Statistics. Summing ``x`` and ``x^2`` in fp32 and taking ``E[x^2] - E[x]^2`` loses every digit when
the mean is large against the spread. Variance does not change when a constant ``K`` is subtracted
from every value, so each program sums the *shifted* values, with ``K`` the group's first value
(a sample of the group, close to its mean on the scale of its spread):

    S1 = sum (x - K),   S2 = sum (x - K)^2          over the chunk, in fp32
    mu  = K + S1 / N,   var = S2 / N - (S1 / N)^2   over the group, N = (c / g) * s

Chunks of one group share ``K``, so the group's sums are the plain sums of its chunks' sums.

Two launches when a group is split (``chunks > 1``):
  1. ``_group_sums_kernel``: one program per (sample, group, chunk) writes its ``S1, S2``.
  2. ``_group_norm_silu_kernel``: one program per (sample, group, chunk) adds the group's chunk
     sums, then normalises, applies the per-channel ``weight, bias`` and SiLU to its chunk.
One launch when it is not (``chunks == 1``, small groups, many of them: U-Net shapes): the second
kernel sums its whole group itself, then reads the group again (from cache) to normalise it.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from genlib.kernels.dispatch import interpreting
from genlib.kernels.groupnorm import check_group_norm_inputs

# Aim for this many programs on a GPU; below it, groups are split into chunks.
TARGET_PROGRAMS = 2048
MAX_CHUNKS = 256


@triton.jit
def _shifted_sums(base, start, end, shift, BLOCK: tl.constexpr):
    """S1, S2 = sum (x - shift), sum (x - shift)^2 over ``base[start:end]``, in fp32."""
    s1 = tl.zeros([BLOCK], dtype=tl.float32)
    s2 = tl.zeros([BLOCK], dtype=tl.float32)
    for off in range(start, end, BLOCK):
        idx = off + tl.arange(0, BLOCK)
        x = tl.load(base + idx, mask=idx < end, other=0.0).to(tl.float32)
        x = tl.where(idx < end, x - shift, 0.0)
        s1 += x
        s2 += x * x
    return tl.sum(s1, axis=0), tl.sum(s2, axis=0)


@triton.jit
def _group_sums_kernel(X, SUMS, GROUP_SIZE, CHUNK, NUM_CHUNKS, BLOCK: tl.constexpr):
    pid = tl.program_id(0)
    group = pid // NUM_CHUNKS  # which (sample, group): 0 .. b*g-1
    chunk = pid % NUM_CHUNKS
    base = X + group.to(tl.int64) * GROUP_SIZE
    shift = tl.load(base).to(tl.float32)  # K: the group's first value
    start = chunk * CHUNK
    s1, s2 = _shifted_sums(base, start, tl.minimum(start + CHUNK, GROUP_SIZE), shift, BLOCK)
    tl.store(SUMS + 2 * pid, s1)
    tl.store(SUMS + 2 * pid + 1, s2)


@triton.jit
def _group_norm_silu_kernel(
    X, Y, W, B, SUMS,
    GROUP_SIZE, CHUNK, NUM_CHUNKS,
    S,  # spatial size h*w (or t*h*w): consecutive values of one channel
    CHANNELS_PER_GROUP, NUM_GROUPS,
    eps,
    HAS_WEIGHT: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    SPLIT: tl.constexpr,  # NUM_CHUNKS > 1: the sums come from _group_sums_kernel
    BLOCK: tl.constexpr,
    BLOCK_CHUNKS: tl.constexpr,
):
    pid = tl.program_id(0)
    group = pid // NUM_CHUNKS
    chunk = pid % NUM_CHUNKS
    base = group.to(tl.int64) * GROUP_SIZE
    shift = tl.load(X + base).to(tl.float32)

    # Group statistics from the shifted sums (module docstring).
    if SPLIT:
        c = tl.arange(0, BLOCK_CHUNKS)
        c_ok = c < NUM_CHUNKS
        s1 = tl.sum(tl.load(SUMS + 2 * (group * NUM_CHUNKS + c), mask=c_ok, other=0.0), axis=0)
        s2 = tl.sum(tl.load(SUMS + 2 * (group * NUM_CHUNKS + c) + 1, mask=c_ok, other=0.0), axis=0)
    else:
        s1, s2 = _shifted_sums(X + base, 0, GROUP_SIZE, shift, BLOCK)
    mean_shifted = s1 / GROUP_SIZE
    var = tl.maximum(s2 / GROUP_SIZE - mean_shifted * mean_shifted, 0.0)
    mean = shift + mean_shifted
    rstd = 1.0 / tl.sqrt(var + eps)

    # Normalise this chunk, then the per-channel affine map and SiLU.
    first_channel = (group % NUM_GROUPS) * CHANNELS_PER_GROUP
    start = chunk * CHUNK
    end = tl.minimum(start + CHUNK, GROUP_SIZE)
    for off in range(start, end, BLOCK):
        idx = off + tl.arange(0, BLOCK)
        ok = idx < end
        x = tl.load(X + base + idx, mask=ok, other=0.0).to(tl.float32)
        y = (x - mean) * rstd
        channel = first_channel + idx // S
        if HAS_WEIGHT:
            y = y * tl.load(W + channel, mask=ok, other=1.0).to(tl.float32)
        if HAS_BIAS:
            y = y + tl.load(B + channel, mask=ok, other=0.0).to(tl.float32)
        y = y * tl.sigmoid(y)  # SiLU
        tl.store(Y + base + idx, y.to(Y.dtype.element_ty), mask=ok)


def group_norm_silu_triton(
    x: torch.Tensor,
    weight: torch.Tensor | None = None,
    bias: torch.Tensor | None = None,
    *,
    num_groups: int,
    eps: float = 1e-5,
    chunks: int | None = None,
) -> torch.Tensor:
    """Run the kernels on ``x: b c h w`` or ``b c t h w``; returns a contiguous tensor like x.

    ``chunks`` (per group) defaults to enough to give about ``TARGET_PROGRAMS`` programs; tests
    set it to reach both the one-launch and the split path on tiny inputs.
    """
    check_group_norm_inputs(x, num_groups, weight, bias)
    x = x.contiguous()
    y = torch.empty_like(x)
    b, c = x.shape[:2]
    s = x[0, 0].numel()
    group_size = (c // num_groups) * s
    if x.numel() == 0:
        return y

    # Values per loop step; the interpreter runs tiny tests, where small blocks exercise the loops.
    block = min(128 if interpreting() else 2048, triton.next_power_of_2(group_size))
    if chunks is None:
        chunks = triton.cdiv(TARGET_PROGRAMS, b * num_groups)
    chunks = max(1, min(chunks, MAX_CHUNKS, triton.cdiv(group_size, block)))
    chunk = triton.cdiv(triton.cdiv(group_size, chunks), block) * block  # whole blocks per chunk
    chunks = triton.cdiv(group_size, chunk)
    grid = (b * num_groups * chunks,)
    num_warps = 8 if block >= 2048 else 4

    sums = torch.empty(2 * grid[0] if chunks > 1 else 0, dtype=torch.float32, device=x.device)
    if chunks > 1:
        _group_sums_kernel[grid](x, sums, group_size, chunk, chunks, BLOCK=block, num_warps=num_warps)
    _group_norm_silu_kernel[grid](
        x, y,
        x if weight is None else weight,  # a placeholder pointer, never read when HAS_WEIGHT is False
        x if bias is None else bias,
        sums,
        group_size, chunk, chunks, s, c // num_groups, num_groups, eps,
        HAS_WEIGHT=weight is not None,
        HAS_BIAS=bias is not None,
        SPLIT=chunks > 1,
        BLOCK=block,
        BLOCK_CHUNKS=max(2, triton.next_power_of_2(chunks)),
        num_warps=num_warps,
    )
    return y
