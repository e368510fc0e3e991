"""A classifier of noisy latents, and classifier guidance with it (Dhariwal & Nichol 2021; survey §8.5).

Classifier guidance steers an *unconditional* diffusion model with the gradient of a separately
trained classifier ``p_phi(y | x_t)``. The classifier must read noisy inputs at every noise level
the sampler visits, so it is trained on ``x_t`` drawn by the forward process, with ``t`` as an input::

    x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps,     loss = cross-entropy(p_phi(. | x_t, t), y)

Here ``x0`` is a scaled latent of chapter 08's LDM and ``y`` is which colours a scene holds: one
logit per colour of the shapes palette, each a yes/no (``p(colour c present | z_t)`` is the
sigmoid of logit ``c``), since a scene may hold several colours. Sampling then uses
:func:`genlib.diffusion.guidance.classifier_guided_eps` at every step (:class:`ClassifierGuided`).
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import nn

from genlib import config, train, zoo
from genlib.data.render import COLOURS
from genlib.data.shapes import ShapesBatch
from genlib.diffusion import NoiseSchedule, q_sample
from genlib.diffusion.guidance import classifier_guided_eps
from genlib.models import ldm, vqgan
from genlib.nn.embeddings import TimestepEmbedding, batch_timesteps
from genlib.nn.resblock import GroupNormSiLU, ResBlock


@dataclasses.dataclass(frozen=True, kw_only=True)
class NoisyClassifierConfig(train.Budget):
    """A small time-conditioned classifier of ``in_channels x size x size`` inputs into
    ``num_classes`` yes/no labels; its budget (steps, batch, lr, seed) from :class:`~genlib.train.Budget`."""

    in_channels: int = 4
    size: int = 8
    num_classes: int = len(COLOURS)
    width: int = 32
    groups: int = 8
    steps: int = 600
    batch_size: int = 64
    lr: float = 2e-3

    def __post_init__(self):
        super().__post_init__()
        if self.in_channels < 1 or self.num_classes < 1 or self.size < 2 or self.size % 2:
            raise ValueError(f"NoisyClassifierConfig needs in_channels, num_classes >= 1 and an even size >= 2, got {self}")
        if self.width % self.groups:
            raise ValueError(f"width {self.width} must be a multiple of groups {self.groups}")

    @classmethod
    def preset(cls, **overrides) -> "NoisyClassifierConfig":
        """The active profile's classifier; keywords override any field."""
        sizes = config.pick(ci=dict(width=8, groups=4, steps=20, batch_size=32, warmup=5),
                            cpu=dict(width=32, steps=600, batch_size=64),
                            gpu=dict(width=64, steps=3000, batch_size=256))
        return cls(**{**sizes, **overrides})


