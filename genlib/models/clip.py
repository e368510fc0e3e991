"""A small CLIP for the shapes world (Radford et al. 2021; survey §8.3): a text encoder and an image
encoder trained so that a caption and its image land close together in one embedding space.

Text: caption tokens (:class:`~genlib.data.captions.CaptionVocab`, ``<bos> words <eos> <pad>...``)
through causal transformer blocks, as CLIP's text encoder does. Causality is what lets padding be
ignored for free: the state at ``<eos>`` has seen exactly the caption, never the padding after it.
That state, projected, is the caption's embedding; the states of all positions are the token
sequence a text-conditioned U-Net cross-attends to (LDM, survey §8.4).

Image: a small conv net, global average pooling, a projection. Both embeddings are normalised to
unit length, and their cosine similarities, times a learned scale ``exp(logit_scale)``, are the
logits of a symmetric contrastive loss over a batch of ``b`` pairs::

    S = exp(logit_scale) * img @ txt^T                              # b b
    loss = ( CE(S, targets) + CE(S^T, targets^T) ) / 2

In CLIP's batches of web pairs the targets are the diagonal. Shapes captions repeat within a batch
(a grammar of 2,496 captions), so two images with the same caption are both right for it: the
targets of a row spread evenly over every pair with the same caption (the diagonal when all
captions differ).
"""

from __future__ import annotations

import dataclasses
import functools
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from genlib import config, train, zoo
from genlib.data import shapes
from genlib.data.captions import CaptionVocab
from genlib.nn.transformer import TransformerBlock


@dataclasses.dataclass(frozen=True)
class CLIPConfig:
    """Joint space ``embed_dim``; text transformer ``text_dim`` x ``text_layers`` with ``heads``,
    captions up to ``max_len`` tokens; image conv net of base width ``image_width`` for
    ``image_size`` images; the scale starts at ``1 / temperature`` (CLIP: 0.07)."""

    embed_dim: int = 64
    text_dim: int = 64
    text_layers: int = 2
    heads: int = 4
    max_len: int = 16
    image_size: int = 32
    image_width: int = 32
    temperature: float = 0.07

    @classmethod
    def preset(cls) -> "CLIPConfig":
        """The active profile's CLIP for 32x32 shapes scenes."""
        return config.pick(ci=cls(embed_dim=32, text_dim=32, text_layers=1, image_width=8),
                           cpu=cls(embed_dim=64, text_dim=64, text_layers=2, image_width=16),
                           gpu=cls(embed_dim=128, text_dim=128, text_layers=4, image_width=32))


@dataclasses.dataclass(frozen=True)
class CLIPTraining:
    """``steps`` of AdamW at ``lr`` on batches of ``batch_size`` fresh captioned scenes."""

    steps: int = 500
    batch_size: int = 64
    lr: float = 2e-3

    @classmethod
    def preset(cls) -> "CLIPTraining":
        """The active profile's budget for the shapes CLIP."""
        return cls(steps=config.pick(ci=20, cpu=500, gpu=4000), batch_size=config.pick(ci=16, cpu=64, gpu=256), lr=2e-3)


class TextEncoder(nn.Module):
    """``tokens: b n`` (int64) -> ``states: b n text_dim`` (causal transformer, final LayerNorm)."""

    def __init__(self, cfg: CLIPConfig, vocab_size: int):
        super().__init__()
        self.token = nn.Embedding(vocab_size, cfg.text_dim)
        self.position = nn.Parameter(torch.randn(cfg.max_len, cfg.text_dim) * 0.01)
        self.blocks = nn.ModuleList(TransformerBlock(cfg.text_dim, cfg.heads, causal=True) for _ in range(cfg.text_layers))
        self.norm = nn.LayerNorm(cfg.text_dim)

    def forward(self, tokens: torch.Tensor, layer: int = -1) -> torch.Tensor:
        """``layer`` picks the block whose output is returned (through the final LayerNorm): -1 the
        last (CLIP's own states), -2 the one before it (Stable Diffusion 2's "penultimate" states)."""
        if not -len(self.blocks) - 1 <= layer <= -1:
            raise ValueError(f"layer must lie in [-{len(self.blocks) + 1}, -1] for {len(self.blocks)} blocks, got {layer}")
        x = self.token(tokens) + self.position[: tokens.shape[1]]
        for block in self.blocks[: len(self.blocks) + 1 + layer]:
            x = block(x)
        return self.norm(x)


