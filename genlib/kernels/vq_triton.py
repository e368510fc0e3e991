"""Nearest-code search fused with its argmin, in Triton: ``z: n d, e: k d -> index n``.

One program owns ``BLOCK_N`` rows of ``z``. It walks the codebook in blocks of ``BLOCK_K`` codes
and, within a block, the code dimension in chunks of ``BLOCK_D`` so that any ``d`` fits in
registers and shared memory:

    dot  = sum over d-chunks of  z[rows, chunk] @ e[codes, chunk]^T       # BLOCK_N x BLOCK_K
    dist = ||e_j||^2 - 2 dot                                              # ||z_i||^2 left out
    best, best_j = running (min, argmin) of dist over the code blocks

Only ``best`` and ``best_j`` (``BLOCK_N`` numbers each) survive a code block: the ``n x k`` matrix
never reaches memory. A block's minimum replaces the running one only when strictly smaller, and
``tl.min`` breaks ties to the left, so ties go to the lowest code index, as in ``torch.argmin``,
whenever the tied distances are bitwise equal (see :mod:`genlib.kernels.vq` for near-ties).
The code norms ``||e_j||^2`` (``k`` numbers) are computed once by PyTorch before the launch.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from genlib.kernels.dispatch import interpreting
from genlib.kernels.common import PRECISIONS, check_vq_inputs


@triton.jit
def _vq_nearest_kernel(
    Z, E, E_SQ, IDX, DIST,
    N, K, D,
    stride_zn, stride_zd, stride_ek, stride_ed,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
    BLOCK_D: tl.constexpr,
    RETURN_DIST: tl.constexpr,
    DOT_FP32: tl.constexpr,  # the interpreter's bf16 dot is wrong: multiply in fp32 there
    INPUT_PRECISION: tl.constexpr,
    BLOCK_DZ: tl.constexpr = 16,  # next power of two >= D: the whole code dimension, for Z_ONCE
    Z_ONCE: tl.constexpr = False,  # load the rows' z once (all of D), not once per block of codes
):
    rows = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    row_ok = rows < N
    z_rows = Z + rows.to(tl.int64)[:, None] * stride_zn  # int64: n * d can pass 2**31
    offs_k = tl.arange(0, BLOCK_K)
    offs_d = tl.arange(0, BLOCK_D)

    best = tl.full([BLOCK_N], float("inf"), dtype=tl.float32)
    best_j = tl.zeros([BLOCK_N], dtype=tl.int32)
    offs_dz = tl.arange(0, BLOCK_DZ)
    if Z_ONCE:  # every row's whole z stays in registers for all the code blocks
        z_all = tl.load(z_rows + offs_dz[None, :] * stride_zd, mask=row_ok[:, None] & (offs_dz[None, :] < D), other=0.0)
        if DOT_FP32:
            z_all = z_all.to(tl.float32)
    for k0 in range(0, K, BLOCK_K):
        codes = k0 + offs_k
        code_ok = codes < K
        dot = tl.zeros([BLOCK_N, BLOCK_K], dtype=tl.float32)
        if Z_ONCE:
            et = tl.load(  # the codes, transposed: BLOCK_DZ x BLOCK_K
                E + offs_dz[:, None] * stride_ed + codes[None, :] * stride_ek,
                mask=(offs_dz[:, None] < D) & code_ok[None, :],
                other=0.0,
            )
            if DOT_FP32:
                et = et.to(tl.float32)
            dot = tl.dot(z_all, et, acc=dot, input_precision=INPUT_PRECISION)
        else:
            for d0 in range(0, D, BLOCK_D):
                dims = d0 + offs_d
                dim_ok = dims[None, :] < D
                z = tl.load(z_rows + dims[None, :] * stride_zd, mask=row_ok[:, None] & dim_ok, other=0.0)
                et = tl.load(  # the codes' chunk, transposed: BLOCK_D x BLOCK_K
                    E + dims[:, None] * stride_ed + codes[None, :] * stride_ek,
                    mask=(dims[:, None] < D) & code_ok[None, :],
                    other=0.0,
                )
                if DOT_FP32:
                    z = z.to(tl.float32)
                    et = et.to(tl.float32)
                dot = tl.dot(z, et, acc=dot, input_precision=INPUT_PRECISION)  # dot += z e^T
        # Codes past the end get ||e||^2 = inf, so they never win.
        e_sq = tl.load(E_SQ + codes, mask=code_ok, other=float("inf"))
        dist = e_sq[None, :] - 2.0 * dot
        block_best, block_j = tl.min(dist, axis=1, return_indices=True)
        better = block_best < best  # strict: an earlier block keeps a tie
        best = tl.where(better, block_best, best)
        best_j = tl.where(better, block_j + k0, best_j)

    tl.store(IDX + rows, best_j.to(tl.int64), mask=row_ok)
    if RETURN_DIST:
        # Add back the ||z_i||^2 term the argmin did not need.
        z_sq = tl.zeros([BLOCK_N], dtype=tl.float32)
        for d0 in range(0, D, BLOCK_D):
            dims = d0 + offs_d
            z_ok = row_ok[:, None] & (dims[None, :] < D)
            z = tl.load(z_rows + dims[None, :] * stride_zd, mask=z_ok, other=0.0)
            z_sq += tl.sum(z.to(tl.float32) * z.to(tl.float32), axis=1)
        tl.store(DIST + rows, tl.maximum(z_sq + best, 0.0), mask=row_ok)


# Code dim chunks of BLOCK_D = 32 (fewer for d < 32) keep exact fp32 ("ieee") tiles in registers.
_CONFIGS = [
    triton.Config({"BLOCK_N": 128, "BLOCK_K": 128}, num_warps=8, num_stages=3),
    triton.Config({"BLOCK_N": 128, "BLOCK_K": 64}, num_warps=8, num_stages=3),
    triton.Config({"BLOCK_N": 256, "BLOCK_K": 64}, num_warps=8, num_stages=3),
    triton.Config({"BLOCK_N": 64, "BLOCK_K": 128}, num_warps=4, num_stages=3),
]
# The same tiles with z loaded once per program (Z_ONCE): the chunked loop above reloads each row's z
# for every block of codes (from L2), which an H200 run suggests is where the time goes (117 TFLOP/s
# of TF32). The autotuner times both, so neither can make the default slower.
_CONFIGS += [triton.Config({**c.kwargs, "Z_ONCE": True}, num_warps=c.num_warps, num_stages=c.num_stages)
             for c in _CONFIGS]
_CONFIGS += [triton.Config({"BLOCK_N": 128, "BLOCK_K": 128, "Z_ONCE": True}, num_warps=8, num_stages=4),
             triton.Config({"BLOCK_N": 256, "BLOCK_K": 128, "Z_ONCE": True}, num_warps=8, num_stages=3)]


def _prune_vq_configs(configs, named_args, **kwargs):
    """Z_ONCE holds BLOCK_N x BLOCK_DZ values per program: only for D up to 128, and not for the
    exact fp32 product, whose tiles are kept small (BLOCK_D = 32) to stay in registers."""
    if kwargs["BLOCK_DZ"] > 128 or kwargs["INPUT_PRECISION"] == "ieee":
        return [c for c in configs if not c.kwargs.get("Z_ONCE")]
    return configs


_vq_nearest_tuned = triton.autotune(
    configs=_CONFIGS, key=["K", "D", "RETURN_DIST", "INPUT_PRECISION"],
    prune_configs_by={"early_config_prune": _prune_vq_configs},
)(_vq_nearest_kernel)


def vq_nearest_triton(
    z: torch.Tensor, codebook: torch.Tensor, *, return_distance: bool = False, input_precision: str = "tf32"
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Run the fused kernel: indices ``n`` (int64) and optionally squared distances ``n`` (fp32).

    ``input_precision`` (``"tf32"`` or ``"ieee"``) picks how fp32 inputs are multiplied on a GPU;
    fp16 and bf16 inputs always multiply on tensor cores with fp32 accumulation.
    """
    check_vq_inputs(z, codebook)
    if input_precision not in PRECISIONS:
        raise ValueError(f"input_precision must be one of {PRECISIONS}, got {input_precision!r}")
    dtype = torch.promote_types(z.dtype, codebook.dtype)  # one dtype for the tensor-core product
    z, codebook = z.to(dtype), codebook.to(dtype)
    n, d = z.shape
    k = codebook.shape[0]
    idx = torch.empty(n, dtype=torch.int64, device=z.device)
    dist = torch.empty(n if return_distance else 0, dtype=torch.float32, device=z.device)
    if n > 0:
        e_sq = codebook.float().pow(2).sum(1)  # k
        args = (z, codebook, e_sq, idx, dist, n, k, d, *z.stride(), *codebook.stride())
        options = dict(
            BLOCK_D=min(32, max(16, triton.next_power_of_2(d))),  # tl.dot needs K >= 16
            BLOCK_DZ=max(16, triton.next_power_of_2(d)),
            RETURN_DIST=return_distance,
            DOT_FP32=interpreting(),
            INPUT_PRECISION=input_precision,
        )
        if interpreting():
            # Few, large tiles: the interpreter pays per program and loop step, not per element.
            grid = (triton.cdiv(n, 128),)
            # Z_ONCE where one chunk holds all of d (d <= 32), the chunked loop otherwise: the
            # tests' random d from 1 to 48 run both.
            _vq_nearest_kernel[grid](*args, **options, BLOCK_N=128, BLOCK_K=64, Z_ONCE=d <= 32)
        else:
            _vq_nearest_tuned[lambda meta: (triton.cdiv(n, meta["BLOCK_N"]),)](*args, **options)
    return (idx, dist) if return_distance else idx
