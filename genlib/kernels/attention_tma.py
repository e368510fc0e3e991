"""The fused attention loop with its tiles moved by Hopper's Tensor Memory Accelerator (TMA).

Same online softmax as :mod:`genlib.kernels.attention_triton` (the two kernels share
:func:`genlib.kernels.online_softmax.online_softmax_update`), but q, k, v and o move between
memory and shared memory as whole tiles through host-side tensor descriptors: one instruction per tile, no per-element address
arithmetic in registers. The descriptors see each tensor as a (b h n) x d matrix of rows, so the
kernel takes only whole tiles (:func:`tma_eligible`); the pointer kernel serves everything else.

It runs by default at head dim 128 on a GPU (:func:`preferred`), where an H200 run measured it
faster than the pointer kernel (1.10 against 1.16 ms at b4 h16 n4096, bf16) and not at 64 (0.64
against 0.62 ms); ``GENLIB_ATTENTION_TMA=1`` / ``0`` make the dispatcher
(:func:`genlib.kernels.attention.use_tma`) choose it or the pointer kernel everywhere, and
``attention_triton(..., tma=True)`` runs it directly (``benchmarks/kernels.py`` times both).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

try:  # triton >= 3.4; the GPU machine has 3.6
    from triton.tools.tensor_descriptor import TensorDescriptor
except ImportError:  # pragma: no cover
    TensorDescriptor = None

from genlib.kernels.dispatch import interpreting
from genlib.kernels.online_softmax import online_softmax_update


def _prune_tma_configs(configs, named_args, **kwargs):
    """As for the pointer kernel: at d = 128 the 128-row tiles need 8 warps, and 128 x 128 tiles
    fit in shared memory only with 2 stages (q, then 2 x 32 KB of k and v per stage)."""
    if kwargs["BLOCK_D"] <= 64:
        return configs
    return [c for c in configs if not (c.kwargs["BLOCK_M"] == 128 and c.num_warps == 4)
            and not (c.kwargs["BLOCK_N"] == 128 and c.num_stages > 2)]


@triton.jit
def _attention_fwd_tma_kernel(
    desc_q, desc_k, desc_v, desc_o,  # 2-D tensor descriptors over (b h n) x d rows
    N_Q, N_KV,
    qk_scale,  # scale * log2(e)
    BLOCK_D: tl.constexpr,  # = the head dim (a power of two here)
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    CAUSAL: tl.constexpr,
    DOT_FP32: tl.constexpr,
    IO_DTYPE: tl.constexpr,  # "fp16" or "bf16": only in the autotuner's key (one tuning per dtype)
    LAZY_RESCALE: tl.constexpr = False,
    WARP_SPECIALIZE: tl.constexpr = False,  # triton's automatic warp specialisation of the loop
):
    """The same loop as ``_attention_fwd_kernel``, its tiles fetched by the Tensor Memory
    Accelerator (Hopper's TMA): one instruction copies a whole ``BLOCK_N x d`` tile from memory to
    shared memory, with no per-element address arithmetic in registers. The launcher sends only
    shapes where every tile is whole (n and m multiples of the tiles, no head-dim padding), so
    the loop has no masks but the causal one."""
    pid = tl.program_id(0)
    num_m_blocks = N_Q // BLOCK_M
    bh = pid // num_m_blocks
    m_block = pid % num_m_blocks
    q_row = bh * N_Q + m_block * BLOCK_M  # first row of this program's queries
    kv_row = bh * N_KV

    q = desc_q.load([q_row, 0])  # BLOCK_M x BLOCK_D
    io_dtype = q.dtype
    if DOT_FP32:
        q = q.to(tl.float32)
    offs_m = m_block * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = tl.arange(0, BLOCK_N)
    m_i = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    acc = tl.zeros([BLOCK_M, BLOCK_D], dtype=tl.float32)

    hi = N_KV
    if CAUSAL:
        hi = tl.minimum(N_KV, (m_block + 1) * BLOCK_M)
    for start_n in tl.range(0, hi, BLOCK_N, warp_specialize=WARP_SPECIALIZE):
        k = desc_k.load([kv_row + start_n, 0])  # BLOCK_N x BLOCK_D
        v = desc_v.load([kv_row + start_n, 0])
        if DOT_FP32:
            k = k.to(tl.float32)
            v = v.to(tl.float32)
        s = tl.dot(q, tl.trans(k))
        if CAUSAL:
            s = tl.where(start_n + offs_n[None, :] <= offs_m[:, None], s, float("-inf"))
        m_i, l_i, acc = online_softmax_update(
            s, v, m_i, l_i, acc, qk_scale, LAZY_RESCALE=LAZY_RESCALE, INPUT_PRECISION="tf32"
        )

    out = acc / l_i[:, None]
    desc_o.store([q_row, 0], out.to(io_dtype))


def _tma_block_shapes(nargs):
    """Autotuner pre-hook: each config's tiles become the descriptors' block shapes."""
    rows = {"desc_q": "BLOCK_M", "desc_o": "BLOCK_M", "desc_k": "BLOCK_N", "desc_v": "BLOCK_N"}
    for name, block in rows.items():
        nargs[name].block_shape = [nargs[block], nargs["BLOCK_D"]]


# Tiles for the TMA kernel; 128 divides n and m on every shape it is sent (see `tma_eligible`).
_TMA_CONFIGS = [
    triton.Config({"BLOCK_M": bm, "BLOCK_N": bn}, num_warps=w, num_stages=st, pre_hook=_tma_block_shapes)
    for bm, bn, w in ((64, 64, 4), (128, 64, 8), (128, 128, 8), (128, 32, 4))
    for st in (2, 3, 4)
]
# WARP_SPECIALIZE is in the key: the warp-specialised loop (producer warps issue the TMA loads,
# consumer warps do the math; an experiment the benchmark times) gets its own tuning.
_attention_fwd_tma_tuned = triton.autotune(
    configs=_TMA_CONFIGS,
    key=["N_Q", "N_KV", "BLOCK_D", "CAUSAL", "IO_DTYPE", "WARP_SPECIALIZE"],
    prune_configs_by={"early_config_prune": _prune_tma_configs},
)(_attention_fwd_tma_kernel)

TMA_ENV_VAR = "GENLIB_ATTENTION_TMA"
TMA_TILE = 128  # n and m must be multiples of this (every TMA config's tiles divide it)


def _tma_rows(t: torch.Tensor) -> int | None:
    """The row stride of ``t: b h n d`` seen as a (b h n) x d matrix, or None if it is not one
    that TMA can read (unit stride along d, rows evenly spaced, 16-byte aligned)."""
    b, h, n, d = t.shape
    row = t.stride(2)
    if t.stride(3) != 1 or (h > 1 and t.stride(1) != n * row) or (b > 1 and t.stride(0) != h * n * row):
        return None
    if (row * t.element_size()) % 16 or t.data_ptr() % 16:
        return None
    return row


def tma_eligible(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> bool:
    """Whether the TMA kernel can take these inputs: fp16/bf16, a head dim of 16, 32, 64 or 128,
    sequence lengths that are multiples of 128, each tensor a strided (b h n) x d matrix, and a
    Hopper or newer GPU (or the interpreter)."""
    if TensorDescriptor is None or q.dtype not in (torch.float16, torch.bfloat16):
        return False
    b, h, n, d = q.shape
    m = k.shape[2]
    if d not in (16, 32, 64, 128) or n % TMA_TILE or m % TMA_TILE or b * h * max(n, m) >= 2**31:
        return False
    if not interpreting() and not (q.is_cuda and torch.cuda.get_device_capability(q.device)[0] >= 9):
        return False
    return all(_tma_rows(t) is not None for t in (q, k, v))


def preferred(q: torch.Tensor) -> bool:
    """Whether ``attention_triton`` runs this kernel by default (where it is eligible): on a GPU at
    head dim 128, the one size where a GPU run measured it faster than the pointer kernel."""
    return q.is_cuda and q.shape[-1] == 128


def launch(q, k, v, out, *, causal: bool, qk_scale: float, warp_specialize: bool = False) -> None:
    """Run the TMA kernel on eligible ``q, k, v`` (:func:`tma_eligible`), writing ``out: b h n d``;
    ``warp_specialize`` runs the warp-specialised variant (GPU only; the benchmark times it)."""
    b, h, n, d = q.shape
    m = k.shape[2]

    def descriptor(t, rows, block_rows):
        return TensorDescriptor(t, [rows, d], [_tma_rows(t), 1], [block_rows, d])

    # Block shapes: the interpreter's fixed tiles; on the GPU the autotuner's pre-hook resets them.
    block_m = block_n = 64
    descs = (
        descriptor(q, b * h * n, block_m), descriptor(k, b * h * m, block_n),
        descriptor(v, b * h * m, block_n), descriptor(out, b * h * n, block_m),
    )
    args = (*descs, n, m, qk_scale)
    options = dict(BLOCK_D=d, CAUSAL=causal, DOT_FP32=interpreting(),
                   IO_DTYPE="bf16" if q.dtype == torch.bfloat16 else "fp16")

    def grid(meta):
        return (b * h * (n // meta["BLOCK_M"]),)

    if interpreting():
        _attention_fwd_tma_kernel[grid](*args, **options, BLOCK_M=block_m, BLOCK_N=block_n)
    else:
        _attention_fwd_tma_tuned[grid](*args, **options, WARP_SPECIALIZE=warp_specialize)
