"""VQ-VAE (survey §4; van den Oord et al. 2017): a conv encoder, a vector quantiser, a conv decoder.

    z_e = enc(x)                   b c h w -> b d h' w'
    z_q = e_k,  k = argmin_j ||z_e - e_j||            (eq. 5, 7; VectorQuantizer)
    x_hat = dec(z_q)               gradient reaches enc through the straight-through estimator (§4.4)
    loss = ||x - x_hat||^2 + ||sg[z_e] - e||^2 + beta ||z_e - sg[e]||^2       (eq. 8)

The first term is the reconstruction loss (``-log p(x|z_q)`` for a Gaussian decoder, up to scale
and a constant). :class:`NextCodePredictor` is the §4.5 experiment at toy scale: from the code maps
of past frames and an action, predict the next frame's codes, on :func:`steered_clips`, where a
fresh action moves the shape at every frame.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from einops import rearrange

from genlib.data import moving
from genlib.data.render import COLOURS, SHAPES, render_objects
from genlib.data.shapes import OBJECT_SIZES
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



def steered_clips(n: int, frames: int = 8, size: int = 32, step: float = 0.125, seed: int = 0) -> moving.MovingBatch:
    """Clips of one shape that a player steers at random: the actions of the §4.5 experiment.

    After every frame an action (an index into :data:`genlib.data.moving.DIRECTIONS`) is drawn
    uniformly from the moves that keep the whole shape inside the frame, and the shape moves
    ``step * size`` pixels that way. Unlike :func:`genlib.data.moving.sample`, where a shape keeps
    its direction until it bounces, the past frames say nothing about the next move: only the
    action does. ``step = 1/8`` at 32x32 is 4 pixels, one cell of a VQ-VAE's 8x8 code map.

    Returns a :class:`~genlib.data.moving.MovingBatch` (``videos b t 3 h w``) whose
    ``attrs["direction"]`` (``b t 1``) holds the action taken *after* each frame (the last one is
    drawn too, though no frame shows it), and ``attrs["centers"]`` the centres (``b t 1 2``).
    """
    if not isinstance(n, (int, np.integer)) or n < 0:
        raise ValueError(f"n must be a non-negative integer, got {n!r}")
    if not isinstance(frames, (int, np.integer)) or frames < 1:
        raise ValueError(f"frames must be a positive integer, got {frames!r}")
    rng = np.random.Generator(np.random.PCG64(seed))
    colour = rng.integers(len(COLOURS), size=(n, 1))
    shape = rng.integers(len(SHAPES), size=(n, 1))
    obj_size = rng.integers(len(OBJECT_SIZES), size=(n, 1))
    radius = np.asarray([moving.RADIUS[s] for s in OBJECT_SIZES])[obj_size] * size  # n 1
    lo, hi, move = radius[..., None], size - radius[..., None], step * size
    if np.any(hi - lo < move):
        raise ValueError(f"step {step} is too long for the frame: a shape could not move either way")
    pos = lo + rng.random((n, 1, 2)) * (hi - lo)  # n 1 xy
    centers, actions = np.empty((n, frames, 1, 2)), np.empty((n, frames, 1), dtype=np.int64)
    for f in range(frames):
        centers[:, f] = pos
        after = pos[:, :, None, :] + move * moving.UNIT_MOVES  # n 1 4 xy: where each action would lead
        allowed = ((after >= lo[:, :, None]) & (after <= hi[:, :, None])).all(-1)  # n 1 4
        actions[:, f] = np.argmax(rng.random(allowed.shape) * allowed, -1)  # uniform among allowed
        pos = pos + move * moving.UNIT_MOVES[actions[:, f]]
    flat = lambda a: rearrange(np.broadcast_to(a[:, None], (n, frames) + a.shape[1:]), "b t ... -> (b t) ...")
    images = render_objects(rearrange(centers, "b t k xy -> (b t) k xy"), flat(radius), flat(shape), flat(colour),
                            np.ones((n * frames, 1), dtype=bool), size)
    attrs = {"colour": torch.from_numpy(colour), "shape": torch.from_numpy(shape), "size": torch.from_numpy(obj_size),
             "present": torch.ones(n, 1, dtype=torch.bool),
             "centers": torch.from_numpy((centers / size).astype(np.float32)),
             "direction": torch.from_numpy(actions)}
    captions = [f"a {COLOURS[c]} {SHAPES[s]} steered at random" for c, s in zip(colour[:, 0], shape[:, 0])]
    return moving.MovingBatch(rearrange(images, "(b t) c h w -> b t c h w", t=frames), captions, attrs)


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
            raise ValueError(f"action must have layout b (one action index per window), got {tuple(action.shape)}")
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