class ImageEncoder(nn.Module):
    """``b 3 h w`` in [-1, 1] -> ``b width*4`` pooled features (three conv stages, two stride-2)."""

    def __init__(self, cfg: CLIPConfig):
        super().__init__()
        w = cfg.image_width

        def stage(c_in, c_out, stride):
            return [nn.Conv2d(c_in, c_out, 3, stride, 1), nn.GroupNorm(min(8, c_out // 4), c_out), nn.SiLU()]

        self.net = nn.Sequential(*stage(3, w, 1), *stage(w, 2 * w, 2), *stage(2 * w, 4 * w, 2), *stage(4 * w, 4 * w, 1))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images).mean((2, 3))


class CLIP(nn.Module):
    """Text and image towers and the contrastive loss (module doc)."""

    def __init__(self, cfg: CLIPConfig):
        super().__init__()
        self.cfg = cfg
        self.vocab = CaptionVocab()
        self.text = TextEncoder(cfg, len(self.vocab))
        self.image = ImageEncoder(cfg)
        self.text_proj = nn.Linear(cfg.text_dim, cfg.embed_dim, bias=False)
        self.image_proj = nn.Linear(4 * cfg.image_width, cfg.embed_dim, bias=False)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / cfg.temperature)))

    def tokenize(self, captions: list[str]) -> torch.Tensor:
        """Captions -> ``b max_len`` ids on the model's device (``ValueError`` on unknown words)."""
        if isinstance(captions, str):
            raise TypeError("pass a list of captions, not one string")
        return self.vocab.encode(list(captions), self.cfg.max_len).to(config.module_device(self))

    def encode_text(self, captions: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """``(states b max_len text_dim, embedding b embed_dim)``: every position's state (for
        cross-attention) and the unit-length embedding read at ``<eos>``."""
        tokens = self.tokenize(captions)
        states = self.text(tokens)
        eos = (tokens == self.vocab.EOS).int().argmax(1)
        pooled = states[torch.arange(len(tokens), device=tokens.device), eos]
        return states, F.normalize(self.text_proj(pooled), dim=-1)

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        """``b 3 h w -> b embed_dim``, unit length."""
        s = self.cfg.image_size
        if images.ndim != 4 or tuple(images.shape[1:]) != (3, s, s):
            raise ValueError(f"CLIP's image encoder reads images 'b 3 {s} {s}' in [-1, 1], got {tuple(images.shape)}")
        return F.normalize(self.image_proj(self.image(images)), dim=-1)

    def logits(self, images: torch.Tensor, captions: list[str]) -> torch.Tensor:
        """``S = exp(logit_scale) * img @ txt^T``, ``b_images b_captions`` (the scale capped at 100)."""
        if len(captions) != len(images):
            raise ValueError(f"need one caption per image, got {len(captions)} for {len(images)}")
        scale = self.logit_scale.clamp(max=math.log(100)).exp()
        return scale * self.encode_image(images) @ self.encode_text(captions)[1].T

    def loss(self, images: torch.Tensor, captions: list[str]) -> torch.Tensor:
        """The symmetric contrastive loss, targets spread over pairs with equal captions."""
        S = self.logits(images, captions)
        ids = {c: i for i, c in enumerate(dict.fromkeys(captions))}
        label = torch.tensor([ids[c] for c in captions], device=S.device)
        same = (label[:, None] == label[None, :]).float()
        targets = same / same.sum(1, keepdim=True)
        return (F.cross_entropy(S, targets) + F.cross_entropy(S.T, targets)) / 2


# ----------------------------------------------------------------------------- the shapes CLIP, by profile


def load_shapes_clip(seed: int = 0) -> CLIP:
    """The shapes CLIP of the active profile, from the model cache or trained now on a stream of
    fresh scenes (``model.info`` holds the training history)."""
    cfg, settings = CLIPConfig.preset(), CLIPTraining.preset()

    def fit(model: CLIP) -> dict:
        batches = train.prefetched(functools.partial(shapes.captioned_stream, settings.batch_size, cfg.image_size, seed + 17))
        history = train.fit(model, lambda m, b: m.loss(b[0].to(config.module_device(m)), b[1]), batches,
                            settings.steps, lr=settings.lr, warmup=settings.steps // 20, seed=seed, desc="CLIP")
        return history.to_dict()

    return zoo.get_or_train("shapes-clip", CLIP, fit, cfg, extra=settings, seed=seed).annotated()
