"""genlib.models.vqgan: the first stage's losses, the adaptive weight (eq. 7) and the loop."""

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from genlib.models import vqgan
from genlib.models.vqvae import VQVAEConfig
from genlib.nn.convnets import ConvNetConfig


def _tiny(**kw):
    torch.manual_seed(0)
    cfg = vqgan.VQGANConfig(vq=VQVAEConfig(net=ConvNetConfig(in_channels=3, channels=(8, 8), latent_channels=4), num_codes=16),
                            disc_width=4, disc_layers=1)
    return vqgan.VQGAN(cfg), vqgan.VQGANTraining(steps=6, batch_size=4, disc_start=2, warmup=1, **kw)


def _maps(x):  # a fixed "perceptual network": two pooled views of the image
    return [x, F.avg_pool2d(x, 2)]


def test_hinge_loss_values():
    real, fake = torch.tensor([2.0, 0.5, -1.0]), torch.tensor([-2.0, 0.0, 1.0])
    expected = torch.tensor([0.0, 0.5, 2.0]).mean() + torch.tensor([0.0, 1.0, 2.0]).mean()
    torch.testing.assert_close(vqgan.hinge_discriminator_loss(real, fake), expected)


def test_adaptive_weight_balances_the_two_gradients_at_the_last_layer():
    model, settings = _tiny()
    x = torch.rand(4, 3, 8, 8) * 2 - 1
    out = model(x)
    rec = F.l1_loss(out.recon, x)
    g_loss = -model.discriminator(out.recon).mean()
    lam = vqgan.adaptive_weight(rec, g_loss, model.last_layer, delta=0.0)
    g_rec = torch.autograd.grad(rec, model.last_layer, retain_graph=True)[0]
    g_gan = torch.autograd.grad(lam * g_loss, model.last_layer)[0]
    torch.testing.assert_close(g_gan.norm(), g_rec.norm())
    assert not lam.requires_grad


def test_l2_variant_is_the_vqvae_loss():
    model, settings = _tiny(rec_loss="l2", perceptual_weight=0.0, gan_weight=0.0)
    x = torch.rand(4, 3, 8, 8) * 2 - 1
    torch.manual_seed(1)
    total, terms = model.autoencoder_loss(x, settings, None, with_gan=False)
    torch.manual_seed(1)
    expected, _ = model.autoencoder.loss(x)
    torch.testing.assert_close(total, expected)
    assert not settings.uses_gan and "g_loss" not in terms


def test_training_runs_and_starts_the_discriminator_late():
    model, settings = _tiny()
    data = torch.rand(16, 3, 8, 8) * 2 - 1
    d_before = [p.clone() for p in model.discriminator.parameters()]
    hist = vqgan.train_vqgan(model, lambda step: data[step % 4 * 4:(step % 4 + 1) * 4], settings, perceptual=_maps,
                             progress=False)
    assert len(hist) == 6
    assert hist.scalars["d_loss"][:2] == [None, None] and all(v is not None for v in hist.scalars["d_loss"][2:])
    assert all(v is not None and v >= 0 for v in hist.scalars["adaptive_lambda"][2:])
    assert all(v is not None for v in hist.scalars["perceptual"])
    assert any(not torch.equal(a, b) for a, b in zip(d_before, model.discriminator.parameters()))
    assert not model.training


def test_settings_are_checked():
    model, settings = _tiny(perceptual_weight=1.0)
    with pytest.raises(ValueError, match="perceptual network"):
        model.autoencoder_loss(torch.zeros(2, 3, 8, 8), settings, None, with_gan=False)
    with pytest.raises(ValueError, match="rec_loss"):
        vqgan.VQGANTraining(rec_loss="l3")
    with pytest.raises(ValueError, match="unknown variant"):
        vqgan.VQGANTraining.preset("VQ-GAN")
