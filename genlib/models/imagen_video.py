"""Imagen Video (Ho et al. 2022; survey §13): the cascade, and the toy experiments of chapter 13.

* :class:`Stage`, :data:`IMAGEN_VIDEO`, :func:`cascade`, :func:`stage_table` -- the seven-model
  cascade of Fig. 70 (base, temporal and spatial super-resolution), computed from a base clip and
  a list of upsampling steps.
* :func:`oscillating_guidance` -- Imagen Video's per-step guidance weights.
* :func:`palette_fit`, :func:`colour_report` -- colours read against the world's palette: how
  much of a clip has the colour asked for, and how much guidance shifted off the palette.
* :class:`GuidanceConditioned` -- a denoiser that also takes the guidance weight ``w`` (Meng et
  al.'s student), built around any network with a ``time_embed`` module (genlib's U-Net, DiT).
* :func:`denoiser_config`, :func:`load_denoiser` -- the same shapes DDPM trained to predict
  ``epsilon`` or ``v_prediction`` at equal budget, with its implied-x0 error measured at checkpoints
  during training (the convergence curve of Fig. 72).
* :class:`DistillConfig`, :func:`load_students` -- progressive distillation of the v model
  (:mod:`genlib.diffusion.distillation`), one cached student per halving (Fig. 74).
"""

from __future__ import annotations

import dataclasses
import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from genlib import config, train, zoo
from genlib.data import shapes
from genlib.data.render import COLOURS, PALETTE
from genlib.diffusion import NoiseSchedule
from genlib.diffusion.distillation import distil_once, student_grid
from genlib.diffusion.parameterisation import to_x0_eps
from genlib.metrics import colours as colours_metric
from genlib.models.ddpm import DDPM, DDPMConfig, data_batches
from genlib.nn.embeddings import TimestepEmbedding

# ----------------------------------------------------------------------------- the cascade (§13.1)


@dataclasses.dataclass(frozen=True)
class Stage:
    """One model of a cascade: what it outputs, and how it mixes frames."""

    name: str
    frames: int
    fps: float
    height: int
    width: int
    params: float | None = None      # parameters, as published (None: not stated)
    temporal: str = "convolution"    # how it mixes frames: attention | convolution
    spatial_attention: bool | None = None  # None: not stated

    @property
    def seconds(self) -> float:
        return self.frames / self.fps


def cascade(base: Stage, steps: list[tuple[str, int]], names_params: list[tuple[float | None, str, bool | None]] | None = None
            ) -> list[Stage]:
    """The stages of a cascade from its ``base`` clip and ``steps`` of ``("time" | "space", factor)``:
    a temporal SR multiplies frames and fps (the clip keeps its length), a spatial SR height and
    width. ``names_params`` optionally gives each SR stage's ``(params, temporal, spatial_attention)``."""
    out = [base]
    counts = {"time": 0, "space": 0}
    for i, (axis, factor) in enumerate(steps):
        if axis not in counts or not (isinstance(factor, int) and factor >= 2):
            raise ValueError(f"each step is ('time' | 'space', integer factor >= 2), got {(axis, factor)!r}")
        prev = out[-1]
        counts[axis] += 1
        params, temporal, spatial = names_params[i] if names_params else (None, "convolution", None)
        if axis == "time":
            nxt = Stage(f"TSR {counts['time']}", prev.frames * factor, prev.fps * factor, prev.height, prev.width,
                        params, temporal, spatial)
        else:
            nxt = Stage(f"SSR {counts['space']}", prev.frames, prev.fps, prev.height * factor, prev.width * factor,
                        params, temporal, spatial)
        out.append(nxt)
    return out


# Fig. 70 (Imagen Video's Fig. 2): 16 frames of 40x24 at 3 fps, up to 128 frames of 1280x768 at 24 fps
IMAGEN_VIDEO_BASE = Stage("base", 16, 3, 24, 40, 5.6e9, "attention", True)
IMAGEN_VIDEO_STEPS = [("time", 2), ("space", 2), ("space", 4), ("time", 2), ("time", 2), ("space", 4)]
IMAGEN_VIDEO_SR = [(1.7e9, "convolution", None), (1.4e9, "convolution", True), (1.2e9, "convolution", True),
                   (780e6, "convolution", None), (630e6, "convolution", None), (340e6, "convolution", False)]
