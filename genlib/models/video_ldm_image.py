"""Video-LDM's image stage at toy scale (survey §12; :mod:`genlib.models.video_ldm` adds time).

The two frozen parts the video model is built on, both trained on single frames of 16x16
moving-shapes clips and cached by :mod:`genlib.zoo`:

    E, D      :class:`FrameAutoencoder`, 3x16x16 <-> 4x8x8 latents (the LDM's first stage)
    l_theta   :class:`ImageLDM`, an unconditional latent U-Net on single frames' latents

:mod:`genlib.models.video_ldm` re-exports every name here.
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from genlib import config, train, zoo
from genlib.data import moving
from genlib.diffusion import NoiseSchedule, diffusion_loss
from genlib.diffusion.training import DiffusionTraining
from genlib.nn.convnets import ConvNetConfig, Decoder, Encoder
from genlib.nn.unet import UNet, UNetConfig
from genlib.nn.video import to_frames

SIZE = 16  # frame side in pixels


def training_clips(n: int, frames: int, seed: int = 1) -> torch.Tensor:
    """``n`` moving-shapes clips ``b t 3 16 16`` in [-1, 1], one shape each: the data every stage
    here trains on (one shape keeps the toy image model's task small enough for a laptop)."""
    return moving.sample(n, frames=frames, size=SIZE, seed=seed, max_objects=1).videos


def pool_size() -> int:
    """How many training clips the active profile uses (part of every cache key below)."""
    return config.pick(ci=64, cpu=1200, gpu=6000)


# ----------------------------------------------------------------------------- first stage: E and D


@dataclasses.dataclass(frozen=True)
class FrameAutoencoderConfig:
    """A deterministic conv autoencoder ``3x16x16 <-> latent_channels x 8 x 8`` trained with the mean
    squared error (L1 settles on the black background, most of every frame, and loses the shapes)."""

    net: ConvNetConfig = dataclasses.field(default_factory=lambda: ConvNetConfig(channels=(32, 64), latent_channels=4))
    frames: int = 8
    steps: int = 400
    batch_size: int = 64
    lr: float = 3e-3
    seed: int = 0

    def __post_init__(self):
        if isinstance(self.net, dict):
            object.__setattr__(self, "net", ConvNetConfig(**self.net))

    @classmethod
    def preset(cls, **overrides) -> "FrameAutoencoderConfig":
        width = config.pick(ci=(8, 16), cpu=(16, 32), gpu=(64, 128))
        budget = config.pick(ci=dict(steps=20, batch_size=16), cpu=dict(steps=400, batch_size=64),
                             gpu=dict(steps=1500, batch_size=256))
        return cls(net=ConvNetConfig(channels=width, latent_channels=4), **{**budget, **overrides})


class FrameAutoencoder(nn.Module):
    """``encode: b 3 16 16 -> b 4 8 8``, ``decode`` back; both act on single frames."""

    def __init__(self, cfg: FrameAutoencoderConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder, self.decoder = Encoder(cfg.net), Decoder(cfg.net)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))


def load_frame_autoencoder(cfg: FrameAutoencoderConfig | None = None) -> FrameAutoencoder:
    """The first stage, trained on single frames of :func:`training_clips` (squared error); cached."""
    cfg = cfg or FrameAutoencoderConfig.preset()
    n = pool_size()

    def fit(model: FrameAutoencoder) -> dict:
        frames = rearrange(training_clips(n, cfg.frames), "b t c h w -> (b t) c h w")
        batches = train.random_batches(frames, cfg.batch_size, seed=cfg.seed)
        return train.fit(model, lambda m, x: F.mse_loss(m(x), x), batches, cfg.steps, lr=cfg.lr, seed=cfg.seed,
                         desc="frame autoencoder (E, D)").to_dict()

    return zoo.get_or_train("video-ldm-autoencoder", FrameAutoencoder, fit, cfg, extra={"clips": n}).annotated()


