"""Multi-head self- and cross-attention, on tokens ``b n d`` and on feature maps ``b c h w``.

:class:`MultiHeadAttention` is the layer of "Attention is all you need" (survey App. D)::

    q = x W_q,  k = c W_k,  v = c W_v          # c = x for self-attention, the context otherwise
    q, k, v: b n (h d) -> b h n d              # split into h heads of width d
    o = softmax(q k^T / sqrt(d)) v             # genlib.kernels.attention (fused on a GPU)
    out = (o: b h n d -> b n (h d)) W_o

:class:`AttentionBlock2d` puts it into a U-Net: the feature map becomes ``h*w`` tokens of width
``c``, a GroupNorm'd self-attention (and, with a context, a cross-attention to it: LDM's text
conditioning, survey §8.4) is added back as a residual, and the tokens become a map again. The
output projections start at zero, so a fresh block is the identity.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from genlib.kernels import attention
from genlib.kernels.attention import attention_weights
from genlib.nn.resblock import check_groups


class MultiHeadAttention(nn.Module):
    """``(x: b n dim, context: b m context_dim | None) -> b n dim``; self-attention when
    ``context`` is ``None``, cross-attention otherwise (then ``context_dim`` must be given)."""

    def __init__(self, dim: int, heads: int = 4, *, context_dim: int | None = None, head_dim: int | None = None,
                 causal: bool = False):
        super().__init__()
        if heads < 1:
            raise ValueError(f"heads must be >= 1, got {heads}")
        if head_dim is None:
            if dim % heads:
                raise ValueError(f"dim={dim} must be divisible by heads={heads} (or pass head_dim)")
            head_dim = dim // heads
        self.dim, self.heads, self.head_dim, self.causal = dim, heads, head_dim, causal
        self.context_dim = context_dim
        inner = heads * head_dim
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_k = nn.Linear(context_dim or dim, inner, bias=False)
        self.to_v = nn.Linear(context_dim or dim, inner, bias=False)
        self.to_out = nn.Linear(inner, dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        if x.ndim != 3 or x.shape[-1] != self.dim:
            raise ValueError(f"MultiHeadAttention expects x of layout b n d with d={self.dim}, got {tuple(x.shape)}")
        if context is None:
            if self.context_dim is not None:
                raise ValueError("this cross-attention layer needs a context of layout b m d")
            context = x
        elif context.ndim != 3 or context.shape[0] != x.shape[0] or context.shape[-1] != (self.context_dim or self.dim):
            raise ValueError(f"MultiHeadAttention expects context of layout b m d = ({x.shape[0]}, m, "
                             f"{self.context_dim or self.dim}), got {tuple(context.shape)}")
        q, k, v = self.to_q(x), self.to_k(context), self.to_v(context)
        q, k, v = (rearrange(z, "b n (h d) -> b h n d", h=self.heads) for z in (q, k, v))
        o = attention(q, k, v, causal=self.causal)  # softmax(q k^T / sqrt(d)) v, per head
        return self.to_out(rearrange(o, "b h n d -> b n (h d)"))

    def attention_map(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        """The weights ``b h n m`` softmax(q k^T / sqrt(d)) in fp32 (for plots; the forward never forms them)."""
        context = x if context is None else context
        q = rearrange(self.to_q(x), "b n (h d) -> b h n d", h=self.heads)
        k = rearrange(self.to_k(context), "b m (h d) -> b h m d", h=self.heads)
        return attention_weights(q, k, causal=self.causal)


class AttentionBlock2d(nn.Module):
    """``(x: b c h w, context: b m context_dim | None) -> b c h w``: residual self-attention over
    the ``h*w`` positions, then (with ``context_dim``) residual cross-attention to the context.

    A cross-attention block called without a context skips the cross-attention: the model is then
    unconditional (classifier-free guidance's empty condition).
    """

    def __init__(self, channels: int, heads: int = 4, *, groups: int = 8, context_dim: int | None = None):
        super().__init__()
        check_groups(channels, groups, "AttentionBlock2d")
        self.channels = channels
        self.norm = nn.GroupNorm(groups, channels)
        self.self_attn = MultiHeadAttention(channels, heads)
        nn.init.zeros_(self.self_attn.to_out.weight)  # identity at initialisation
        nn.init.zeros_(self.self_attn.to_out.bias)
        self.cross_attn = None
        if context_dim is not None:
            self.norm_cross = nn.LayerNorm(channels)
            self.cross_attn = MultiHeadAttention(channels, heads, context_dim=context_dim)
            nn.init.zeros_(self.cross_attn.to_out.weight)
            nn.init.zeros_(self.cross_attn.to_out.bias)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != self.channels:
            raise ValueError(f"AttentionBlock2d expects x of layout b c h w with c={self.channels}, got {tuple(x.shape)}")
        out = self._after_self_attention(x)
        if self.cross_attn is not None and context is not None:
            out = out + self.cross_attn(self.norm_cross(out), context)
        return rearrange(out, "b (h w) c -> b c h w", h=x.shape[2], w=x.shape[3])

    def _after_self_attention(self, x: torch.Tensor) -> torch.Tensor:
        """``b c h w -> b (h w) c``: the positions as tokens, plus the residual self-attention."""
        tokens = rearrange(F.group_norm(x, self.norm.num_groups, self.norm.weight, self.norm.bias, self.norm.eps),
                           "b c h w -> b (h w) c")
        return rearrange(x, "b c h w -> b (h w) c") + self.self_attn(tokens)

    def cross_attention_map(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """The cross-attention weights ``b heads (h w) m`` this block applies to ``x: b c h w``:
        how much each position reads each context token (for plots; fp32)."""
        if self.cross_attn is None:
            raise ValueError("this AttentionBlock2d has no cross-attention (built without context_dim)")
        return self.cross_attn.attention_map(self.norm_cross(self._after_self_attention(x)), context)


class AxialAttention2d(nn.Module):
    """``x: b h w dim -> b h w dim``: attention along each row, then along each column (axial
    attention, Ho et al. 2019), each with a residual connection.

    Full attention over an ``h x w`` grid forms ``(h w)^2`` scores per head; a row pass forms
    ``h w^2`` and a column pass ``w h^2``. After both, every output position has read every input
    position (through the row it shares with one and the column it shares with the other), at a
    cost of ``h w (h + w)`` scores. Video models do the same along time, rows and columns.
    """

    def __init__(self, dim: int, heads: int = 4):
        super().__init__()
        self.dim = dim
        self.row = MultiHeadAttention(dim, heads)
        self.col = MultiHeadAttention(dim, heads)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[-1] != self.dim:
            raise ValueError(f"AxialAttention2d expects x of layout b h w d with d={self.dim}, got {tuple(x.shape)}")
        b = x.shape[0]
        rows = rearrange(x, "b h w d -> (b h) w d")  # each row is a sequence of w positions
        x = x + rearrange(self.row(rows), "(b h) w d -> b h w d", b=b)
        cols = rearrange(x, "b h w d -> (b w) h d")  # each column a sequence of h positions
        return x + rearrange(self.col(cols), "(b w) h d -> b h w d", b=b)
