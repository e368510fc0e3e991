"""The moving-shapes world's clip evaluator: features for an FVD-style Fréchet distance.

FVD (Unterthiner et al. 2019, survey §10.1) is eq. 1 on the features of I3D, a 3D ConvNet trained
to recognise human actions in Kinetics videos. As with FID (:mod:`genlib.metrics.evaluator`), the
book replaces the pretrained network by a small one trained on its own world's ground truth, one
that must read *time*. For every frame and every cell of an ``8 x 8``-pixel grid it says the colour,
the shape and the direction of motion of the object centred there (or that none is). Colour and
shape can be read from one frame; the direction cannot, so the features must carry motion.

Architecture: three :class:`~genlib.nn.video.Conv2Plus1d` layers (a spatial conv on each frame,
then a temporal conv at each pixel, a SiLU in between; each halves the frame side), each followed by
GroupNorm and SiLU; one linear head shared by every cell and frame. The features (the "pool3" of
this evaluator) are the mean and the maximum of every channel of the last map over ``t h w``. Clips
are ``b t 3 h w`` in [-1, 1], the data's layout.

Also here: the damage a clip metric must notice and a per-frame image metric cannot (frames
shuffled in time, frames frozen), and the per-frame features that show the difference.
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from .. import config, train, zoo
from ..data import moving, shapes
from ..data.render import COLOURS, SHAPES
from ..nn.video import CHANNELS_FIRST, Conv2Plus1d
from . import evaluator as image_evaluator

# Per cell of the final feature map and per frame: 0 = no object centred there, else 1 + the index.
HEADS = {"colour": len(COLOURS) + 1, "shape": len(SHAPES) + 1, "direction": len(moving.DIRECTIONS) + 1}
DOWNSAMPLE = 8  # the trunk halves the frame side three times: one cell of the map is 8 x 8 pixels


@dataclasses.dataclass(frozen=True)
class ClipEvaluatorConfig:
    """Size of the clip evaluator and how it is trained (all part of its cache key)."""

    size: int = 32  # frame side
    frames: int = 8
    width: int = 16  # channels of the first layer; then 2x and 4x (the features have 8x this many)
    steps: int = 400
    batch_size: int = 32
    lr: float = 6e-3
    seed: int = 0

    @classmethod
    def preset(cls, size: int = 32, frames: int = 8) -> "ClipEvaluatorConfig":
        """The preset of the active profile (``ci`` only proves the code path). Every step draws fresh
        clips on the CPU (about 1 ms a clip at 32 x 32 x 8), which bounds the ``gpu`` preset."""
        return config.pick(
            ci=cls(size=size, frames=frames, width=4, steps=40, batch_size=16),
            cpu=cls(size=size, frames=frames, width=12, steps=400, batch_size=32),
            gpu=cls(size=size, frames=frames, width=24, steps=1000, batch_size=64),  # drawing clips is the cost
        )


def _block(c_in: int, c_out: int) -> list[nn.Module]:
    return [Conv2Plus1d(c_in, c_out, stride=2, mid_activation=True, layout=CHANNELS_FIRST),
            nn.GroupNorm(min(8, c_out // 4), c_out), nn.SiLU()]


class ClipEvaluator(nn.Module):
    """Reads clips ``b t 3 h w`` in [-1, 1] (``t = config.frames``, ``h = w = config.size``)."""

    def __init__(self, cfg: ClipEvaluatorConfig):
        super().__init__()
        if cfg.size not in shapes.SIZES:
            raise ValueError(f"size must be one of {shapes.SIZES}, got {cfg.size}")
        self.cfg = cfg
        w = cfg.width
        self.trunk = nn.Sequential(*_block(3, w), *_block(w, 2 * w), *_block(2 * w, 4 * w))
        self.head = nn.Linear(4 * w, sum(HEADS.values()))  # the same for every cell and frame

    def _check(self, clips: torch.Tensor) -> None:
        t, s = self.cfg.frames, self.cfg.size
        if clips.ndim != 5 or tuple(clips.shape[1:]) != (t, 3, s, s):
            raise ValueError(f"the clip evaluator reads clips 'b t c h w' = (b, {t}, 3, {s}, {s}) in [-1, 1], "
                             f"got shape {tuple(clips.shape)}")

    def maps(self, clips: torch.Tensor) -> torch.Tensor:
        """``b t 3 h w -> b c t h' w'``: the trunk's feature maps, ``h' = h / 8``."""
        self._check(clips)
        return self.trunk(rearrange(clips, "b t c h w -> b c t h w"))

    def features(self, clips: torch.Tensor) -> torch.Tensor:
        """``b t 3 h w -> b (2 c)``: the mean and the maximum of every channel over the clip's
        frames and cells (as I3D pools before its classifier); what the Fréchet distance compares."""
        maps = self.maps(clips)
        return torch.cat([maps.mean(dim=(2, 3, 4)), maps.amax(dim=(2, 3, 4))], dim=1)

    def forward(self, clips: torch.Tensor) -> dict[str, torch.Tensor]:
        """Logits per frame and cell: ``{"colour": b 7 t h' w', "shape": b 5 t h' w', "direction": b 5 t h' w'}``."""
        logits = rearrange(self.head(rearrange(self.maps(clips), "b c t h w -> b t h w c")), "b t h w k -> b k t h w")
        return dict(zip(HEADS, logits.split(list(HEADS.values()), dim=1)))

    @torch.no_grad()
    def predict(self, clips: torch.Tensor) -> dict[str, torch.Tensor]:
        """Labels ``b t h' w'`` per head: 0 where the colour head sees no object, else 1 + the most
        likely non-empty class of each head (an object always has a shape and a direction)."""
        logits = self(clips)
        occupied = logits["colour"].argmax(1) > 0
        return {name: torch.where(occupied, lg[:, 1:].argmax(1) + 1, torch.zeros_like(occupied, dtype=torch.long))
                for name, lg in logits.items()}


def clip_targets(batch: moving.MovingBatch) -> dict[str, torch.Tensor]:
    """Labels ``b t h' w'`` per head: at every frame, the cell of the ``8 x 8``-pixel grid that holds
    an object's centre gets 1 + its colour, shape and direction in that frame; other cells 0."""
    b, t, size = batch.videos.shape[0], batch.videos.shape[1], batch.videos.shape[-1]
    side = size // DOWNSAMPLE
    present = batch.attrs["present"][:, None].expand(b, t, -1)  # b t k
    cell = (batch.attrs["centers"] * side).long().clamp(0, side - 1)  # b t k (x, y)
    ib, it, ik = present.nonzero(as_tuple=True)
    labels = {"colour": batch.attrs["colour"][ib, ik], "shape": batch.attrs["shape"][ib, ik],
              "direction": batch.attrs["direction"][ib, it, ik]}
    out = {}
    for name, value in labels.items():
        out[name] = torch.zeros(b, t, side, side, dtype=torch.long)
        out[name][ib, it, cell[ib, it, ik, 1], cell[ib, it, ik, 0]] = value + 1
    return out


