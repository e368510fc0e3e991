"""Latent diffusion (Rombach et al. 2022, "Stable Diffusion"; survey §8): DDPM run in the latent
space of a frozen autoencoder, conditioned on text through cross-attention.

Three trained parts, each frozen before the next is trained::

    first stage   E, D   KL-regularised autoencoder (genlib.models.kl_autoencoder), x: b 3 32 32 <-> z: b 4 8 8
    text encoder  tau    the shapes CLIP's text tower (genlib.models.clip): caption -> states b n d
    denoiser      eps    a U-Net on latents with cross-attention to tau(y)  (this module)

Training (§8.8) is DDPM's simple loss on ``z0 = scale * E(x)``, with the caption's states dropped to
the empty caption's states 10% of the time, so the same network also learns the unconditional
prediction classifier-free guidance needs (§8.5)::

    L_LDM = E_{x, y, eps, t} || eps - eps_theta(z_t, t, tau(y)) ||^2

``scale`` is one number, ``1 / std(E(x))`` over the training set, that brings the latents to unit
variance (Stable Diffusion's 0.18215 is the same idea, fixed once for its autoencoder). Sampling
runs DDIM or DDPM on latents ``b 4 8 8`` and decodes once at the end: every denoising step costs
an 8x8 U-Net, not a 32x32 one.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from genlib import config, train, zoo
from genlib.diffusion import NoiseSchedule, Sampler, diffusion_loss, sample
from genlib.diffusion.guidance import Guidance
from genlib.diffusion.guidance import drop_condition
from genlib.diffusion.training import DiffusionTraining
from genlib.models import vqgan
from genlib.models.clip import CLIP
from genlib.models.kl_autoencoder import KLAutoencoderConfig, KLGAN
from genlib.nn.attention import AttentionBlock2d
from genlib.nn.unet import UNet, UNetConfig

# ----------------------------------------------------------------------------- the first stage


def load_first_stage(perceptual: nn.Module, seed: int = 0) -> KLGAN:
    """The LDM's autoencoder, trained on chapter 06's scenes (:func:`vqgan.shapes_training_images`)
    with ``perceptual`` (a frozen network with ``feature_maps``) in its loss; cached."""
    cfg, settings = KLAutoencoderConfig.preset(), vqgan.VQGANTraining.preset(steps=config.pick(ci=30, cpu=250, gpu=2000))
    images = vqgan.shapes_training_images()

    def fit(model: KLGAN) -> dict:
        batch = train.random_batches(images, settings.batch_size, seed=seed)
        return vqgan.train_vqgan(model, batch, settings, perceptual=perceptual.feature_maps, seed=seed,
                                 desc="first stage: KL autoencoder").to_dict()

    extra = {"training": dataclasses.asdict(settings), "perceptual": zoo.to_json(perceptual.cfg), "data": len(images)}
    return zoo.get_or_train("ldm-kl-autoencoder", KLGAN, fit, cfg, extra=extra, seed=seed).annotated()


# ----------------------------------------------------------------------------- the latent denoiser


@dataclasses.dataclass(frozen=True, kw_only=True)
class LDMConfig(DiffusionTraining):
    """Everything that fixes a trained latent denoiser (all of it is part of the model-cache key).
    ``unet.in_channels`` / ``unet.image_size`` are the latent's channels and side; ``unet.context_dim``
    the text encoder's width; ``max_len`` its number of token states; ``text_layer`` which of its
    blocks the context is read after (:func:`text_states`); ``p_uncond`` the condition dropout rate.
    Schedule, prediction type and budget: :class:`~genlib.diffusion.training.DiffusionTraining`."""

    unet: UNetConfig
    max_len: int = 16
    text_layer: int = -1  # -1: CLIP's own (last-block) states; -2: the block before (Stable Diffusion 2's choice)
    p_uncond: float = 0.1
    schedule: str = "scaled_linear"  # LDM's: betas linear in sqrt from 0.00085 to 0.012
    steps: int = 1500

    def __post_init__(self):
        super().__post_init__()
        if isinstance(self.unet, dict):
            object.__setattr__(self, "unet", UNetConfig(**self.unet))
        if not self.unet.context_dim:
            raise ValueError("a text-conditioned LDM needs unet.context_dim (the text encoder's width)")
        if not 0.0 <= self.p_uncond < 1.0:
            raise ValueError(f"p_uncond must lie in [0, 1), got {self.p_uncond}")
        if self.text_layer >= 0:
            raise ValueError(f"text_layer counts the text tower's blocks from its end (-1: the last, -2: the one "
                             f"before), got {self.text_layer}")

    @classmethod
    def preset(cls, context_dim: int, latent_channels: int = 4, latent_size: int = 8, max_len: int = 16,
               **overrides) -> "LDMConfig":
        """The active profile's denoiser for ``latent_channels x latent_size^2`` latents and a text
        encoder of width ``context_dim``; keywords override any field."""
        sizes = config.pick(
            ci=dict(base_channels=8, channel_mult=(1, 2), groups=4, num_heads=2, attention_resolutions=(8,)),
            cpu=dict(base_channels=32, channel_mult=(1, 2), attention_resolutions=(8, 4)),
            gpu=dict(base_channels=64, channel_mult=(1, 2, 2), num_res_blocks=2, attention_resolutions=(8, 4, 2)),
        )
        unet = UNetConfig(in_channels=latent_channels, image_size=latent_size, context_dim=context_dim, **sizes)
        budget = config.pick(ci=dict(steps=30, batch_size=16), cpu=dict(steps=900, batch_size=48, ema_decay=0.999),
                             gpu=dict(steps=6000, batch_size=256, ema_decay=0.999))
        return cls(unet=unet, max_len=max_len, **{**budget, **overrides})


class LatentDiffusion(nn.Module):
    """``forward(z_t: b c h w, t: b, context: b n d | None) -> b c h w``: the U-Net's prediction.

    Buffers saved with the weights: ``scale`` (``1 / std`` of the first stage's latents) and
    ``null_context`` (``n d``, the empty caption's text states: the "no condition" of guidance).
    """

    def __init__(self, cfg: LDMConfig):
        super().__init__()
        self.cfg = cfg
        self.unet = UNet(cfg.unet)
        self.schedule = NoiseSchedule(cfg.schedule, cfg.num_train_timesteps)
        self.register_buffer("scale", torch.ones(()))
        self.register_buffer("null_context", torch.zeros(cfg.max_len, cfg.unet.context_dim))
        self.info: dict = {}

    @property
    def prediction_type(self) -> str:
        return self.cfg.prediction_type

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        u = self.cfg.unet
        return (u.out_channels or u.in_channels, u.image_size, u.image_size)

    def forward(self, z_t: torch.Tensor, t: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        return self.unet(z_t, t, context)

    def loss(self, z0: torch.Tensor, context: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """L_LDM on scaled latents ``z0: b c h w`` and text states ``context: b n d``, each
        sample's context replaced by :attr:`null_context` with probability ``p_uncond``."""
        context = drop_condition(context, self.null_context, self.cfg.p_uncond, generator)
        return diffusion_loss(self, self.schedule, z0, prediction_type=self.cfg.prediction_type, cond=context)


@torch.no_grad()
def text_states(clip: CLIP, captions: Sequence[str], batch_size: int = 512, *, layer: int = -1) -> torch.Tensor:
    """The frozen text encoder's token states ``b max_len d`` for ``captions`` (tau_theta(y)), read
    after block ``layer`` (-1: CLIP's own states; -2: the penultimate block's, as Stable Diffusion 2),
    through the tower's final LayerNorm."""
    clip.eval()
    out = [clip.text(clip.tokenize(list(captions[i:i + batch_size])), layer) for i in range(0, len(captions), batch_size)]
    return torch.cat(out) if out else torch.zeros(0, clip.cfg.max_len, clip.cfg.text_dim)


@torch.no_grad()
def encode_images(first_stage: KLGAN, images: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    """Unscaled latents ``n c h' w'`` (posterior means) of ``images: n 3 h w``."""
    first_stage.eval()
    return train.batched(first_stage.encode, images, batch_size)


def training_data(first_stage: KLGAN, clip: CLIP, layer: int = -1, *, layouts: bool = False) -> tuple[torch.Tensor, ...]:
    """``(latents n c h w, contexts n max_len d, null_context max_len d)`` of the scenes the LDM
    trains on: chapter 06's images (seed 1) encoded once by the frozen first stage, their captions
    once by the frozen text encoder (its states after block ``layer``); ``layouts`` appends their
    :func:`layout_masks` at the latent's side."""
    batch = vqgan.shapes_training_batch()
    latents = encode_images(first_stage, batch.images)
    out = latents, text_states(clip, batch.captions, layer=layer), text_states(clip, [""], layer=layer)[0]
    return (*out, layout_masks(batch.images, latents.shape[-1])) if layouts else out


def train_ldm(model: LatentDiffusion, latents: torch.Tensor, contexts: torch.Tensor, null_context: torch.Tensor,
              layouts: torch.Tensor | None = None) -> dict:
    """Train ``model`` in place on pre-encoded ``latents`` and ``contexts`` (one per latent), and
    for a :class:`LayoutLatentDiffusion` their ``layouts``."""
    cfg = model.cfg
    if len(latents) != len(contexts) or tuple(latents.shape[1:]) != model.latent_shape:
        raise ValueError(f"need latents n {model.latent_shape} and one context each, got {tuple(latents.shape)} "
                         f"and {tuple(contexts.shape)}")
    if (layouts is not None) != isinstance(model, LayoutLatentDiffusion):
        raise ValueError("a LayoutLatentDiffusion trains with one layout per latent, a LatentDiffusion without")
    model.scale.fill_(1.0 / latents.std().item())
    model.null_context.copy_(null_context)
    z0 = latents * model.scale.to(latents.device)  # the scale is on the model's device, latents on the CPU
    drops = torch.Generator().manual_seed(cfg.seed + 1)
    data = (z0, contexts) if layouts is None else (z0, contexts, layouts)
    batch = train.random_batches(data, cfg.batch_size, seed=cfg.seed)
    history = train.fit(model, lambda m, b: m.loss(*b, generator=drops), batch, cfg.steps, lr=cfg.lr,
                        warmup=cfg.warmup, ema_decay=cfg.ema_decay, grad_clip=1.0, seed=cfg.seed,
                        desc="LDM (latent U-Net)")
    return {"history": history.to_dict(), "latent_std": latents.std().item()}


def _frozen_parts(first_stage: KLGAN, clip: CLIP) -> dict:
    """What a denoiser's cache key records of the frozen parts it was trained on: configs and weight digests."""
    return {"first_stage": zoo.to_json(first_stage.cfg), "first_stage_weights": zoo.weights_digest(first_stage),
            "text_encoder": zoo.to_json(clip.cfg), "text_encoder_weights": zoo.weights_digest(clip)}


def load_shapes_ldm(first_stage: KLGAN, clip: CLIP, cfg: LDMConfig | None = None, **overrides) -> LatentDiffusion:
    """The text-to-image LDM on shapes for this ``first_stage`` and text encoder (their configs
    and a digest of their weights are part of this model's cache key); from the cache or trained now."""
    c, s = first_stage.cfg.net.latent_channels, 32 // first_stage.cfg.net.factor
    cfg = cfg or LDMConfig.preset(clip.cfg.text_dim, c, s, clip.cfg.max_len, **overrides)
    extra = _frozen_parts(first_stage, clip)

    def fit(model: LatentDiffusion) -> dict:
        return train_ldm(model, *training_data(first_stage, clip, cfg.text_layer))

    return zoo.get_or_train("ldm-shapes", LatentDiffusion, fit, cfg, extra=extra).annotated()


# ----------------------------------------------------------------------------- the switch: a concatenated layout


@dataclasses.dataclass(frozen=True, kw_only=True)
class LayoutLDMConfig(LDMConfig):
    """An :class:`LDMConfig` whose U-Net also reads a spatial condition of ``layout_channels``
    channels at the latent's side, concatenated with ``z_t`` at its input: the "switch" of survey
    §8.3-8.4 (spatial conditions are concatenated, text is read by cross-attention). The U-Net's
    ``in_channels`` counts both; its ``out_channels`` are the latent's."""

    layout_channels: int = 1

    def __post_init__(self):
        super().__post_init__()
        u = self.unet
        if self.layout_channels < 1 or u.out_channels is None or u.in_channels != u.out_channels + self.layout_channels:
            raise ValueError(f"a layout LDM's U-Net reads latent + layout channels and predicts the latent's: need "
                             f"in_channels = out_channels + layout_channels ({self.layout_channels}), got "
                             f"in {u.in_channels}, out {u.out_channels}")

    @classmethod
    def preset(cls, context_dim: int, latent_channels: int = 4, latent_size: int = 8, max_len: int = 16,
               layout_channels: int = 1, **overrides) -> "LayoutLDMConfig":
        """:meth:`LDMConfig.preset`'s denoiser with ``layout_channels`` more input channels, trained for
        half its steps: where the objects go is given, so less is left to learn."""
        base = LDMConfig.preset(context_dim, latent_channels, latent_size, max_len)
        base = dataclasses.replace(base, steps=max(base.steps // 2, 1))
        unet = dataclasses.replace(base.unet, in_channels=latent_channels + layout_channels, out_channels=latent_channels)
        fields = {f.name: getattr(base, f.name) for f in dataclasses.fields(LDMConfig)}
        return cls(**{**fields, "unet": unet, "layout_channels": layout_channels, **overrides})


def layout_masks(images: torch.Tensor, side: int) -> torch.Tensor:
    """``b 3 h w -> b 1 side side``: the share of each latent position's pixels an object covers
    (the background is black, -1 in every channel): where the scene's objects are, not what they are."""
    if images.ndim != 4 or images.shape[1] != 3 or images.shape[-1] % side or images.shape[-2] % side:
        raise ValueError(f"layout_masks expects images b 3 h w with h, w multiples of side={side}, got {tuple(images.shape)}")
    covered = (images > -0.9).any(1, keepdim=True).float()
    return F.avg_pool2d(covered, images.shape[-1] // side)


class LayoutLatentDiffusion(LatentDiffusion):
    """``forward(z_t: b c h w, t: b, context: b n d | None, layout: b k h w) -> b c h w``: the U-Net
    on ``[z_t, layout]`` concatenated along channels, with the text by cross-attention."""

    def forward(self, z_t: torch.Tensor, t: torch.Tensor, context: torch.Tensor | None = None,
                layout: torch.Tensor | None = None) -> torch.Tensor:
        want = (len(z_t), self.cfg.layout_channels, *z_t.shape[-2:])
        if layout is None or tuple(layout.shape) != want:
            raise ValueError(f"a layout LDM needs layout of layout b k h w = {want}, got "
                             f"{None if layout is None else tuple(layout.shape)}")
        return self.unet(torch.cat([z_t, layout.to(z_t)], 1), t, context)

    def loss(self, z0: torch.Tensor, context: torch.Tensor, layout: torch.Tensor,
             generator: torch.Generator | None = None) -> torch.Tensor:
        """L_LDM as :meth:`LatentDiffusion.loss`, the layout always given (only the caption is dropped)."""
        context = drop_condition(context, self.null_context, self.cfg.p_uncond, generator)
        return diffusion_loss(lambda z_t, t, c: self(z_t, t, c, layout), self.schedule, z0,
                              prediction_type=self.cfg.prediction_type, cond=context)


def load_layout_ldm(first_stage: KLGAN, clip: CLIP, **overrides) -> LayoutLatentDiffusion:
    """:func:`load_shapes_ldm`'s model with a one-channel :func:`layout_masks` concatenated to its
    input; from the cache or trained now on the same scenes."""
    c, s = first_stage.cfg.net.latent_channels, 32 // first_stage.cfg.net.factor
    cfg = LayoutLDMConfig.preset(clip.cfg.text_dim, c, s, clip.cfg.max_len, **overrides)
    extra = _frozen_parts(first_stage, clip)

    def fit(model: LayoutLatentDiffusion) -> dict:
        return train_ldm(model, *training_data(first_stage, clip, cfg.text_layer, layouts=True))

    return zoo.get_or_train("ldm-shapes-layout", LayoutLatentDiffusion, fit, cfg, extra=extra).annotated()


# ----------------------------------------------------------------------------- text to image


@torch.no_grad()
def generate(model: LatentDiffusion, first_stage: KLGAN, clip: CLIP, captions: Sequence[str], *,
             guidance_scale: float = 1.0, sampler: str = "ddim", num_steps: int = 50, eta: float = 0.0,
             variance: str = "fixed_small", layout: torch.Tensor | None = None, seed: int = 0,
             batch_size: int = 256, return_latents: bool = False):
    """Images ``b 3 32 32`` for ``captions``: sample latents with classifier-free guidance
    (``eps_u + s (eps_c - eps_u)``, genlib's convention; ``s = 1`` is the conditional model alone),
    undo the scale, decode. ``sampler`` is ``"ddim"`` (``num_steps``, ``eta``) or ``"ddpm"``
    (ancestral, ``num_steps`` respaced, ``variance`` ``"fixed_small"`` = the posterior's
    beta-tilde or ``"fixed_large"`` = beta). A :class:`LayoutLatentDiffusion` needs ``layout``
    (``b k h w``, one per caption; guidance drops the caption, never the layout). Noise from a
    generator seeded with ``seed``."""
    if sampler not in ("ddim", "ddpm"):
        raise ValueError(f"unknown sampler {sampler!r}; expected 'ddim' or 'ddpm'")
    if (layout is not None) != isinstance(model, LayoutLatentDiffusion):
        raise ValueError("pass layout (b k h w) exactly when the model is a LayoutLatentDiffusion")
    if layout is not None and len(layout) != len(captions):
        raise ValueError(f"need one layout per caption ({len(captions)}), got {len(layout)}")
    model.eval()
    dev = config.module_device(model)
    g = torch.Generator().manual_seed(seed)
    steps = (Sampler(model.schedule, num_steps, eta=eta, prediction_type=model.prediction_type) if sampler == "ddim"
             else Sampler(model.schedule, num_steps, variance=variance, prediction_type=model.prediction_type))
    zs = []
    for i in range(0, len(captions), batch_size):
        part = list(captions[i:i + batch_size])
        cond = text_states(clip, part, layer=model.cfg.text_layer).to(dev)
        guide = Guidance(model.null_context.expand(len(part), -1, -1), guidance_scale) if guidance_scale != 1.0 else None
        extra = () if layout is None else (layout[i:i + batch_size].to(dev),)
        x_T = config.randn((len(part), *model.latent_shape), generator=g, device=dev)
        zs.append(sample(model, steps, x_T, cond=cond, guide=guide, model_inputs=extra, generator=g).sample)
    z = torch.cat(zs) / model.scale
    images = train.batched(first_stage.decode, z, batch_size).clamp(-1, 1)
    return (images, z.cpu()) if return_latents else images


# ----------------------------------------------------------------------------- looking inside: cross-attention


@torch.no_grad()
def cross_attention_maps(model: LatentDiffusion, z_t: torch.Tensor, t: int, context: torch.Tensor,
                         resolution: int | None = None) -> torch.Tensor:
    """Where each text token is read: ``b n h w``, the cross-attention weights of every
    cross-attention block at feature-map side ``resolution`` (default: the latent's side),
    averaged over heads and blocks. Row ``[i, j]`` is how much of the image's attention token
    ``j`` gets at each position; over ``j`` the maps sum to 1 at every position."""
    side = resolution or model.cfg.unet.image_size
    maps: list[torch.Tensor] = []

    def hook(block: AttentionBlock2d, inputs, output):
        if inputs[0].shape[-1] == side:
            maps.append(block.cross_attention_map(inputs[0], context).mean(1))  # b (h w) n, mean over heads

    blocks = [m for m in model.unet.modules() if isinstance(m, AttentionBlock2d) and m.cross_attn is not None]
    handles = [b.register_forward_hook(hook) for b in blocks]
    try:
        model(z_t, torch.full((len(z_t),), t, device=z_t.device), context)
    finally:
        for h in handles:
            h.remove()
    if not maps:
        raise ValueError(f"no cross-attention block runs at side {side}; the U-Net attends at "
                         f"{model.cfg.unet.attention_resolutions}")
    w = torch.stack(maps).mean(0)  # b (h w) n
    return w.transpose(1, 2).reshape(len(z_t), -1, side, side)

