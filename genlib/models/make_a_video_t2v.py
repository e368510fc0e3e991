"""Make-A-Video's text-to-video at toy scale (Singer et al. 2022; survey §14.1-14.5).

Make-A-Video learns what words look like from image-caption pairs only, and learns motion from
clips without any text. At toy scale the "text" is one word, a colour, and the pieces are:

* :class:`ColourDDPMConfig`, :func:`load_colour_ddpm` -- the text-to-image model (``D`` with the
  prior ``P`` folded in): a DDPM whose U-Net takes a colour label (``UNetConfig.num_classes``),
  trained on single frames of the moving-shapes world, each labelled with the colour of its first
  object. The label is replaced by the null label (``num_classes``) with probability ``p_uncond``,
  so the same network gives the unconditional prediction classifier-free guidance needs.
* :func:`sample_clips` -- clips from an inflated model (:func:`genlib.models.make_a_video.inflate`)
  with classifier-free guidance towards a colour label, or unconditional with the null label.
* :func:`colour_share` -- the share of a clip's frames that show a given palette colour, read by
  :func:`genlib.metrics.colours.colours_seen` (by hue).

The temporal layers are trained by :func:`genlib.models.make_a_video.finetune_temporal` with no
label at all (the null label), as Make-A-Video trains on unlabelled video. Clips are ``b t c h w``.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools

import torch
import torch.nn.functional as F
from einops import rearrange, repeat

from genlib import config, train, zoo
from genlib.data import moving
from genlib.data.render import COLOURS
from genlib.diffusion import NoiseSchedule, ddim_sample, diffusion_loss
from genlib.diffusion.guidance import drop_condition
from genlib.metrics.colours import colours_seen
from genlib.models import ddpm
from genlib.nn.video import FRAMES_FIRST, check_video


@dataclasses.dataclass(frozen=True, kw_only=True)
class ColourDDPMConfig(ddpm.DDPMConfig):
    """A colour-conditional image DDPM: :class:`~genlib.models.ddpm.DDPMConfig` (the U-Net has one
    label per palette colour, plus the null label) and the probability ``p_uncond`` of training a
    sample with the null label instead of its colour."""

    p_uncond: float = 0.2

    def __post_init__(self):
        super().__post_init__()
        if self.unet.num_classes != len(COLOURS):
            raise ValueError(f"the colour DDPM's U-Net needs num_classes={len(COLOURS)} (one per palette colour), "
                             f"got {self.unet.num_classes}")
        if not 0 < self.p_uncond < 1:
            raise ValueError(f"p_uncond must lie in (0, 1) (both predictions are needed), got {self.p_uncond}")

    @classmethod
    def preset(cls, **overrides) -> "ColourDDPMConfig":
        """The profile's shapes DDPM (:meth:`DDPMConfig.preset`, ``v_prediction``) with a colour label."""
        base = ddpm.DDPMConfig.preset("shapes", "linear", prediction_type="v_prediction")
        fields = {f.name: getattr(base, f.name) for f in dataclasses.fields(base)}
        fields["unet"] = dataclasses.replace(base.unet, num_classes=len(COLOURS))
        return cls(**{**fields, **overrides})


