"""DDPM (Ho et al. 2020; survey §7): a U-Net trained with Algorithm 2, sampled with Algorithm 5 or DDIM.

The whole API, used by chapter 07 and Appendix D:

* :class:`DDPMConfig` -- world, image size, schedule, prediction type, U-Net size and training
  budget; ``DDPMConfig.preset(world, schedule_kind)`` picks the active profile's values.
* :func:`load_ddpm` -- the trained model from the cache (:mod:`genlib.zoo`), or trained now.
* :func:`train_ddpm` -- the training loop (used by ``load_ddpm``; call it to train by hand).
* :func:`sample` -- images from a trained model with the DDPM or DDIM sampler.
* :class:`PointDenoiser` / :func:`load_toy_ddpm` -- a small MLP denoiser for 2-D toy data, whose
  sample paths can be drawn (chapter 07's trajectory view).

A :class:`DDPM` is an ``nn.Module`` whose ``forward(x_t, t)`` is the U-Net's prediction; it carries
its :class:`~genlib.diffusion.NoiseSchedule` as ``model.schedule`` and its training loss history
in ``model.info["history"]``.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import torch
from torch import nn

from genlib import config, train, zoo
from genlib.data import digits, shapes, toy2d
from genlib.diffusion import NoiseSchedule, ddim_sample, ddpm_sample, diffusion_loss
from genlib.diffusion.training import DiffusionTraining
from genlib.nn.embeddings import TimestepEmbedding, check_timesteps
from genlib.nn.unet import UNet, UNetConfig

WORLDS = ("shapes", "digits")


def check_denoiser_config(cfg, net, who: str) -> None:
    """The checks every pixel-space diffusion config adds to :class:`DiffusionTraining`'s
    (:class:`DDPMConfig`, the DiT's): a known world, and a network ``net`` (with ``in_channels`` and
    ``image_size``) that reads the world's images at ``cfg.image_size``."""
    if cfg.world not in WORLDS:
        raise ValueError(f"unknown world {cfg.world!r}; expected one of {', '.join(WORLDS)}")
    channels = 3 if cfg.world == "shapes" else 1
    if net.in_channels != channels or net.image_size != cfg.image_size:
        raise ValueError(f"{who} must read {channels}-channel {cfg.image_size}x{cfg.image_size} images "
                         f"for world={cfg.world!r}, got in_channels={net.in_channels}, image_size={net.image_size}")


@dataclasses.dataclass(frozen=True, kw_only=True)
class DDPMConfig(DiffusionTraining):
    """Everything that fixes a trained DDPM (all of it is part of the model-cache key): the world,
    the image size and the U-Net, on top of the schedule, prediction type and budget every
    diffusion config shares (:class:`~genlib.diffusion.training.DiffusionTraining`)."""

    world: str = "shapes"            # shapes (3 channels) | digits (1 channel)
    image_size: int = 16
    unet: UNetConfig = dataclasses.field(default_factory=UNetConfig)

    def __post_init__(self):
        super().__post_init__()
        check_denoiser_config(self, self.unet, "the U-Net")

    @classmethod
    def preset(cls, world: str = "shapes", schedule_kind: str = "linear", **overrides) -> "DDPMConfig":
        """The active profile's DDPM for ``world``: ``ci`` proves the code path; ``cpu`` trains pixel
        diffusion at 16x16 (a 0.6M U-Net, about a minute per model on two cores); ``gpu`` trains a
        4.4M U-Net at 32x32 (shapes) in bf16. Keywords override any field (``steps=...``)."""
        size = config.pick(ci=16, cpu=16, gpu=32 if world == "shapes" else 16)
        channels = 3 if world == "shapes" else 1
        unet = config.pick(
            ci=dict(base_channels=16, channel_mult=(1, 2), attention_resolutions=()),
            cpu=dict(base_channels=24, channel_mult=(1, 2, 2), attention_resolutions=()),
            gpu=dict(base_channels=64, channel_mult=(1, 2, 2), attention_resolutions=(8,)),
        )
        budget = config.pick(
            ci=dict(steps=30, batch_size=8, warmup=5, ema_decay=None),
            cpu=dict(steps=800 if world == "shapes" else 400, batch_size=32, lr=2e-3, warmup=50, ema_decay=0.995),
            gpu=dict(steps=1500 if world == "shapes" else 1000, batch_size=128, warmup=100, ema_decay=0.999),
        )
        unet_cfg = UNetConfig(in_channels=channels, image_size=size, **unet)
        return cls(world=world, image_size=size, schedule=schedule_kind, unet=unet_cfg, **{**budget, **overrides})


