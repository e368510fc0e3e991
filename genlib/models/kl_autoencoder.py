"""The latent-diffusion autoencoder (Rombach et al. 2022, "KL-reg"; survey §8.1): a convolutional
autoencoder whose latent ``z: b c h' w'`` stays continuous, kept near ``N(0, I)`` by a very small KL
penalty, and trained with VQ-GAN's losses (L1 + perceptual + patch GAN, eq. 7's adaptive weight;
:mod:`genlib.models.vqgan`).

    mean, logvar = E(x)                      b 2c h' w' -> two b c h' w' halves
    z = mean + exp(logvar / 2) * eps          (§3.1's reparameterisation, on a map)
    x_hat = G(z)
    loss = L_rec(x, x_hat) + kl_weight * KL(N(mean, sigma^2) || N(0, I)) + [adversarial term]

Where chapter 03's VAE weighs the KL term fully (and blurs), LDM uses a weight of about 1e-6: the
latent is barely pushed towards the prior, only enough that its scale cannot drift, so the diffusion
model that runs in it later sees values of a sensible size. Encoding for diffusion takes the mean
(:meth:`KLAutoencoder.encode`); sampling a latent is for training the autoencoder.
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn as nn

from genlib import config
from genlib.models.vae import kl_divergence, reparameterize
from genlib.models.vqgan import FirstStage
from genlib.nn.convnets import ConvNetConfig, Decoder, Encoder
from genlib.nn.discriminator import PatchDiscriminator

LOGVAR_RANGE = (-30.0, 20.0)  # as LDM clamps it: exp(logvar / 2) stays finite in float32


@dataclasses.dataclass
class KLAutoencoderConfig:
    """The conv stacks (``net.latent_channels`` latent channels, downsampling ``net.factor``), the
    KL weight, and the patch discriminator's width and depth."""

    net: ConvNetConfig = dataclasses.field(default_factory=lambda: ConvNetConfig(channels=(32, 64, 64), latent_channels=4))
    kl_weight: float = 1e-6
    disc_width: int = 32
    disc_layers: int = 1

    def __post_init__(self):
        if isinstance(self.net, dict):
            self.net = ConvNetConfig(**self.net)
        if self.kl_weight < 0:
            raise ValueError(f"kl_weight must be >= 0, got {self.kl_weight}")

    @classmethod
    def preset(cls) -> "KLAutoencoderConfig":
        """The active profile's KL autoencoder for 32x32 shapes scenes (``f = 4``: latents
        ``b 4 8 8``), chapter 08's first stage; it trains with chapter 06's VQ-GAN recipe."""
        net = config.pick(ci=dict(channels=(8, 16, 16)), cpu=dict(channels=(16, 32, 64)),
                          gpu=dict(channels=(64, 128, 128)))
        return cls(net=ConvNetConfig(in_channels=3, latent_channels=4, **net),
                   disc_width=config.pick(ci=8, cpu=16, gpu=64), disc_layers=1)


class KLAutoencoder(nn.Module):
    """``b c h w <-> b z h' w'`` with a Gaussian posterior per latent position."""

    def __init__(self, net: ConvNetConfig):
        super().__init__()
        self.net = net
        self.encoder = Encoder(net, out_channels=2 * net.latent_channels)
        self.decoder = Decoder(net)

    def posterior(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(mean, logvar)``, each ``b z h' w'`` (logvar clamped to :data:`LOGVAR_RANGE`)."""
        mean, logvar = self.encoder(x).chunk(2, dim=1)
        return mean, logvar.clamp(*LOGVAR_RANGE)

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Images -> latents ``b z h' w'``: the posterior mean (what a latent diffusion model reads)."""
        return self.posterior(x)[0]

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None):
        """``(x_hat, mean, logvar)``, decoding one latent drawn from the posterior."""
        mean, logvar = self.posterior(x)
        return self.decoder(reparameterize(mean, logvar, generator=generator)), mean, logvar


class KLGAN(FirstStage):
    """The LDM first stage: a :class:`KLAutoencoder` and a patch discriminator, trained by
    :func:`genlib.models.vqgan.train_vqgan` with the same settings as a VQ-GAN."""

    def __init__(self, cfg: KLAutoencoderConfig):
        super().__init__()
        self.cfg = cfg
        self.autoencoder = KLAutoencoder(cfg.net)
        self.discriminator = PatchDiscriminator(cfg.net.in_channels, cfg.disc_width, cfg.disc_layers)

    def forward(self, x: torch.Tensor):
        return self.autoencoder(x)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.autoencoder.encode(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.autoencoder.decode(z)

    def reconstruct(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """A sampled latent's reconstruction; the regulariser is ``kl_weight`` times the KL of the
        posterior to ``N(0, I)``, summed over the latent map and averaged over the batch."""
        recon, mean, logvar = self.autoencoder(x)
        kl = kl_divergence(mean.flatten(1), logvar.flatten(1)).mean()
        return recon, self.cfg.kl_weight * kl, {"kl": kl, "latent_std": mean.detach().std()}
