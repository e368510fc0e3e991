"""Fused attention forward in Triton (FlashAttention-style), ``b h n d, b h m d -> b h n d``.

One program owns a block of ``BLOCK_M`` queries of one (batch, head). It loads its queries once,
then walks the keys and values in blocks of ``BLOCK_N`` and never stores the ``n x m`` scores.
The softmax is computed *online* (FlashAttention, Dao et al. 2022, Algorithm 1; ``m`` and ``l``
there and here are the running max and sum, not the key count): after seeing key blocks ``1..j``
the program holds, per query,

    m_j   = max of the scores seen so far                      (running max)
    l_j   = sum_k exp(s_k - m_j) over the keys seen so far      (running normaliser)
    acc_j = sum_k exp(s_k - m_j) v_k                            (running, unnormalised output)

and a new block of scores ``s`` (one row per query) updates them as

    m_new = max(m_j, max(s))
    alpha = exp(m_j - m_new)                 # rescales what was summed under the old max
    p     = exp(s - m_new)
    l_new   = alpha * l_j + sum(p)
    acc_new = alpha * acc_j + p @ V_block

so that after the last block ``O = acc / l`` is exactly softmax(S) V. Subtracting the running max
keeps every ``exp`` at most 1 (no overflow in fp16). The kernel works in base 2 (``exp2`` is the
hardware instruction): it folds ``log2(e)`` into the scale, ``exp(x) = exp2(x * log2(e))``.

Grid: one axis over ``b * h * cdiv(n, BLOCK_M)`` programs, ordered so that the query blocks of one
(batch, head) are neighbours and share its keys in L2. GPUs cap grid axes 1 and 2 at 65,535, so
temporal attention with ``b * h`` in the hundreds of thousands must not put ``b * h`` there.

Head dims that are not powers of two (``d = 40, 72, 96``) are padded to ``BLOCK_D``, the next power
of two: masked loads fill the padding with zeros, which add nothing to ``q . k``, and the padded
output columns are never stored.
"""

from __future__ import annotations

import math

import torch
import triton
import triton.language as tl

from genlib.kernels import attention_tma
from genlib.kernels.common import check_attention_inputs
from genlib.kernels.dispatch import interpreting
from genlib.kernels.online_softmax import LOG2_E, online_softmax_update

MAX_HEAD_DIM = 256  # the largest head dim the pointer kernel takes (BLOCK_D = d rounded up to a power of two)

@triton.heuristics(
    {
        "EVEN_N": lambda args: args["N_KV"] % args["BLOCK_N"] == 0,
        "EVEN_D": lambda args: args["HEAD_DIM"] == args["BLOCK_D"],
    }
)
@triton.jit
def _attention_fwd_kernel(
    Q, K, V, O,
    stride_qb, stride_qh, stride_qn, stride_qd,
    stride_kb, stride_kh, stride_kn, stride_kd,
    stride_vb, stride_vh, stride_vn, stride_vd,
    stride_ob, stride_oh, stride_on, stride_od,
    H, N_Q, N_KV,
    qk_scale,  # scale * log2(e)
    HEAD_DIM: tl.constexpr,
    BLOCK_D: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    CAUSAL: tl.constexpr,
    DOT_FP32: tl.constexpr,  # the interpreter's bf16 dot is wrong: multiply in fp32 there
    INPUT_PRECISION: tl.constexpr,
    EVEN_N: tl.constexpr,
    EVEN_D: tl.constexpr,
    LAZY_RESCALE: tl.constexpr = False,  # FlashAttention-4's conditional rescaling (in the loop)
):
    # Which (batch, head) and which block of queries this program owns.
    pid = tl.program_id(0)
    num_m_blocks = tl.cdiv(N_Q, BLOCK_M)
    bh = pid // num_m_blocks
    m_block = pid % num_m_blocks
    b = (bh // H).to(tl.int64)  # int64: b * stride_b can pass 2**31 elements
    h = (bh % H).to(tl.int64)

    offs_m = m_block * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)

    q_ptrs = Q + b * stride_qb + h * stride_qh + offs_m[:, None] * stride_qn + offs_d[None, :] * stride_qd
    # K is read as its transpose, a BLOCK_D x BLOCK_N tile, ready for q @ k^T.
    kt_ptrs = K + b * stride_kb + h * stride_kh + offs_d[:, None] * stride_kd + offs_n[None, :] * stride_kn
    v_ptrs = V + b * stride_vb + h * stride_vh + offs_n[:, None] * stride_vn + offs_d[None, :] * stride_vd

    # Masks zero-fill only what can run past the end: rows past n, head-dim padding.
    d_mask = offs_d[None, :] < HEAD_DIM
    if EVEN_D:
        q = tl.load(q_ptrs, mask=offs_m[:, None] < N_Q, other=0.0)  # BLOCK_M x BLOCK_D
    else:
        q = tl.load(q_ptrs, mask=(offs_m[:, None] < N_Q) & d_mask, other=0.0)
    if DOT_FP32:
        q = q.to(tl.float32)

    m_i = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)  # running max (base-2 units)
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)  # running normaliser
    acc = tl.zeros([BLOCK_M, BLOCK_D], dtype=tl.float32)  # running unnormalised output

    # Causal: keys past this block's last query are masked for every query in it; skip them.
    hi = N_KV
    if CAUSAL:
        hi = tl.minimum(N_KV, (m_block + 1) * BLOCK_M)
    for start_n in range(0, hi, BLOCK_N):
        cols = start_n + offs_n
        if EVEN_N and EVEN_D:
            kt = tl.load(kt_ptrs + start_n * stride_kn)  # BLOCK_D x BLOCK_N
            v = tl.load(v_ptrs + start_n * stride_vn)  # BLOCK_N x BLOCK_D
        else:
            kt_mask = (offs_d[:, None] < HEAD_DIM) & (cols[None, :] < N_KV)
            kt = tl.load(kt_ptrs + start_n * stride_kn, mask=kt_mask, other=0.0)
            v = tl.load(v_ptrs + start_n * stride_vn, mask=(cols[:, None] < N_KV) & d_mask, other=0.0)
        if DOT_FP32:
            kt = kt.to(tl.float32)
            v = v.to(tl.float32)

        # s = q k^T, BLOCK_M x BLOCK_N raw scores; the scale comes in below.
        s = tl.dot(q, kt, input_precision=INPUT_PRECISION)
        if not EVEN_N:
            s = tl.where(cols[None, :] < N_KV, s, float("-inf"))  # keys past the end
        if CAUSAL:
            s = tl.where(cols[None, :] <= offs_m[:, None], s, float("-inf"))  # key j <= query i

        m_i, l_i, acc = online_softmax_update(
            s, v, m_i, l_i, acc, qk_scale, LAZY_RESCALE=LAZY_RESCALE, INPUT_PRECISION=INPUT_PRECISION
        )

    out = acc / l_i[:, None]
    o_ptrs = O + b * stride_ob + h * stride_oh + offs_m[:, None] * stride_on + offs_d[None, :] * stride_od
    tl.store(o_ptrs, out.to(O.dtype.element_ty), mask=(offs_m[:, None] < N_Q) & d_mask)