IMAGEN_VIDEO = cascade(IMAGEN_VIDEO_BASE, IMAGEN_VIDEO_STEPS, IMAGEN_VIDEO_SR)

STAGE_COLUMNS = ["stage", "frames", "fps", "seconds", "height x width", "upsamples", "parameters",
                 "temporal mixing", "spatial attention", "frame pairs per pixel"]


def stage_table(stages: list[Stage]) -> list[list]:
    """One row per stage (columns :data:`STAGE_COLUMNS`). "frame pairs per pixel" is what temporal
    attention costs per position: ``frames^2`` (a temporal convolution of width k costs ``k frames``)."""
    rows = []
    for prev, st in zip([None, *stages], stages):
        if prev is None:
            what = "(generates)"
        elif st.frames != prev.frames:
            what = f"time x{st.frames // prev.frames}"
        else:
            what = f"space x{st.height // prev.height}"
        params = "-" if st.params is None else (f"{st.params / 1e9:.1f}B" if st.params >= 1e9 else f"{st.params / 1e6:.0f}M")
        attn = {None: "not stated", True: "yes", False: "no"}[st.spatial_attention]
        rows.append([st.name, st.frames, st.fps, round(st.seconds, 2), f"{st.height} x {st.width}", what, params,
                     st.temporal, attn, st.frames ** 2])
    return rows


# ----------------------------------------------------------------------------- guidance (§13.1, §13.4)


def oscillating_guidance(num_steps: int, high: float, low: float, oscillating_steps: int | None = None) -> list[float]:
    """Imagen Video's oscillating guidance weights ("oscillate(15, 1)"): ``high`` at the first step,
    then alternating low, high, ... for ``oscillating_steps`` steps (default: all), then ``low``.
    The weights are Imagen's ``w`` (guidance scale ``1 + w`` in genlib's convention)."""
    if num_steps < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps}")
    k = num_steps if oscillating_steps is None else oscillating_steps
    if not 0 <= k <= num_steps:
        raise ValueError(f"oscillating_steps must lie in [0, num_steps={num_steps}], got {oscillating_steps}")
    return [(high if i % 2 == 0 else low) if i < k else low for i in range(num_steps)]


# Reading colours against the palette. The worlds draw flat palette colours on black, antialiased,
# so every real pixel lies on a segment from black to one palette colour: p = a c_k, 0 <= a <= 1.
PALETTE_RGB = torch.tensor([PALETTE[c] for c in COLOURS])  # k 3, in [0, 1]