class DDPM(nn.Module):
    """A U-Net noise predictor with its schedule: ``forward(x_t: b c h w, t: b) -> b c h w``."""

    def __init__(self, cfg: DDPMConfig):
        super().__init__()
        self.cfg = cfg
        self.unet = UNet(cfg.unet)
        self.schedule = NoiseSchedule(cfg.schedule, cfg.num_train_timesteps)
        self.info: dict = {}

    @property
    def prediction_type(self) -> str:
        return self.cfg.prediction_type

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, cond: Any = None) -> torch.Tensor:
        return self.unet(x_t, check_timesteps(t, "DDPM", len(self.schedule)), cond)

    def loss(self, x0: torch.Tensor) -> torch.Tensor:
        """Algorithm 2 on a batch ``x0: b c h w``: the simple loss, eq. 14."""
        return diffusion_loss(self, self.schedule, x0, prediction_type=self.cfg.prediction_type)


def data_batches(cfg: DDPMConfig):
    """A callable ``step -> b c h w`` batch of training images from the config's world."""
    if cfg.world == "shapes":
        # On a GPU a worker process draws the batches while the step runs (the same batches either way).
        stream = train.prefetched(functools.partial(shapes.image_stream, cfg.batch_size, size=cfg.image_size, seed=cfg.seed))
        return lambda step: next(stream)
    images, _ = digits.load(cfg.image_size, "train", seed=cfg.seed)
    return train.random_batches(images, cfg.batch_size, seed=cfg.seed)


def train_ddpm(model: DDPM) -> dict:
    """Train ``model`` in place with Algorithm 2 for ``cfg.steps`` steps; returns ``{"history": ...}``."""
    cfg = model.cfg
    history = train.fit(model, lambda m, x0: m.loss(x0), data_batches(cfg), cfg.steps, lr=cfg.lr,
                        warmup=cfg.warmup, ema_decay=cfg.ema_decay, grad_clip=1.0, seed=cfg.seed,
                        desc=f"DDPM {cfg.world} {cfg.schedule}")
    return {"history": history.to_dict()}


def load_ddpm(world: str = "shapes", schedule_kind: str = "linear", cfg: DDPMConfig | None = None,
              **overrides) -> DDPM:
    """The trained DDPM for ``world`` and ``schedule_kind``: loaded from the model cache, or trained
    now (``cfg`` or ``DDPMConfig.preset(world, schedule_kind, **overrides)``). The model is in eval
    mode on :func:`genlib.config.device`; ``model.info`` holds the loss history and
    ``model.from_cache`` whether it was loaded."""
    cfg = cfg or DDPMConfig.preset(world, schedule_kind, **overrides)
    if cfg.world != world or cfg.schedule != schedule_kind:
        raise ValueError(f"cfg is for world={cfg.world!r}, schedule={cfg.schedule!r}; asked for {world!r}, {schedule_kind!r}")
    return zoo.get_or_train("ddpm", DDPM, train_ddpm, cfg).annotated()


def sample(model: nn.Module, n: int, *, sampler: str = "ddim", num_steps: int | None = None, eta: float = 0.0,
           variance: str = "fixed_small", schedule: NoiseSchedule | None = None, shape: tuple | None = None,
           clip_sample: float | None = 1.0, seed: int = 0, batch_size: int = 256, record: bool = False,
           amp: bool | str | None = None, **kw):
    """``n`` samples ``n c h w`` in [-1, 1] from a trained model (a :class:`DDPM` or :class:`PointDenoiser`).

    ``sampler="ddpm"`` is Algorithm 5 (``variance`` fixed_small / fixed_large, every timestep unless
    ``num_steps``); ``"ddim"`` runs ``num_steps`` (default 50) steps with ``eta``. x0 is clipped to
    ``[-clip_sample, clip_sample]`` (``None``: no clipping). Noise comes from a generator seeded with
    ``seed``; samples are drawn in batches of ``batch_size``. With ``record=True`` returns
    ``(samples, trajectory)`` (only for a single batch). On CUDA the network runs under autocast
    (``amp``: ``None``/``True`` bf16 where supported, ``"fp16"``, or ``False`` for float32, as in
    :func:`genlib.train.fit`); the sampler's own arithmetic stays float32. Extra keywords go to
    the sampler.
    """
    if sampler not in ("ddpm", "ddim"):
        raise ValueError(f"unknown sampler {sampler!r}; expected 'ddpm' or 'ddim'")
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if record and n > batch_size:
        raise ValueError(f"record=True keeps every step: draw at most batch_size={batch_size} samples")
    schedule = schedule or model.schedule
    if shape is None:
        cfg = model.cfg
        shape = (cfg.unet.in_channels, cfg.image_size, cfg.image_size) if isinstance(cfg, DDPMConfig) else (cfg.dim,)
    kw.setdefault("prediction_type", getattr(model, "prediction_type", "epsilon"))
    g = torch.Generator().manual_seed(seed)
    net = _autocast(model, amp)
    outs, traj = [], None
    was_training = model.training
    model.eval()
    try:
        for start in range(0, n, batch_size):
            b = min(batch_size, n - start)
            if sampler == "ddpm":
                out = ddpm_sample(net, schedule, (b, *shape), variance=variance, num_steps=num_steps,
                                  clip_sample=clip_sample, generator=g, record=record, **kw)
            else:
                steps = min(50, len(schedule)) if num_steps is None else num_steps
                out = ddim_sample(net, schedule, (b, *shape), num_steps=steps, eta=eta, clip_sample=clip_sample,
                                  generator=g, record=record, **kw)
            outs.append(out.sample.cpu())
            traj = out.trajectory
    finally:
        model.train(was_training)
    x = torch.cat(outs)
    return (x, traj) if record else x


