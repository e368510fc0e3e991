"""Transformer blocks and a small GPT (survey App. D-E; Vaswani et al. 2017; GPT-2, Radford et al. 2019).

A block is pre-norm, as in GPT-2 and most image and video transformers since::

    x = x + SelfAttention(LayerNorm(x))                    # causal in a GPT
    x = x + CrossAttention(LayerNorm(x), context)          # only with ``context_dim``
    x = x + MLP(LayerNorm(x)),   MLP = Linear(d, 4d) -> GELU -> Linear(4d, d)

:class:`GPT` embeds tokens ``b n`` (int64) and their positions, runs causal blocks and maps each
position to logits over the vocabulary: position ``i`` predicts token ``i + 1`` from tokens
``0..i``. :meth:`GPT.generate` samples one token at a time; past ``block_size`` tokens it keeps
only the last ``block_size`` as context (a 1-D sliding window; VQ-GAN slides a 2-D window over its
code map, survey §6.4). The window's first token then sits at position 0, which matches training
only if training sequences were crops of longer streams, not sequences anchored at a start token.
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn as nn
import torch.nn.functional as F

from genlib import config
from genlib.nn.attention import MultiHeadAttention


class TransformerBlock(nn.Module):
    """``(x: b n dim, context: b m context_dim | None) -> b n dim``, pre-norm, residual."""

    def __init__(self, dim: int, heads: int, *, causal: bool = False, context_dim: int | None = None,
                 mlp_ratio: int = 4, dropout: float = 0.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = MultiHeadAttention(dim, heads, causal=causal)
        self.cross = None
        if context_dim is not None:
            self.norm_cross = nn.LayerNorm(dim)
            self.cross = MultiHeadAttention(dim, heads, context_dim=context_dim)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp_ratio * dim), nn.GELU(), nn.Linear(mlp_ratio * dim, dim))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        """A block built with ``context_dim`` needs a context (unlike ``AttentionBlock2d``, which
        skips its cross-attention without one)."""
        x = x + self.drop(self.attn(self.norm1(x)))
        if self.cross is not None:
            if context is None:
                raise ValueError("this block has cross-attention: pass a context of layout b m context_dim")
            x = x + self.drop(self.cross(self.norm_cross(x), context))
        elif context is not None:
            raise ValueError("this block has no cross-attention (context_dim=None) but got a context")
        return x + self.drop(self.mlp(self.norm2(x)))


@dataclasses.dataclass(frozen=True)
class GPTConfig:
    """``vocab_size`` tokens, sequences of up to ``block_size``, ``layers`` blocks of width ``dim``
    with ``heads`` heads."""

    vocab_size: int
    block_size: int = 64
    dim: int = 64
    heads: int = 4
    layers: int = 2
    dropout: float = 0.0

    def __post_init__(self):
        if min(self.vocab_size, self.block_size, self.dim, self.heads, self.layers) < 1 or self.dim % self.heads:
            raise ValueError(f"GPTConfig needs positive sizes and dim divisible by heads, got {self}")


class GPT(nn.Module):
    """``tokens: b n`` (int64, n <= block_size) ``-> logits: b n vocab_size``."""

    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.cfg = cfg
        self.token = nn.Embedding(cfg.vocab_size, cfg.dim)
        self.position = nn.Embedding(cfg.block_size, cfg.dim)
        self.blocks = nn.ModuleList(TransformerBlock(cfg.dim, cfg.heads, causal=True, dropout=cfg.dropout)
                                    for _ in range(cfg.layers))
        self.norm = nn.LayerNorm(cfg.dim)
        self.head = nn.Linear(cfg.dim, cfg.vocab_size, bias=False)

    def embed(self, tokens: torch.Tensor) -> torch.Tensor:
        """``tokens: b n -> b n dim``: token plus position embeddings, after checking the layout."""
        cfg = self.cfg
        if tokens.ndim != 2 or tokens.dtype != torch.long or not 1 <= tokens.shape[1] <= cfg.block_size:
            raise ValueError(f"GPT expects tokens of layout b n (int64, 1 <= n <= block_size = {cfg.block_size}), "
                             f"got {tuple(tokens.shape)} {tokens.dtype}")
        config.check_range(tokens, 0, cfg.vocab_size - 1, f"tokens must lie in [0, {cfg.vocab_size - 1}]")
        positions = torch.arange(tokens.shape[1], device=tokens.device)
        return self.token(tokens) + self.position(positions)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.embed(tokens)
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x))

    @torch.no_grad()
    def attention_maps(self, tokens: torch.Tensor) -> list[torch.Tensor]:
        """Each block's self-attention weights on ``tokens: b n``: a list (one per block) of
        ``b heads n n`` tensors, row ``i`` the weights query ``i`` gives keys ``0..i``."""
        x = self.embed(tokens)
        maps = []
        for block in self.blocks:
            maps.append(block.attn.attention_map(block.norm1(x)))
            x = block(x)
        return maps

    def loss(self, tokens: torch.Tensor, ignore_index: int | None = None) -> torch.Tensor:
        """Mean next-token cross entropy (nats per token): logits at ``0..n-2`` against tokens
        ``1..n-1``, leaving out targets equal to ``ignore_index`` (padding)."""
        if tokens.ndim != 2 or tokens.shape[1] < 2:
            raise ValueError(f"the loss needs sequences of at least 2 tokens, layout b n; got {tuple(tokens.shape)}")
        logits = self(tokens[:, :-1])
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tokens[:, 1:].reshape(-1),
                               ignore_index=-100 if ignore_index is None else ignore_index)

    @torch.no_grad()
    def generate(self, prefix: torch.Tensor, steps: int, *, temperature: float = 1.0, top_k: int | None = None,
                 vocab: int | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
        """Extend ``prefix: b n0`` by ``steps`` sampled tokens; returns ``b (n0 + steps)``.

        Each token is drawn by :func:`sample_next` (temperature, top-k, only tokens below
        ``vocab`` when given) from the logits given the last ``block_size`` tokens at most: the
        sliding window.
        """
        check_sampling(steps, temperature, top_k, vocab, self.cfg.vocab_size)
        was_training = self.training
        self.eval()
        tokens = prefix
        try:
            for _ in range(steps):
                logits = self(tokens[:, -self.cfg.block_size:])[:, -1]
                nxt = sample_next(logits, temperature=temperature, top_k=top_k, vocab=vocab, generator=generator)
                tokens = torch.cat([tokens, nxt.to(tokens.device)[:, None]], dim=1)
        finally:
            self.train(was_training)
        return tokens

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


def check_sampling(steps: int, temperature: float, top_k: int | None, vocab: int | None, vocab_size: int) -> None:
    if steps < 0 or temperature <= 0 or (top_k is not None and top_k < 1):
        raise ValueError(f"need steps >= 0, temperature > 0, top_k >= 1; got {steps}, {temperature}, {top_k}")
    if vocab is not None and not 1 <= vocab <= vocab_size:
        raise ValueError(f"vocab must lie in [1, {vocab_size}] (sample tokens 0..vocab-1), got {vocab}")


def sample_next(logits: torch.Tensor, *, temperature: float = 1.0, top_k: int | None = None, vocab: int | None = None,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """One token per row of ``logits: b V``, drawn from ``softmax(logits / temperature)``.

    ``vocab``: only tokens ``0..vocab-1`` can be drawn (a prior whose vocabulary also holds
    condition tokens, :mod:`genlib.models.code_prior`); ``top_k``: only exactly the ``top_k`` most
    likely of those (ties broken by ``topk``). The probabilities move to the CPU and the draw uses
    ``generator``, a CPU generator: the same draws for the same probabilities on any device.
    Returns ``b`` int64 on the CPU.
    """
    logits = logits.float()
    if vocab is not None:
        logits = logits[:, :vocab]
    logits = logits / temperature
    if top_k is not None and top_k < logits.shape[-1]:
        values, index = logits.topk(top_k, dim=-1)
        logits = torch.full_like(logits, float("-inf")).scatter(-1, index, values)
    return torch.multinomial(logits.softmax(-1).cpu(), 1, generator=generator)[:, 0]
