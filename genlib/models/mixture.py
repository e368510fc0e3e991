"""A mixture of Gaussians: the smallest generative model with an exact likelihood and a sampler.

    q(x; theta) = sum_k pi_k N(x; mu_k, diag(sigma_k^2)),   pi = softmax(logits)

Chapter 02 fits it to 2-D toy data by maximum likelihood (App. A): gradient ascent on the average
``log q(x)``, which is gradient descent on the loss ``-log q(x)``.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn


class GaussianMixture(nn.Module):
    """``components`` diagonal Gaussians in ``dim`` dimensions, with learnable weights."""

    def __init__(self, components: int, dim: int = 2, init_means: torch.Tensor | None = None, init_std: float = 0.5):
        super().__init__()
        if components < 1 or dim < 1:
            raise ValueError(f"need components >= 1 and dim >= 1, got {components} and {dim}")
        means = torch.zeros(components, dim) if init_means is None else init_means.detach().clone().float()
        if means.shape != (components, dim):
            raise ValueError(f"init_means must have layout 'k d' = ({components}, {dim}), got {tuple(means.shape)}")
        self.means = nn.Parameter(means)
        self.log_stds = nn.Parameter(torch.full((components, dim), math.log(init_std)))
        self.logits = nn.Parameter(torch.zeros(components))

    @classmethod
    def from_data(cls, x: torch.Tensor, components: int, seed: int = 0, init_std: float = 0.5) -> "GaussianMixture":
        """A mixture whose means start on data points spread far apart (farthest-point seeding).

        The first mean is a random data point; each next one is the data point farthest from the
        means chosen so far. Starting from well-spread means keeps gradient ascent out of the local
        optimum where two components share one cluster and another cluster has none.
        """
        if x.ndim != 2 or len(x) < components:
            raise ValueError(f"x must have layout 'n d' with n >= components = {components}, got {tuple(x.shape)}")
        g = torch.Generator().manual_seed(seed)
        chosen = [int(torch.randint(len(x), (1,), generator=g))]
        dist = (x - x[chosen[0]]).pow(2).sum(1)
        for _ in range(components - 1):
            chosen.append(int(dist.argmax()))
            dist = torch.minimum(dist, (x - x[chosen[-1]]).pow(2).sum(1))
        return cls(components, x.shape[1], init_means=x[chosen], init_std=init_std)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """``n d -> n``: log q(x), a log-sum-exp over components for numerical safety."""
        if x.ndim != 2 or x.shape[1] != self.means.shape[1]:
            raise ValueError(f"x must have layout 'n d' with d = {self.means.shape[1]}, got {tuple(x.shape)}")
        z = (x[:, None, :] - self.means) / self.log_stds.exp()  # n k d
        log_normal = -0.5 * (z**2).sum(-1) - self.log_stds.sum(-1) - 0.5 * x.shape[1] * math.log(2 * math.pi)
        return torch.logsumexp(self.logits.log_softmax(0) + log_normal, dim=1)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Ancestral sampling: pick a component k ~ pi, then x ~ N(mu_k, sigma_k^2)."""
        k = torch.multinomial(self.logits.softmax(0), n, replacement=True, generator=generator)
        eps = torch.randn(n, self.means.shape[1], generator=generator)
        return self.means[k] + self.log_stds[k].exp() * eps
