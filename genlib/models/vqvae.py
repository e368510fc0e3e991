"""VQ-VAE (survey §4; van den Oord et al. 2017): a conv encoder, a vector quantiser, a conv decoder.

    z_e = enc(x)                   b c h w -> b d h' w'
    z_q = e_k,  k = argmin_j ||z_e - e_j||            (eq. 5, 7; VectorQuantizer)
    x_hat = dec(z_q)               gradient reaches enc through the straight-through estimator (§4.4)
    loss = ||x - x_hat||^2 + ||sg[z_e] - e||^2 + beta ||z_e - sg[e]||^2       (eq. 8)

The first term is the reconstruction loss (``-log p(x|z_q)`` for a Gaussian decoder, up to scale
and a constant). :class:`NextCodePredictor` is the §4.5 experiment at toy scale: from the code maps
of past frames and an action, predict the next frame's codes.
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn as nn
import torch.nn.functional as F
from einops import rearrange

from genlib.nn.convnets import ConvNetConfig, Decoder, Encoder
from genlib.nn.quantize import Quantized, VectorQuantizer


@dataclasses.dataclass
class VQVAEConfig:
    """The conv stacks (``net.latent_channels`` is the code dimension ``D``) and the quantiser's
    options (see :class:`~genlib.nn.quantize.VectorQuantizer`)."""

    net: ConvNetConfig = dataclasses.field(default_factory=lambda: ConvNetConfig(channels=(32, 64), latent_channels=16))
    num_codes: int = 64
    beta: float = 0.25
    ema: bool = False
    decay: float = 0.99
    restart_dead: bool = False
    dead_after: int = 20

    def __post_init__(self):
        if isinstance(self.net, dict):
            self.net = ConvNetConfig(**self.net)


@dataclasses.dataclass
class VQVAEOutput:
    recon: torch.Tensor  # b c h w
    z_e: torch.Tensor    # b d h' w'
    quant: Quantized     # z_q, indices (b h' w'), losses, usage


class VQVAE(nn.Module):
    def __init__(self, cfg: VQVAEConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder = Encoder(cfg.net)
        self.quantizer = VectorQuantizer(cfg.num_codes, cfg.net.latent_channels, beta=cfg.beta, ema=cfg.ema,
                                         decay=cfg.decay, restart_dead=cfg.restart_dead, dead_after=cfg.dead_after)
        self.decoder = Decoder(cfg.net)

    def forward(self, x: torch.Tensor) -> VQVAEOutput:
        z_e = self.encoder(x)
        q = self.quantizer(z_e)
        return VQVAEOutput(self.decoder(q.z_q), z_e, q)

    def loss(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Eq. 8 with an MSE reconstruction term; scalars for :func:`genlib.train.fit`."""
        out = self(x)
        rec = F.mse_loss(out.recon, x)
        return rec + out.quant.loss, {"rec": rec, "vq": out.quant.loss, "perplexity": out.quant.perplexity}

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Images ``b c h w`` -> code indices ``b h' w'``."""
        return self.quantizer.codes_for(self.encoder(x))

    @torch.no_grad()
    def decode_indices(self, indices: torch.Tensor) -> torch.Tensor:
        """Code indices ``b h' w'`` -> images ``b c h w``."""
        return self.decoder(self.quantizer.embed(indices, "b c h w"))


# ----------------------------------------------------------------------------- §4.5


@dataclasses.dataclass
class PredictorConfig:
    """``num_codes`` of the VQ-VAE, ``past`` frames of context, ``actions`` to choose from,
    ``embed`` width per code, ``width`` of the conv layers, ``layers`` 3x3 convs."""

    num_codes: int = 64
    past: int = 2
    actions: int = 4
    embed: int = 16
    width: int = 64
    layers: int = 3


class NextCodePredictor(nn.Module):
    """``(codes b p h w, action b) -> logits b K h w`` of the next frame's codes.

    Each past code map is embedded (``b p h w -> b (p e) h w``); the action's embedding is added
    to every position after the first conv; a few 3x3 convs give per-position logits.
    """

    def __init__(self, cfg: PredictorConfig):
        super().__init__()
        self.cfg = cfg
        self.codes = nn.Embedding(cfg.num_codes, cfg.embed)
        self.action = nn.Embedding(cfg.actions, cfg.width)
        self.conv_in = nn.Conv2d(cfg.past * cfg.embed, cfg.width, 3, padding=1)
        self.body = nn.ModuleList(nn.Conv2d(cfg.width, cfg.width, 3, padding=1) for _ in range(cfg.layers))
        self.conv_out = nn.Conv2d(cfg.width, cfg.num_codes, 1)

    def forward(self, codes: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        if codes.ndim != 4 or codes.shape[1] != self.cfg.past:
            raise ValueError(f"codes must have layout b p h w with p = {self.cfg.past}, got {tuple(codes.shape)}")
        if action.shape != codes.shape[:1]:
            raise ValueError(f"action must have layout b (one action index per clip), got {tuple(action.shape)}")
        h = rearrange(self.codes(codes), "b p h w e -> b (p e) h w")
        h = F.silu(self.conv_in(h) + self.action(action)[:, :, None, None])
        for conv in self.body:
            h = h + F.silu(conv(h))
        return self.conv_out(h)

    def loss(self, codes: torch.Tensor, action: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Cross-entropy of the next frame's codes ``target: b h w``."""
        return F.cross_entropy(self(codes, action), target)

    @torch.no_grad()
    def rollout(self, codes: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Predict ``n`` frames ahead one at a time (the most likely code at each position), each
        prediction joining the context: ``codes b p h w, actions b n -> b n h w``."""
        window, out = codes, []
        for i in range(actions.shape[1]):
            nxt = self(window, actions[:, i]).argmax(1)
            out.append(nxt)
            window = torch.cat([window[:, 1:], nxt[:, None]], 1)
        return torch.stack(out, 1)
