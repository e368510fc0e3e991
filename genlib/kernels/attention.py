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

import math

import torch

from genlib.kernels import dispatch


def check_attention_inputs(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> None:
    """Raise ``ValueError`` unless ``q: b h n d`` and ``k, v: b h m d`` fit together."""
    for name, t in (("q", q), ("k", k), ("v", v)):
        if t.ndim != 4:
            raise ValueError(
                f"attention expects {name} of layout b h n d (4 dims), got shape {tuple(t.shape)}"
            )
    if k.shape != v.shape:
        raise ValueError(
            f"attention expects k and v of the same layout b h m d, got {tuple(k.shape)} and {tuple(v.shape)}"
        )
    if q.shape[3] != k.shape[3]:
        raise ValueError(
            f"attention head dims differ: q is b h n d with d={q.shape[3]}, k and v have d={k.shape[3]}"
        )
    if q.shape[:2] != k.shape[:2]:
        raise ValueError(
            f"attention expects q (b h n d) and k, v (b h m d) with the same b and h, got "
            f"{tuple(q.shape)} and {tuple(k.shape)}"
        )
    if not (q.dtype == k.dtype == v.dtype):
        raise ValueError(f"attention expects one dtype for q, k, v, got {q.dtype}, {k.dtype}, {v.dtype}")


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


def attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, causal: bool = False, scale: float | None = None
) -> torch.Tensor:
    """Attention ``b h n d, b h m d, b h m d -> b h n d``, fused in Triton where it can be.

    Dispatch (see :mod:`genlib.kernels.dispatch`): the Triton kernel for CUDA tensors, the
    reference otherwise. When an input requires a gradient the Triton forward is wrapped in an
    ``autograd.Function`` whose backward differentiates the reference (correct, not fast).
    """
    check_attention_inputs(q, k, v)
    if not dispatch.use_triton(q, k, v):
        return attention_reference(q, k, v, causal=causal, scale=scale)
    from genlib.kernels.attention_triton import attention_triton

    if dispatch.needs_grad(q, k, v):
        return dispatch.triton_forward_reference_backward(
            attention_triton, attention_reference, q, k, v, causal=causal, scale=scale
        )
    return attention_triton(q, k, v, causal=causal, scale=scale)
