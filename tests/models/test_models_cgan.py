"""genlib.models.cgan: the DCGAN-style networks, their conditioning, and the cached digits cGAN."""

import math

import pytest
import torch

from genlib import train
from genlib.models import cgan, gan


def test_conv_networks_layouts_and_conditioning():
    cfg = cgan.ConvGANConfig(image_size=16, channels=1, z_dim=8, width=4, num_classes=10)
    G, D = cgan.ConvGenerator(cfg), cgan.ConvDiscriminator(cfg)
    y = torch.arange(6) % 10
    x = G(torch.randn(6, 8), y)
    assert x.shape == (6, 1, 16, 16) and x.abs().max() <= 1
    logits = D(x, y)
    assert logits.shape == (6,)
    assert not torch.allclose(D(x, y), D(x, (y + 1) % 10)), "the label must reach the discriminator"
    with pytest.raises(ValueError, match="needs labels y"):
        G(torch.randn(6, 8))
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 9\]"):
        D(x, torch.full((6,), 10))
    with pytest.raises(ValueError, match="b c h w"):
        D(torch.zeros(6, 3, 16, 16), y)
    plain = cgan.ConvGANConfig(image_size=32, channels=3, z_dim=8, width=4)
    assert plain.levels == 3 and cgan.ConvGenerator(plain)(torch.randn(2, 8)).shape == (2, 3, 32, 32)
    with pytest.raises(ValueError, match="unconditional"):
        cgan.ConvDiscriminator(plain)(torch.zeros(2, 3, 32, 32), torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match="4 \\* 2\\*\\*levels"):
        cgan.ConvGANConfig(image_size=24)


def test_conditional_training_runs_and_generates_reproducibly():
    cfg = cgan.ConvGANConfig(image_size=8, channels=1, z_dim=4, width=4, num_classes=3)
    pair = gan.GANPair(cgan.ConvGenerator(cfg), cgan.ConvDiscriminator(cfg))
    x, y = torch.rand(30, 1, 8, 8) * 2 - 1, torch.arange(30) % 3
    history = gan.train_gan(pair, train.random_batches(x, 6, y), gan.GANTraining(steps=3, batch_size=6), device="cpu", progress=False)
    assert len(history) == 3 and all(math.isfinite(v) for v in history.loss)
    out = gan.generate(pair.generator, 4, labels=torch.tensor([0, 1, 2, 0]), seed=3)
    assert out.shape == (4, 1, 8, 8) and torch.equal(out, gan.generate(pair.generator, 4, labels=torch.tensor([0, 1, 2, 0]), seed=3))



def test_digits_cgan_is_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("GENLIB_CACHE", str(tmp_path))
    monkeypatch.setenv("GENLIB_PROFILE", "ci")
    pair = cgan.load_digits_cgan()
    settings = cgan.GANTraining.preset("digits")
    assert not pair.from_cache and len(pair.info["history"]["loss"]) == settings.steps
    again = cgan.load_digits_cgan()
    assert again.from_cache
    labels = torch.arange(10)
    assert torch.equal(gan.generate(pair.generator, 10, labels=labels), gan.generate(again.generator, 10, labels=labels))
