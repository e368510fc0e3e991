"""VQ-GAN's second stage (survey §6.2-6.4): a GPT over code maps, conditioned by a prefix token,
sampled through a sliding window.

A code map ``b h w`` (indices into the first stage's codebook of ``K`` codes) becomes a sequence
in raster order, after one condition token::

    tokens = [K + c, s_0, s_1, ..., s_{hw-1}]          s_i = indices[i // w, i % w]

The condition token plays the role of Fig. 17's ``r`` (here one token, a class; a spatial
condition would be a whole code map of its own) and, for an unconditional prior, of the start
token. The GPT is trained to maximise ``log p(s | c) = sum_i log p(s_i | s_<i, c)`` (eq. 10):
:meth:`CodePrior.loss` is the mean of ``-log p(s_i | s_<i, c)`` over the code tokens, in nats.

Sampling (:meth:`CodePrior.sample`) walks a ``height x width`` canvas in raster order. For each
position it cuts the ``h x w`` window the prior was trained on, placed so that the position sits
in its middle where the canvas allows (at the canvas' edges the window stops at the edge), feeds
the condition token and the window's codes before the position, and draws the position's code
from the last logits: §6.4's sliding window. On an ``h x w`` canvas the window is the whole map
and this is plain autoregressive sampling. For a window to see what it saw in training, the prior
should be trained on crops from larger maps (:func:`random_crops`), as the VQ-GAN paper does.
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn as nn
from einops import rearrange

from genlib import config, train, zoo
from genlib.data import shapes
from genlib.data.render import COLOURS
from genlib.nn.transformer import GPT, GPTConfig, check_sampling, sample_next


@dataclasses.dataclass(frozen=True)
class CodePriorConfig:
    """``num_codes`` (K) of the first stage, ``num_conditions`` prefix tokens (1: unconditional),
    the ``height x width`` code window it models, and the GPT's ``dim``, ``heads``, ``layers``."""

    num_codes: int
    num_conditions: int = 1
    height: int = 8
    width: int = 8
    dim: int = 128
    heads: int = 4
    layers: int = 4
    dropout: float = 0.0

    @classmethod
    def preset(cls, num_codes: int) -> "CodePriorConfig":
        """The active profile's colour-conditioned prior over 8x8 code maps of a first stage with
        ``num_codes`` codes (one condition token per colour of :data:`genlib.data.render.COLOURS`)."""
        return cls(num_codes=num_codes, num_conditions=len(COLOURS), height=8, width=8,
                   dim=config.pick(ci=32, cpu=64, gpu=256), heads=4, layers=config.pick(ci=1, cpu=2, gpu=6))

    def gpt(self) -> GPTConfig:
        return GPTConfig(vocab_size=self.num_codes + self.num_conditions, block_size=1 + self.height * self.width,
                         dim=self.dim, heads=self.heads, layers=self.layers, dropout=self.dropout)


