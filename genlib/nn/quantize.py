"""Vector quantisation (survey §4.1-4.4): a learnable codebook, nearest-code search, the
straight-through estimator, the codebook and commitment losses, EMA updates and dead-code restarts.

Layouts accepted by :class:`VectorQuantizer` (einops notation, ``d`` = the code dimension):

=================  ==============================================  ==================
layout             what                                            indices returned
=================  ==============================================  ==================
``b c h w``        an image encoder's output, ``c == d``           ``b h w``
``b c t h w``      a video encoder's output, ``c == d``            ``b t h w``
``b n d``          a sequence of ``n`` vectors                     ``b n``
``n d``            a plain set of points (the 2-D demo)            ``n``
=================  ==============================================  ==================

The nearest-code search happens in exactly one place, :func:`nearest_code`, which calls
:func:`genlib.kernels.vq_nearest` (a fused Triton kernel on CUDA, the PyTorch reference elsewhere).
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn as nn
import torch.nn.functional as F
from einops import rearrange

from genlib import config, kernels

LAYOUTS = {2: "n d", 3: "b n d", 4: "b c h w", 5: "b c t h w"}


def nearest_code(z: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """Eq. 5 and 7: ``k_i = argmin_j ||z_i - e_j||_2`` for ``z: n d`` and ``codebook: k d``.

    The one place in genlib where the nearest-code search happens. An argmin has no gradient, so
    the search runs on detached tensors under ``no_grad`` (that lets the Triton kernel run on a GPU
    even while training). Returns int64 indices, layout ``n``.
    """
    with torch.no_grad():  # z may be bf16 under autocast: search in the codebook's dtype
        return kernels.vq_nearest(z.detach().to(codebook.dtype), codebook.detach())


class _StraightThrough(torch.autograd.Function):
    """Forward: ``z_q`` exactly. Backward: the gradient arriving at ``z_q`` goes to ``z_e``
    unchanged, and none goes to ``z_q`` (§4.4). Same gradients as ``z_e + sg[z_q - z_e]``, but
    the forward value is ``z_q`` bit for bit (the sum can round)."""

    @staticmethod
    def forward(ctx, z_e, z_q):
        return z_q.to(z_e.dtype, copy=True)

    @staticmethod
    def backward(ctx, grad):
        return grad, None


def straight_through(z_e: torch.Tensor, z_q: torch.Tensor) -> torch.Tensor:
    """The straight-through estimator: returns ``z_q``; its gradient flows to ``z_e`` as if the
    quantisation were the identity."""
    return _StraightThrough.apply(z_e, z_q)


def perplexity(counts: torch.Tensor) -> torch.Tensor:
    """``exp(H(p))`` of the code-usage distribution ``p = counts / sum(counts)``: 1 when one code
    takes everything, ``K`` when all ``K`` codes are used equally often."""
    p = counts.float() / counts.sum().clamp_min(1)
    return torch.exp(-(p * torch.log(p.clamp_min(1e-12))).sum())


@dataclasses.dataclass
class Quantized:
    """What :meth:`VectorQuantizer.forward` returns.

    ``z_q``: the quantised vectors in the input's layout, through the straight-through estimator.
    ``indices``: the chosen code per vector (input layout without the code axis). ``loss``: the VQ
    loss to add to the reconstruction loss (eq. 6/8: codebook term + beta * commitment term; the
    commitment term only, when the codebook is updated by EMA). ``codebook_loss`` and
    ``commitment_loss``: the two terms, each ``mean ||z_e - z_q||^2`` with the stop-gradient on
    the other side. ``counts``: how many vectors chose each code (``k``). ``perplexity``: of
    ``counts``. ``restarted``: how many dead codes this call restarted.
    """

    z_q: torch.Tensor
    indices: torch.Tensor
    loss: torch.Tensor
    codebook_loss: torch.Tensor
    commitment_loss: torch.Tensor
    counts: torch.Tensor
    perplexity: torch.Tensor
    restarted: int = 0


class VectorQuantizer(nn.Module):
    """A codebook of ``num_codes`` vectors of dimension ``code_dim`` and the VQ-VAE bottleneck.

    Args:
        num_codes: ``K``, the codebook size.
        code_dim: ``D``, the dimension of each code (the encoder's channel count).
        beta: the commitment weight of eq. 6/8 (on the encoder's term; 0.25 in the VQ-VAE paper).
        ema: update the codebook as exponential moving averages of the vectors assigned to each
            code (VQ-VAE paper, App. A.1) instead of by the gradient of the codebook term.
        decay: the EMA decay ``gamma``.
        restart_dead: in training, a code that no vector chose for ``dead_after`` calls in a row
            is moved onto a random encoder output of the current batch.
        dead_after: see ``restart_dead``.
        init_scale: codes start uniform in ``[-init_scale, init_scale]`` (default ``1 / K``, as
            in the VQ-VAE reference code).
    """

    def __init__(self, num_codes: int, code_dim: int, *, beta: float = 0.25, ema: bool = False,
                 decay: float = 0.99, eps: float = 1e-5, restart_dead: bool = False,
                 dead_after: int = 20, init_scale: float | None = None):
        super().__init__()
        if num_codes < 1 or code_dim < 1:
            raise ValueError(f"need num_codes >= 1 and code_dim >= 1, got {num_codes} and {code_dim}")
        if beta < 0 or not 0.0 < decay < 1.0 or dead_after < 1:
            raise ValueError(f"need beta >= 0, 0 < decay < 1, dead_after >= 1; got {beta}, {decay}, {dead_after}")
        self.num_codes, self.code_dim = int(num_codes), int(code_dim)
        self.beta, self.use_ema, self.decay, self.eps = float(beta), bool(ema), float(decay), float(eps)
        self.restart_dead, self.dead_after = bool(restart_dead), int(dead_after)
        scale = 1.0 / num_codes if init_scale is None else float(init_scale)
        codes = torch.empty(num_codes, code_dim).uniform_(-scale, scale)
        # With EMA the codebook is not trained by gradients: a parameter without requires_grad
        # keeps the same state-dict key either way and stays out of the optimiser.
        self.codebook = nn.Parameter(codes, requires_grad=not ema)
        self.register_buffer("ema_count", torch.ones(num_codes))
        self.register_buffer("ema_sum", codes.clone())
        self.register_buffer("unused_calls", torch.zeros(num_codes, dtype=torch.long))

    def extra_repr(self) -> str:
        return (f"num_codes={self.num_codes}, code_dim={self.code_dim}, beta={self.beta}, "
                f"ema={self.use_ema}, restart_dead={self.restart_dead}")

    # ------------------------------------------------------------------ layouts

    def _flatten(self, z: torch.Tensor) -> tuple[torch.Tensor, str]:
        """``z`` in any accepted layout -> ``(n d, layout)``; raises ``ValueError`` otherwise."""
        if not isinstance(z, torch.Tensor) or z.ndim not in LAYOUTS:
            shape = tuple(z.shape) if isinstance(z, torch.Tensor) else type(z).__name__
            raise ValueError(f"VectorQuantizer expects layout b c h w, b c t h w, b n d or n d; got {shape}")
        layout = LAYOUTS[z.ndim]
        axis = 1 if z.ndim >= 4 else -1
        if z.shape[axis] != self.code_dim:
            where = "channel count c" if z.ndim >= 4 else "last dim d"
            raise ValueError(f"VectorQuantizer: input of layout {layout} has {where} = {z.shape[axis]}, "
                             f"but the codebook holds codes of dimension {self.code_dim}")
        if not z.is_floating_point():
            raise ValueError(f"VectorQuantizer expects floating-point input, got {z.dtype}")
        if z.device.type == "cpu":  # free here; on a GPU a wait per training step (a NaN loss stops fit)
            config.check_finite(z.detach(), "VectorQuantizer input")  # NaN is no distance from any code
        if z.ndim == 4:
            return rearrange(z, "b c h w -> (b h w) c"), layout
        if z.ndim == 5:
            return rearrange(z, "b c t h w -> (b t h w) c"), layout
        return z.reshape(-1, self.code_dim), layout

    @staticmethod
    def _unflatten(flat: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        if like.ndim == 4:
            b, _, h, w = like.shape
            return rearrange(flat, "(b h w) c -> b c h w", b=b, h=h, w=w)
        if like.ndim == 5:
            b, _, t, h, w = like.shape
            return rearrange(flat, "(b t h w) c -> b c t h w", b=b, t=t, h=h, w=w)
        return flat.reshape(like.shape)

    @staticmethod
    def _index_shape(like: torch.Tensor) -> tuple[int, ...]:
        return (like.shape[0], *like.shape[2:]) if like.ndim >= 4 else tuple(like.shape[:-1])

    # ------------------------------------------------------------------ the bottleneck

    def codes_for(self, z: torch.Tensor) -> torch.Tensor:
        """Indices of the nearest codes (eq. 7) for ``z`` in any accepted layout."""
        flat, _ = self._flatten(z)
        if flat.device.type != "cpu":  # one wait per call on a GPU (_flatten checked CPU input)
            config.check_finite(flat.detach(), "VectorQuantizer input")
        return nearest_code(flat, self.codebook).reshape(self._index_shape(z))

    def embed(self, indices: torch.Tensor, layout: str = "b c h w") -> torch.Tensor:
        """Codes for ``indices``: ``b h w -> b c h w``, ``b t h w -> b c t h w`` (``layout``
        ``"b c h w"`` / ``"b c t h w"``) or ``... -> ... d`` (``layout="... d"``)."""
        if indices.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8):
            raise ValueError(f"embed expects integer code indices, got {indices.dtype}")
        config.check_range(indices, 0, self.num_codes - 1, f"embed: code indices must be in 0..{self.num_codes - 1}")
        e = self.codebook[indices.long()]  # ... d
        if layout == "b c h w":
            if indices.ndim != 3:
                raise ValueError(f"layout b c h w needs indices b h w, got shape {tuple(indices.shape)}")
            return rearrange(e, "b h w c -> b c h w")
        if layout == "b c t h w":
            if indices.ndim != 4:
                raise ValueError(f"layout b c t h w needs indices b t h w, got shape {tuple(indices.shape)}")
            return rearrange(e, "b t h w c -> b c t h w")
        if layout == "... d":
            return e
        raise ValueError(f"layout must be 'b c h w', 'b c t h w' or '... d', got {layout!r}")

    def forward(self, z_e: torch.Tensor) -> Quantized:
        """Quantise ``z_e`` (any accepted layout); in training mode also update the codebook
        (EMA) and restart dead codes when those options are on."""
        flat, _ = self._flatten(z_e)
        idx = nearest_code(flat, self.codebook)                       # eq. 7: k = argmin_j ||z_e - e_j||
        z_q_flat = self.codebook[idx]                                 # z_q = e_k
        counts = torch.bincount(idx, minlength=self.num_codes)

        restarted = 0
        if self.training:
            if self.use_ema:
                self._ema_update(flat, idx, counts)  # z_q keeps the codes it was matched to
            restarted = self._restart_dead(flat, counts)

        # eq. 6: L_VQ = ||sg[z_e] - z_q||^2 + beta ||z_e - sg[z_q]||^2  (each as a mean over entries)
        codebook_loss = F.mse_loss(z_q_flat, flat.detach())          # moves the codes only
        commitment_loss = F.mse_loss(flat, z_q_flat.detach())         # moves the encoder only
        if self.use_ema:
            loss = self.beta * commitment_loss  # the EMA update replaces the codebook term
        else:
            loss = codebook_loss + self.beta * commitment_loss

        z_q = self._unflatten(straight_through(flat, z_q_flat), z_e)  # §4.4: gradient skips the snap
        return Quantized(z_q, idx.reshape(self._index_shape(z_e)), loss, codebook_loss,
                         commitment_loss, counts, perplexity(counts), restarted)

    @torch.no_grad()
    def _ema_update(self, flat: torch.Tensor, idx: torch.Tensor, counts: torch.Tensor) -> None:
        """VQ-VAE App. A.1: N_i <- g N_i + (1-g) n_i;  m_i <- g m_i + (1-g) sum_{z -> i} z;
        e_i = m_i / N_i (with N Laplace-smoothed so an unused code does not divide by zero)."""
        g = self.decay
        sums = torch.zeros_like(self.ema_sum).index_add_(0, idx, flat.detach().to(self.ema_sum.dtype))
        self.ema_count.mul_(g).add_(counts.to(self.ema_count.dtype), alpha=1 - g)
        self.ema_sum.mul_(g).add_(sums, alpha=1 - g)
        n = self.ema_count.sum()
        smoothed = (self.ema_count + self.eps) / (n + self.num_codes * self.eps) * n
        self.codebook.data.copy_(self.ema_sum / smoothed[:, None])

    @torch.no_grad()
    def _restart_dead(self, flat: torch.Tensor, counts: torch.Tensor) -> int:
        """Count calls without use; move codes unused for ``dead_after`` calls onto random
        vectors of this batch. Returns how many codes moved."""
        self.unused_calls.add_(1).masked_fill_(counts > 0, 0)
        if not self.restart_dead:
            return 0
        dead = torch.nonzero(self.unused_calls >= self.dead_after).flatten()
        if dead.numel() == 0 or flat.shape[0] == 0:
            return 0
        pick = torch.randint(flat.shape[0], (dead.numel(),), device=flat.device)
        new = flat.detach()[pick].to(self.codebook.dtype)
        self.codebook.data[dead] = new
        self.ema_sum[dead] = new.float()
        self.ema_count[dead] = 1.0
        self.unused_calls[dead] = 0
        return int(dead.numel())