def _loss(model: ClipEvaluator, batch) -> tuple[torch.Tensor, dict]:
    clips, targets = batch
    logits = model(clips)
    terms = {name: F.cross_entropy(logits[name], targets[name]) for name in HEADS}
    return sum(terms.values()), terms


def _batch(cfg: ClipEvaluatorConfig, step: int):
    """Training batch ``step``: fresh clips, drawn deterministically from the seed and the step."""
    batch = moving.sample(cfg.batch_size, cfg.frames, cfg.size, seed=train.step_seed(cfg.seed, step))
    return batch.videos, clip_targets(batch)


def train_clip_evaluator(model: ClipEvaluator) -> dict:
    """Train on fresh clips at every step, then measure accuracy on unseen ones."""
    cfg = model.cfg
    history = train.fit(model, _loss, lambda step: _batch(cfg, step), cfg.steps, lr=cfg.lr,
                        warmup=min(100, cfg.steps // 10), desc="clip evaluator")
    test = moving.sample(config.pick(ci=128, cpu=1000, gpu=4000), cfg.frames, cfg.size, seed=cfg.seed + 2_000_003)
    return {"history": history.to_dict(), "accuracy": clip_accuracy(model, test)}


def load_clip_evaluator(cfg: ClipEvaluatorConfig | None = None) -> ClipEvaluator:
    """The trained clip evaluator of the profile (or of ``cfg``): from the model cache, or trained
    now. ``.info`` holds its training history and held-out accuracy, ``.from_cache`` says whether
    the weights were loaded."""
    cfg = cfg or ClipEvaluatorConfig.preset()
    return zoo.get_or_train("clip-evaluator", ClipEvaluator, train_clip_evaluator, cfg).annotated()


@torch.no_grad()
def clip_features(evaluator: ClipEvaluator, clips: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """Features of many clips (batched, no gradient): ``n t 3 h w -> n features``."""
    evaluator.eval()
    return image_evaluator.batched(evaluator.features, clips, batch_size)


@torch.no_grad()
def clip_accuracy(evaluator: ClipEvaluator, batch: moving.MovingBatch) -> dict[str, float]:
    """How often the evaluator reads each attribute right, over the (frame, cell) pairs that hold
    an object's centre; ``empty``: over the pairs that hold none, how often it says so."""
    evaluator.eval()
    pred, truth = image_evaluator.batched(evaluator.predict, batch.videos), clip_targets(batch)
    occupied = truth["colour"] > 0
    out = {name: (pred[name] == truth[name])[occupied].float().mean().item() for name in HEADS}
    out["empty"] = (pred["colour"] == 0)[~occupied].float().mean().item()
    return out


@torch.no_grad()
def frame_features(evaluator: image_evaluator.ShapesEvaluator, clips: torch.Tensor) -> torch.Tensor:
    """Image-evaluator features of every frame, for a per-frame (FID-style) distance:
    ``b t 3 h w -> (b t) features``. A set of clips becomes the set of its frames; order is lost."""
    if clips.ndim != 5:
        raise ValueError(f"frame_features expects clips of layout b t c h w, got shape {tuple(clips.shape)}")
    return image_evaluator.features(evaluator, rearrange(clips, "b t c h w -> (b t) c h w"))


# ----------------------------------------------------------------------------- damage in time


def _check_clips(clips: torch.Tensor, fn: str) -> None:
    if clips.ndim != 5:
        raise ValueError(f"{fn} expects clips of layout b t c h w, got shape {tuple(clips.shape)}")


def shuffle_frames(clips: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """Each clip's frames in a random order of its own: the same frames, time scrambled."""
    _check_clips(clips, "shuffle_frames")
    g = torch.Generator().manual_seed(seed)
    order = torch.stack([torch.randperm(clips.shape[1], generator=g) for _ in range(clips.shape[0])])
    return clips[torch.arange(clips.shape[0])[:, None], order]


def freeze_frames(clips: torch.Tensor) -> torch.Tensor:
    """Every frame replaced by the clip's first: real pictures, no motion."""
    _check_clips(clips, "freeze_frames")
    return clips[:, :1].expand_as(clips).clone()


def per_frame(fn, clips: torch.Tensor, *args, **kwargs) -> torch.Tensor:
    """Apply an image function ``b c h w -> b c h w`` (e.g. from :mod:`genlib.data.degrade`) to
    every frame of ``b t c h w`` clips."""
    _check_clips(clips, "per_frame")
    out = fn(rearrange(clips, "b t c h w -> (b t) c h w"), *args, **kwargs)
    return rearrange(out, "(b t) c h w -> b t c h w", t=clips.shape[1])
