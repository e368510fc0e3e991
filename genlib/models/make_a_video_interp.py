"""Make-A-Video's frame interpolation network ``up_F`` (survey §14.4), trained at toy scale.

``up_F`` raises the frame rate: it is given a clip in which only some frames are known (the others
zeroed) together with a binary mask channel saying which, and the frame rate, and fills in the
rest (:func:`genlib.models.make_a_video.interpolation_input` builds that input). Here:

* :class:`InterpConfig`, :class:`FrameInterpolator`, :func:`load_interpolator` -- a small inflated
  U-Net (pseudo-3D layers, :func:`~genlib.models.make_a_video.inflate`) that reads the masked clip
  and the mask, ``b t (c+1) h w``, takes the known frames' rate (fps) where a diffusion U-Net takes
  its timestep (the same sinusoidal embedding and MLP), and predicts the missing frames. It is
  trained on moving-shapes clips with the mean squared error on the missing frames. Make-A-Video's
  ``up_F`` is a diffusion model fine-tuned from ``D^t``; this one predicts the frames directly, the
  estimate a squared error rewards (see the chapter's note).
* :func:`blend_frames` -- the baseline without learning: each missing frame a linear blend of its
  two nearest known neighbours (or a copy of the nearest known frame).

Clips are ``b t c h w``; ``known`` is a ``t`` bool mask shared by the batch.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools

import torch
from torch import nn

from genlib import config, train, zoo
from genlib.data import moving
from genlib.models.make_a_video import inflate, interpolation_input
from genlib.nn.unet import UNet, UNetConfig
from genlib.nn.video import FRAMES_FIRST, check_video


def known_frames(frames: int, skip: int) -> torch.Tensor:
    """``t`` bool: every ``skip``-th frame is known (the low-frame-rate clip), starting at frame 0."""
    if frames < 2 or skip < 1:
        raise ValueError(f"need frames >= 2 and skip >= 1, got frames={frames}, skip={skip}")
    return torch.arange(frames) % skip == 0


@dataclasses.dataclass(frozen=True, kw_only=True)
class InterpConfig(train.Budget):
    """``up_F`` at toy scale and its training: clips of ``frames`` frames at ``size`` pixels, in which
    every ``skip``-th frame is known, for each ``skip`` in ``skips`` (one per step, in turn); the full
    clip plays at ``base_fps``, so the known frames' rate is ``base_fps / skip``."""

    frames: int = 9
    size: int = 16
    skips: tuple[int, ...] = (2, 4)
    base_fps: float = 8.0
    base_channels: int = 16
    channel_mult: tuple[int, ...] = (1, 2)
    steps: int = 300
    batch_size: int = 8
    lr: float = 2e-3
    warmup: int = 20

    def __post_init__(self):
        super().__post_init__()
        object.__setattr__(self, "skips", tuple(self.skips))
        object.__setattr__(self, "channel_mult", tuple(self.channel_mult))
        if not self.skips or min(self.skips) < 2 or any((self.frames - 1) % s for s in self.skips):
            raise ValueError(f"every skip must be >= 2 and divide frames - 1 = {self.frames - 1}, so the last frame "
                             f"is known and every missing frame lies between two known ones; got {self.skips}")

    @property
    def unet(self) -> UNetConfig:
        """The U-Net before inflation: the masked clip and the mask in (4 channels), RGB out."""
        return UNetConfig(in_channels=4, out_channels=3, image_size=self.size, base_channels=self.base_channels,
                          channel_mult=self.channel_mult, attention_resolutions=(), groups=4, num_heads=2)

    def fps(self, skip: int) -> float:
        """The frame rate of the known frames when every ``skip``-th one is given."""
        return self.base_fps / skip

    @classmethod
    def preset(cls, **overrides) -> "InterpConfig":
        """``ci`` proves the code path; ``cpu`` trains a few hundred steps of a ~0.2M-parameter net."""
        budget = config.pick(ci=dict(steps=10, batch_size=2, base_channels=8),
                             cpu=dict(steps=300, batch_size=8),
                             gpu=dict(steps=1500, batch_size=32, base_channels=32))
        return cls(**{**budget, **overrides})