class _Autocast(nn.Module):
    """``model`` under CUDA autocast, returning float32 (the sampler's arithmetic stays float32)."""

    def __init__(self, model: nn.Module, dtype: torch.dtype):
        super().__init__()
        self.model, self.dtype = model, dtype

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, *args) -> torch.Tensor:
        with torch.autocast("cuda", dtype=self.dtype):
            out = self.model(x_t, t, *args)
        return out.float()


def _autocast(model: nn.Module, amp: bool | str | None) -> nn.Module:
    dtype = train.autocast_dtype(amp, config.module_device(model))
    return model if dtype is None else _Autocast(model, dtype)


# ----------------------------------------------------------------------------- 2-D toy data


@dataclasses.dataclass(frozen=True)
class ToyConfig:
    """A denoiser for 2-D points (chapter 07's trajectory view)."""

    dataset: str = "ring"
    dim: int = 2
    hidden: int = 128
    schedule: str = "cosine"
    num_train_timesteps: int = 200
    steps: int = 2000
    batch_size: int = 256
    lr: float = 2e-3
    seed: int = 0

    @classmethod
    def preset(cls, dataset: str = "ring", **overrides) -> "ToyConfig":
        budget = config.pick(ci=dict(steps=100, hidden=64), cpu=dict(steps=2000), gpu=dict(steps=4000))
        return cls(dataset=dataset, **{**budget, **overrides})


class PointDenoiser(nn.Module):
    """``forward(x_t: b d, t: b) -> b d``: an MLP on the point and the sinusoidal embedding of t."""

    def __init__(self, cfg: ToyConfig):
        super().__init__()
        self.cfg = cfg
        self.schedule = NoiseSchedule(cfg.schedule, cfg.num_train_timesteps)
        self.time = TimestepEmbedding(32, cfg.hidden)
        self.inp = nn.Linear(cfg.dim, cfg.hidden)
        self.body = nn.Sequential(nn.SiLU(), nn.Linear(cfg.hidden, cfg.hidden), nn.SiLU(),
                                  nn.Linear(cfg.hidden, cfg.hidden), nn.SiLU(), nn.Linear(cfg.hidden, cfg.dim))
        self.info: dict = {}

    prediction_type = "epsilon"

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, cond: Any = None) -> torch.Tensor:
        if x_t.ndim != 2 or x_t.shape[1] != self.cfg.dim:
            raise ValueError(f"PointDenoiser expects x_t of layout b d with d={self.cfg.dim}, got {tuple(x_t.shape)}")
        return self.body(self.inp(x_t) + self.time(t))


def train_toy(model: PointDenoiser) -> dict:
    cfg = model.cfg
    data, _ = toy2d.sample(cfg.dataset, 20000, seed=cfg.seed)
    batch = train.random_batches(data, cfg.batch_size, seed=cfg.seed)
    history = train.fit(model, lambda m, x0: diffusion_loss(m, m.schedule, x0), batch, cfg.steps, lr=cfg.lr,
                        warmup=50, seed=cfg.seed, device="cpu", desc=f"toy DDPM {cfg.dataset}")
    return {"history": history.to_dict()}


def load_toy_ddpm(dataset: str = "ring", cfg: ToyConfig | None = None, **overrides) -> PointDenoiser:
    """The trained 2-D denoiser for a :mod:`genlib.data.toy2d` data set (cached; trains on the CPU)."""
    cfg = cfg or ToyConfig.preset(dataset, **overrides)
    return zoo.get_or_train("ddpm-toy", PointDenoiser, train_toy, cfg, device="cpu").annotated()