@torch.no_grad()
def encode_clips(ae: FrameAutoencoder, clips: torch.Tensor) -> torch.Tensor:
    """Pixel clips ``b t 3 h w`` -> latent clips ``b c t h' w'`` (on the CPU), frame by frame."""
    if clips.ndim != 5 or clips.shape[2] != 3:
        raise ValueError(f"encode_clips expects clips of layout b t c h w with c=3, got {tuple(clips.shape)}")
    b = clips.shape[0]
    z = train.batched(ae.eval().encode, rearrange(clips, "b t c h w -> (b t) c h w"), 512)
    return rearrange(z.cpu(), "(b t) c h w -> b c t h w", b=b)


# ----------------------------------------------------------------------------- the image LDM (l_theta)


@dataclasses.dataclass(frozen=True, kw_only=True)
class ImageLDMConfig(DiffusionTraining):
    """An unconditional latent U-Net on single frames' latents, with the linear schedule (the survey:
    Video-LDM keeps its image model's schedule, linear in all its models). Video-LDM predicts
    ``epsilon``; the toy uses ``v_prediction`` (chapter 13), which gives far cleaner frames after a
    few hundred steps."""

    unet: UNetConfig
    prediction_type: str = "v_prediction"
    steps: int = 800
    lr: float = 2e-3
    warmup: int = 50

    def __post_init__(self):
        super().__post_init__()
        if isinstance(self.unet, dict):
            object.__setattr__(self, "unet", UNetConfig(**self.unet))
        if self.unet.num_classes or self.unet.context_dim:
            raise ValueError("the image LDM here is unconditional: no num_classes or context_dim")

    @classmethod
    def preset(cls, latent_channels: int = 4, **overrides) -> "ImageLDMConfig":
        sizes = config.pick(
            ci=dict(base_channels=8, channel_mult=(1, 2), groups=4, num_heads=2, attention_resolutions=(4,)),
            cpu=dict(base_channels=32, channel_mult=(1, 2), attention_resolutions=(4,)),
            gpu=dict(base_channels=64, channel_mult=(1, 2, 2), num_res_blocks=2, attention_resolutions=(4, 2)),
        )
        unet = UNetConfig(in_channels=latent_channels, image_size=SIZE // 2, **sizes)
        budget = config.pick(ci=dict(steps=20, batch_size=16), cpu=dict(steps=500, batch_size=64, ema_decay=0.995),
                             gpu=dict(steps=3000, batch_size=256, ema_decay=0.999))
        return cls(unet=unet, **{**budget, **overrides})


class ImageLDM(nn.Module):
    """``forward(z_t: b c h w, t: b) -> b c h w``: the frozen image backbone. Buffer ``scale`` is
    ``1 / std`` of the training latents, so the model sees latents of unit variance."""

    def __init__(self, cfg: ImageLDMConfig):
        super().__init__()
        self.cfg = cfg
        self.unet = UNet(cfg.unet)
        self.schedule = NoiseSchedule(cfg.schedule, cfg.num_train_timesteps)
        self.register_buffer("scale", torch.ones(()))
        self.info: dict = {}

    def forward(self, z_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.unet(z_t, t)


def load_image_ldm(ae: FrameAutoencoder, cfg: ImageLDMConfig | None = None) -> ImageLDM:
    """The image LDM trained on single frames' latents of ``ae`` (whose weights digest is part
    of the cache key); from the cache or trained now."""
    cfg = cfg or ImageLDMConfig.preset(ae.cfg.net.latent_channels)
    n = pool_size()

    def fit(model: ImageLDM) -> dict:
        latents = encode_clips(ae, training_clips(n, ae.cfg.frames))
        model.scale.fill_(1.0 / latents.std().item())
        frames = to_frames(latents) * model.scale.item()
        batches = train.random_batches(frames, cfg.batch_size, seed=cfg.seed)
        loss = lambda m, z0: diffusion_loss(m, m.schedule, z0, prediction_type=cfg.prediction_type)  # noqa: E731
        return train.fit(model, loss, batches, cfg.steps, lr=cfg.lr, warmup=cfg.warmup, ema_decay=cfg.ema_decay,
                         grad_clip=1.0, seed=cfg.seed, desc="image LDM (spatial layers)").to_dict()

    extra = {"autoencoder": zoo.weights_digest(ae), "clips": n}
    return zoo.get_or_train("video-ldm-image", ImageLDM, fit, cfg, extra=extra).annotated()
