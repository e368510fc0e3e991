"""VQ-GAN's first stage (Esser et al. 2021, "Taming Transformers"; survey §6.1-6.2): a VQ-VAE
trained with a perceptual loss and a patch discriminator, so that a short code map decodes to a
sharp image.

The autoencoder is the VQ-VAE of chapter 04 (:class:`~genlib.models.vqvae.VQVAE`: encoder ``E``,
codebook ``Z``, decoder ``G``); the discriminator ``D`` is a
:class:`~genlib.nn.discriminator.PatchDiscriminator`. One training step::

    x_hat = G(z_q(E(x)))
    L_rec = |x - x_hat|_1 + w_p * d_perceptual(x, x_hat)            (the released code's choice;
                                                                    the survey writes ||x - x_hat||^2)
    L_VQ  = L_rec + ||sg[E(x)] - z_q||^2 + beta ||sg[z_q] - E(x)||^2      (§6.2, the VQ-VAE's eq. 8)
    L_GAN = -mean D(x_hat)                        (hinge, the generator's side; "vanilla": -log D)
    lambda = ||grad_{G_L} L_rec|| / (||grad_{G_L} L_GAN|| + delta)     (the paper's eq. 7; G_L is
                                                                    the decoder's last layer)
    E, G, Z descend  L_VQ + w_gan * lambda * L_GAN                    (Q*, the paper's eq. 5)
    D descends  mean relu(1 - D(x)) + mean relu(1 + D(x_hat))   (hinge; "vanilla": eq. 9's -V)

The adversarial terms switch on after ``disc_start`` steps, once reconstructions are roughly
right (the released code starts the discriminator late, too). The adaptive weight ``lambda``
scales the GAN gradient at the decoder's last layer to the size of the reconstruction gradient
there, so neither loss drowns the other whatever their raw scales.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Callable, Iterable

import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm.auto import tqdm

from genlib import config, train, zoo
from genlib.data import shapes
from genlib.models import gan
from genlib.models.vqvae import VQVAE, VQVAEConfig, VQVAEOutput
from genlib.nn.convnets import ConvNetConfig
from genlib.nn.discriminator import PatchDiscriminator
from genlib.nn.perceptual import FeatureMaps, perceptual_distance

GAN_LOSSES = ("hinge", "vanilla")
REC_LOSSES = ("l1", "l2")


@dataclasses.dataclass
class VQGANConfig:
    """The autoencoder (a :class:`VQVAEConfig`) and the patch discriminator's width and depth."""

    vq: VQVAEConfig = dataclasses.field(default_factory=VQVAEConfig)
    disc_width: int = 32
    disc_layers: int = 1

    def __post_init__(self):
        if isinstance(self.vq, dict):
            self.vq = VQVAEConfig(**self.vq)

    @classmethod
    def preset(cls) -> "VQGANConfig":
        """The active profile's first stage for 32x32 shapes scenes (8x8 code maps, ``f = 4``)."""
        net = config.pick(ci=dict(channels=(8, 16, 16), latent_channels=8),
                          cpu=dict(channels=(16, 32, 64), latent_channels=16),
                          gpu=dict(channels=(64, 128, 128), latent_channels=32))
        vq = VQVAEConfig(net=ConvNetConfig(in_channels=3, **net), num_codes=config.pick(ci=32, cpu=128, gpu=256),
                         ema=True, restart_dead=True, dead_after=config.pick(ci=10, cpu=20, gpu=50))
        return cls(vq=vq, disc_width=config.pick(ci=8, cpu=16, gpu=64), disc_layers=1)


