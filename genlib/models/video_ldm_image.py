"""Video-LDM's image stage at toy scale (survey §12; :mod:`genlib.models.video_ldm` adds time).

The frozen parts the video model is built on, trained on single frames of 16x16 moving-shapes
clips and cached by :mod:`genlib.zoo`:

    E, D      :class:`FrameAutoencoder`, 3x16x16 <-> 4x8x8 latents (the LDM's first stage)
    tau       chapter 08's shapes CLIP (:mod:`genlib.models.clip`), its text tower frozen: the
              caption of a frame's clip -> token states ``n d``
    l_theta   :class:`ImageLDM`, a latent U-Net on single frames' latents that cross-attends to
              those states (text-to-image), the caption dropped for classifier-free guidance

Also here, because every stage is judged by it: :func:`clip_colour`, a program that reads which
palette colour a clip's object has, and :func:`colour_agreement` with an asked colour.

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
from genlib.data.captions import Prompt
from genlib.data.render import COLOURS, SHAPES
from genlib.diffusion import NoiseSchedule, diffusion_loss
from genlib.diffusion.guidance import drop_condition
from genlib.diffusion.training import DiffusionTraining
from genlib.metrics.colours import colour_votes as frame_colour_votes
from genlib.models.clip import CLIP, CLIPConfig, load_shapes_clip
from genlib.models.ldm import text_states
from genlib.nn.convnets import ConvNetConfig, Decoder, Encoder
from genlib.nn.unet import UNet, UNetConfig
from genlib.nn.video import FRAMES_FIRST, check_video, to_frames

SIZE = 16  # frame side in pixels


def training_batch(n: int, frames: int, seed: int = 1) -> moving.MovingBatch:
    """``n`` moving-shapes clips (``.videos``: ``b t 3 16 16`` in [-1, 1]) of one shape each, with
    their attributes: the data every stage here trains on (one shape keeps the toy image model's
    task small enough for a laptop)."""
    return moving.sample(n, frames=frames, size=SIZE, seed=seed, max_objects=1)


def training_clips(n: int, frames: int, seed: int = 1) -> torch.Tensor:
    """The clips of :func:`training_batch` alone, ``b t 3 16 16``."""
    return training_batch(n, frames, seed).videos


def prompts(batch: moving.MovingBatch) -> list[str]:
    """Each clip's caption for the text encoder: its object's colour and shape ("a red circle").
    The data's own captions add the motion ("... moving right"), but the shapes CLIP's grammar
    has no words for motion, so the text says *what* is in the clip and the video model alone
    decides how it moves."""
    colour, shape = batch.attrs["colour"][:, 0].tolist(), batch.attrs["shape"][:, 0].tolist()
    return [Prompt("shape", ((COLOURS[c], SHAPES[s]),)).text for c, s in zip(colour, shape)]


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
    """A latent U-Net on single frames' latents, with the linear schedule (the survey: Video-LDM
    keeps its image model's schedule, linear in all its models). With ``unet.context_dim`` it is
    text-to-image: its attention blocks cross-attend to ``max_len`` text states, and a frame's
    caption is replaced by the empty caption's states with probability ``p_uncond`` (LDM's recipe
    for classifier-free guidance); without, unconditional. Video-LDM predicts ``epsilon``; the toy
    uses ``v_prediction`` (chapter 13), which gives far cleaner frames after a few hundred steps."""

    unet: UNetConfig
    max_len: int = 16
    p_uncond: float = 0.1
    prediction_type: str = "v_prediction"
    steps: int = 800
    lr: float = 2e-3
    warmup: int = 50

    def __post_init__(self):
        super().__post_init__()
        if isinstance(self.unet, dict):
            object.__setattr__(self, "unet", UNetConfig(**self.unet))
        if self.unet.num_classes:
            raise ValueError("the image LDM here is conditioned on text (unet.context_dim) or nothing, not on labels")
        if not 0.0 <= self.p_uncond < 1.0:
            raise ValueError(f"p_uncond must lie in [0, 1), got {self.p_uncond}")

    @property
    def conditional(self) -> bool:
        return bool(self.unet.context_dim)

    @classmethod
    def preset(cls, latent_channels: int = 4, context_dim: int | None = -1, **overrides) -> "ImageLDMConfig":
        """The profile's image LDM; ``context_dim`` is the text encoder's width (``-1``: the
        profile's shapes CLIP, ``None``: an unconditional model)."""
        sizes = config.pick(
            ci=dict(base_channels=8, channel_mult=(1, 2), groups=4, num_heads=2, attention_resolutions=(4,)),
            cpu=dict(base_channels=32, channel_mult=(1, 2), attention_resolutions=(4,)),
            gpu=dict(base_channels=64, channel_mult=(1, 2, 2), num_res_blocks=2, attention_resolutions=(4, 2)),
        )
        text = CLIPConfig.preset()
        context_dim = text.text_dim if context_dim == -1 else context_dim
        unet = UNetConfig(in_channels=latent_channels, image_size=SIZE // 2, context_dim=context_dim, **sizes)
        overrides.setdefault("max_len", text.max_len)
        budget = config.pick(ci=dict(steps=20, batch_size=16), cpu=dict(steps=500, batch_size=64, ema_decay=0.995),
                             gpu=dict(steps=3000, batch_size=256, ema_decay=0.999))
        return cls(unet=unet, **{**budget, **overrides})


class ImageLDM(nn.Module):
    """``forward(z_t: b c h w, t: b, text: b n d | None) -> b c h w``: the frozen image backbone.

    Buffers saved with the weights: ``scale`` (``1 / std`` of the training latents, so the model
    sees latents of unit variance) and, for a text-to-image model, ``null_text`` (``n d``, the
    empty caption's states: the "no condition" of guidance, used wherever ``text`` is ``None``)."""

    def __init__(self, cfg: ImageLDMConfig):
        super().__init__()
        self.cfg = cfg
        self.unet = UNet(cfg.unet)
        self.schedule = NoiseSchedule(cfg.schedule, cfg.num_train_timesteps)
        self.register_buffer("scale", torch.ones(()))
        if cfg.conditional:
            self.register_buffer("null_text", torch.zeros(cfg.max_len, cfg.unet.context_dim))
        self.info: dict = {}

    def text_or_null(self, text: torch.Tensor | None, b: int) -> torch.Tensor | None:
        """The text states ``b n d`` the U-Net reads: ``text``, or ``b`` copies of :attr:`null_text`
        when it is ``None``; always ``None`` for an unconditional model (which takes no text)."""
        if not self.cfg.conditional:
            if text is not None:
                raise ValueError("this image LDM is unconditional (no unet.context_dim): pass text=None")
            return None
        return self.null_text.expand(b, -1, -1) if text is None else text

    def forward(self, z_t: torch.Tensor, t: torch.Tensor, text: torch.Tensor | None = None) -> torch.Tensor:
        return self.unet(z_t, t, self.text_or_null(text, z_t.shape[0]))


def load_image_ldm(ae: FrameAutoencoder, cfg: ImageLDMConfig | None = None, *, clip: CLIP | None = None) -> ImageLDM:
    """The image LDM trained on single frames' latents of ``ae`` and, when ``cfg`` is
    conditional, on the states of their clips' :func:`prompts` from the frozen text tower of
    ``clip`` (default: the profile's shapes CLIP). The weight digests of ``ae`` and ``clip`` are
    part of the cache key; from the cache or trained now."""
    cfg = cfg or ImageLDMConfig.preset(ae.cfg.net.latent_channels)
    clip = (clip or load_shapes_clip()) if cfg.conditional else None
    if clip is not None and (clip.cfg.text_dim, clip.cfg.max_len) != (cfg.unet.context_dim, cfg.max_len):
        raise ValueError(f"the text encoder gives {clip.cfg.max_len} states of width {clip.cfg.text_dim}, "
                         f"the image LDM reads {cfg.max_len} of width {cfg.unet.context_dim}")
    n = pool_size()

    def fit(model: ImageLDM) -> dict:
        batch = training_batch(n, ae.cfg.frames)
        latents = encode_clips(ae, batch.videos)
        model.scale.fill_(1.0 / latents.std().item())
        z0 = to_frames(latents) * model.scale.item()  # (b t) c h w: every frame one training image
        if clip is None:
            batches = train.random_batches(z0, cfg.batch_size, seed=cfg.seed)
            loss = lambda m, z: diffusion_loss(m, m.schedule, z, prediction_type=cfg.prediction_type)  # noqa: E731
        else:
            states = text_states(clip, prompts(batch)).cpu()  # b n d: one caption per clip
            model.null_text.copy_(text_states(clip, [""])[0])
            of_clip = torch.arange(n).repeat_interleave(ae.cfg.frames)  # (b t): the clip of every frame
            batches = train.random_batches((z0, of_clip), cfg.batch_size, seed=cfg.seed,
                                           transform=lambda b, _: (b[0], states[b[1]]))
            drops = torch.Generator().manual_seed(cfg.seed + 1)

            def loss(m: ImageLDM, b):  # the caption dropped with probability p_uncond (classifier-free guidance)
                text = drop_condition(b[1], m.null_text, cfg.p_uncond, drops)
                return diffusion_loss(m, m.schedule, b[0], prediction_type=cfg.prediction_type, cond=text)
        return train.fit(model, loss, batches, cfg.steps, lr=cfg.lr, warmup=cfg.warmup, ema_decay=cfg.ema_decay,
                         grad_clip=1.0, seed=cfg.seed, desc="image LDM (spatial layers)").to_dict()

    extra = {"autoencoder": zoo.weights_digest(ae), "clips": n}
    if clip is not None:
        extra["text_encoder"] = zoo.weights_digest(clip)
    return zoo.get_or_train("video-ldm-image", ImageLDM, fit, cfg, extra=extra).annotated()


# ----------------------------------------------------------------------------- reading a clip's colour



def colour_votes(clips: torch.Tensor, lit: float = 0.3) -> torch.Tensor:
    """``b t 3 h w`` in [-1, 1] -> ``b k``: how many lit pixels of each clip are nearest in hue to
    each palette colour (:func:`genlib.metrics.colours.colour_votes`, summed over the frames)."""
    check_video(clips, "colour_votes", 3, layout=FRAMES_FIRST)
    b = clips.shape[0]
    return rearrange(frame_colour_votes(rearrange(clips, "b t c h w -> (b t) c h w"), lit), "(b t) k -> b t k",
                     b=b).sum(1)


def clip_colour(clips: torch.Tensor, lit: float = 0.3) -> torch.Tensor:
    """The palette colour (index into ``COLOURS``) with the most lit pixels in each clip, ``b``
    (long); ``-1`` for a clip with no lit pixel. One shape per clip, so this is its object's colour."""
    votes = colour_votes(clips, lit)
    return torch.where(votes.sum(1) > 0, votes.argmax(1), torch.full_like(votes[:, 0], -1))


def colour_agreement(clips: torch.Tensor, colours: torch.Tensor, lit: float = 0.3) -> torch.Tensor:
    """``b`` floats: 1 where :func:`clip_colour` of clip ``i`` is the asked ``colours[i]``, else 0
    (its mean is the share of clips whose object has the asked colour)."""
    if colours.shape != clips.shape[:1]:
        raise ValueError(f"need one asked colour per clip ({clips.shape[0]}), got shape {tuple(colours.shape)}")
    return (clip_colour(clips, lit) == colours.long().cpu()).float()
