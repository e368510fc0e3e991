"""A conditional GAN on images (cGAN, Mirza & Osindero 2014; survey §5.3), DCGAN-style.

:class:`ConvGenerator` / :class:`ConvDiscriminator` follow DCGAN (Radford et al. 2016) at 16x16 or
32x32: the generator maps noise to a 4x4 map and doubles the resolution up to the image, the
discriminator halves it with strided convolutions. With ``num_classes`` > 0 both are conditional:
the label is appended to G's noise as a one-hot vector and to D's input as constant one-hot
channels, so D also rejects a good image of the wrong class. They train with
:func:`genlib.models.gan.train_gan` (Algorithm 1), which passes the labels of each real minibatch
to both networks.
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn as nn
import torch.nn.functional as F

from genlib import config, train, zoo
from genlib.data import digits
from genlib.models.gan import GANPair, GANTraining, train_gan


@dataclasses.dataclass(frozen=True)
class ConvGANConfig:
    """DCGAN-style networks for ``channels x image_size x image_size`` images (``image_size`` a
    multiple of 4); ``width`` channels at full resolution, doubled at each halving;
    ``num_classes`` > 0 makes both networks conditional (cGAN)."""

    image_size: int = 16
    channels: int = 1
    z_dim: int = 32
    width: int = 32
    num_classes: int = 0

    def __post_init__(self):
        side = self.image_size // 4
        if self.image_size % 4 or side < 2 or side & (side - 1):
            raise ValueError(f"ConvGANConfig needs image_size = 4 * 2**levels (8, 16, 32, ...), got {self.image_size}")
        if min(self.channels, self.z_dim, self.width) < 1 or self.num_classes < 0:
            raise ValueError(f"ConvGANConfig needs positive sizes and num_classes >= 0, got {self}")

    @property
    def levels(self) -> int:
        """Halvings from ``image_size`` down to 4x4."""
        return (self.image_size // 4).bit_length() - 1

    @classmethod
    def preset(cls) -> "ConvGANConfig":
        """The class-conditional 16x16 digits GAN of the active profile (its training:
        ``GANTraining.preset("digits")``)."""
        return cls(image_size=16, channels=1, z_dim=config.pick(ci=16, cpu=32, gpu=64),
                   width=config.pick(ci=8, cpu=32, gpu=64), num_classes=digits.NUM_CLASSES)


def _check_labels(y: torch.Tensor | None, b: int, num_classes: int, who: str) -> None:
    if num_classes == 0:
        if y is not None:
            raise ValueError(f"{who} is unconditional (num_classes = 0) but got labels")
        return
    if y is None or y.shape != (b,) or y.dtype != torch.long:
        got = None if y is None else (tuple(y.shape), str(y.dtype))
        raise ValueError(f"{who} is conditional: it needs labels y of layout b = ({b},), int64, got {got}")
    config.check_range(y, 0, num_classes - 1, f"{who}: labels must lie in [0, {num_classes - 1}]")


class ConvGenerator(nn.Module):
    """``z: b z_dim`` (and ``y: b`` labels for a cGAN) ``-> b c h w`` in [-1, 1] (tanh).

    A linear layer maps ``[z, onehot(y)]`` to a 4x4 map of ``width * 2**levels`` channels; each
    level doubles the resolution (nearest upsampling, 3x3 conv, BatchNorm, ReLU) and halves the
    channels; a last 3x3 conv gives the image (DCGAN's recipe, with upsampling in place of
    transposed convolutions, which leave checkerboard artefacts).
    """

    def __init__(self, cfg: ConvGANConfig):
        super().__init__()
        self.cfg, self.z_dim = cfg, cfg.z_dim
        c = cfg.width * 2 ** cfg.levels
        self.stem = nn.Sequential(nn.Linear(cfg.z_dim + cfg.num_classes, c * 16), nn.Unflatten(1, (c, 4, 4)),
                                  nn.BatchNorm2d(c), nn.ReLU())
        ups = []
        for _ in range(cfg.levels):
            ups += [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(c, c // 2, 3, padding=1),
                    nn.BatchNorm2d(c // 2), nn.ReLU()]
            c //= 2
        self.ups = nn.Sequential(*ups)
        self.out = nn.Conv2d(c, cfg.channels, 3, padding=1)

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        if z.ndim != 2 or z.shape[1] != self.cfg.z_dim:
            raise ValueError(f"ConvGenerator expects z of layout b z_dim = (b, {self.cfg.z_dim}), got {tuple(z.shape)}")
        _check_labels(y, z.shape[0], self.cfg.num_classes, "ConvGenerator")
        if self.cfg.num_classes:
            z = torch.cat([z, F.one_hot(y, self.cfg.num_classes).to(z.dtype)], dim=1)
        return torch.tanh(self.out(self.ups(self.stem(z))))


class ConvDiscriminator(nn.Module):
    """``x: b c h w`` (and ``y: b`` for a cGAN, appended as ``num_classes`` constant one-hot
    channels) ``-> b`` logits: strided 4x4 convs with LeakyReLU(0.2) down to 4x4, then linear."""

    def __init__(self, cfg: ConvGANConfig):
        super().__init__()
        self.cfg = cfg
        layers, c_in, c = [], cfg.channels + cfg.num_classes, cfg.width
        for _ in range(cfg.levels):
            layers += [nn.Conv2d(c_in, c, 4, stride=2, padding=1), nn.LeakyReLU(0.2)]
            c_in, c = c, c * 2
        self.features = nn.Sequential(*layers, nn.Flatten())
        self.head = nn.Linear(c_in * 16, 1)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        cfg = self.cfg
        if x.ndim != 4 or x.shape[1:] != (cfg.channels, cfg.image_size, cfg.image_size):
            raise ValueError(f"ConvDiscriminator expects x of layout b c h w = (b, {cfg.channels}, "
                             f"{cfg.image_size}, {cfg.image_size}), got {tuple(x.shape)}")
        _check_labels(y, x.shape[0], cfg.num_classes, "ConvDiscriminator")
        if cfg.num_classes:
            maps = F.one_hot(y, cfg.num_classes).to(x.dtype)[:, :, None, None].expand(-1, -1, *x.shape[2:])
            x = torch.cat([x, maps], dim=1)
        return self.head(self.features(x)).squeeze(1)


# ----------------------------------------------------------------------------- chapter 05's digits model, by profile


def load_digits_cgan(seed: int = 0) -> GANPair:
    """The conditional digits GAN, trained on the digits' train split (cached), on
    :func:`genlib.config.device`; ``pair.info["history"]`` holds the losses and D's outputs."""
    cfg, settings = ConvGANConfig.preset(), GANTraining.preset("digits")
    x, y = digits.load(16, "train", seed=0)

    def fit(pair: GANPair) -> dict:
        history = train_gan(pair, train.random_batches(x, settings.batch_size, y, seed=seed), settings, seed=seed,
                            desc="conditional digits GAN")
        return {"history": history.to_dict()}

    trained = zoo.get_or_train("gan-digits", lambda c: GANPair(ConvGenerator(c), ConvDiscriminator(c)), fit, cfg,
                               extra={"training": settings, "split_seed": 0}, seed=seed)
    return trained.annotated()