def palette_fit(clips: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """For every pixel of ``clips: ... 3 h w`` in [-1, 1]: the palette colour whose segment from
    black is nearest, and the distance to it (RGB in [0, 1]), both ``... h w``. (Which colour a
    pixel *shows* is :mod:`genlib.metrics.colours`' reading, by hue; this is how far it is from
    being a palette colour at all.) Guidance that
    pushes a colour past its palette value (over-saturated, or shifted in hue) moves it off every
    segment; a real pixel is on one (distance 0 up to rounding and the rare edge shared by two
    objects)."""
    if clips.ndim < 3 or clips.shape[-3] != 3:
        raise ValueError(f"palette_fit reads RGB pixels ... 3 h w, got {tuple(clips.shape)}")
    p = ((clips.float().cpu() + 1) / 2).movedim(-3, -1)[..., None, :]  # ... h w 1 3
    c = PALETTE_RGB  # k 3
    a = ((p * c).sum(-1) / (c * c).sum(-1)).clamp(0, 1)  # ... h w k: the nearest point a c_k
    dist = (p - a[..., None] * c).norm(dim=-1)
    d, k = dist.min(-1)
    return k, d


def colour_report(clips: torch.Tensor, colours: torch.Tensor, *, lit: float = 0.3, tol: float = 0.1
                  ) -> dict[str, torch.Tensor]:
    """Per clip (``clips: b t 3 h w``, asked ``colours: b``), over its *lit* pixels (brightest
    channel above ``lit`` in [0, 1]; the background is black):

    * ``share`` -- the share that :func:`genlib.metrics.colours.colour_votes` reads as the colour
      asked for (nearest in hue; alignment);
    * ``off_palette`` -- the share farther than ``tol`` from every palette segment (colour shift);
    * ``saturation`` -- the mean HSV saturation ``(max - min) / max`` (the palette's is 0.70-0.88);
    * ``drift`` -- how far each frame's mean hue (the unit RGB direction of its lit pixels) is from
      the clip's, averaged over frames: colours that shift across frames, as in Fig. 75.

    Each is a ``b`` tensor (NaN for a clip with no lit pixel)."""
    if clips.ndim != 5 or colours.shape != clips.shape[:1]:
        raise ValueError(f"colour_report reads clips b t 3 h w and one colour per clip, got {tuple(clips.shape)} "
                         f"and {tuple(colours.shape)}")
    rgb = ((clips.float().cpu() + 1) / 2).clamp(0, 1).movedim(2, -1)  # b t h w 3
    hi, lo = rgb.amax(-1), rgb.amin(-1)
    on = (hi > lit).float()  # b t h w
    _, d = palette_fit(clips)
    n = on.sum((1, 2, 3))
    votes = colours_metric.colour_votes(rearrange(clips, "b t c h w -> (b t) c h w"), lit)  # (b t) k
    votes = rearrange(votes, "(b t) k -> b t k", b=clips.shape[0]).sum(1)  # b k

    def mean(x):  # over the lit pixels of each clip
        return (x * on).sum((1, 2, 3)) / n

    hue = F.normalize(rgb, dim=-1) * on[..., None]  # b t h w 3: the colour's direction, not its brightness
    frame_n = on.sum((2, 3))[..., None]  # b t 1
    frame_hue = hue.sum((2, 3)) / frame_n.clamp(min=1)  # b t 3
    clip_hue = hue.sum((1, 2, 3))[:, None] / frame_n.sum(1, keepdim=True)  # b 1 3
    has = frame_n[..., 0] > 0
    drift = ((frame_hue - clip_hue).norm(dim=-1) * has).sum(1) / has.sum(1)
    return {"share": votes.gather(1, colours.long().cpu()[:, None])[:, 0] / n,
            "off_palette": mean((d > tol).float()),
            "saturation": mean((hi - lo) / hi.clamp(min=1e-6)), "drift": drift}


class GuidanceConditioned(nn.Module):
    """``forward(x_t, t, cond, w)``: a denoiser that also reads the guidance weight ``w: b``.

    ``w`` gets a sinusoidal embedding and an MLP like the timestep's, added to the wrapped
    network's time embedding (a forward hook on ``net.time_embed``), as Meng et al. condition their
    student. The MLP's last layer starts at zero, so at initialisation the student *is* the
    wrapped (conditional) network, whatever ``w`` is.
    """

    def __init__(self, net: nn.Module, w_scale: float = 100.0):
        super().__init__()
        if not isinstance(getattr(net, "time_embed", None), TimestepEmbedding):
            raise ValueError("GuidanceConditioned wraps a network with a TimestepEmbedding named time_embed (UNet, DiT)")
        self.net, self.w_scale = net, w_scale
        out = net.time_embed.mlp[-1].out_features
        self.w_embed = TimestepEmbedding(net.time_embed.dim, out)
        nn.init.zeros_(self.w_embed.mlp[-1].weight)
        nn.init.zeros_(self.w_embed.mlp[-1].bias)

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, cond=None, w: torch.Tensor | None = None) -> torch.Tensor:
        if w is None:
            raise ValueError("GuidanceConditioned needs the guidance weight w (layout b)")
        w = torch.as_tensor(w, dtype=torch.float32, device=x_t.device)
        w = w.expand(x_t.shape[0]) if w.ndim == 0 else w
        if w.shape != (x_t.shape[0],):
            raise ValueError(f"w must have layout b = ({x_t.shape[0]},), got {tuple(w.shape)}")
        w_emb = self.w_embed(w * self.w_scale)
        handle = self.net.time_embed.register_forward_hook(lambda module, args, out: out + w_emb.to(out.dtype))
        try:
            return self.net(x_t, t, cond)
        finally:
            handle.remove()


