"""Make-A-Video (Singer et al. 2022; survey §14): turn a trained image diffusion U-Net into a video one.

The pipeline of survey eq. 17 reads right to left::

    y_hat = SR_h o SR_l^t o up_F o D^t o P o (x_hat, C_x(x))

A text ``x`` is encoded by CLIP (``C_x``); the prior ``P`` maps the text embedding to an image
embedding; the spatio-temporal decoder ``D^t`` draws 16 frames; ``up_F`` interpolates frames;
``SR_l^t`` raises resolution across space and time; ``SR_h`` raises it frame by frame, with the
same noise for every frame. This module holds the parts a chapter can run on a laptop:

* :func:`inflate` -- the image U-Net ``D`` becomes ``D^t``: every 3x3 conv becomes a pseudo-3D conv
  (§14.3.2) whose temporal conv starts as the identity, and every attention block is followed by a
  temporal attention layer (§14.3.3) whose output projection starts at zero. At initialisation the
  inflated model *is* the image model applied frame by frame.
* :func:`refine_frames` and :func:`flicker` -- an image model that refines each frame of a clip on
  its own (``SR_h``'s situation), with independent or shared noise, and the frame-to-frame change.
* :class:`FinetuneConfig` and :func:`finetune_temporal` -- video training of the temporal layers
  only, with the image weights frozen (§14.5).
* :func:`interpolation_input` -- the masked input of the frame interpolation network ``up_F`` (§14.4).

Two more modules build on this one: :mod:`genlib.models.make_a_video_t2v` (the colour-conditional
image model, prompting the inflated model with classifier-free guidance, reading colours) and
:mod:`genlib.models.make_a_video_interp` (``up_F`` trained, and linear blending to compare it with).

Layouts: clips in and out of every function here are ``b t c h w``, as the data worlds give them;
image layers see ``(b t) c h w``, and the pseudo-3D layers turn frames into ``b c t h w`` inside.
"""

from __future__ import annotations

import copy
import dataclasses

import torch
from einops import rearrange, repeat
from torch import nn

from genlib import config, train
from genlib.data import moving
from genlib.diffusion import NoiseSchedule, Sampler, diffusion_loss, q_sample, sample
from genlib.diffusion.guidance import Threshold
from genlib.nn.attention import AttentionBlock2d
from genlib.nn.embeddings import batch_timesteps
from genlib.nn.unet import UNet
from genlib.nn.video import CHANNELS_FIRST, FRAMES_FIRST, TemporalAttention, check_video, from_frames, to_frames


