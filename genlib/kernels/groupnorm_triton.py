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
  * ``pieces > 1`` (few large groups: a VAE's 1 x 256 x 256 x 256 has 32), so that the reduction
    fills the GPU. On a GPU, one launch (``_group_norm_silu_one_pass_kernel``): every piece writes
    its ``S1, S2``, counts itself in at its group's arrival counter and waits for the rest of its
    group, then normalises its piece. The grid is never larger than what the GPU runs at once, so
    the programs a piece waits for are running. Where that does not apply (the interpreter runs
    programs one at a time; more groups than the GPU holds programs), two launches:
    ``_group_sums_kernel`` writes every piece's sums, ``_group_norm_silu_kernel`` adds its group's
    sums, then normalises its own piece.
Then ``y = (x - mu) / sqrt(var + eps) * weight + bias`` (one multiply-add per value with
``scale = weight / sqrt(var + eps)`` and ``shift = bias - mu * scale``) and ``out = y * sigmoid(y)``.

The split paths read ``x`` twice; the second read can come from L2 (50 MB on an H100 or H200)
instead of memory. The one-pass kernel re-reads a piece moments after summing it. In the two-launch
path, with ``l2_reuse`` (the default), the sums kernel asks L2 to keep ``x`` (``evict_last``), and the
normalising kernel walks the pieces in reverse, starting with those the sums kernel read last,
still in cache; its own loads and stores stream through (``evict_first``). At 1 x 256 x 256 x 256
bf16 an H200 run timed the one-pass kernel at 1.24x torch.compile, the two launches far slower
(their launcher waited on the host: ``benchmarks/RESULTS.md``).
"""

from __future__ import annotations

import functools

import torch
import triton
import triton.language as tl

from genlib.kernels.dispatch import interpreting
from genlib.kernels.common import check_group_norm_inputs

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
            if KEEP_IN_L2:  # a second kernel reads x again
                x = tl.load(X + rows[:, None] * S + cols[None, :], mask=ok, other=0.0, eviction_policy="evict_last")
            else:
                x = tl.load(X + rows[:, None] * S + cols[None, :], mask=ok, other=0.0)
            x = tl.where(ok, x.to(tl.float32) - pivot, 0.0)
            s1 += x
            s2 += x * x
    return tl.sum(s1), tl.sum(s2)  # over both axes


@triton.jit
def _group_stats(s1, s2, pivot, GROUP_SIZE, eps):
    """The group's mean and 1 / sqrt(var + eps) from its shifted sums (module docstring)."""
    mean_shifted = s1 / GROUP_SIZE
    var = tl.maximum(s2 / GROUP_SIZE - mean_shifted * mean_shifted, 0.0)
    return pivot + mean_shifted, 1.0 / tl.sqrt(var + eps)


@triton.jit
def _normalise_silu(
    X, Y, W, B, offset, first_channel, mean, rstd, c_lo, c_hi, s_lo, s_hi, S,
    HAS_WEIGHT: tl.constexpr, HAS_BIAS: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_S: tl.constexpr,
    STREAM: tl.constexpr,
):
    """y = silu((x - mean) * rstd * weight + bias) over rows [c_lo, c_hi) x columns [s_lo, s_hi) of
    the group at ``offset``; the per-channel affine map is folded into one multiply-add.
    ``STREAM``: x is read for the last time, so x and y stream through L2 (``evict_first``)."""
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
            if STREAM:
                x = tl.load(X + at, mask=ok, other=0.0, eviction_policy="evict_first")
            else:
                x = tl.load(X + at, mask=ok, other=0.0)
            y = x.to(tl.float32) * scale[:, None] + shift[:, None]
            y = (y * tl.sigmoid(y)).to(Y.dtype.element_ty)  # SiLU
            if STREAM:
                tl.store(Y + at, y, mask=ok, eviction_policy="evict_first")
            else:
                tl.store(Y + at, y, mask=ok)


@triton.jit
def _group_sums_kernel(
    X, SUMS, GROUP_SIZE, S, CHANNELS_PER_GROUP, PIECES, S_CHUNKS, CHUNK_S,
    BLOCK_C: tl.constexpr,
    BLOCK_S: tl.constexpr,
    KEEP_IN_L2: tl.constexpr,
):
    pid = tl.program_id(0)
    group, c_lo, c_hi, s_lo, s_hi = _piece_bounds(
        pid, PIECES, S_CHUNKS, CHUNK_S, CHANNELS_PER_GROUP, S, BLOCK_C, True
    )
    x_group = X + group.to(tl.int64) * GROUP_SIZE  # int64: b * c * s can pass 2**31
    pivot = tl.load(x_group).to(tl.float32)  # K: the group's first value
    s1, s2 = _shifted_sums(x_group, pivot, c_lo, c_hi, s_lo, s_hi, S, BLOCK_C, BLOCK_S, KEEP_IN_L2)
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
    L2_REUSE: tl.constexpr,  # split path: walk the pieces last to first, stream x and y
):
    pid = tl.program_id(0)
    if L2_REUSE:
        pid = tl.num_programs(0) - 1 - pid  # the pieces the sums kernel read last come first
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
    mean, rstd = _group_stats(s1, s2, pivot, GROUP_SIZE, eps)

    # Normalise, the per-channel affine map folded into one multiply-add, then SiLU.
    first_channel = (group % NUM_GROUPS) * CHANNELS_PER_GROUP
    _normalise_silu(
        X, Y, W, B, offset, first_channel, mean, rstd, c_lo, c_hi, s_lo, s_hi, S,
        HAS_WEIGHT, HAS_BIAS, BLOCK_C, BLOCK_S, L2_REUSE,
    )