# ----------------------------------------------------------------------------- eps vs v (§13.3, Fig. 72)


def denoiser_config(prediction_type: str, **overrides) -> DDPMConfig:
    """The shapes DDPM both parameterisations share: cosine schedule, ``T = 1024`` (so the step
    grids of progressive distillation nest), the profile's U-Net, a chapter-sized budget."""
    budget = config.pick(ci=dict(steps=30), cpu=dict(steps=260), gpu=dict(steps=1000))
    return DDPMConfig.preset("shapes", "cosine", prediction_type=prediction_type, num_train_timesteps=1024,
                             **{**budget, **overrides})


@dataclasses.dataclass(frozen=True)
class ProbeConfig:
    """How training is watched: every ``steps / checkpoints`` steps, the implied x0 of a fixed
    held-out batch (``n`` scenes, fixed noise) is compared with the truth at the timesteps whose
    signal-to-noise ratio is nearest each of ``snrs``."""

    checkpoints: int = 4
    n: int = 128
    snrs: tuple[float, ...] = (10.0, 1.0, 0.1, 0.01)
    seed: int = 777

    @classmethod
    def preset(cls) -> "ProbeConfig":
        return config.pick(ci=cls(checkpoints=2, n=32), cpu=cls(checkpoints=6, n=128), gpu=cls(checkpoints=8, n=256))


def probe_timesteps(schedule: NoiseSchedule, snrs) -> list[int]:
    """The timestep whose SNR is nearest (in log) each of ``snrs``."""
    return [int((schedule.log_snr - math.log(s)).abs().argmin()) for s in snrs]


@torch.no_grad()
def x0_errors(model: nn.Module, schedule: NoiseSchedule, x0: torch.Tensor, eps: torch.Tensor, ts: list[int],
              prediction_type: str) -> list[float]:
    """Mean squared error of the clean image the model implies, ``x0^(x_t) - x0``, at each of ``ts``
    (no clipping): the quality of one denoising step, whatever the network predicts."""
    dev = config.module_device(model)
    out = []
    for t in ts:
        abar = schedule.alphas_cumprod[t].item()
        x_t = (abar ** 0.5 * x0 + (1 - abar) ** 0.5 * eps).to(dev)
        pred = model(x_t, torch.full((len(x0),), t, device=dev)).float()
        x0_hat = to_x0_eps(pred, x_t, abar, prediction_type)[0].cpu()
        out.append((x0_hat - x0).pow(2).mean().item())
    return out


def train_with_probe(model: DDPM, probe: ProbeConfig) -> dict:
    """Train like :func:`genlib.models.ddpm.train_ddpm` (same loss, data, optimiser, EMA), pausing
    ``probe.checkpoints`` times to measure :func:`x0_errors` with the averaged weights."""
    cfg = model.cfg
    held_out = shapes.sample(probe.n, size=cfg.image_size, seed=probe.seed).images
    eps = torch.randn(held_out.shape, generator=torch.Generator().manual_seed(probe.seed))
    ts = probe_timesteps(model.schedule, probe.snrs)
    batches = data_batches(cfg)
    config.seed_everything(cfg.seed)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.lr)
    ema = train.EMA(model, cfg.ema_decay) if cfg.ema_decay else None
    bounds = [round(cfg.steps * (i + 1) / probe.checkpoints) for i in range(probe.checkpoints)]
    loss, at, errors, done = [], [], [], 0
    for end in bounds:
        history = train.fit(model, lambda m, x0: m.loss(x0), lambda step, done=done: batches(step + done), end - done,
                            optimizer=opt, warmup=cfg.warmup if done == 0 else 0, ema=ema, grad_clip=1.0,
                            desc=f"DDPM {cfg.prediction_type} {done}-{end}")
        loss += history.loss
        done = end
        if ema is not None:
            with ema.apply(model):
                errors.append(x0_errors(model, model.schedule, held_out, eps, ts, cfg.prediction_type))
        else:
            errors.append(x0_errors(model, model.schedule, held_out, eps, ts, cfg.prediction_type))
        at.append(done)
    if ema is not None:
        ema.copy_to(model)
    return {"history": train.History(loss=loss).to_dict(), "checkpoints": at, "timesteps": ts,
            "snrs": list(probe.snrs), "x0_errors": errors}