class CodePrior(nn.Module):
    """``p(s | c)`` over ``height x width`` code maps (module doc)."""

    def __init__(self, cfg: CodePriorConfig):
        super().__init__()
        self.cfg = cfg
        self.gpt = GPT(cfg.gpt())

    def _check(self, indices: torch.Tensor, cond: torch.Tensor) -> None:
        cfg = self.cfg
        if indices.ndim != 3 or tuple(indices.shape[1:]) != (cfg.height, cfg.width):
            raise ValueError(f"code maps must have layout b h w with h, w = {cfg.height}, {cfg.width}, "
                             f"got {tuple(indices.shape)}")
        config.check_range(indices, 0, cfg.num_codes - 1, f"code indices must lie in [0, {cfg.num_codes - 1}]")
        _check_cond(cond, len(indices), cfg.num_conditions)

    def sequence(self, indices: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """``indices: b h w``, ``cond: b`` -> tokens ``b (1 + h w)``: the condition token, then the
        codes in raster order."""
        self._check(indices, cond)
        start = (self.cfg.num_codes + cond.to(indices.device))[:, None]
        return torch.cat([start, indices.flatten(1)], dim=1)

    def loss(self, indices: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """Mean ``-log p(s_i | s_<i, c)`` over the code tokens (nats): eq. 10's negative log."""
        return self.gpt.loss(self.sequence(indices, cond))

    @torch.no_grad()
    def nll(self, indices: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """``-log p(s | c)`` of each code map, in nats: ``b``, on the device of ``indices``."""
        tokens = self.sequence(indices.to(next(self.parameters()).device), cond)
        logp = self.gpt(tokens[:, :-1]).float().log_softmax(-1)
        return -logp.gather(-1, tokens[:, 1:, None])[..., 0].sum(1).to(indices.device)

    @torch.no_grad()
    def sample(self, cond: torch.Tensor, height: int | None = None, width: int | None = None, *,
               temperature: float = 1.0, top_k: int | None = None,
               generator: torch.Generator | None = None) -> torch.Tensor:
        """Code maps ``b height width`` for conditions ``cond: b``, through the sliding window
        (module doc); ``height, width`` default to the window, at least the window. Draws come
        from ``generator`` (CPU) as in :func:`~genlib.nn.transformer.sample_next`."""
        cfg = self.cfg
        H, W = height or cfg.height, width or cfg.width
        if H < cfg.height or W < cfg.width:
            raise ValueError(f"the canvas must be at least the {cfg.height}x{cfg.width} window, got {H}x{W}")
        check_sampling(H * W, temperature, top_k, cfg.num_codes, cfg.gpt().vocab_size)
        _check_cond(cond, len(cond), cfg.num_conditions)
        dev = next(self.parameters()).device
        start = (cfg.num_codes + cond.to(dev))[:, None]
        canvas = torch.zeros(len(cond), H, W, dtype=torch.long, device=dev)
        was_training = self.training
        self.eval()
        try:
            for i in range(H):
                for j in range(W):
                    top, left = window_origin(i, j, (H, W), (cfg.height, cfg.width))
                    window = canvas[:, top:top + cfg.height, left:left + cfg.width].flatten(1)
                    before = (i - top) * cfg.width + (j - left)  # the window's codes before (i, j)
                    logits = self.gpt(torch.cat([start, window[:, :before]], dim=1))[:, -1]
                    canvas[:, i, j] = sample_next(logits, temperature=temperature, top_k=top_k,
                                                  vocab=cfg.num_codes, generator=generator).to(dev)
        finally:
            self.train(was_training)
        return canvas


def window_origin(i: int, j: int, canvas: tuple[int, int], window: tuple[int, int]) -> tuple[int, int]:
    """Top-left corner of the window that predicts position ``(i, j)`` of a ``canvas`` (H, W):
    the position sits at the window's middle row and column (``h // 2``, ``w // 2``) where the
    canvas allows, and the window slides no further than the canvas' edges."""
    (H, W), (h, w) = canvas, window
    return min(max(i - h // 2, 0), H - h), min(max(j - w // 2, 0), W - w)


def _check_cond(cond: torch.Tensor, b: int, num_conditions: int) -> None:
    if not isinstance(cond, torch.Tensor) or cond.shape != (b,) or cond.dtype != torch.long:
        raise ValueError(f"cond must be int64 of layout b = {b} (one condition per map), got "
                         f"{tuple(cond.shape) if isinstance(cond, torch.Tensor) else type(cond).__name__}")
    config.check_range(cond, 0, num_conditions - 1, f"conditions must lie in [0, {num_conditions - 1}]")


def random_crops(maps: torch.Tensor, height: int, width: int, n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` random ``height x width`` crops of code maps ``maps: m H W``; returns the crops
    ``n height width`` and which map each came from (``n``), to look up its condition."""
    if maps.ndim != 3 or maps.shape[1] < height or maps.shape[2] < width:
        raise ValueError(f"maps must have layout m H W with H >= {height}, W >= {width}, got {tuple(maps.shape)}")
    which = torch.randint(len(maps), (n,), generator=generator)
    top = torch.randint(maps.shape[1] - height + 1, (n,), generator=generator)
    left = torch.randint(maps.shape[2] - width + 1, (n,), generator=generator)
    rows = top[:, None] + torch.arange(height)  # n height
    cols = left[:, None] + torch.arange(width)  # n width
    crops = maps[which[:, None, None], rows[:, :, None], cols[:, None, :]]
    return crops, which


# ----------------------------------------------------------------------------- chapter 06's prior, by profile


@dataclasses.dataclass(frozen=True)
class PriorTraining:
    """``steps`` of AdamW at ``lr`` on minibatches of ``batch_size`` random crops."""

    steps: int = 1500
    batch_size: int = 64
    lr: float = 1e-3
    warmup: int = 100

    @classmethod
    def preset(cls) -> "PriorTraining":
        """The active profile's budget for chapter 06's prior."""
        steps = config.pick(ci=30, cpu=1000, gpu=4000)
        return cls(steps=steps, batch_size=config.pick(ci=16, cpu=32, gpu=256),
                   lr=config.pick(ci=1e-3, cpu=2e-3, gpu=1e-3), warmup=steps // 15)


@torch.no_grad()
def strips(first_stage: nn.Module, per_colour: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Code maps of 32x64 strips, each two one-colour scenes side by side (``shape`` and ``count``
    scenes, both of one colour), encoded by ``first_stage``: ``maps: n 8 16`` and their colour
    index ``n`` (``n = per_colour * len(COLOURS)``). Crops of these maps train the prior."""
    maps, colours = [], []
    dev = config.module_device(first_stage)
    for c, name in enumerate(COLOURS):
        scenes = shapes.sample(2 * per_colour, size=32, seed=seed * 1000 + c, kinds=["shape", "count"], colours=[name]).images
        strip = rearrange(scenes, "(n two) c h w -> n c h (two w)", two=2)
        for part in strip.split(256):
            maps.append(first_stage.encode(part.to(dev)).cpu())
        colours.append(torch.full((per_colour,), c, dtype=torch.long))
    return torch.cat(maps), torch.cat(colours)


def load_shapes_prior(first_stage: nn.Module, seed: int = 0) -> CodePrior:
    """The colour-conditioned prior over ``first_stage``'s codes (a trained
    :class:`~genlib.models.vqgan.VQGAN`), trained on random 8x8 crops of :func:`strips` (seed 1),
    from the model cache or trained now. The first stage's weights are part of the cache key."""
    cfg, settings = CodePriorConfig.preset(first_stage.cfg.vq.num_codes), PriorTraining.preset()
    maps, colours = strips(first_stage, config.pick(ci=40, cpu=500, gpu=4000), seed=1)

    def batch(step: int):
        g = torch.Generator().manual_seed(train.step_seed(seed, step))
        crops, which = random_crops(maps, cfg.height, cfg.width, settings.batch_size, g)
        return crops, colours[which]

    def fit(prior: CodePrior) -> dict:
        history = train.fit(prior, lambda m, b: m.loss(*b), batch, settings.steps, lr=settings.lr,
                            warmup=settings.warmup, seed=seed, desc="code prior")
        return history.to_dict()

    extra = {"training": dataclasses.asdict(settings), "first_stage": zoo.checksum(first_stage.autoencoder.state_dict()),
             "strips": len(maps)}
    return zoo.get_or_train("ch06-code-prior", CodePrior, fit, cfg, extra=extra, seed=seed).annotated()