# A one-pass program gives up waiting for its group's other pieces after this many polls (seconds
# on a GPU), and writes NaN instead of hanging: only possible if its group's programs could not all
# be resident at once, which the launcher's grid size rules out.
MAX_POLLS = 1 << 24


@triton.jit
def _group_norm_silu_one_pass_kernel(
    X, Y, W, B, SUMS, ARRIVED,
    GROUP_SIZE, S, CHANNELS_PER_GROUP, NUM_GROUPS, PIECES, S_CHUNKS, CHUNK_S,
    eps,
    HAS_WEIGHT: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    BLOCK_C: tl.constexpr,
    BLOCK_S: tl.constexpr,
    BLOCK_PIECES: tl.constexpr,
    MAX_POLLS: tl.constexpr,
):
    """The split path in one launch: each program sums its piece, publishes the sums, waits until
    every piece of its group has (a per-group arrival counter), then normalises its piece, whose
    values it read moments ago and which are still in L2. The grid never exceeds what the GPU
    holds at once, so the programs a program waits for are running too."""
    pid = tl.program_id(0)
    group, c_lo, c_hi, s_lo, s_hi = _piece_bounds(
        pid, PIECES, S_CHUNKS, CHUNK_S, CHANNELS_PER_GROUP, S, BLOCK_C, True
    )
    offset = group.to(tl.int64) * GROUP_SIZE
    pivot = tl.load(X + offset).to(tl.float32)
    s1, s2 = _shifted_sums(X + offset, pivot, c_lo, c_hi, s_lo, s_hi, S, BLOCK_C, BLOCK_S, True)
    tl.store(SUMS + 2 * pid, s1)
    tl.store(SUMS + 2 * pid + 1, s2)
    tl.debug_barrier()  # every thread's stores before the release below
    arrived = tl.atomic_add(ARRIVED + group, 1, sem="acq_rel", scope="gpu") + 1
    polls = 0
    while (arrived < PIECES) & (polls < MAX_POLLS):
        arrived = tl.atomic_add(ARRIVED + group, 0, sem="acquire", scope="gpu")
        polls += 1
    tl.debug_barrier()

    # The group's sums, added in a fixed order (the result does not depend on arrival order).
    p = tl.arange(0, BLOCK_PIECES)
    sums = SUMS + 2 * (group * PIECES + p)
    s1 = tl.sum(tl.load(sums, mask=p < PIECES, other=0.0, volatile=True), axis=0)
    s2 = tl.sum(tl.load(sums + 1, mask=p < PIECES, other=0.0, volatile=True), axis=0)
    mean, rstd = _group_stats(s1, s2, pivot, GROUP_SIZE, eps)
    if arrived < PIECES:  # gave up waiting: say so loudly rather than normalise by partial sums
        rstd = float("nan")
    first_channel = (group % NUM_GROUPS) * CHANNELS_PER_GROUP
    _normalise_silu(
        X, Y, W, B, offset, first_channel, mean, rstd, c_lo, c_hi, s_lo, s_hi, S,
        HAS_WEIGHT, HAS_BIAS, BLOCK_C, BLOCK_S, True,
    )