def load_denoiser(prediction_type: str, cfg: DDPMConfig | None = None, probe: ProbeConfig | None = None) -> DDPM:
    """The shapes DDPM of :func:`denoiser_config` for ``prediction_type``, from the model cache or
    trained now; ``model.info`` holds its loss history and the probe's x0 errors per checkpoint."""
    cfg = cfg or denoiser_config(prediction_type)
    probe = probe or ProbeConfig.preset()
    if cfg.prediction_type != prediction_type:
        raise ValueError(f"cfg predicts {cfg.prediction_type!r}, asked for {prediction_type!r}")
    return zoo.get_or_train("imagen-video-denoiser", DDPM, lambda m: train_with_probe(m, probe), cfg,
                            extra=dataclasses.asdict(probe)).annotated()


# ----------------------------------------------------------------------------- distillation (§13.4, Fig. 74)


@dataclasses.dataclass(frozen=True)
class DistillConfig:
    """Progressive distillation of a teacher: its first DDIM step count, the halvings, and each
    round's budget. ``clip`` clips the teacher's x0 in its steps, as its sampler does."""

    start_steps: int = 16
    halvings: int = 3
    steps: int = 100
    batch_size: int = 32
    lr: float = 5e-4
    clip: float | None = 1.0
    seed: int = 1

    @classmethod
    def preset(cls, **overrides) -> "DistillConfig":
        budget = config.pick(ci=dict(start_steps=4, halvings=2, steps=4, batch_size=8),
                             cpu=dict(start_steps=16, halvings=3, steps=70, batch_size=24),
                             gpu=dict(start_steps=64, halvings=5, steps=200, batch_size=128))
        return cls(**{**budget, **overrides})

    @property
    def student_steps(self) -> list[int]:
        return [self.start_steps // 2 ** (k + 1) for k in range(self.halvings)]


def load_students(teacher: DDPM, dcfg: DistillConfig | None = None) -> dict[int, DDPM]:
    """``{N: student}`` for every halving of :class:`DistillConfig`: each from the model cache, or
    distilled now from the previous one (the first from ``teacher``). ``student.info`` holds the
    round's loss history."""
    dcfg = dcfg or DistillConfig.preset()
    for n in dcfg.student_steps:
        student_grid(teacher.cfg.num_train_timesteps, n)  # the grids must nest: fail before training
    cfg = dataclasses.replace(teacher.cfg, batch_size=dcfg.batch_size, seed=dcfg.seed)  # the students' data stream
    students, current = {}, teacher
    for n in dcfg.student_steps:
        def distil(student, current=current, n=n):
            student.load_state_dict(current.state_dict())                            # theta <- eta
            history = distil_once(student, current, current.schedule, data_batches(cfg), n, steps=dcfg.steps,
                                  lr=dcfg.lr, prediction_type=teacher.prediction_type, clip=dcfg.clip, seed=dcfg.seed)
            return {"history": history.to_dict()}

        extra = {"teacher": zoo.config_hash(teacher.cfg), **dataclasses.asdict(dcfg), "num_steps": n}
        current = zoo.get_or_train("imagen-video-student", DDPM, distil, teacher.cfg, extra=extra).annotated()
        students[n] = current                                                         # eta <- theta
    return students