class Pseudo3dConv(nn.Module):
    """Survey §14.3.2: ``Conv_P3D(h) = Conv_1D(Conv_2D(h) o T) o T`` on frames ``(b t) c h w``.

    ``spatial`` is the image model's trained ``nn.Conv2d``; the temporal ``Conv1d`` (kernel ``kt``)
    starts as the identity (a Dirac kernel, zero bias, Fig. 80 left). The layer sits where the image
    conv sat, so it reads and writes frames; ``frames`` (the ``t`` of the current clip) is set by
    :class:`InflatedUNet` before each call.
    """

    def __init__(self, spatial: nn.Conv2d, kernel_t: int = 3):
        super().__init__()
        self.spatial = spatial
        c = spatial.out_channels
        self.temporal = nn.Conv1d(c, c, kernel_t, padding=kernel_t // 2)
        nn.init.dirac_(self.temporal.weight)  # w[o, c, a] = 1 if o == c and a == kt // 2: the identity
        nn.init.zeros_(self.temporal.bias)
        self.frames = 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = from_frames(self.spatial(x), self.frames)  # Conv_2D on each frame: b c t h w
        b, c, t, h, w = y.shape
        y = self.temporal(rearrange(y, "b c t h w -> (b h w) c t"))  # o T, then Conv_1D along time
        return rearrange(y, "(b h w) c t -> (b t) c h w", b=b, h=h, w=w)  # o T back to frames


class Pseudo3dAttention(nn.Module):
    """Survey §14.3.3: ``ATTN_P3D(h) = unflatten(ATTN_1D(ATTN_2D(flatten(h)) o T) o T)``.

    ``spatial`` is the image model's trained :class:`AttentionBlock2d` (each frame attends within
    itself, ``(b t) (h w) c``); then a :class:`~genlib.nn.video.TemporalAttention` lets each pixel
    attend over the frames, ``(b h w) t c``. Its output projection starts at zero, so the residual
    layer starts as the identity (Fig. 80 right).
    """

    def __init__(self, spatial: AttentionBlock2d, heads: int = 4):
        super().__init__()
        self.spatial = spatial
        self.temporal = TemporalAttention(spatial.channels, heads, zero_init=True, layout=CHANNELS_FIRST)
        self.frames = 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = from_frames(self.spatial(x), self.frames)  # ATTN_2D per frame -> b c t h w
        return to_frames(self.temporal(y))  # ATTN_1D along t at each pixel, back to (b t) c h w


class InflatedUNet(nn.Module):
    """``forward(x: b t c h w, t: b, cond=None) -> b t c h w``: a video U-Net made from an image one.

    Clips come and go frames first, ``b t c h w``, the data worlds' layout and the only one it takes
    (a shape check cannot catch a ``b c t h w`` clip with as many frames as channels: pass clips as
    the worlds give them). The clip's frames run through the image U-Net's layers as a batch
    ``(b t) c h w`` (each frame gets its clip's timestep and label), with the pseudo-3D layers
    mixing frames in between.
    """

    def __init__(self, unet: UNet, kernel_t: int = 3, heads: int = 4):
        super().__init__()
        if unet.cfg.context_dim:
            raise ValueError("inflate supports unconditional and class-conditional U-Nets (no context_dim)")
        self.unet = copy.deepcopy(unet)
        self.cfg = unet.cfg
        _swap(self.unet, kernel_t, heads)
        self.to(config.module_device(unet))  # the new temporal layers join the image U-Net's device

    def pseudo3d_layers(self) -> list[nn.Module]:
        return [m for m in self.unet.modules() if isinstance(m, (Pseudo3dConv, Pseudo3dAttention))]

    def temporal_parameters(self) -> list[nn.Parameter]:
        """The new parameters (temporal convs and attention), the ones video fine-tuning trains."""
        return [p for m in self.pseudo3d_layers() for p in m.temporal.parameters()]

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        check_video(x, "InflatedUNet", self.cfg.in_channels, FRAMES_FIRST)
        b, frames = x.shape[:2]
        for m in self.pseudo3d_layers():
            m.frames = frames
        t = batch_timesteps(t, b, x.device, "InflatedUNet")
        t = repeat(t, "b -> (b f)", f=frames)
        cond = None if cond is None else repeat(cond.to(x.device), "b -> (b f)", f=frames)  # a label per frame
        out = self.unet(rearrange(x, "b t c h w -> (b t) c h w"), t, cond)  # frames as a batch of images
        return rearrange(out, "(b t) c h w -> b t c h w", t=frames)


def _swap(module: nn.Module, kernel_t: int, heads: int) -> None:
    """Replace, in place, every k x k conv (k > 1) by a :class:`Pseudo3dConv` and every attention
    block by a :class:`Pseudo3dAttention` (1x1 convs and linear layers see no neighbours: no change)."""
    for name, child in module.named_children():
        if isinstance(child, nn.Conv2d) and child.kernel_size[0] > 1:
            setattr(module, name, Pseudo3dConv(child, kernel_t))
        elif isinstance(child, AttentionBlock2d):
            setattr(module, name, Pseudo3dAttention(child, heads))
        else:
            _swap(child, kernel_t, heads)


def inflate(model: nn.Module, kernel_t: int = 3, heads: int = 4) -> InflatedUNet:
    """The video U-Net ``D^t`` made from an image U-Net (or a model holding one as ``.unet``)."""
    return InflatedUNet(getattr(model, "unet", model), kernel_t, heads)


# ----------------------------------------------------------------------------- shared noise (SR_h)


def flicker(clips: torch.Tensor) -> torch.Tensor:
    """Mean absolute change between consecutive frames of each clip ``b t c h w`` -> ``b``."""
    if clips.ndim != 5:
        raise ValueError(f"flicker expects clips b t c h w, got {tuple(clips.shape)}")
    return (clips[:, 1:] - clips[:, :-1]).abs().mean(dim=(1, 2, 3, 4))


@torch.no_grad()
def refine_frames(model: nn.Module, schedule: NoiseSchedule, clips: torch.Tensor, *, strength: float,
                  num_steps: int, shared_noise: bool, prediction_type: str, generator: torch.Generator | None,
                  noise: torch.Tensor | None = None) -> torch.Tensor:
    """Refine every frame of ``clips: b t c h w`` with an *image* model, each frame on its own.

    Each frame is noised to step ``t0 = strength * T`` (eq. 12) and denoised with deterministic DDIM
    (``num_steps`` steps from ``t0``), the way ``SR_h`` adds detail to each frame of a clip it never
    sees as a whole. ``shared_noise=True`` draws one noise image per clip and uses it for all its
    frames (Make-A-Video's choice, §14.3.1); ``False`` draws fresh noise for every frame. ``noise``
    (``b t c h w``, e.g. correlated across frames) is used instead of drawing any; ``shared_noise``
    and ``generator`` are then unused. The frames are denoised on the model's device and returned
    on ``clips``' device.
    """
    if clips.ndim != 5:
        raise ValueError(f"refine_frames expects clips b t c h w, got {tuple(clips.shape)}")
    dev = config.module_device(model) if isinstance(model, nn.Module) else clips.device
    b = clips.shape[0]
    if noise is None:
        shape = (b, 1, *clips.shape[2:]) if shared_noise else clips.shape
        noise = torch.randn(shape, generator=generator).to(clips.device).expand_as(clips)  # drawn on the CPU
    elif noise.shape != clips.shape:
        raise ValueError(f"refine_frames needs noise of the clips' shape {tuple(clips.shape)}, got {tuple(noise.shape)}")
    T = len(schedule)
    t0 = max(1, min(T, round(strength * T))) - 1
    z = q_sample(schedule, clips, t0, noise)  # q(x_t0 | x0), eq. 12
    z = rearrange(z, "b t c h w -> (b t) c h w").to(dev)  # frames are independent images
    sampler = Sampler(schedule, num_steps, spacing="trailing", start=t0, prediction_type=prediction_type,
                      threshold=Threshold.static(1.0))  # DDIM from t0, the one sampling loop
    z = sample(model, sampler, z).sample
    return rearrange(z, "(b t) c h w -> b t c h w", b=b).clamp(-1, 1).to(clips.device)


# ----------------------------------------------------------------------------- frame interpolation


def interpolation_input(clips: torch.Tensor, known: torch.Tensor, fps: float | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The input of the frame interpolation network ``up_F`` (§14.4) for ``clips: b t c h w``.

    ``known: t`` bool marks the frames the network is given (the low-fps frames); the others are
    zeroed and a binary mask channel says which is which, so the same network interpolates
    (known frames on a grid) or extrapolates (known frames at one end). Returns the ``b t (c+1) h w``
    input (the mask is the last channel) and the fps as a ``b`` tensor, embedded like a timestep by
    the network.
    """
    check_video(clips, "interpolation_input", layout=FRAMES_FIRST)
    b, t, c, h, w = clips.shape
    if known.shape != (t,) or known.dtype != torch.bool:
        raise ValueError(f"known must be a bool tensor of t={t} frames, got {known.dtype} {tuple(known.shape)}")
    mask = repeat(known.to(device=clips.device, dtype=clips.dtype), "t -> b t 1 h w", b=b, h=h, w=w)
    fps = torch.as_tensor(fps, dtype=clips.dtype, device=clips.device).expand(b)
    return torch.cat([clips * mask, mask], dim=2), fps


# ----------------------------------------------------------------------------- video fine-tuning


@dataclasses.dataclass(frozen=True, kw_only=True)
class FinetuneConfig(train.Budget):
    """Fine-tuning ``D^t`` on unlabelled clips: only the temporal layers learn (§14.5)."""

    frames: int = 8
    steps: int = 300
    batch_size: int = 8
    warmup: int = 20

    @classmethod
    def preset(cls, **overrides) -> "FinetuneConfig":
        """``ci`` proves the code path; ``cpu`` trains a few hundred steps (about a minute on one core)."""
        budget = config.pick(ci=dict(steps=10, batch_size=2, frames=4), cpu=dict(steps=250, batch_size=6),
                             gpu=dict(steps=2000, batch_size=32))
        return cls(**{**budget, **overrides})


def clip_batches(cfg: FinetuneConfig, size: int):
    """A callable ``step -> b t c h w`` batch of moving-shapes clips (fresh clips every step)."""
    return lambda step: moving.sample(cfg.batch_size, frames=cfg.frames, size=size,
                                      seed=train.step_seed(cfg.seed, step)).videos


def finetune_temporal(video: InflatedUNet, schedule: NoiseSchedule, cfg: FinetuneConfig, *,
                      prediction_type: str) -> train.History:
    """Train only ``video.temporal_parameters()`` with the diffusion loss (eq. 14) on clips; the
    image model's spatial weights stay frozen, as Make-A-Video keeps its image knowledge."""
    temporal = {id(p) for p in video.temporal_parameters()}
    for p in video.parameters():
        p.requires_grad_(id(p) in temporal)
    size = video.cfg.image_size
    return train.fit(video, lambda m, x0: diffusion_loss(m, schedule, x0, prediction_type=prediction_type),
                     clip_batches(cfg, size), cfg.steps, lr=cfg.lr, warmup=cfg.warmup, grad_clip=1.0,
                     seed=cfg.seed, desc="Make-A-Video temporal layers")