# Long sequences: tile shapes timed once per (n, m, d, causal) on the GPU. Compiled for sm_90 with
# ptxas (no GPU needed), at d = 128 the 128-row tiles spill registers with 4 warps and 128 x 128
# tiles with 8 warps need 224 KB of shared memory at 3 stages; the pruning below drops the spills.
_LONG_CONFIGS = [
    triton.Config({"BLOCK_M": 128, "BLOCK_N": 64}, num_warps=4, num_stages=3),
    triton.Config({"BLOCK_M": 128, "BLOCK_N": 64}, num_warps=8, num_stages=2),
    triton.Config({"BLOCK_M": 128, "BLOCK_N": 64}, num_warps=8, num_stages=3),
    triton.Config({"BLOCK_M": 128, "BLOCK_N": 64}, num_warps=8, num_stages=4),
    triton.Config({"BLOCK_M": 128, "BLOCK_N": 128}, num_warps=8, num_stages=2),
    triton.Config({"BLOCK_M": 128, "BLOCK_N": 128}, num_warps=8, num_stages=3),
    triton.Config({"BLOCK_M": 64, "BLOCK_N": 64}, num_warps=4, num_stages=4),
    triton.Config({"BLOCK_M": 256, "BLOCK_N": 64}, num_warps=8, num_stages=3),
    # The same loop with lazy rescaling, on the tiles that were fastest in the first GPU run.
    triton.Config({"BLOCK_M": 128, "BLOCK_N": 64, "LAZY_RESCALE": True}, num_warps=4, num_stages=3),
    triton.Config({"BLOCK_M": 128, "BLOCK_N": 64, "LAZY_RESCALE": True}, num_warps=8, num_stages=3),
    triton.Config({"BLOCK_M": 128, "BLOCK_N": 128, "LAZY_RESCALE": True}, num_warps=8, num_stages=3),
]


def _prune_long_configs(configs, named_args, **kwargs):
    """Drop the tiles that spill registers for long heads (d > 64): 128 x 64 or wider with 4 warps,
    and 256-row tiles; for d <= 64 every tile above fits."""

    def fits(c):
        if kwargs["BLOCK_D"] <= 64:
            return True
        block_m, block_n = c.kwargs["BLOCK_M"], c.kwargs["BLOCK_N"]
        return block_m < 256 and not (block_m == 128 and block_n >= 64 and c.num_warps == 4)

    return [c for c in configs if fits(c)]


_attention_fwd_tuned = triton.autotune(
    configs=_LONG_CONFIGS,
    key=["N_Q", "N_KV", "HEAD_DIM", "CAUSAL"],
    prune_configs_by={"early_config_prune": _prune_long_configs},
)(_attention_fwd_kernel)