def labelled_frames(cfg: ColourDDPMConfig, step: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Training batch ``step``: ``(b c h w frames, b colour labels)``, single moving-shapes frames
    (one to two objects), each with the colour of its first object, the caption reduced to one word."""
    clips = moving.sample(cfg.batch_size, frames=1, size=cfg.image_size, seed=train.step_seed(cfg.seed, step))
    return clips.videos[:, 0], clips.attrs["colour"][:, 0]


def _labelled_stream(cfg: ColourDDPMConfig):
    return (labelled_frames(cfg, step) for step in itertools.count())


def train_colour_ddpm(model: ddpm.DDPM) -> dict:
    """Algorithm 2 with a label: the loss of eq. 14 on ``(x0, colour)``, the colour dropped to the
    null label with probability ``p_uncond`` (classifier-free guidance training)."""
    cfg = model.cfg

    def loss(m, batch):
        x0, colour = batch
        cond = drop_condition(colour, cfg.unet.num_classes, cfg.p_uncond)
        return diffusion_loss(m, m.schedule, x0, prediction_type=cfg.prediction_type, cond=cond)

    stream = train.prefetched(functools.partial(_labelled_stream, cfg))  # a worker draws them on a GPU
    history = train.fit(model, loss, lambda step: next(stream), cfg.steps, lr=cfg.lr, warmup=cfg.warmup,
                        ema_decay=cfg.ema_decay, grad_clip=1.0, seed=cfg.seed, desc="colour DDPM")
    return {"history": history.to_dict()}


def load_colour_ddpm(cfg: ColourDDPMConfig | None = None, **overrides) -> ddpm.DDPM:
    """The trained colour-conditional DDPM of the profile: from the model cache, or trained now."""
    cfg = cfg or ColourDDPMConfig.preset(**overrides)
    return zoo.get_or_train("mav-colour-ddpm", ddpm.DDPM, train_colour_ddpm, cfg).annotated()


# ----------------------------------------------------------------------------- sampling


@torch.no_grad()
def sample_clips(model: torch.nn.Module, schedule: NoiseSchedule, noise: torch.Tensor, *, num_steps: int,
                 prediction_type: str, labels: torch.Tensor | None = None, guidance_scale: float = 1.0) -> torch.Tensor:
    """Clips ``b t c h w`` (on the CPU) from a video model, by deterministic DDIM from ``noise``.

    ``labels`` (``b`` colour indices) conditions every frame of clip ``i`` on colour ``labels[i]``,
    guided with ``guidance_scale`` (genlib's convention: ``pred_u + s (pred_c - pred_u)``, ``s = 1``
    the conditional model alone); ``None`` samples with the null label, unconditionally.
    """
    check_video(noise, "sample_clips", layout=FRAMES_FIRST)
    cond = uncond = None
    if labels is not None:
        if labels.shape != noise.shape[:1]:
            raise ValueError(f"need one colour label per clip ({noise.shape[0]}), got shape {tuple(labels.shape)}")
        cond = labels.long().to(config.module_device(model))
        uncond = torch.full_like(cond, model.cfg.num_classes) if guidance_scale != 1 else None  # the null label
    out = ddim_sample(model, schedule, num_steps=num_steps, prediction_type=prediction_type, x_T=noise,
                      cond=cond, uncond=uncond, guidance_scale=guidance_scale, clip_sample=1.0)
    return out.sample.cpu()


# ----------------------------------------------------------------------------- reading colours



def colour_share(clips: torch.Tensor, colours: torch.Tensor, **kw) -> torch.Tensor:
    """Per clip, the share of its frames that show colour ``colours[i]`` (``b t c h w``, ``b`` -> ``b``)."""
    check_video(clips, "colour_share", layout=FRAMES_FIRST)
    b, t = clips.shape[:2]
    if colours.shape != (b,):
        raise ValueError(f"need one colour per clip ({b}), got shape {tuple(colours.shape)}")
    seen = colours_seen(rearrange(clips, "b t c h w -> (b t) c h w"), **kw)  # (b t) k
    asked = repeat(colours.long().cpu(), "b -> (b t) 1", t=t)
    return rearrange(seen.gather(1, asked).float(), "(b t) 1 -> b t", b=b).mean(1)


def colours_in(batch: moving.MovingBatch) -> torch.Tensor:
    """The ground truth :func:`colours_seen` should read: which palette colours each clip of a
    moving-shapes batch holds, ``b k`` bool (objects keep their colour in every frame)."""
    colour, present = batch.attrs["colour"], batch.attrs["present"]
    return F.one_hot(colour.clamp(min=0), len(COLOURS)).mul(present[..., None]).amax(1).bool()