class FrameInterpolator(nn.Module):
    """``forward(clips: b t c h w, known: t, fps: b or float) -> b t c h w``: the known frames of
    ``clips`` copied, the others predicted from the masked input alone (the missing frames of
    ``clips`` are zeroed before the network sees them)."""

    def __init__(self, cfg: InterpConfig):
        super().__init__()
        self.cfg = cfg
        self.net = inflate(UNet(cfg.unet))  # pseudo-3D layers; every weight is trained

    def forward(self, clips: torch.Tensor, known: torch.Tensor, fps: float | torch.Tensor) -> torch.Tensor:
        check_video(clips, "FrameInterpolator", 3, FRAMES_FIRST)
        inp, fps = interpolation_input(clips, known, fps)  # b t (c+1) h w: masked frames and the mask
        pred = self.net(inp, fps)  # the fps enters where a diffusion U-Net's timestep does
        keep = known.to(clips.device)[None, :, None, None, None]
        return torch.where(keep, clips, pred)


def interpolation_loss(model: FrameInterpolator, clips: torch.Tensor, skip: int) -> torch.Tensor:
    """Mean squared error of the predicted frames on the missing ones (every ``skip``-th is known)."""
    known = known_frames(clips.shape[1], skip)
    out = model(clips, known, model.cfg.fps(skip))
    return (out - clips)[:, ~known.to(clips.device)].pow(2).mean()


def interpolation_batch(cfg: InterpConfig, step: int) -> tuple[torch.Tensor, int]:
    """Training batch ``step``: fresh moving-shapes clips ``b t c h w`` and the skip, which cycles
    through ``cfg.skips``."""
    clips = moving.sample(cfg.batch_size, frames=cfg.frames, size=cfg.size, seed=train.step_seed(cfg.seed, step))
    return clips.videos, cfg.skips[step % len(cfg.skips)]


def _batch_stream(cfg: InterpConfig):
    return (interpolation_batch(cfg, step) for step in itertools.count())


def train_interpolator(model: FrameInterpolator) -> dict:
    """Minimise :func:`interpolation_loss` on fresh clips every step (drawn by a worker on a GPU)."""
    cfg = model.cfg
    stream = train.prefetched(functools.partial(_batch_stream, cfg))
    history = train.fit(model, lambda m, b: interpolation_loss(m, b[0], b[1]), lambda step: next(stream), cfg.steps,
                        lr=cfg.lr, warmup=cfg.warmup, grad_clip=1.0, seed=cfg.seed, desc="frame interpolation")
    return {"history": history.to_dict()}


def load_interpolator(cfg: InterpConfig | None = None, **overrides) -> FrameInterpolator:
    """The trained ``up_F`` of the profile (or of ``cfg``): from the model cache, or trained now."""
    cfg = cfg or InterpConfig.preset(**overrides)
    return zoo.get_or_train("mav-interpolator", FrameInterpolator, train_interpolator, cfg).annotated()


def blend_frames(clips: torch.Tensor, known: torch.Tensor, blend: bool = True) -> torch.Tensor:
    """Fill the frames not in ``known`` without learning: a linear blend of the nearest known frame
    on each side, ``((b - f) x_a + (f - a) x_b) / (b - a)`` for known frames ``a < f < b``, or
    (``blend=False``, or no known frame on one side) a copy of the nearest known frame."""
    check_video(clips, "blend_frames", layout=FRAMES_FIRST)
    frames = torch.arange(clips.shape[1])
    if known.shape != frames.shape or known.dtype != torch.bool or not known.any():
        raise ValueError(f"known must be a bool mask of t={len(frames)} frames with at least one True, got {known}")
    given = frames[known]
    out = clips.clone()
    for f in frames[~known].tolist():
        left, right = given[given < f], given[given > f]
        if blend and len(left) and len(right):
            a, b = left[-1].item(), right[0].item()
            out[:, f] = ((b - f) * clips[:, a] + (f - a) * clips[:, b]) / (b - a)
        else:
            out[:, f] = clips[:, given[(given - f).abs().argmin()].item()]
    return out


@torch.no_grad()
def fill_in(model: FrameInterpolator, clips: torch.Tensor, skip: int, fps: float | None = None) -> torch.Tensor:
    """``up_F``'s clips for ``clips: b t c h w`` (on the CPU, back on the CPU, clipped to [-1, 1]):
    every ``skip``-th frame known, told the rate ``fps`` (default the true one, ``cfg.fps(skip)``)."""
    dev = config.module_device(model)
    known = known_frames(clips.shape[1], skip)
    rate = model.cfg.fps(skip) if fps is None else fps
    return model(clips.to(dev), known, rate).clamp(-1, 1).cpu()
