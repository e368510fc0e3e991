"""The variational autoencoder (survey §3, eq. 3-4; Kingma & Welling 2014).

The encoder gives a *distribution* per image, ``q(z|x) = N(mu, diag(sigma^2))``; a latent is drawn
from it with the reparameterisation trick (§3.1); the decoder gives ``p(x|z)``, here a Gaussian
with mean ``dec(z)`` and a fixed standard deviation ``rec_std``. Training maximises the ELBO (eq. 4)

    ELBO(x) = E_{q(z|x)}[log p(x|z)] - KL(q(z|x) || p(z)),      p(z) = N(0, I)

so the loss is its negative, ``rec + beta * kl`` (``beta = 1`` is the VAE; other values the
beta-VAE). Both terms are in nats per image.
"""

from __future__ import annotations

import dataclasses
import math

import torch

from genlib import config
from genlib.models.autoencoder import AutoencoderConfig, VectorLatentNet


def reparameterize(mu: torch.Tensor, logvar: torch.Tensor, eps: torch.Tensor | None = None,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """§3.1: ``z = mu + sigma * eps`` with ``sigma = exp(logvar / 2)`` and ``eps ~ N(0, I)``.

    ``eps`` is drawn fresh at every call (every image, every training step) unless given. The
    randomness sits in ``eps`` alone, so ``z`` is a differentiable function of ``mu`` and ``sigma``.
    """
    if mu.shape != logvar.shape:
        raise ValueError(f"mu and logvar must share a layout (b d), got {tuple(mu.shape)} and {tuple(logvar.shape)}")
    if eps is None:
        eps = config.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype) if generator is not None \
            else torch.randn_like(mu)
    return mu + torch.exp(0.5 * logvar) * eps


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """Closed form ``KL(N(mu, sigma^2) || N(0, 1))`` summed over the latent dims, per row (``b``):

        KL = 1/2 * sum_j (mu_j^2 + sigma_j^2 - 1 - log sigma_j^2)
    """
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(-1)


def kl_monte_carlo(mu: torch.Tensor, logvar: torch.Tensor, samples: int,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """The same KL estimated by sampling: the mean over ``samples`` draws ``z ~ q`` of
    ``log q(z|x) - log p(z)`` (per row, ``b``). Converges to :func:`kl_divergence` as 1/sqrt(n)."""
    std = torch.exp(0.5 * logvar)
    eps = config.randn((samples, *mu.shape), generator=generator, device=mu.device, dtype=mu.dtype)
    z = mu + std * eps
    log_q = (-0.5 * eps.pow(2) - 0.5 * logvar - 0.5 * math.log(2 * math.pi)).sum(-1)
    log_p = (-0.5 * z.pow(2) - 0.5 * math.log(2 * math.pi)).sum(-1)
    return (log_q - log_p).mean(0)


@dataclasses.dataclass
class VAEConfig(AutoencoderConfig):
    """An :class:`AutoencoderConfig` plus ``beta`` (weight of the KL term) and ``rec_std`` (the
    decoder's fixed standard deviation, in pixel units of the [-1, 1] range)."""

    beta: float = 1.0
    rec_std: float = 0.3


class VAE(VectorLatentNet):
    """Encoder to ``(mu, logvar)``, reparameterised sample, decoder; :meth:`loss` is the -ELBO."""

    def __init__(self, cfg: VAEConfig):
        super().__init__(cfg, 2 * cfg.latent_dim)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``b c h w -> (mu, logvar)``, each ``b d``."""
        mu, logvar = self.head(x).chunk(2, dim=1)
        return mu, logvar.clamp(-12.0, 8.0)

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """A reconstruction through one sampled latent."""
        mu, logvar = self.encode(x)
        return self.decode(reparameterize(mu, logvar, generator=generator))

    def rec_nll(self, x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
        """``-log p(x|z)`` per image for the Gaussian decoder, up to a constant:
        ``sum (x - x_hat)^2 / (2 rec_std^2)``."""
        return (x - x_hat).pow(2).flatten(1).sum(1) / (2 * self.cfg.rec_std ** 2)

    def elbo_terms(self, x: torch.Tensor, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """Per-image ``rec`` (= -log p(x|z), one sample of z), ``kl`` and ``elbo = -(rec + kl)``."""
        mu, logvar = self.encode(x)
        z = reparameterize(mu, logvar, generator=generator)   # a fresh eps for every image, every call
        rec = self.rec_nll(x, self.decode(z))                 # -E_q[log p(x|z)], 1-sample estimate
        kl = kl_divergence(mu, logvar)                        # KL(q(z|x) || p(z)), closed form
        return {"rec": rec, "kl": kl, "elbo": -(rec + kl)}    # eq. 4

    def loss(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``mean(rec + beta * kl)``, the negative (beta-weighted) ELBO, with the terms as scalars
        for :func:`genlib.train.fit`."""
        t = self.elbo_terms(x)
        loss = (t["rec"] + self.cfg.beta * t["kl"]).mean()
        return loss, {"rec": t["rec"].mean(), "kl": t["kl"].mean()}

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Decode ``n`` draws from the prior ``N(0, I)``: ``b c h w``."""
        z = config.randn((n, self.cfg.latent_dim), generator=generator, device=config.module_device(self))
        return self.decode(z)
