"""The online-softmax update both attention kernels share (the pointer kernel of
:mod:`genlib.kernels.attention_triton` and the TMA kernel of :mod:`genlib.kernels.attention_tma`).

Its own module so that neither kernel imports the other: the derivation is in
:mod:`genlib.kernels.attention_triton`'s docstring.
"""

from __future__ import annotations

import triton
import triton.language as tl

LOG2_E = 1.4426950408889634


@triton.jit
def online_softmax_update(
    s, v, m_i, l_i, acc, qk_scale, LAZY_RESCALE: tl.constexpr, INPUT_PRECISION: tl.constexpr
):
    """One key block of the online softmax (module docstring), in base-2 units: ``s`` are the
    block's raw scores q k^T (masked entries -inf), ``v`` its values; returns the new m, l, acc.

    The scores are ``qk_scale * s``. qk_scale > 0 (the launchers see to it), so max(qk_scale * s) is
    qk_scale * max(s), and qk_scale * s - m_new is one fused multiply-add per score.
    """
    row_max = tl.max(s, 1) * qk_scale  # this block's max per query
    if LAZY_RESCALE:
        # Keep the old max until some row's max grows by more than 2**8: then p <= 256
        # (safe in fp16 and bf16) and the rescaling of acc, a BLOCK_M x BLOCK_D multiply
        # that waits on the matrix unit, is skipped in most blocks. acc / l is unchanged:
        # both carry the same factor 2**-m_i.
        if tl.max(row_max - m_i, 0) > 8.0:
            m_new = tl.maximum(m_i, row_max)
            alpha = tl.exp2(m_i - m_new)
            l_i = l_i * alpha
            acc = acc * alpha[:, None]
            m_i = m_new
        p = tl.exp2(s * qk_scale - m_i[:, None])
        l_i = l_i + tl.sum(p, 1)
        acc = tl.dot(p.to(v.dtype), v, acc=acc, input_precision=INPUT_PRECISION)
    else:
        m_new = tl.maximum(m_i, row_max)
        alpha = tl.exp2(m_i - m_new)
        p = tl.exp2(s * qk_scale - m_new[:, None])
        l_i = l_i * alpha + tl.sum(p, 1)
        # acc = alpha * acc + p @ v, accumulated inside the matrix unit
        acc = tl.dot(p.to(v.dtype), v, acc=acc * alpha[:, None], input_precision=INPUT_PRECISION)
        m_i = m_new
    return m_i, l_i, acc
