"""The variational autoencoder (survey §3, eq. 3-4; Kingma & Welling 2014).

The encoder gives a *distribution* per image, ``q(z|x) = N(mu, diag(sigma^2))``; a latent is drawn
from it with the reparameterisation trick (§3.1); the decoder gives ``p(x|z)``, here a Gaussian
with mean ``dec(z)`` and a fixed standard deviation ``rec_std``. Training maximises the ELBO (eq. 4)

    ELBO(x) = E_{q(z|x)}[log p(x|z)] - KL(q(z|x) || p(z)),      p(z) = N(0, I)

so the loss is its negative, ``rec + beta * kl`` (``beta = 1`` is the VAE; other values the
beta-VAE). Both terms are in nats per image.

For checking the bound where everything is known, the linear-Gaussian model (a VAE whose decoder
is linear) has its posterior and evidence in closed form (:func:`linear_gaussian_posterior`,
:func:`linear_gaussian_log_evidence`), and :func:`gaussian_kl` gives the KL between two
full-covariance Gaussians.
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


def gaussian_kl(mean_q: torch.Tensor, cov_q: torch.Tensor, mean_p: torch.Tensor,
                cov_p: torch.Tensor) -> torch.Tensor:
    """``KL(N(mean_q, cov_q) || N(mean_p, cov_p))`` for full covariances: means ``... d``,
    covariances ``... d d``; returns ``...``. From the definition ``E_q[log q - log p]``:

        KL = 1/2 * [ tr(cov_p^-1 cov_q) + (m_p - m_q)^T cov_p^-1 (m_p - m_q) - d
                     + log det cov_p - log det cov_q ]

    With diagonal covariances and ``p = N(0, I)`` it reduces to :func:`kl_divergence`.
    """
    d = mean_q.shape[-1]
    if cov_q.shape[-2:] != (d, d) or cov_p.shape[-2:] != (d, d) or mean_p.shape[-1] != d:
        raise ValueError(f"means must be '... d' and covariances '... d d' with one d, got "
                         f"{tuple(mean_q.shape)}, {tuple(cov_q.shape)}, {tuple(mean_p.shape)}, {tuple(cov_p.shape)}")
    chol_p = torch.linalg.cholesky(cov_p)
    diff = (mean_p - mean_q).unsqueeze(-1)                                 # ... d 1
    trace = torch.cholesky_solve(cov_q, chol_p).diagonal(dim1=-2, dim2=-1).sum(-1)
    mahalanobis = (diff * torch.cholesky_solve(diff, chol_p)).sum((-2, -1))
    logdet_p = 2 * chol_p.diagonal(dim1=-2, dim2=-1).log().sum(-1)
    logdet_q = torch.linalg.slogdet(cov_q)[1]
    return 0.5 * (trace + mahalanobis - d + logdet_p - logdet_q)


def _check_linear_gaussian(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> None:
    if x.ndim != 2 or weight.ndim != 2 or x.shape[1] != weight.shape[0] or bias.shape != (x.shape[1],):
        raise ValueError(f"x must be 'b D', weight 'D d' and bias 'D', got {tuple(x.shape)}, "
                         f"{tuple(weight.shape)}, {tuple(bias.shape)}")


def linear_gaussian_posterior(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
                              noise_std: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The exact posterior ``p(z|x)`` (eq. 3) of the linear-Gaussian latent model

        z ~ N(0, I_d),     x | z ~ N(W z + b, s^2 I_D)           (probabilistic PCA)

    ``x``: ``b D``, ``weight`` W: ``D d``, ``bias`` b: ``D``, ``noise_std`` s. Both factors of the
    numerator of eq. 3 are Gaussian in ``z``, so the posterior is Gaussian, with precision the sum
    of the two precisions and the same covariance for every ``x``:

        cov = (I + W^T W / s^2)^-1,       mean = cov W^T (x - b) / s^2

    Returns ``(mean b d, cov d d)``. This is the posterior a VAE's encoder only approximates.
    """
    _check_linear_gaussian(x, weight, bias)
    eye = torch.eye(weight.shape[1], dtype=weight.dtype, device=weight.device)
    cov = torch.linalg.inv(eye + weight.T @ weight / noise_std ** 2)
    mean = (x - bias) @ weight @ cov / noise_std ** 2                      # cov is symmetric
    return mean, cov


def linear_gaussian_log_evidence(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
                                 noise_std: float) -> torch.Tensor:
    """``log p(x)`` of the same model, the denominator of eq. 3 in closed form, per row (``b``):
    ``x = W z + b + s * noise`` is a sum of Gaussians, so ``p(x) = N(b, W W^T + s^2 I)``."""
    _check_linear_gaussian(x, weight, bias)
    D = x.shape[1]
    cov = weight @ weight.T + noise_std ** 2 * torch.eye(D, dtype=weight.dtype, device=weight.device)
    chol = torch.linalg.cholesky(cov)
    white = torch.linalg.solve_triangular(chol, (x - bias).T, upper=False)  # L^-1 (x - b): D b
    return (-0.5 * white.pow(2).sum(0) - chol.diagonal().log().sum()
            - 0.5 * D * math.log(2 * math.pi))


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
