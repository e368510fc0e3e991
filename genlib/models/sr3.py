"""SR3 and Imagen's cascade (Saharia et al. 2022; survey §9.4-9.5): a diffusion model that turns an
8x8 image into a 16x16 one, conditioned on the low-resolution image, with noise conditioning
augmentation, and the two-stage cascade of chapter 09's text-to-image base model and it.

:func:`augment` (noise conditioning augmentation) is reused by chapter 13's video cascade.
"""

from __future__ import annotations

import dataclasses
import functools

import torch
import torch.nn.functional as F

from genlib import config, train, zoo
from genlib.data import shapes
from genlib.diffusion import diffusion_loss
from genlib.models import ddpm
from genlib.models.imagen import ImagenTraining, TextToImage, downsample, generate
from genlib.nn.unet import UNetConfig



@dataclasses.dataclass(frozen=True, kw_only=True)
class SR3Config(ImagenTraining):
    """An 8x8 -> 16x16 super-resolution diffusion model (SR3, survey §9.4) and its training."""

    low_size: int = 8
    image_size: int = 16
    noise_aug: bool = True           # conditioning augmentation (CDM; Imagen's aug_level)
    aug_levels: int = 6              # levels 0 .. K-1; level k adds noise of std aug_max * k / (K - 1)
    aug_max: float = 0.3
    unet: UNetConfig = dataclasses.field(default_factory=lambda: UNetConfig(in_channels=6, out_channels=3,
                                                                            image_size=16, num_classes=6))

    def __post_init__(self):
        super().__post_init__()
        if self.image_size != 2 * self.low_size or self.image_size not in shapes.SIZES:
            raise ValueError(f"SR3 here doubles the side to a shapes size, got {self.low_size} -> {self.image_size}")
        u = self.unet
        if (u.in_channels, u.out_channels, u.image_size, u.num_classes) != (6, 3, self.image_size, self.aug_levels):
            raise ValueError(f"the SR3 U-Net reads [x_t, upsampled low-res] (6 channels) at {self.image_size}, predicts 3 "
                             f"channels and has one label per aug level ({self.aug_levels}); got {u}")
        if self.aug_levels < 2 or not 0 < self.aug_max < 1:
            raise ValueError(f"need aug_levels >= 2 and 0 < aug_max < 1, got {self.aug_levels}, {self.aug_max}")

    @classmethod
    def preset(cls, noise_aug: bool = True, **overrides) -> "SR3Config":
        """The active profile's SR model (a small 2-level U-Net without attention)."""
        unet = config.pick(ci=dict(base_channels=8, groups=4, num_heads=2), cpu=dict(base_channels=16),
                           gpu=dict(base_channels=48))
        budget = config.pick(
            ci=dict(steps=30, batch_size=8, warmup=5),
            cpu=dict(steps=300, batch_size=32, ema_decay=0.99),
            gpu=dict(steps=1200, batch_size=128, warmup=100, ema_decay=0.999),
        )
        unet_cfg = UNetConfig(in_channels=6, out_channels=3, image_size=16, channel_mult=(1, 2), attention_resolutions=(),
                              num_classes=6, **unet)
        return cls(noise_aug=noise_aug, unet=unet_cfg, **{**budget, **overrides})

    def aug_std(self, level: torch.Tensor | int) -> torch.Tensor:
        """The noise standard deviation of aug level(s) ``level``: ``aug_max * level / (K - 1)``."""
        return self.aug_max * torch.as_tensor(level, dtype=torch.float32) / (self.aug_levels - 1)