@dataclasses.dataclass(frozen=True)
class VQGANTraining:
    """How the first stage trains. ``perceptual_weight = 0`` and ``gan_weight = 0`` with
    ``rec_loss="l2"`` give the plain VQ-VAE of chapter 04 (eq. 8), trained by the same loop."""

    steps: int = 1000
    batch_size: int = 32
    lr: float = 2e-3
    betas: tuple[float, float] = (0.5, 0.9)
    warmup: int = 50
    rec_loss: str = "l1"
    perceptual_weight: float = 1.0
    gan_weight: float = 0.1
    gan_loss: str = "hinge"
    disc_start: int = 300
    disc_lr: float = 2e-4
    adaptive: bool = True
    delta: float = 1e-6

    def __post_init__(self):
        if self.steps < 0 or self.batch_size < 1 or self.lr <= 0 or self.disc_lr <= 0 or self.warmup < 0:
            raise ValueError(f"VQGANTraining needs steps, warmup >= 0, batch_size >= 1, lr, disc_lr > 0; got {self}")
        if self.rec_loss not in REC_LOSSES or self.gan_loss not in GAN_LOSSES:
            raise ValueError(f"rec_loss must be one of {REC_LOSSES} and gan_loss one of {GAN_LOSSES}; got {self}")
        if self.perceptual_weight < 0 or self.gan_weight < 0 or self.delta <= 0:
            raise ValueError(f"weights must be >= 0 and delta > 0; got {self}")

    @classmethod
    def preset(cls, variant: str = "VQ-GAN (L1 + perceptual + patch GAN)", steps: int | None = None) -> "VQGANTraining":
        """The active profile's settings for one of :data:`VARIANTS` (the losses chapter 06
        compares), for ``steps`` steps (default: the profile's); warm-up and the discriminator's
        start follow the step count."""
        if variant not in VARIANTS:
            raise ValueError(f"unknown variant {variant!r}; expected one of {', '.join(VARIANTS)}")
        steps = config.pick(ci=30, cpu=400, gpu=2000) if steps is None else steps
        return cls(steps=steps, batch_size=config.pick(ci=16, cpu=32, gpu=128), warmup=steps // 20,
                   disc_start=steps * 2 // 5, **VARIANTS[variant])

    @property
    def uses_gan(self) -> bool:
        return self.gan_weight > 0 and self.disc_start < self.steps


def hinge_discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """The released code's D loss: ``mean relu(1 - D(x)) + mean relu(1 + D(x_hat))``. A patch
    already scored beyond the margin (real above +1, fake below -1) adds nothing."""
    return F.relu(1 - real_logits).mean() + F.relu(1 + fake_logits).mean()


def adaptive_weight(rec_loss: torch.Tensor, gan_loss: torch.Tensor, last_layer: torch.Tensor,
                    delta: float = 1e-6) -> torch.Tensor:
    """The paper's eq. 7: ``||grad L_rec|| / (||grad L_GAN|| + delta)``, gradients taken at
    ``last_layer`` (the decoder's last weight), detached and clamped to ``[0, 1e4]``."""
    g_rec = torch.autograd.grad(rec_loss, last_layer, retain_graph=True)[0]
    g_gan = torch.autograd.grad(gan_loss, last_layer, retain_graph=True)[0]
    return (g_rec.norm() / (g_gan.norm() + delta)).clamp(0, 1e4).detach()


class FirstStage(nn.Module):
    """An autoencoder trained with the VQ-GAN losses, and its discriminator. Subclasses say how
    they reconstruct and what regularises their latent (:meth:`reconstruct`): VQ-GAN's codebook
    losses here, the LDM autoencoder's small KL term in :mod:`genlib.models.kl_autoencoder`."""

    autoencoder: nn.Module
    discriminator: PatchDiscriminator

    def reconstruct(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """``x -> (x_hat, the latent's regulariser loss, its terms to record)``."""
        raise NotImplementedError

    @property
    def last_layer(self) -> torch.Tensor:
        """``G_L`` of eq. 7: the weight of the decoder's output convolution."""
        return self.autoencoder.decoder.conv_out.weight

    def autoencoder_loss(self, x: torch.Tensor, settings: VQGANTraining, perceptual: FeatureMaps | None,
                         with_gan: bool) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The loss the autoencoder descends (module doc), and its terms as detached scalars."""
        recon, reg, terms = self.reconstruct(x)
        pixel = F.l1_loss(recon, x) if settings.rec_loss == "l1" else F.mse_loss(recon, x)
        rec = pixel
        terms["pixel"] = pixel
        if settings.perceptual_weight > 0:
            if perceptual is None:
                raise ValueError("perceptual_weight > 0 needs a perceptual network's feature_maps")
            p = perceptual_distance(perceptual, recon, x).mean()
            rec = rec + settings.perceptual_weight * p
            terms["perceptual"] = p
        total = rec + reg
        if with_gan:
            logits = self.discriminator(recon)
            g_loss = -logits.mean() if settings.gan_loss == "hinge" else gan.generator_loss(logits, "non_saturating")
            lam = adaptive_weight(rec, g_loss, self.last_layer, settings.delta) if settings.adaptive else torch.ones(())
            total = total + settings.gan_weight * lam * g_loss
            terms.update(g_loss=g_loss, adaptive_lambda=lam)
        terms["recon"] = recon.detach()
        return total, terms

    def discriminator_loss(self, x: torch.Tensor, recon: torch.Tensor, settings: VQGANTraining) -> tuple[torch.Tensor, dict]:
        """D's loss on real images and (detached) reconstructions, and mean logits on each."""
        real, fake = self.discriminator(x), self.discriminator(recon.detach())
        loss = hinge_discriminator_loss(real, fake) if settings.gan_loss == "hinge" else gan.discriminator_loss(real, fake)
        return loss, {"d_loss": loss, "d_real": real.mean(), "d_fake": fake.mean()}


class VQGAN(FirstStage):
    """The first stage: ``autoencoder`` (a VQ-VAE) and ``discriminator`` (a patch discriminator)."""

    def __init__(self, cfg: VQGANConfig):
        super().__init__()
        self.cfg = cfg
        self.autoencoder = VQVAE(cfg.vq)
        self.discriminator = PatchDiscriminator(cfg.vq.net.in_channels, cfg.disc_width, cfg.disc_layers)

    def forward(self, x: torch.Tensor) -> VQVAEOutput:
        return self.autoencoder(x)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Images ``b c h w`` -> code indices ``b h' w'``."""
        return self.autoencoder.encode(x)

    def decode_indices(self, indices: torch.Tensor) -> torch.Tensor:
        """Code indices ``b h' w'`` -> images ``b c h w``."""
        return self.autoencoder.decode_indices(indices)

    def reconstruct(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """The VQ-VAE's reconstruction; the regulariser is eq. 8's codebook and commitment terms."""
        out = self.autoencoder(x)
        return out.recon, out.quant.loss, {"vq": out.quant.loss, "perplexity": out.quant.perplexity}


def train_vqgan(model: FirstStage, batches: Iterable | Callable[[int], torch.Tensor], settings: VQGANTraining, *,
                perceptual: FeatureMaps | None = None, seed: int = 0, device: str | torch.device | None = None,
                progress: bool | None = None, desc: str = "VQ-GAN") -> train.History:
    """Train ``model`` in place (module doc); returns a :class:`genlib.train.History` whose
    ``loss`` is the autoencoder's total and whose scalars hold every term (``g_loss``,
    ``adaptive_lambda``, ``d_loss``, ``d_real``, ``d_fake`` are ``None`` before ``disc_start``).
    ``perceptual`` is the frozen network's ``feature_maps`` (see :mod:`genlib.nn.perceptual`)."""
    dev = torch.device(device) if device is not None else config.device()
    config.seed_everything(seed)
    model.to(dev).train()
    ae, disc = model.autoencoder, model.discriminator
    opt = torch.optim.Adam(ae.parameters(), lr=settings.lr, betas=settings.betas)
    opt_d = torch.optim.Adam(disc.parameters(), lr=settings.disc_lr, betas=settings.betas)
    warm = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / max(1, settings.warmup)))
    source = train.batch_source(batches)
    history = train.History()
    show = train.show_progress() if progress is None else progress
    bar = tqdm(total=settings.steps, desc=desc, disable=not show)
    pending: list[tuple[torch.Tensor, dict]] = []
    start = time.perf_counter()
    try:
        for step in range(config.capped(settings.steps)):  # GENLIB_MAX_STEPS caps rehearsals
            x = train.to_device(source(step), dev)
            with_gan = settings.uses_gan and step >= settings.disc_start
            loss, terms = model.autoencoder_loss(x, settings, perceptual, with_gan)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            warm.step()
            recon = terms.pop("recon")
            if with_gan:  # then one step on D, on the same real batch and its reconstructions
                d_loss, d_terms = model.discriminator_loss(x, recon, settings)
                opt_d.zero_grad(set_to_none=True)
                d_loss.backward()
                opt_d.step()
                terms.update(d_terms)
            pending.append((loss.detach(), {k: v.detach() for k, v in terms.items()}))
            if len(pending) == 50 or step == settings.steps - 1:
                train.flush_pending(pending, history)
                bar.update(step + 1 - bar.n)
                bar.set_postfix(loss=f"{history.loss[-1]:.3f}")
    finally:
        bar.close()
        model.eval()
    history.seconds = time.perf_counter() - start
    return history


