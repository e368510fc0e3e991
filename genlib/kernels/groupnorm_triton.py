"""GroupNorm + SiLU in Triton, with the group statistics reduced in parallel pieces.

For a contiguous ``x: b c s`` one (sample, group) is a contiguous ``cg x s`` matrix (its
``cg = c / g`` channels, each ``s`` values long). Programs walk it in ``BLOCK_C x BLOCK_S`` tiles:
a tile spans whole rows when ``s`` is short (U-Net: 4 x 1024, 8 x 256) and one row's stretch
when it is long (VAE: 1 x 2048 of 65,536), and each tile row has one channel, so the per-channel
``weight, bias`` are a ``BLOCK_C`` vector (no per-value division to find the channel).

Statistics. Summing ``x`` and ``x^2`` in fp32 and taking ``E[x^2] - E[x]^2`` loses every digit when
the mean is large against the spread. Variance does not change when a constant ``K`` is subtracted
from every value, so programs sum the *shifted* values, with the pivot ``K`` the group's first value
(a sample of the group, close to its mean on the scale of its spread):

    S1 = sum (x - K),   S2 = sum (x - K)^2          over a piece of the group, in fp32
    mu  = K + S1 / N,   var = S2 / N - (S1 / N)^2   over the group, N = cg * s

Pieces of one group share ``K``, so the group's sums are the plain sums of its pieces' sums.

A group is cut into ``pieces``: channel blocks of ``BLOCK_C`` rows times spatial chunks.
  * ``pieces == 1`` (many small groups: U-Net shapes): one launch. A program sums its whole group,
    then reads it again (from cache) to normalise it.
  * ``pieces > 1`` (few large groups: a VAE's 1 x 256 x 256 x 256 has 32): two launches, so that
    the reduction fills the GPU. ``_group_sums_kernel`` writes every piece's ``S1, S2``;
    ``_group_norm_silu_kernel`` adds its group's sums, then normalises its own piece.
Then ``y = (x - mu) / sqrt(var + eps) * weight + bias`` (one multiply-add per value with
``scale = weight / sqrt(var + eps)`` and ``shift = bias - mu * scale``) and ``out = y * sigmoid(y)``.

The split path reads ``x`` twice. The second read can come from L2 (50 MB on an H100) instead of
memory: the sums kernel asks L2 to keep ``x`` (``evict_last``), and the normalising kernel walks the
pieces in *reverse*, so it starts with the ones the sums kernel read last, still in cache; its own
loads and stores stream (``evict_first``). How a group is cut (tile size, pieces, warps) is timed
once per shape on the GPU (:func:`split_plan`), as ``triton.autotune`` does for one kernel.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import triton
import triton.language as tl

import triton.testing

from genlib.kernels.dispatch import interpreting
from genlib.kernels.groupnorm import check_group_norm_inputs

# Aim for this many programs on a GPU; below it, groups are cut into pieces.
TARGET_PROGRAMS = 2048
MAX_PIECES = 256


@triton.jit
def _piece_bounds(
    pid, PIECES, S_CHUNKS, CHUNK_S, CHANNELS_PER_GROUP, S, BLOCK_C: tl.constexpr, SPLIT: tl.constexpr
):
    """Which (sample, group) program ``pid`` works on, and its channel and spatial ranges."""
    if SPLIT:
        group = pid // PIECES
        piece = pid % PIECES
        c_lo = (piece // S_CHUNKS) * BLOCK_C
        c_hi = tl.minimum(c_lo + BLOCK_C, CHANNELS_PER_GROUP)
        s_lo = (piece % S_CHUNKS) * CHUNK_S
        s_hi = tl.minimum(s_lo + CHUNK_S, S)
    else:  # the whole group
        group, c_lo, c_hi, s_lo, s_hi = pid, 0, CHANNELS_PER_GROUP, 0, S
    return group, c_lo, c_hi, s_lo, s_hi


@triton.jit
def _shifted_sums(
    X, pivot, c_lo, c_hi, s_lo, s_hi, S, BLOCK_C: tl.constexpr, BLOCK_S: tl.constexpr, KEEP_IN_L2: tl.constexpr
):
    """S1, S2 = sum (x - pivot), sum (x - pivot)^2 over rows [c_lo, c_hi) x columns [s_lo, s_hi)."""
    s1 = tl.zeros([BLOCK_C, BLOCK_S], dtype=tl.float32)
    s2 = tl.zeros([BLOCK_C, BLOCK_S], dtype=tl.float32)
    for c0 in range(c_lo, c_hi, BLOCK_C):
        rows = c0 + tl.arange(0, BLOCK_C)
        for s0 in range(s_lo, s_hi, BLOCK_S):
            cols = s0 + tl.arange(0, BLOCK_S)
            ok = (rows[:, None] < c_hi) & (cols[None, :] < s_hi)
            if KEEP_IN_L2:  # a second pass will read x again
                x = tl.load(X + rows[:, None] * S + cols[None, :], mask=ok, other=0.0, eviction_policy="evict_last")
            else:
                x = tl.load(X + rows[:, None] * S + cols[None, :], mask=ok, other=0.0)
            x = tl.where(ok, x.to(tl.float32) - pivot, 0.0)
            s1 += x
            s2 += x * x
    return tl.sum(s1), tl.sum(s2)  # over both axes


@triton.jit
def _group_sums_kernel(
    X, SUMS, GROUP_SIZE, S, CHANNELS_PER_GROUP, PIECES, S_CHUNKS, CHUNK_S,
    BLOCK_C: tl.constexpr,
    BLOCK_S: tl.constexpr,
):
    pid = tl.program_id(0)
    group, c_lo, c_hi, s_lo, s_hi = _piece_bounds(
        pid, PIECES, S_CHUNKS, CHUNK_S, CHANNELS_PER_GROUP, S, BLOCK_C, True
    )
    x_group = X + group.to(tl.int64) * GROUP_SIZE  # int64: b * c * s can pass 2**31
    pivot = tl.load(x_group).to(tl.float32)  # K: the group's first value
    # evict_last: keep x in L2 for the normalising kernel's second read
    s1, s2 = _shifted_sums(x_group, pivot, c_lo, c_hi, s_lo, s_hi, S, BLOCK_C, BLOCK_S, True)
    tl.store(SUMS + 2 * pid, s1)
    tl.store(SUMS + 2 * pid + 1, s2)


@triton.jit
def _group_norm_silu_kernel(
    X, Y, W, B, SUMS,
    GROUP_SIZE, S, CHANNELS_PER_GROUP, NUM_GROUPS, PIECES, S_CHUNKS, CHUNK_S,
    eps,
    HAS_WEIGHT: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    BLOCK_C: tl.constexpr,
    BLOCK_S: tl.constexpr,
    BLOCK_PIECES: tl.constexpr,
    SPLIT: tl.constexpr,  # PIECES > 1: the sums come from _group_sums_kernel
    REVERSE: tl.constexpr,  # walk the pieces last to first (the last ones read are still in L2)
):
    pid = tl.program_id(0)
    if REVERSE:
        pid = tl.num_programs(0) - 1 - pid
    group, c_lo, c_hi, s_lo, s_hi = _piece_bounds(
        pid, PIECES, S_CHUNKS, CHUNK_S, CHANNELS_PER_GROUP, S, BLOCK_C, SPLIT
    )
    offset = group.to(tl.int64) * GROUP_SIZE
    pivot = tl.load(X + offset).to(tl.float32)

    # Group statistics from the shifted sums (module docstring).
    if not SPLIT:
        s1, s2 = _shifted_sums(X + offset, pivot, c_lo, c_hi, s_lo, s_hi, S, BLOCK_C, BLOCK_S, False)
    else:
        p = tl.arange(0, BLOCK_PIECES)
        sums = SUMS + 2 * (group * PIECES + p)
        s1 = tl.sum(tl.load(sums, mask=p < PIECES, other=0.0), axis=0)
        s2 = tl.sum(tl.load(sums + 1, mask=p < PIECES, other=0.0), axis=0)
    mean_shifted = s1 / GROUP_SIZE
    var = tl.maximum(s2 / GROUP_SIZE - mean_shifted * mean_shifted, 0.0)
    mean = pivot + mean_shifted
    rstd = 1.0 / tl.sqrt(var + eps)

    # Normalise, the per-channel affine map folded into one multiply-add, then SiLU.
    first_channel = (group % NUM_GROUPS) * CHANNELS_PER_GROUP
    for c0 in range(c_lo, c_hi, BLOCK_C):
        rows = c0 + tl.arange(0, BLOCK_C)
        row_ok = rows < c_hi
        scale = tl.zeros([BLOCK_C], dtype=tl.float32) + rstd
        if HAS_WEIGHT:
            scale *= tl.load(W + first_channel + rows, mask=row_ok, other=1.0).to(tl.float32)
        shift = -mean * scale
        if HAS_BIAS:
            shift += tl.load(B + first_channel + rows, mask=row_ok, other=0.0).to(tl.float32)
        for s0 in range(s_lo, s_hi, BLOCK_S):
            cols = s0 + tl.arange(0, BLOCK_S)
            ok = row_ok[:, None] & (cols[None, :] < s_hi)
            at = offset + rows[:, None] * S + cols[None, :]
            # In the split path this is x's last use: stream it (and y) through L2.
            if SPLIT:
                x = tl.load(X + at, mask=ok, other=0.0, eviction_policy="evict_first")
            else:
                x = tl.load(X + at, mask=ok, other=0.0)
            y = x.to(tl.float32) * scale[:, None] + shift[:, None]
            y = (y * tl.sigmoid(y)).to(Y.dtype.element_ty)  # SiLU
            if SPLIT:
                tl.store(Y + at, y, mask=ok, eviction_policy="evict_first")
            else:
                tl.store(Y + at, y, mask=ok)


class Plan(NamedTuple):
    """How one launch cuts the groups: tile ``block_c x block_s``, ``pieces`` per group, warps."""

    block_c: int
    block_s: int
    channel_blocks: int
    s_chunks: int
    chunk_s: int
    pieces: int
    num_warps: int
    reverse: bool


def plan(
    b: int, c: int, s: int, num_groups: int, *, pieces: int | None = None, tile: int | None = None,
    num_warps: int | None = None, reverse: bool = True,
) -> Plan:
    """Tiles of up to ``tile`` values (whole rows when ``s`` is short), and the group cut into about
    ``pieces`` (default: enough for ``TARGET_PROGRAMS`` programs) channel blocks x spatial chunks."""
    channels_per_group = c // num_groups
    if tile is None:
        # The interpreter runs tiny tests, where small tiles exercise the loops.
        tile = 128 if interpreting() else 2048
    block_s = min(tile, triton.next_power_of_2(s))
    block_c = min(triton.next_power_of_2(channels_per_group), max(1, tile // block_s))
    channel_blocks = triton.cdiv(channels_per_group, block_c)
    if pieces is None:
        pieces = triton.cdiv(TARGET_PROGRAMS, b * num_groups)
    # Cut the rows first into channel blocks, then (only as far as needed) into spatial chunks.
    s_chunks = min(triton.cdiv(pieces, channel_blocks), triton.cdiv(s, block_s), MAX_PIECES // channel_blocks)
    s_chunks = max(1, s_chunks)
    chunk_s = triton.cdiv(triton.cdiv(s, s_chunks), block_s) * block_s  # whole tiles per chunk
    s_chunks = triton.cdiv(s, chunk_s)
    pieces = 1 if pieces <= 1 else channel_blocks * s_chunks
    if num_warps is None:
        num_warps = 8 if block_c * block_s >= 2048 else 4
    return Plan(block_c, block_s, channel_blocks, s_chunks, chunk_s, pieces, num_warps, reverse)


# Candidates timed by split_plan for a large shape whose groups are cut into pieces: (tile, programs
# aimed at, warps, reverse). Compiled for sm_90, 4096-value tiles need 160 registers a thread with 4
# warps (few programs per SM), 64 with 8; 2048-value tiles 40-48.
SPLIT_CANDIDATES = (
    [(2048, programs, 8, True) for programs in (1024, 2048, 4096, 8192)]
    + [(4096, programs, 8, True) for programs in (1024, 2048, 4096)]
    + [(2048, TARGET_PROGRAMS, 4, True), (2048, TARGET_PROGRAMS, 8, False)]  # fewer warps; forward order
)
# Below this many values the rule of `plan` is used untimed: U-Net activations of a small batch
# take a few microseconds, and timing every new shape would cost more than it could save.
TUNE_MIN_NUMEL = 1 << 22
_SPLIT_PLANS: dict[tuple, Plan] = {}


def split_plan(x: torch.Tensor, weight, bias, num_groups: int, eps: float) -> Plan:
    """The fastest of ``SPLIT_CANDIDATES`` for this shape and dtype, timed once on the GPU (a few
    seconds with the compiles) and remembered; the rule of :func:`plan` where the groups are not
    split, ``x`` is smaller than ``TUNE_MIN_NUMEL`` values, or on the CPU."""
    b, c = x.shape[:2]
    s = x[0, 0].numel()
    default = plan(b, c, s, num_groups)
    if default.pieces == 1 or x.numel() < TUNE_MIN_NUMEL or not x.is_cuda or interpreting():
        return default
    key = (b, c, s, num_groups, x.dtype, weight is not None, bias is not None, x.device)
    if key not in _SPLIT_PLANS:
        y = torch.empty_like(x)
        timed = {}
        for tile, programs, warps, reverse in SPLIT_CANDIDATES:
            p = plan(b, c, s, num_groups, pieces=triton.cdiv(programs, b * num_groups), tile=tile,
                     num_warps=warps, reverse=reverse)
            if p not in timed:
                timed[p] = triton.testing.do_bench(
                    lambda: _launch(x, y, weight, bias, num_groups, eps, p), warmup=5, rep=20,
                    return_mode="median",
                )
        _SPLIT_PLANS[key] = min(timed, key=timed.get)
    return _SPLIT_PLANS[key]


def _launch(x, y, weight, bias, num_groups: int, eps: float, p: Plan) -> None:
    """Launch the kernels of plan ``p`` on a contiguous ``x``, writing ``y``."""
    b, c = x.shape[:2]
    s = x[0, 0].numel()
    channels_per_group = c // num_groups
    grid = (b * num_groups * p.pieces,)
    sizes = (channels_per_group * s, s, channels_per_group)
    tiles = dict(BLOCK_C=p.block_c, BLOCK_S=p.block_s, num_warps=p.num_warps)
    sums = torch.empty(2 * grid[0] if p.pieces > 1 else 0, dtype=torch.float32, device=x.device)
    if p.pieces > 1:
        _group_sums_kernel[grid](x, sums, *sizes, p.pieces, p.s_chunks, p.chunk_s, **tiles)
    _group_norm_silu_kernel[grid](
        x, y,
        x if weight is None else weight,  # a placeholder pointer, never read when HAS_WEIGHT is False
        x if bias is None else bias,
        sums,
        *sizes, num_groups, p.pieces, p.s_chunks, p.chunk_s, eps,
        HAS_WEIGHT=weight is not None,
        HAS_BIAS=bias is not None,
        BLOCK_PIECES=max(2, triton.next_power_of_2(p.pieces)),
        SPLIT=p.pieces > 1,
        REVERSE=p.reverse and p.pieces > 1,
        **tiles,
    )


def group_norm_silu_triton(
    x: torch.Tensor,
    weight: torch.Tensor | None = None,
    bias: torch.Tensor | None = None,
    *,
    num_groups: int,
    eps: float = 1e-5,
    pieces: int | None = None,
    tile: int | None = None,
    num_warps: int | None = None,
    reverse: bool = True,
) -> torch.Tensor:
    """Run the kernels on ``x: b c h w`` or ``b c t h w``; returns a contiguous tensor like x.

    With no launch options the plan is :func:`split_plan`'s (timed once per shape on a GPU).
    ``pieces`` (per group, a wish rounded to whole tiles), ``tile`` (values per tile, a power of
    two), ``num_warps`` and ``reverse`` (the normalising pass walks the pieces last to first) fix
    the plan instead: tests set them to reach every path, the benchmark to compare plans.
    """
    check_group_norm_inputs(x, num_groups, weight, bias)
    if tile is not None and (tile < 1 or tile & (tile - 1)):
        raise ValueError(f"group_norm_silu_triton: tile must be a power of two, got {tile}")
    x = x.contiguous()
    y = torch.empty_like(x)
    if x.numel() == 0:
        return y
    if pieces is None and tile is None and num_warps is None:
        p = split_plan(x, weight, bias, num_groups, eps)
    else:
        b, c = x.shape[:2]
        p = plan(b, c, x[0, 0].numel(), num_groups, pieces=pieces, tile=tile, num_warps=num_warps,
                 reverse=reverse)
    _launch(x, y, weight, bias, num_groups, eps, p)
    return y