class NoisyClassifier(nn.Module):
    """``forward(x_t: b c h w, t: b) -> b num_classes`` logits: two residual levels that see the
    timestep (as the U-Net's blocks do), then a global average and a linear head."""

    def __init__(self, cfg: NoisyClassifierConfig):
        super().__init__()
        self.cfg = cfg
        w, emb = cfg.width, 4 * cfg.width
        self.time = TimestepEmbedding(w, emb)
        self.conv_in = nn.Conv2d(cfg.in_channels, w, 3, padding=1)
        self.block1 = ResBlock(w, w, emb, groups=cfg.groups)
        self.down = nn.Conv2d(w, 2 * w, 3, stride=2, padding=1)
        self.block2 = ResBlock(2 * w, 2 * w, emb, groups=cfg.groups)
        self.out = nn.Sequential(GroupNormSiLU(cfg.groups, 2 * w), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                 nn.Linear(2 * w, cfg.num_classes))

    def forward(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        c = self.cfg
        if x_t.ndim != 4 or tuple(x_t.shape[1:]) != (c.in_channels, c.size, c.size):
            raise ValueError(f"NoisyClassifier expects x_t of layout b c h w = (b, {c.in_channels}, {c.size}, "
                             f"{c.size}), got {tuple(x_t.shape)}")
        emb = self.time(batch_timesteps(t, len(x_t), x_t.device, "NoisyClassifier"))
        h = self.block1(self.conv_in(x_t), emb)
        return self.out(self.block2(self.down(h), emb))

    def log_prob(self, x_t: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """``log p_phi(colour y present | x_t)`` per sample (``b``), for labels ``y: b`` (int64)."""
        if y.ndim != 1 or y.dtype != torch.long or len(y) != len(x_t):
            raise ValueError(f"y must be one int64 label per sample (layout b = {len(x_t)}), got "
                             f"{tuple(y.shape)} {y.dtype}")
        return F.logsigmoid(self(x_t, t).gather(1, y[:, None].to(x_t.device))[:, 0])


def colours_present(batch: ShapesBatch) -> torch.Tensor:
    """``b num_colours`` (float 0/1): which palette colours each scene holds, from its ground truth."""
    cells = batch.attrs["cell_colour"]  # b 9: 0 empty, else 1 + colour
    return F.one_hot(cells, len(COLOURS) + 1)[..., 1:].amax(1).float()


def train_noisy_classifier(model: NoisyClassifier, z0: torch.Tensor, labels: torch.Tensor,
                           schedule: NoiseSchedule) -> dict:
    """Train in place on scaled latents ``z0: n c h w`` noised to uniformly drawn timesteps, with
    yes/no targets ``labels: n num_classes``; returns the history."""
    cfg = model.cfg
    if len(z0) != len(labels) or labels.shape[1:] != (cfg.num_classes,):
        raise ValueError(f"need one target row of {cfg.num_classes} yes/no labels per latent, got "
                         f"{tuple(z0.shape)} and {tuple(labels.shape)}")

    def noisy(batch, generator):
        z, y = batch
        t = torch.randint(len(schedule), (len(z),), generator=generator)
        return q_sample(schedule, z, t, torch.randn(z.shape, generator=generator)), t, y

    batches = train.random_batches((z0, labels), cfg.batch_size, seed=cfg.seed, transform=noisy)
    history = train.fit(model, lambda m, b: F.binary_cross_entropy_with_logits(m(b[0], b[1]), b[2]), batches,
                        cfg.steps, lr=cfg.lr, warmup=cfg.warmup, seed=cfg.seed, desc="noisy colour classifier")
    return {"history": history.to_dict()}


def load_shapes_colour_classifier(first_stage: nn.Module, denoiser: nn.Module,
                                  cfg: NoisyClassifierConfig | None = None) -> NoisyClassifier:
    """The colour classifier of the noisy latents chapter 08's LDM (``denoiser``) samples: trained
    on the LDM's training scenes, encoded by ``first_stage`` and scaled by ``denoiser.scale``, noised
    with ``denoiser.schedule``; from the model cache (keyed by all three) or trained now."""
    scenes = vqgan.shapes_training_batch()
    scale = denoiser.scale.item()
    z0 = ldm.encode_images(first_stage, scenes.images) * scale
    cfg = cfg or NoisyClassifierConfig.preset(in_channels=z0.shape[1], size=z0.shape[-1])
    schedule = denoiser.schedule
    extra = {"first_stage_weights": zoo.weights_digest(first_stage), "latent_scale": scale,
             "schedule": [schedule.kind, len(schedule)], "data": len(scenes)}
    return zoo.get_or_train("noisy-colour-classifier", NoisyClassifier,
                            lambda m: train_noisy_classifier(m, z0, colours_present(scenes), schedule), cfg,
                            extra=extra).annotated()


class ClassifierGuided(nn.Module):
    """An eps-network for the sampler: ``forward(x_t, t, y) = eps_u - scale sqrt(1 - abar_t) grad log p(y | x_t)``.

    ``eps_model(x_t, t, uncond)`` is the unconditional prediction (e.g. an LDM given the empty
    caption's states), ``classifier.log_prob(x_t, t, y)`` the noisy classifier. The gradient is
    taken even inside the sampler's ``no_grad``.
    """

    def __init__(self, eps_model: nn.Module, classifier: NoisyClassifier, schedule: NoiseSchedule,
                 uncond: torch.Tensor, scale: float):
        super().__init__()
        if getattr(eps_model, "prediction_type", "epsilon") != "epsilon":
            raise ValueError(f"classifier guidance here adds to a noise prediction; the model predicts "
                             f"{eps_model.prediction_type!r}, not 'epsilon'")
        self.eps_model, self.classifier, self.schedule, self.scale = eps_model, classifier, schedule, float(scale)
        self.register_buffer("uncond", uncond)

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        eps = self.eps_model(x_t, t, self.uncond.expand(len(x_t), *self.uncond.shape[1:]))
        if self.scale == 0:
            return eps
        with torch.enable_grad():
            x = x_t.detach().requires_grad_(True)
            grad, = torch.autograd.grad(self.classifier.log_prob(x, t, y).sum(), x)
        abar = self.schedule.alphas_cumprod.to(x_t.device)[t.long()]
        return classifier_guided_eps(eps, grad.to(eps.dtype), abar, self.scale)
