"""Imagen Video's cascade at toy scale (survey §13.1-13.2): three video diffusion models that make a clip.

:data:`TOY_CASCADE` is the cascade of chapter 13's moving-shapes world, computed by
:func:`genlib.models.imagen_video.cascade`::

    base  4 frames of 8x8 at 2 fps   (colour-conditional; temporal attention)        generates
    TSR   8 frames of 8x8 at 4 fps   (conditioned on the base clip, frames repeated)   time x2
    SSR   8 frames of 16x16 at 4 fps (conditioned on the TSR clip, upsampled bilinearly) space x2

Each stage is a small video U-Net (Fig. 71): an image U-Net inflated with
:func:`genlib.models.make_a_video.inflate`, so every 3x3 conv is followed by a temporal conv and every
spatial attention block by a temporal attention layer. Like Imagen Video, only the base has
attention; the super-resolution stages mix frames with temporal convolutions alone.

* :class:`VideoStageConfig`, :class:`VideoStage`, :func:`load_stage` -- one stage, its training
  (v-prediction, cosine schedule) and the model cache. The super-resolution stages read
  ``[z_t, upsampled low clip]`` (6 channels) and are told the noise-augmentation level as a class
  label, with chapter 09's :func:`~genlib.models.sr3.augment` (noise conditioning augmentation).
  Two toy-scale shortcuts, both options of the config: the super-resolution stages diffuse the
  residual over their upsampled input (``residual``), and the SSR stage trains on crops (``crop``).
* :func:`to_stage`, :func:`upsample`, :func:`naive_upsample`, :func:`hold` -- what each stage must
  output (the real clip with frames skipped and pixels average-pooled), the fixed upsampling each
  SR stage is conditioned on (frames repeated, or pixels interpolated), and a clip drawn at the
  world's size and frame rate for display.
* :func:`temporal_masked` -- video-image joint training (§13.2): images run through the video
  network as single-frame videos with every temporal layer made the identity;
  ``VideoStageConfig.joint_images`` images per step join the base's clips.
* :func:`generate` -- a clip through the whole cascade, every stage's output kept.

Clips are ``b t c h w`` in [-1, 1], as the data worlds give them.
"""

from __future__ import annotations

import contextlib
import dataclasses

import torch
import torch.nn.functional as F
from torch import nn

from genlib import config, train, zoo
from genlib.data import moving
from genlib.data.render import COLOURS
from genlib.diffusion import NoiseSchedule, diffusion_loss
from genlib.diffusion.distillation import ddim_sample_x0
from genlib.diffusion.guidance import drop_condition
from genlib.diffusion.training import DiffusionTraining
from genlib.models.sr3 import augment
from genlib.models.imagen_video import Stage, cascade
from genlib.models.make_a_video import InflatedUNet, inflate
from genlib.nn.unet import UNet, UNetConfig
from genlib.nn.video import FRAMES_FIRST, check_video

# The toy cascade: 8 frames of 16x16 (the moving-shapes clips) from a 4-frame 8x8 base.
TOY_CASCADE = cascade(Stage("base", 4, 2, 8, 8, temporal="attention", spatial_attention=True),
                      [("time", 2), ("space", 2)], [(None, "convolution", False), (None, "convolution", False)])
ROLES = {"base": 0, "tsr": 1, "ssr": 2}  # role -> index into TOY_CASCADE
WORLD_FRAMES, WORLD_SIZE = TOY_CASCADE[-1].frames, TOY_CASCADE[-1].height
NULL_COLOUR = len(COLOURS)  # the base's "no colour" label (classifier-free guidance)


# ----------------------------------------------------------------------------- resizing clips


