"""A plain autoencoder (survey §3, Fig. 2): the deterministic baseline the VAE is compared with.

    z = enc(x)            b c h w -> b d        (conv stack, flatten, linear)
    x_hat = dec(z)        b d -> b c h w        (linear, unflatten, conv stack)
    loss = MSE(x, x_hat)                         (eq. 2)

Nothing shapes where codes land in latent space: the encoder may put them anywhere that lets the
decoder reconstruct, which is why points between two codes can decode to nothing recognisable.
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn as nn
import torch.nn.functional as F
from einops import rearrange

from genlib.nn.convnets import ConvNetConfig, Decoder, Encoder


@dataclasses.dataclass
class AutoencoderConfig:
    """``image_size`` (square, a multiple of ``net.factor``), the conv stacks ``net`` and the
    size ``latent_dim`` of the latent vector."""

    image_size: int = 16
    net: ConvNetConfig = dataclasses.field(default_factory=lambda: ConvNetConfig(in_channels=1, channels=(16, 32), latent_channels=8))
    latent_dim: int = 2

    def __post_init__(self):
        if isinstance(self.net, dict):
            self.net = ConvNetConfig(**self.net)
        if self.image_size % self.net.factor or self.latent_dim < 1:
            raise ValueError(f"image_size must be a multiple of {self.net.factor} and latent_dim >= 1; got {self}")

    @property
    def grid(self) -> int:
        """Side of the encoder's feature map."""
        return self.image_size // self.net.factor


class VectorLatentNet(nn.Module):
    """Conv encoder + linear head to a vector, linear head + conv decoder back: the body shared by
    :class:`Autoencoder` and :class:`genlib.models.vae.VAE` (``head_dim`` outputs per image)."""

    def __init__(self, cfg: AutoencoderConfig, head_dim: int):
        super().__init__()
        self.cfg = cfg
        net, g = cfg.net, cfg.grid
        self.encoder = Encoder(net)
        self.to_latent = nn.Linear(net.latent_channels * g * g, head_dim)
        self.from_latent = nn.Linear(cfg.latent_dim, net.latent_channels * g * g)
        self.decoder = Decoder(net)

    def _check(self, x: torch.Tensor) -> None:
        c, s = self.cfg.net.in_channels, self.cfg.image_size
        if not isinstance(x, torch.Tensor) or x.ndim != 4 or tuple(x.shape[1:]) != (c, s, s):
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"expected images of layout b c h w = b {c} {s} {s}, got {shape}")

    def head(self, x: torch.Tensor) -> torch.Tensor:
        """``b c h w -> b head_dim``."""
        self._check(x)
        return self.to_latent(rearrange(self.encoder(x), "b c h w -> b (c h w)"))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """``b latent_dim -> b c h w`` (unbounded; images live in [-1, 1])."""
        if z.ndim != 2 or z.shape[1] != self.cfg.latent_dim:
            raise ValueError(f"decode expects latents of layout b d with d = {self.cfg.latent_dim}, got {tuple(z.shape)}")
        g = self.cfg.grid
        return self.decoder(rearrange(self.from_latent(z), "b (c h w) -> b c h w", h=g, w=g))


class Autoencoder(VectorLatentNet):
    """The deterministic autoencoder: ``encode`` gives one point per image."""

    def __init__(self, cfg: AutoencoderConfig):
        super().__init__(cfg, cfg.latent_dim)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """``b c h w -> b d``."""
        return self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        """Eq. 2: the mean squared reconstruction error."""
        return F.mse_loss(self(x), x)