def resident_programs(device: torch.device, programs_per_sm: int = 1) -> int:
    """How many one-pass programs the launcher lets wait at once on ``device``: ``programs_per_sm``
    per multiprocessor. One always fits. Where more do not (registers), the programs of a group are
    still neighbours in launch order, so the earliest groups finish and free room for the rest; the
    bounded wait (``MAX_POLLS``) turns any hang into NaN output."""
    return programs_per_sm * _multiprocessors(device.index if device.index is not None else torch.cuda.current_device())


@functools.lru_cache(maxsize=None)
def _multiprocessors(index: int) -> int:
    return torch.cuda.get_device_properties(index).multi_processor_count


def group_norm_silu_triton(
    x: torch.Tensor,
    weight: torch.Tensor | None = None,
    bias: torch.Tensor | None = None,
    *,
    num_groups: int,
    eps: float = 1e-5,
    pieces: int | None = None,
    l2_reuse: bool = True,
    one_pass: bool | None = None,
    tile: int | None = None,
    num_warps: int | None = None,
    programs_per_sm: int = 2,
) -> torch.Tensor:
    """Run the kernels on ``x: b c h w`` or ``b c t h w``; returns a contiguous tensor like x.

    ``pieces`` (per group, a wish rounded to whole tiles) defaults to enough for about
    ``TARGET_PROGRAMS`` programs; tests set it to reach both the one-launch and the split path.
    ``l2_reuse`` (split path only) sets the cache hints and the reversed order of the module
    docstring; the benchmark turns it off to time its effect.

    ``one_pass`` (default: on a GPU): where groups are few and large, cut each into as many pieces
    as the GPU runs at once (``programs_per_sm`` per multiprocessor) and do sums and normalisation
    in one launch (``_group_norm_silu_one_pass_kernel``); where that gives fewer than two pieces
    per group, the usual path runs. The defaults (tiles of 4,096 values, 16 warps, 2 programs per
    multiprocessor) are the fastest of twelve settings timed on an H200 at 1 x 256 x 256 x 256 bf16
    (``benchmarks/RESULTS.md``). The interpreter runs programs one after another, so there the one-pass kernel
    runs with one piece per group (its wait returns at once). ``tile`` (values per loop step) and
    ``num_warps`` override the launcher's choice, for the benchmark's tuning.
    """
    check_group_norm_inputs(x, num_groups, weight, bias)
    x = x.contiguous()
    y = torch.empty_like(x)
    if x.numel() == 0:
        return y
    b, c = x.shape[:2]
    s = x[0, 0].numel()
    channels_per_group = c // num_groups
    sizes = (channels_per_group * s, s, channels_per_group)
    weight_ptr = x if weight is None else weight  # a placeholder pointer, never read without HAS_WEIGHT
    bias_ptr = x if bias is None else bias
    if one_pass is None:
        one_pass = x.is_cuda
    if one_pass:
        plan = _one_pass_plan(x, b * num_groups, s, channels_per_group, tile, programs_per_sm)
        if plan is not None:
            block_c, block_s, pieces, s_chunks, chunk_s = plan
            grid = (b * num_groups * pieces,)
            sums = torch.empty(2 * grid[0], dtype=torch.float32, device=x.device)
            arrived = torch.zeros(b * num_groups, dtype=torch.int32, device=x.device)
            _group_norm_silu_one_pass_kernel[grid](
                x, y, weight_ptr, bias_ptr, sums, arrived,
                *sizes, num_groups, pieces, s_chunks, chunk_s, eps,
                HAS_WEIGHT=weight is not None,
                HAS_BIAS=bias is not None,
                BLOCK_C=block_c,
                BLOCK_S=block_s,
                BLOCK_PIECES=max(2, triton.next_power_of_2(pieces)),
                MAX_POLLS=MAX_POLLS,
                num_warps=num_warps or 16,
            )
            return y

    # Tiles of up to `tile` values: whole rows when s is short. The interpreter runs tiny tests,
    # where small tiles exercise the loops.
    tile = tile or (128 if interpreting() else 2048)
    block_s = min(tile, triton.next_power_of_2(s))
    block_c = min(triton.next_power_of_2(channels_per_group), tile // block_s)
    channel_blocks = triton.cdiv(channels_per_group, block_c)
    if pieces is None:
        pieces = triton.cdiv(TARGET_PROGRAMS, b * num_groups)
    # Cut the rows first into channel blocks, then (only as far as needed) into spatial chunks.
    s_chunks = min(triton.cdiv(pieces, channel_blocks), triton.cdiv(s, block_s), MAX_PIECES // channel_blocks)
    s_chunks = max(1, s_chunks)
    chunk_s = triton.cdiv(triton.cdiv(s, s_chunks), block_s) * block_s  # whole tiles per chunk
    s_chunks = triton.cdiv(s, chunk_s)
    pieces = 1 if pieces <= 1 else channel_blocks * s_chunks
    grid = (b * num_groups * pieces,)
    num_warps = num_warps or (8 if block_c * block_s >= 2048 else 4)

    sums = torch.empty(2 * grid[0] if pieces > 1 else 0, dtype=torch.float32, device=x.device)
    if pieces > 1:
        _group_sums_kernel[grid](
            x, sums, *sizes, pieces, s_chunks, chunk_s,
            BLOCK_C=block_c, BLOCK_S=block_s, KEEP_IN_L2=l2_reuse, num_warps=num_warps,
        )
    _group_norm_silu_kernel[grid](
        x, y, weight_ptr, bias_ptr, sums,
        *sizes, num_groups, pieces, s_chunks, chunk_s, eps,
        HAS_WEIGHT=weight is not None,
        HAS_BIAS=bias is not None,
        BLOCK_C=block_c,
        BLOCK_S=block_s,
        BLOCK_PIECES=max(2, triton.next_power_of_2(pieces)),
        SPLIT=pieces > 1,
        L2_REUSE=l2_reuse and pieces > 1,
        num_warps=num_warps,
    )
    return y


def _one_pass_plan(x, groups, s, channels_per_group, tile, programs_per_sm):
    """Tiles and pieces for the one-pass kernel: ``(block_c, block_s, pieces, s_chunks, chunk_s)``
    with ``groups * pieces`` no more than the programs the GPU runs at once, or None when that
    leaves fewer than two pieces per group (then there is nothing to gain over the usual path).

    A tile takes a group's channels whole where it can (``block_c`` rows of ``block_s`` values),
    so that pieces are cut along the spatial axis only."""
    if interpreting():
        tile, most = tile or 128, 1
    else:
        tile = tile or 4096
        most = resident_programs(x.device, programs_per_sm) // groups
        if most < 2:
            return None
    block_c = min(triton.next_power_of_2(channels_per_group), max(1, tile // 16))
    block_s = min(triton.next_power_of_2(s), max(16, tile // block_c))
    channel_blocks = triton.cdiv(channels_per_group, block_c)
    if channel_blocks > most:
        return None
    s_chunks = max(1, min(most // channel_blocks, triton.cdiv(s, block_s)))
    chunk_s = triton.cdiv(triton.cdiv(s, s_chunks), block_s) * block_s  # whole tiles per chunk
    s_chunks = triton.cdiv(s, chunk_s)
    pieces = channel_blocks * s_chunks
    if pieces < 2 and not interpreting():
        return None  # a group in one tile row: the usual path does the same with no counter
    return block_c, block_s, pieces, s_chunks, chunk_s