def to_stage(clips: torch.Tensor, frames: int, size: int) -> torch.Tensor:
    """``b T c S S -> b frames c size size``: a stage's target made from a real clip, as Imagen
    Video's data is prepared: frames skipped (every ``T / frames``-th kept) and each frame
    average-pooled by ``S / size``."""
    check_video(clips, "to_stage", layout=FRAMES_FIRST)
    b, t, c, s, _ = clips.shape
    if t % frames or s % size:
        raise ValueError(f"to_stage keeps every k-th of {t} frames and pools {s} pixels by an integer; "
                         f"got frames={frames}, size={size}")
    kept = clips[:, :: t // frames]
    return F.avg_pool2d(kept.flatten(0, 1), s // size).unflatten(0, (b, frames))


def upsample(low: torch.Tensor, axis: str, factor: int = 2) -> torch.Tensor:
    """The fixed upsampling a super-resolution stage is conditioned on (``b t c h w``):
    ``axis="time"`` repeats every frame ``factor`` times (a temporal SR's input, frames held);
    ``axis="space"`` enlarges every frame ``factor`` times by bilinear interpolation (SR3's input)."""
    check_video(low, "upsample", layout=FRAMES_FIRST)
    if axis == "time":
        return low.repeat_interleave(factor, dim=1)
    if axis == "space":
        b = low.shape[0]
        up = F.interpolate(low.flatten(0, 1), scale_factor=factor, mode="bilinear", align_corners=False)
        return up.unflatten(0, (b, low.shape[1]))
    raise ValueError(f"axis must be 'time' or 'space', got {axis!r}")


def naive_upsample(clips: torch.Tensor, frames: int = WORLD_FRAMES, size: int = WORLD_SIZE) -> torch.Tensor:
    """The cascade without its models: frames repeated and pixels interpolated up to ``frames`` of
    ``size x size`` (the baseline the super-resolution stages must beat)."""
    check_video(clips, "naive_upsample", layout=FRAMES_FIRST)
    return upsample(upsample(clips, "time", frames // clips.shape[1]), "space", size // clips.shape[-1])


def hold(clips: torch.Tensor, frames: int = WORLD_FRAMES, size: int = WORLD_SIZE) -> torch.Tensor:
    """A stage's clips shown at the world's frame rate and size, inventing nothing: every frame held
    for ``frames / t`` time slots and every pixel drawn as a block (nearest neighbour)."""
    check_video(clips, "hold", layout=FRAMES_FIRST)
    b, t = clips.shape[:2]
    big = F.interpolate(clips.flatten(0, 1), size=(size, size), mode="nearest").unflatten(0, (b, t))
    return big.repeat_interleave(frames // t, dim=1)


# ----------------------------------------------------------------------------- joint training (§13.2)


@contextlib.contextmanager
def temporal_masked(net: InflatedUNet):
    """Inside the block every temporal layer of ``net`` (temporal convs and temporal attention)
    returns its input unchanged, so frames never mix: a clip is a batch of images, and an image is
    a single-frame video. This is how Imagen Video trains on images and videos together (§13.2)."""
    layers = [m.temporal for m in net.pseudo3d_layers()] if isinstance(net, InflatedUNet) else []
    if not layers:
        raise ValueError("temporal_masked needs a network with temporal layers (an InflatedUNet)")
    handles = [m.register_forward_hook(lambda module, args, out: args[0]) for m in layers]
    try:
        yield net
    finally:
        for h in handles:
            h.remove()


# ----------------------------------------------------------------------------- one stage


@dataclasses.dataclass(frozen=True, kw_only=True)
class VideoStageConfig(DiffusionTraining):
    """One stage of :data:`TOY_CASCADE` (``role``: base | tsr | ssr) and its training.

    The base is colour-conditional (the colour of a clip's first object; ``p_uncond`` drops it, for
    classifier-free guidance) and takes ``joint_images`` extra images per step when jointly trained.
    The super-resolution stages corrupt their conditioning clip with noise of a random level
    ``0 .. aug_levels - 1`` (std ``aug_max * level / (aug_levels - 1)``) and are told the level.
    The SSR stage has no attention, so like Imagen's last super-resolution models it can train on
    ``crop x crop`` windows and sample whole frames (the bilinear upsampling of a window differs
    from a window of the upsampled frame only on the window's outer ring of pixels).

    ``residual``: the stage diffuses ``x - upsample(low)`` (what the fixed upsampling of its clean
    input misses) and adds it back after sampling. Imagen Video's stages diffuse ``x`` itself; at
    a laptop's budget a stage that must also learn to copy its input's colours does not get there.
    """

    role: str = "base"
    unet: UNetConfig = dataclasses.field(default_factory=UNetConfig)
    kernel_t: int = 3
    p_uncond: float = 0.1
    joint_images: int = 0
    max_objects: int = 1             # objects per clip (the world's default is up to 2)
    crop: int | None = None          # ssr: train on random crops of this side (it has no attention)
    residual: bool = False           # tsr/ssr: diffuse x - upsample(low), not x (a toy-scale shortcut)
    aug_levels: int = 6
    aug_max: float = 0.3
    schedule: str = "cosine"
    prediction_type: str = "v_prediction"  # every Imagen Video model (§13.3)
    batch_size: int = 16
    lr: float = 2e-3
    warmup: int = 20

    def __post_init__(self):
        super().__post_init__()
        if self.role not in ROLES:
            raise ValueError(f"role must be one of {', '.join(ROLES)}, got {self.role!r}")
        stage, u = self.stage, self.unet
        want = (3, None, NULL_COLOUR) if self.role == "base" else (6, 3, self.aug_levels)
        if (u.in_channels, u.out_channels, u.num_classes) != want or u.image_size != stage.height:
            raise ValueError(f"the {self.role} U-Net reads {want[0]} channels at {stage.height}x{stage.height} and "
                             f"has {want[2]} labels, got {u}")
        if self.residual and self.role == "base":
            raise ValueError("only a super-resolution stage has an input to be the residual of")
        if self.joint_images and self.role != "base":
            raise ValueError("joint image training is for the base model")
        if self.crop is not None and (self.role != "ssr" or u.attention_resolutions or not 0 < self.crop <= stage.height
                                      or self.crop % (2 * u.factor)):
            raise ValueError(f"crops are for the fully convolutional SSR stage (no attention), of an even side up "
                             f"to {stage.height} divisible by {2 * u.factor}; got crop={self.crop} for {self.role}")

    @property
    def stage(self) -> Stage:
        return TOY_CASCADE[ROLES[self.role]]

    @property
    def axis(self) -> str | None:
        """What the stage upsamples: None (base), "time" or "space"."""
        return {"base": None, "tsr": "time", "ssr": "space"}[self.role]

    def aug_std(self, level: torch.Tensor) -> torch.Tensor:
        return self.aug_max * level.float() / (self.aug_levels - 1)

    @classmethod
    def preset(cls, role: str, **overrides) -> "VideoStageConfig":
        """The profile's stage: ``ci`` proves the code path; ``cpu`` video U-Nets of about 0.2M
        parameters (two levels, base width 16), a few hundred steps each; ``gpu`` width 32."""
        stage = TOY_CASCADE[ROLES[role]]
        width = config.pick(ci=dict(base_channels=8, groups=4, num_heads=2), cpu=dict(base_channels=16, groups=8),
                            gpu=dict(base_channels=32, groups=8))
        attention = (stage.height // 2,) if role == "base" else ()
        levels = overrides.get("aug_levels", cls.aug_levels)
        channels = dict(in_channels=3, num_classes=NULL_COLOUR) if role == "base" else \
            dict(in_channels=6, out_channels=3, num_classes=levels)
        unet = UNetConfig(image_size=stage.height, channel_mult=(1, 2), attention_resolutions=attention,
                          **channels, **width)
        budget = config.pick(
            ci=dict(steps=12, batch_size=4, warmup=2),
            cpu=dict(steps={"base": 400, "tsr": 600, "ssr": 800}[role], batch_size={"base": 32, "tsr": 12, "ssr": 12}[role],
                     lr=3e-3, ema_decay=0.99),
            gpu=dict(steps=400, batch_size=128, warmup=50, ema_decay=0.99))  # launch-bound: ~60 ms a step
        crop = config.pick(ci=8, cpu=8, gpu=None) if role == "ssr" else None
        residual = role != "base"
        return cls(role=role, unet=unet, crop=crop, residual=residual, **{**budget, **overrides})


class VideoStage(nn.Module):
    """``forward(z_t: b t 3 h w, t: b, cond) -> b t 3 h w`` (the v prediction).

    ``cond`` is the base's colour labels ``b`` (``NULL_COLOUR``: none), or a super-resolution
    stage's ``(low, level)``: the (already augmented) lower-resolution clip and its augmentation
    level ``b``; ``low`` is upsampled (:func:`upsample`) and concatenated to ``z_t`` channel-wise.
    """

    def __init__(self, cfg: VideoStageConfig):
        super().__init__()
        self.cfg = cfg
        self.net = inflate(UNet(cfg.unet), kernel_t=cfg.kernel_t, heads=cfg.unet.num_heads)
        self.schedule = NoiseSchedule(cfg.schedule, cfg.num_train_timesteps)
        self.info: dict = {}

    @property
    def prediction_type(self) -> str:
        return self.cfg.prediction_type

    def forward(self, z_t: torch.Tensor, t: torch.Tensor, cond) -> torch.Tensor:
        if self.cfg.axis is None:
            return self.net(z_t, t, cond)
        low, level = cond
        up = upsample(low, self.cfg.axis)
        if up.shape != z_t.shape:
            raise ValueError(f"the {self.cfg.role} stage upsamples its input clip to z_t's shape {tuple(z_t.shape)}, "
                             f"got {tuple(low.shape)} -> {tuple(up.shape)}")
        return self.net(torch.cat([z_t, up.to(z_t.dtype)], dim=2), t, level)

    def loss(self, clips: torch.Tensor, colours: torch.Tensor, images: torch.Tensor | None = None,
             image_colours: torch.Tensor | None = None) -> torch.Tensor:
        """The diffusion loss on real ``clips: b 8 3 16 16`` made into this stage's target
        (:func:`to_stage`); ``colours: b`` their labels. The base adds the loss on ``images``
        (``m 3 16 16``) as single-frame videos with the temporal layers masked, when given."""
        cfg, st = self.cfg, self.cfg.stage
        x0 = to_stage(clips, st.frames, st.height)
        if cfg.role == "base":
            loss = diffusion_loss(self, self.schedule, x0, prediction_type=cfg.prediction_type,
                                  cond=drop_condition(colours, NULL_COLOUR, cfg.p_uncond))
            if images is not None:
                x_img = to_stage(images[:, None], 1, st.height)  # m 1 3 h w: one-frame videos
                with temporal_masked(self.net):
                    loss = loss + diffusion_loss(self, self.schedule, x_img, prediction_type=cfg.prediction_type,
                                                 cond=drop_condition(image_colours, NULL_COLOUR, cfg.p_uncond))
            return loss
        prev = TOY_CASCADE[ROLES[cfg.role] - 1]
        low = to_stage(clips, prev.frames, prev.height)  # the previous stage's target
        level = torch.randint(0, cfg.aug_levels, (len(clips),))
        noisy = augment(low.flatten(1, 2), cfg.aug_std(level)).unflatten(1, low.shape[1:3])  # per clip
        if cfg.crop:  # one random window of the output and the matching window of the input
            f, c = st.height // prev.height, cfg.crop
            i, j = (f * torch.randint(0, (st.height - c) // f + 1, (2,))).tolist()
            x0 = x0[..., i:i + c, j:j + c]
            low, noisy = (x[..., i // f:(i + c) // f, j // f:(j + c) // f] for x in (low, noisy))
        if cfg.residual:  # diffuse what the fixed upsampling misses
            x0 = x0 - upsample(low, cfg.axis)
        return diffusion_loss(self, self.schedule, x0, prediction_type=cfg.prediction_type,
                              cond=(noisy, level.to(clips.device)))


def stage_batches(cfg: VideoStageConfig):
    """``step -> (clips b 8 3 16 16, colours b[, images m 3 16 16, colours m])``: fresh moving-shapes
    clips every step, labelled with the colour of their first object; the images, when the config
    asks for them, are single frames of other clips (drawn from their own seed stream)."""
    def batch(step: int):
        clips = moving.sample(cfg.batch_size, WORLD_FRAMES, WORLD_SIZE, seed=train.step_seed(cfg.seed, step),
                              max_objects=cfg.max_objects)
        out = (clips.videos, clips.attrs["colour"][:, 0])
        if cfg.joint_images:
            frames = moving.sample(cfg.joint_images, 1, WORLD_SIZE, seed=train.step_seed(cfg.seed + 1, step),
                                   max_objects=cfg.max_objects)
            out += (frames.videos[:, 0], frames.attrs["colour"][:, 0])
        return out
    return batch


def train_stage(model: VideoStage) -> dict:
    cfg = model.cfg
    history = train.fit(model, lambda m, batch: m.loss(*batch), stage_batches(cfg), cfg.steps, lr=cfg.lr,
                        warmup=cfg.warmup, ema_decay=cfg.ema_decay, grad_clip=1.0, seed=cfg.seed,
                        desc=f"Imagen Video {cfg.role}" + (" + images" if cfg.joint_images else ""))
    return {"history": history.to_dict()}


def load_stage(role: str, cfg: VideoStageConfig | None = None, **overrides) -> VideoStage:
    """The trained stage ``role`` of the toy cascade, from the model cache or trained now."""
    cfg = cfg or VideoStageConfig.preset(role, **overrides)
    if cfg.role != role:
        raise ValueError(f"cfg is a {cfg.role} stage, asked for {role}")
    return zoo.get_or_train("imagen-video-stage", VideoStage, train_stage, cfg).annotated()


# ----------------------------------------------------------------------------- sampling the cascade


@torch.no_grad()
def sample_base(base: VideoStage, colours: torch.Tensor, *, num_steps: int, guidance: list[float] | None = None,
                seed: int = 0) -> torch.Tensor:
    """Base clips ``b 4 3 8 8`` for colour labels ``b`` by deterministic DDIM from noise drawn with
    ``seed``; ``guidance`` is one guidance scale per step (genlib's convention, ``s = 1 + w``), or
    None for the conditional model alone."""
    st, dev = base.cfg.stage, config.module_device(base)
    z = torch.randn(len(colours), st.frames, 3, st.height, st.width, generator=torch.Generator().manual_seed(seed))
    colours = colours.long().to(dev)
    uncond = None if guidance is None else torch.full_like(colours, NULL_COLOUR)
    return ddim_sample_x0(base, base.schedule, z.to(dev), num_steps, prediction_type=base.prediction_type,
                          cond=colours, uncond=uncond, guidance_scales=guidance, clip=1.0).cpu()


@torch.no_grad()
def super_resolve(stage: VideoStage, low: torch.Tensor, *, num_steps: int, aug_level: int = 1,
                  seed: int = 0) -> torch.Tensor:
    """One super-resolution stage: ``low`` (the previous stage's clips) augmented at ``aug_level``
    with noise drawn from ``seed``, then deterministic DDIM conditioned on it and on the level
    (a residual stage's sample is added to ``upsample(low)``, the clean input)."""
    cfg, st, dev = stage.cfg, stage.cfg.stage, config.module_device(stage)
    if not 0 <= aug_level < cfg.aug_levels:
        raise ValueError(f"aug_level must lie in 0..{cfg.aug_levels - 1}, got {aug_level}")
    g = torch.Generator().manual_seed(seed)
    b = low.shape[0]
    level = torch.full((b,), aug_level, dtype=torch.long)
    noisy = augment(low.flatten(1, 2), cfg.aug_std(level), torch.randn(low.flatten(1, 2).shape, generator=g))
    noisy = noisy.unflatten(1, (-1, 3))
    z = torch.randn(b, st.frames, 3, st.height, st.width, generator=g)
    out = ddim_sample_x0(stage, stage.schedule, z.to(dev), num_steps, prediction_type=stage.prediction_type,
                         cond=(noisy.to(dev), level.to(dev)), clip=2.0 if cfg.residual else 1.0).cpu()
    return (upsample(low.cpu(), cfg.axis) + out).clamp(-1, 1) if cfg.residual else out


def generate(stages: dict[str, VideoStage], colours: torch.Tensor, *, num_steps: int,
             guidance: list[float] | None = None, aug_level: int = 1, seed: int = 0) -> dict[str, torch.Tensor]:
    """``{"base": b 4 3 8 8, "tsr": b 8 3 8 8, "ssr": b 8 3 16 16}``: clips for colour labels
    through the whole cascade, each stage conditioned on the one before."""
    out = {"base": sample_base(stages["base"], colours, num_steps=num_steps, guidance=guidance, seed=seed)}
    out["tsr"] = super_resolve(stages["tsr"], out["base"], num_steps=num_steps, aug_level=aug_level, seed=seed + 1)
    out["ssr"] = super_resolve(stages["ssr"], out["tsr"], num_steps=num_steps, aug_level=aug_level, seed=seed + 2)
    return out