def augment(low: torch.Tensor, std: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
    """Noise conditioning augmentation, variance-preserving: ``sqrt(1 - std^2) low + std eps`` per
    sample (``low: b c h w``, ``std: b``); ``std = 0`` returns ``low`` unchanged."""
    if low.ndim != 4 or std.shape != (low.shape[0],):
        raise ValueError(f"augment expects low of layout b c h w and one std per sample, got {tuple(low.shape)}, "
                         f"{tuple(std.shape)}")
    noise = torch.randn_like(low) if noise is None else noise
    s = std.to(low)[:, None, None, None]
    return (1 - s ** 2).sqrt() * low + s * noise


class SR3(ddpm.DDPM):
    """``forward(x_t: b 3 H W, t: b, cond=(low: b 3 h w, level: b)) -> b 3 H W``.

    ``low`` is the (already augmented) low-resolution image; it is upsampled bicubically to
    ``H W`` and concatenated to ``x_t`` as three more input channels. ``level`` (int64) is the
    augmentation level, told to the U-Net as a class label (an embedding added to the timestep's).
    """

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, cond: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        low, level = cond
        lo, hi = self.cfg.low_size, self.cfg.image_size
        if low.ndim != 4 or tuple(low.shape[1:]) != (3, lo, lo) or low.shape[0] != x_t.shape[0]:
            raise ValueError(f"SR3 expects the low-resolution image as b 3 {lo} {lo} with b={x_t.shape[0]}, "
                             f"got {tuple(low.shape)}")
        up = F.interpolate(low, size=(hi, hi), mode="bicubic", align_corners=False)  # Fig. 37's x
        return self.unet(torch.cat([x_t, up.to(x_t.dtype)], dim=1), t, level)

    def loss(self, images: torch.Tensor) -> torch.Tensor:
        """Downsample the batch (average pooling), augment with a random level (or level 0 without
        ``noise_aug``), and train on the high-resolution image with Algorithm 2."""
        cfg = self.cfg
        low = downsample(images, cfg.image_size // cfg.low_size)
        b = images.shape[0]
        level = torch.randint(0, cfg.aug_levels, (b,)) if cfg.noise_aug else torch.zeros(b, dtype=torch.long)
        low = augment(low, cfg.aug_std(level))
        return diffusion_loss(self, self.schedule, images, prediction_type=cfg.prediction_type,
                              cond=(low, level.to(images.device)))


def train_sr3(model: SR3) -> dict:
    cfg = model.cfg
    stream = train.prefetched(functools.partial(shapes.image_stream, cfg.batch_size, size=cfg.image_size, seed=cfg.seed + 1))
    history = train.fit(model, lambda m, x: m.loss(x), lambda step: next(stream), cfg.steps, lr=cfg.lr,
                        warmup=cfg.warmup, ema_decay=cfg.ema_decay, grad_clip=1.0, seed=cfg.seed,
                        desc=f"SR3 {'with' if cfg.noise_aug else 'without'} noise augmentation")
    return {"history": history.to_dict()}


def load_sr3(noise_aug: bool = True, cfg: SR3Config | None = None, **overrides) -> SR3:
    """The trained SR3 model (from the model cache, or trained now)."""
    cfg = cfg or SR3Config.preset(noise_aug, **overrides)
    return zoo.get_or_train("sr3", SR3, train_sr3, cfg).annotated()


@torch.no_grad()
def super_resolve(model: SR3, low: torch.Tensor, *, aug_level: int = 0, num_steps: int | None = None,
                  seed: int = 0, clip_sample: float | None = 1.0) -> torch.Tensor:
    """``low: b 3 h w -> b 3 2h 2w``: augment ``low`` at ``aug_level`` (fresh noise from ``seed``), then
    run the reverse process conditioned on it and on the level. A model trained without
    augmentation only knows level 0."""
    cfg = model.cfg
    if not 0 <= aug_level < cfg.aug_levels:
        raise ValueError(f"aug_level must be in 0..{cfg.aug_levels - 1}, got {aug_level}")
    b = low.shape[0]
    level = torch.full((b,), aug_level, dtype=torch.long)
    g = torch.Generator().manual_seed(seed + 7919)
    low = augment(low.cpu().float(), cfg.aug_std(level), torch.randn(low.shape, generator=g))
    dev = config.module_device(model)
    return ddpm.sample(model, b, sampler="ddim", num_steps=num_steps, shape=(3, cfg.image_size, cfg.image_size),
                       seed=seed, batch_size=b, clip_sample=clip_sample, cond=(low.to(dev), level.to(dev)))


def cascade(base: TextToImage, sr: SR3, texts: list[str], *, guidance_scale: float = 1.0, threshold: str = "static",
            aug_level: int = 0, num_steps: int | None = None, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """The two-stage cascade: ``(low b 3 8 8, high b 3 16 16)`` for ``texts``."""
    low = generate(base, texts, guidance_scale=guidance_scale, threshold=threshold, num_steps=num_steps,
                   seed=seed).clamp(-1, 1)
    return low, super_resolve(sr, low, aug_level=aug_level, num_steps=num_steps, seed=seed)
