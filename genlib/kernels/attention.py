"""Scaled dot-product attention: the reference, and the dispatcher to the fused Triton kernel.

Layouts (einops notation): queries ``q: b h n d``, keys and values ``k, v: b h m d``, output
``b h n d``. Self-attention has ``m = n``; cross-attention lets ``m`` differ (text tokens, or the
frames of a video seen from one frame). With ``scale = 1/sqrt(d)`` by default,

    S = scale * Q K^T                   # b h n m: one score per (query, key)
    P = softmax(S) over the keys        # each query's weights sum to 1
    O = P V                             # b h n d

``causal=True`` lets query ``i`` see keys ``j <= i`` only (the mask aligned at the top-left
corner, as ``torch.nn.functional.scaled_dot_product_attention(is_causal=True)`` does).

The Triton kernel (:mod:`genlib.kernels.attention_triton`) never forms ``S``: it walks the keys
in blocks with the online softmax. Temporal attention in a video model attends over ``t`` frames
for every pixel and head, ``(b h w) heads t d``: tiny sequences, a huge batch; the kernel's 1-D grid
takes any ``b * h``.
"""

from __future__ import annotations

import functools
import math
import os

import torch

from genlib.kernels import dispatch
from genlib.kernels.common import check_attention_inputs


def attention_weights(
    q: torch.Tensor, k: torch.Tensor, *, causal: bool = False, scale: float | None = None
) -> torch.Tensor:
    """The weights P = softmax(scale * q k^T), ``b h n m`` in fp32: each query's row sums to 1."""
    check_attention_inputs(q, k, k)
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    s = torch.einsum("bhnd,bhmd->bhnm", q.float(), k.float()) * scale
    if causal:
        n, m = s.shape[-2:]
        keep = torch.ones(n, m, dtype=torch.bool, device=s.device).tril()  # key j <= query i
        s = s.masked_fill(~keep, float("-inf"))
    return torch.softmax(s, dim=-1)


def attention_reference(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, causal: bool = False, scale: float | None = None
) -> torch.Tensor:
    """softmax(scale * q k^T) v in plain PyTorch, computed in fp32 and returned in q's dtype."""
    check_attention_inputs(q, k, v)
    p = attention_weights(q, k, causal=causal, scale=scale)
    return torch.einsum("bhnm,bhmd->bhnd", p, v.float()).to(q.dtype)


def use_tma(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> bool:
    """The dispatcher's choice between the two Triton attention kernels: the TMA kernel where it is
    eligible (:func:`~genlib.kernels.attention_tma.tma_eligible`) and wanted, else the pointer
    kernel. Wanted: ``GENLIB_ATTENTION_TMA`` (``1`` / ``0``) when set, else
    :func:`~genlib.kernels.attention_tma.preferred` (on a GPU at head dim 128, where it measured faster)."""
    from genlib.kernels import attention_tma  # imports triton

    setting = os.environ.get(attention_tma.TMA_ENV_VAR, "").strip()
    wanted = setting == "1" if setting else attention_tma.preferred(q)
    return wanted and attention_tma.tma_eligible(q, k, v)


def attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, causal: bool = False, scale: float | None = None
) -> torch.Tensor:
    """Attention ``b h n d, b h m d, b h m d -> b h n d``, fused in Triton where it can be.

    Dispatch (see :mod:`genlib.kernels.dispatch`): the Triton kernels for CUDA tensors (the TMA or
    the pointer kernel, :func:`use_tma`), the reference otherwise. Under ``auto``, shapes the
    kernels refuse (head dim above 256) run the reference too; ``GENLIB_KERNELS=triton`` lets the
    kernel raise instead. When an input requires a gradient the Triton forward is wrapped in an
    ``autograd.Function`` whose backward differentiates the reference (correct, not fast).
    """
    check_attention_inputs(q, k, v)
    if not dispatch.use_triton(q, k, v):
        return attention_reference(q, k, v, causal=causal, scale=scale)
    from genlib.kernels.attention_triton import MAX_HEAD_DIM, attention_triton

    if q.shape[-1] > MAX_HEAD_DIM and dispatch.requested_backend() == "auto":
        return attention_reference(q, k, v, causal=causal, scale=scale)
    kernel = functools.partial(attention_triton, tma=use_tma(q, k, v))
    if dispatch.needs_grad(q, k, v):
        return dispatch.triton_forward_reference_backward(kernel, attention_reference, q, k, v, causal=causal,
                                                          scale=scale)
    return kernel(q, k, v, causal=causal, scale=scale)