# At or below this many keys and queries the tiles are sized to the sequence instead (temporal
# attention over 8 to 64 frames): a 128-row tile for 16 frames would be 7/8 padding. Such a program
# moves a few KB and does little arithmetic: the kernel is bound by memory bandwidth, and the
# warps per program (fewer: more programs resident per SM) are timed once per shape.
SHORT_SEQ = 64
_attention_fwd_short = triton.autotune(
    configs=[triton.Config({}, num_warps=w, num_stages=st) for w in (1, 2, 4) for st in (1, 2)],
    key=["N_Q", "N_KV", "HEAD_DIM", "CAUSAL", "BLOCK_M", "BLOCK_N"],
)(_attention_fwd_kernel)


def _launch_plan(n: int, m: int, block_d: int, dtype: torch.dtype):
    """The pointer kernel to launch and the launch options fixed by rule; the autotuned kernels
    (``_attention_fwd_tuned``, ``_attention_fwd_short``) time the rest on the GPU."""
    if interpreting():
        # Few, large tiles: the interpreter pays per program and per loop step, not per element.
        return _attention_fwd_kernel, dict(BLOCK_M=32, BLOCK_N=64, num_warps=4)
    if dtype == torch.float32:
        # Exact fp32 products run on CUDA cores; small tiles keep the operands in registers.
        return _attention_fwd_kernel, dict(BLOCK_M=32, BLOCK_N=32, num_warps=4, num_stages=2)
    if max(n, m) <= SHORT_SEQ:  # tiles sized to the sequence; warps and stages timed
        tiles = dict(BLOCK_M=max(16, triton.next_power_of_2(n)), BLOCK_N=max(16, triton.next_power_of_2(m)))
        return _attention_fwd_short, tiles
    if block_d > 128:
        # Long heads: smaller tiles keep q, k, v within registers and shared memory.
        return _attention_fwd_kernel, dict(BLOCK_M=64, BLOCK_N=32, num_warps=8, num_stages=2)
    return _attention_fwd_tuned, {}


def attention_triton(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    causal: bool = False,
    scale: float | None = None,
    tma: bool = False,
    warp_specialize: bool = False,
) -> torch.Tensor:
    """Run the fused kernel on ``q: b h n d``, ``k, v: b h m d`` (any strides); forward only.

    fp16 and bf16 inputs multiply on tensor cores with fp32 accumulation; fp32 inputs multiply
    exactly (``input_precision="ieee"``), as PyTorch does by default. Returns ``b h n d`` in q's
    dtype. ``tma=True`` runs the TMA kernel (:mod:`genlib.kernels.attention_tma`) where its
    ``tma_eligible`` allows it, the pointer kernel elsewhere; the dispatcher
    (:func:`genlib.kernels.attention.attention`) makes that choice for its callers.
    ``warp_specialize`` (GPU, with ``tma``) runs its warp-specialised loop. Head dims above
    ``MAX_HEAD_DIM`` (256) are a ``ValueError`` here; the dispatcher sends them to the reference.
    """
    check_attention_inputs(q, k, v)
    b, h, n, d = q.shape
    m = k.shape[2]
    if not 1 <= d <= MAX_HEAD_DIM:
        raise ValueError(f"attention_triton supports head dims 1..{MAX_HEAD_DIM} (q is b h n d with d={d})")
    out = torch.empty(b, h, n, d, dtype=q.dtype, device=q.device)
    if b * h * n * m == 0:
        return out.zero_()  # no keys: softmax over nothing, an empty sum
    scale = 1.0 / math.sqrt(d) if scale is None else float(scale)
    # The kernel takes a positive scale (it scales the running max, see the loop): fold a sign
    # into q; a zero scale makes every score 0, as q = 0 does.
    if scale < 0:
        q, scale = -q, -scale
    elif scale == 0:
        q, scale = torch.zeros_like(q), 1.0
    if tma and attention_tma.tma_eligible(q, k, v):
        attention_tma.launch(q, k, v, out, causal=causal, qk_scale=scale * LOG2_E, warp_specialize=warp_specialize)
        return out

    block_d = max(16, triton.next_power_of_2(d))  # tl.dot needs K >= 16

    def grid(meta):
        return (b * h * triton.cdiv(n, meta["BLOCK_M"]),)

    args = (
        q, k, v, out,
        *q.stride(), *k.stride(), *v.stride(), *out.stride(),
        h, n, m, scale * LOG2_E,
    )
    options = dict(
        HEAD_DIM=d,
        BLOCK_D=block_d,
        CAUSAL=causal,
        DOT_FP32=interpreting(),
        INPUT_PRECISION="ieee" if q.dtype == torch.float32 else "tf32",
    )
    kernel, tiles = _launch_plan(n, m, block_d, q.dtype)
    kernel[grid](*args, **options, **tiles)
    return out