# ----------------------------------------------------------------------------- chapter 06's first stages, by profile

VARIANTS = {  # the first-stage recipes chapter 06 compares, same networks and budget
    "VQ-VAE (L2)": dict(rec_loss="l2", perceptual_weight=0.0, gan_weight=0.0),
    "L1 + perceptual": dict(rec_loss="l1", perceptual_weight=1.0, gan_weight=0.0),
    "VQ-GAN (L1 + perceptual + patch GAN)": dict(rec_loss="l1", perceptual_weight=1.0, gan_weight=0.1),
}
_CACHE_NAMES = dict(zip(VARIANTS, ("ch06-vqvae-l2", "ch06-l1-perceptual", "ch06-vqgan")))


def shapes_training_batch() -> shapes.ShapesBatch:
    """The scenes every chapter-06 first stage (and chapter 08's LDM) trains on: 32x32, seed 1,
    with their captions."""
    return shapes.sample(config.pick(ci=500, cpu=6000, gpu=40000), size=32, seed=1)


def shapes_training_images() -> torch.Tensor:
    """The images of :func:`shapes_training_batch` (``n 3 32 32``)."""
    return shapes_training_batch().images


def load_shapes_vqgan(variant: str, perceptual: nn.Module, seed: int = 0) -> VQGAN:
    """A first stage of :data:`VARIANTS` trained on :func:`shapes_training_images`, from the model
    cache or trained now. ``perceptual`` is a frozen network with ``feature_maps`` and a ``cfg``
    (the shapes evaluator); its config is part of the cache key. ``model.info`` holds the history."""
    cfg, settings = VQGANConfig.preset(), VQGANTraining.preset(variant)
    images = shapes_training_images()

    def fit(model: VQGAN) -> dict:
        batch = train.random_batches(images, settings.batch_size, seed=seed)
        return train_vqgan(model, batch, settings, perceptual=perceptual.feature_maps, seed=seed,
                           desc=f"first stage: {variant}").to_dict()

    extra = {"training": dataclasses.asdict(settings), "perceptual": zoo.to_json(perceptual.cfg), "data": len(images)}
    return zoo.get_or_train(_CACHE_NAMES[variant], VQGAN, fit, cfg, extra=extra, seed=seed).annotated()
