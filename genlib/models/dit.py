"""DiT, the Diffusion Transformer (Peebles & Xie 2023; survey App. G): a ViT that predicts noise.

Read it top to bottom as the paper's Figure 3 (adaLN-Zero variant)::

    x_t: b c h w ── patchify + linear (PatchEmbed) ── + fixed 2-D sin-cos positions ── tokens b n d
    t: b ── sinusoidal embedding (eq. 15) ── MLP ──┐
    y: b ── label embedding (label num_classes = none) ─ + ─ c: b d, the conditioning vector
    N x DiTBlock(tokens, c):
        shift1, scale1, gate1, shift2, scale2, gate2 = Linear(SiLU(c))        # adaLN, zero-initialised
        x = x + gate1 * Attention(LayerNorm(x) * (1 + scale1) + shift1)
        x = x + gate2 * MLP(LayerNorm(x) * (1 + scale2) + shift2)
    final: LayerNorm modulated by c, a zero-initialised Linear to p*p*c per token, unpatchify -> b c h w

adaptive LayerNorm ("adaLN") means the LayerNorm has no parameters of its own: its scale and shift
are regressed from ``c``, per sample. adaLN-*Zero* also regresses a gate for each residual branch
and starts the regressing layer at zero, so every block is the identity at initialisation and the
whole network outputs exactly 0: the mean of the noise it will learn to predict.

Left out: DiT also outputs a diagonal covariance Sigma (a second ``c`` channels, trained with the
variational bound of Improved DDPM); genlib's DiT predicts only ``epsilon`` (or ``x0`` / ``v``),
with a fixed variance, as genlib's U-Net does. DiT runs in the latent space of an autoencoder;
here it runs on pixels.

:class:`DiTDiffusion` is a DiT with its noise schedule, trained by the same loop as the U-Net
DDPM (:func:`genlib.models.ddpm.train_ddpm`) and sampled by :func:`genlib.models.ddpm.sample`
(pass ``shape=model.image_shape``); :func:`load_dit` caches it in :mod:`genlib.zoo`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import nn

from genlib import config, zoo
from genlib.diffusion import NoiseSchedule
from genlib.diffusion.training import DiffusionTraining
from genlib.models import ddpm
from genlib.nn.attention import MultiHeadAttention
from genlib.nn.embeddings import TimestepEmbedding, batch_timesteps, check_class_labels, check_timesteps
from genlib.nn.vit import PatchEmbed, sincos_2d, unpatchify


@dataclasses.dataclass(frozen=True)
class DiTConfig:
    """Sizes of a :class:`DiT`: ``depth`` blocks of width ``dim`` on the ``(image_size /
    patch_size)^2`` patches of ``in_channels`` images; ``num_classes`` labels (``None``:
    unconditional)."""

    in_channels: int = 1
    image_size: int = 16
    patch_size: int = 2
    dim: int = 96
    depth: int = 4
    heads: int = 4
    mlp_ratio: int = 4
    freq_dim: int = 256              # width of the sinusoidal timestep code, as in DiT
    num_classes: int | None = None

    def __post_init__(self):
        if min(self.in_channels, self.patch_size, self.dim, self.depth, self.heads, self.mlp_ratio) < 1:
            raise ValueError(f"DiTConfig needs positive sizes, got {self}")
        if self.image_size % self.patch_size:
            raise ValueError(f"DiTConfig: image_size={self.image_size} must be divisible by patch_size={self.patch_size}")
        if self.dim % self.heads or self.dim % 4:
            raise ValueError(f"DiTConfig: dim={self.dim} must be divisible by heads={self.heads} and by 4")

    @property
    def grid(self) -> tuple[int, int]:
        g = self.image_size // self.patch_size
        return g, g

    @property
    def tokens(self) -> int:
        return self.grid[0] * self.grid[1]


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """``x: b n d``, ``shift, scale: b d`` -> ``x (1 + scale) + shift``, per sample (adaLN)."""
    return x * (1 + scale[:, None]) + shift[:, None]


class DiTBlock(nn.Module):
    """``(x: b n dim, c: b dim) -> b n dim``: a pre-norm transformer block whose LayerNorms are
    modulated by ``c`` and whose residual branches are gated by ``c`` (adaLN-Zero)."""

    def __init__(self, dim: int, heads: int, mlp_ratio: int = 4):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.attn = MultiHeadAttention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp_ratio * dim), nn.GELU(approximate="tanh"), nn.Linear(mlp_ratio * dim, dim))
        self.adaLN = nn.Sequential(nn.SiLU(), nn.Linear(dim, 6 * dim))
        nn.init.zeros_(self.adaLN[1].weight)  # adaLN-Zero: shifts, scales and gates start at 0
        nn.init.zeros_(self.adaLN[1].bias)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift1, scale1, gate1, shift2, scale2, gate2 = self.adaLN(c).chunk(6, dim=-1)  # each b dim
        x = x + gate1[:, None] * self.attn(modulate(self.norm1(x), shift1, scale1))
        return x + gate2[:, None] * self.mlp(modulate(self.norm2(x), shift2, scale2))


class FinalLayer(nn.Module):
    """``(x: b n dim, c: b dim) -> b n (p p channels)``: adaLN (shift, scale), then a linear map
    to each patch's pixels; both start at zero, so a fresh DiT predicts 0."""

    def __init__(self, dim: int, patch_size: int, channels: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.adaLN = nn.Sequential(nn.SiLU(), nn.Linear(dim, 2 * dim))
        self.linear = nn.Linear(dim, patch_size * patch_size * channels)
        for layer in (self.adaLN[1], self.linear):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift, scale = self.adaLN(c).chunk(2, dim=-1)
        return self.linear(modulate(self.norm(x), shift, scale))


class DiT(nn.Module):
    """``forward(x_t: b c h w, t: b, cond=None) -> b c h w``, the call of genlib's U-Net: ``cond``
    is ``None`` or integer labels ``b`` (with ``num_classes``; the label ``num_classes`` means
    "no label", for classifier-free guidance)."""

    def __init__(self, cfg: DiTConfig):
        super().__init__()
        self.cfg = cfg
        self.patch = PatchEmbed(cfg.in_channels, cfg.patch_size, cfg.dim)
        self.register_buffer("pos", sincos_2d(cfg.grid, cfg.dim)[None], persistent=False)  # fixed: 1 n dim
        self.time_embed = TimestepEmbedding(cfg.freq_dim, cfg.dim)
        self.label_embed = nn.Embedding(cfg.num_classes + 1, cfg.dim) if cfg.num_classes else None
        self.blocks = nn.ModuleList(DiTBlock(cfg.dim, cfg.heads, cfg.mlp_ratio) for _ in range(cfg.depth))
        self.final = FinalLayer(cfg.dim, cfg.patch_size, cfg.in_channels)

    def condition(self, t: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
        """``c: b dim``, the timestep embedding plus the label embedding (the null label for
        ``cond=None``)."""
        c = self.time_embed(t)
        if self.label_embed is not None:
            labels = torch.full_like(t, self.cfg.num_classes, dtype=torch.long) if cond is None else cond.long()
            c = c + self.label_embed(labels)
        return c

    def forward(self, x_t: torch.Tensor, t: torch.Tensor | float | int, cond: torch.Tensor | None = None) -> torch.Tensor:
        x_t, t, cond = self._check(x_t, t, cond)
        x = self.patch(x_t) + self.pos            # b n dim: patch tokens with their positions
        c = self.condition(t, cond)               # b dim
        for block in self.blocks:
            x = block(x, c)
        return unpatchify(self.final(x, c), self.cfg.patch_size, self.cfg.grid, self.cfg.in_channels)

    def _check(self, x_t, t, cond):
        cfg = self.cfg
        if x_t.ndim != 4 or x_t.shape[1:] != (cfg.in_channels, cfg.image_size, cfg.image_size):
            raise ValueError(f"DiT expects x_t of layout b c h w = (b, {cfg.in_channels}, {cfg.image_size}, "
                             f"{cfg.image_size}), got {tuple(x_t.shape)}")
        b = x_t.shape[0]
        t = batch_timesteps(t, b, x_t.device, "DiT")
        if cond is not None:
            if not cfg.num_classes:
                raise ValueError("this DiT is unconditional (num_classes=None): pass cond=None")
            cond = check_class_labels(cond, b, cfg.num_classes, "DiT", "no label")
        return x_t, t, cond

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad)


def dit_flops(cfg: DiTConfig, batch: int = 1) -> int:
    """Floating-point operations of one forward pass, counted from the shapes: every matrix
    product ``(m x k) @ (k x n)`` costs ``2 m k n`` (a multiply and an add); norms, activations,
    softmax and additions are left out (they are a few percent). DiT's "Gflops" count one
    multiply-add as one operation: divide by 2 to compare with the paper."""
    n, d, r, L = cfg.tokens, cfg.dim, cfg.mlp_ratio, cfg.depth
    patch = cfg.patch_size ** 2 * cfg.in_channels
    per_sample = (
        n * patch * d                       # patch embedding
        + cfg.freq_dim * d + d * d          # timestep MLP
        + L * (6 * d * d                    # adaLN: c -> 6 modulations
               + 4 * n * d * d              # q, k, v and output projections
               + 2 * n * n * d              # q k^T and (weights) v
               + 2 * r * n * d * d)         # MLP d -> r d -> d
        + 2 * d * d + n * d * patch         # final adaLN and linear
    )
    return 2 * batch * per_sample


# ----------------------------------------------------------------------------- training


@dataclasses.dataclass(frozen=True, kw_only=True)
class DiTDiffusionConfig(DiffusionTraining):
    """Everything that fixes a trained pixel-space DiT: the fields of
    :class:`~genlib.models.ddpm.DDPMConfig` with a :class:`DiTConfig` in place of the U-Net's."""

    world: str = "digits"
    image_size: int = 16
    dit: DiTConfig = dataclasses.field(default_factory=DiTConfig)

    def __post_init__(self):
        super().__post_init__()
        ddpm.check_denoiser_config(self, self.dit, "the DiT")

    @classmethod
    def preset(cls, world: str = "digits", schedule_kind: str = "linear", *, patch_size: int | None = None,
               **overrides) -> "DiTDiffusionConfig":
        """The active profile's DiT for ``world``, with the image size and training budget of
        ``DDPMConfig.preset(world, schedule_kind)`` (same steps, batch, learning rate, EMA) and a
        width chosen so that its parameter count is close to that preset's U-Net. ``patch_size``
        overrides the preset's patch (DiT/2 vs DiT/4); other keywords override any field."""
        base = ddpm.DDPMConfig.preset(world, schedule_kind)
        net = config.pick(ci=dict(patch_size=2, dim=32, depth=2, heads=2),
                          cpu=dict(patch_size=2, dim=96, depth=4, heads=4),
                          gpu=dict(patch_size=2, dim=192, depth=6, heads=6))
        if patch_size is not None:
            net["patch_size"] = patch_size
        dit = DiTConfig(in_channels=base.unet.in_channels, image_size=base.image_size, **net)
        shared = {f.name: getattr(base, f.name) for f in dataclasses.fields(DiffusionTraining)}
        return cls(world=world, image_size=base.image_size, dit=dit, **{**shared, **overrides})


class DiTDiffusion(nn.Module):
    """A DiT noise predictor with its schedule: ``forward(x_t: b c h w, t: b, cond=None) -> b c h w``,
    ``loss(x0)`` (Algorithm 2), ``schedule``, ``prediction_type`` and ``info``, as a
    :class:`~genlib.models.ddpm.DDPM`."""

    def __init__(self, cfg: DiTDiffusionConfig):
        super().__init__()
        self.cfg = cfg
        self.dit = DiT(cfg.dit)
        self.schedule = NoiseSchedule(cfg.schedule, cfg.num_train_timesteps)
        self.info: dict = {}

    prediction_type = ddpm.DDPM.prediction_type  # cfg.prediction_type, as a DDPM's
    loss = ddpm.DDPM.loss                          # Algorithm 2 on a batch x0: b c h w (eq. 14), as a DDPM's

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(c, h, w)`` of one image, the ``shape`` to pass to :func:`genlib.models.ddpm.sample`."""
        return self.cfg.dit.in_channels, self.cfg.image_size, self.cfg.image_size

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, cond: Any = None) -> torch.Tensor:
        return self.dit(x_t, check_timesteps(t, "DiTDiffusion", len(self.schedule)), cond)


def load_dit(world: str = "digits", schedule_kind: str = "linear", cfg: DiTDiffusionConfig | None = None,
             **overrides) -> DiTDiffusion:
    """The trained DiT for ``world``: from the model cache, or trained now with the DDPM's training
    loop (``cfg`` or ``DiTDiffusionConfig.preset(world, schedule_kind, **overrides)``). In eval mode
    on :func:`genlib.config.device`, with ``model.info["history"]`` and ``model.from_cache``."""
    cfg = cfg or DiTDiffusionConfig.preset(world, schedule_kind, **overrides)
    if cfg.world != world or cfg.schedule != schedule_kind:
        raise ValueError(f"cfg is for world={cfg.world!r}, schedule={cfg.schedule!r}; asked for {world!r}, {schedule_kind!r}")
    return zoo.get_or_train("dit", DiTDiffusion, ddpm.train_ddpm, cfg).annotated()
