"""AE and VAE: reparameterisation gradients, closed-form KL, ELBO terms, shapes, bad input."""

import pytest
import torch

from genlib.models.autoencoder import Autoencoder, AutoencoderConfig
from genlib.models.vae import VAE, VAEConfig, kl_divergence, kl_monte_carlo, reparameterize
from genlib.nn.convnets import ConvNetConfig

NET = ConvNetConfig(in_channels=1, channels=(8, 8), latent_channels=4, groups=4)


def test_reparameterisation_gradients_reach_mu_and_sigma():
    mu = torch.randn(3, 2, requires_grad=True)
    logvar = torch.randn(3, 2, requires_grad=True)
    eps = torch.randn(3, 2)
    z = reparameterize(mu, logvar, eps)
    z.sum().backward()
    assert torch.allclose(mu.grad, torch.ones(3, 2))                         # dz/dmu = 1
    assert torch.allclose(logvar.grad, 0.5 * torch.exp(0.5 * logvar.detach()) * eps)  # dz/dlogvar


def test_eps_is_fresh_at_every_call():
    mu, logvar = torch.zeros(4, 2), torch.zeros(4, 2)
    assert not torch.equal(reparameterize(mu, logvar), reparameterize(mu, logvar))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_closed_form_kl_matches_monte_carlo(seed):
    g = torch.Generator().manual_seed(seed)
    mu, logvar = torch.randn(4, 3, generator=g), torch.randn(4, 3, generator=g) * 0.5
    mc = kl_monte_carlo(mu.double(), logvar.double(), 200_000, generator=g)
    assert torch.allclose(mc, kl_divergence(mu, logvar).double(), atol=0.03)
    assert torch.allclose(kl_divergence(torch.zeros(2, 3), torch.zeros(2, 3)), torch.zeros(2))


def test_vae_terms_and_shapes():
    vae = VAE(VAEConfig(image_size=8, net=NET, latent_dim=2))
    x = torch.rand(5, 1, 8, 8) * 2 - 1
    t = vae.elbo_terms(x)
    assert all(v.shape == (5,) for v in t.values())
    assert torch.allclose(t["elbo"], -(t["rec"] + t["kl"]))
    assert (t["kl"] >= 0).all()
    loss, scalars = vae.loss(x)
    loss.backward()
    assert set(scalars) == {"rec", "kl"}
    assert vae.sample(3).shape == (3, 1, 8, 8)


def test_autoencoder_and_bad_input():
    ae = Autoencoder(AutoencoderConfig(image_size=8, net=NET, latent_dim=3))
    x = torch.randn(2, 1, 8, 8)
    assert ae.encode(x).shape == (2, 3) and ae(x).shape == x.shape
    with pytest.raises(ValueError, match="b c h w"):
        ae.encode(torch.randn(2, 3, 8, 8))
    with pytest.raises(ValueError, match="b d"):
        ae.decode(torch.randn(2, 5))
    with pytest.raises(ValueError, match="layout"):
        reparameterize(torch.zeros(2, 2), torch.zeros(2, 3))
    with pytest.raises(ValueError):
        AutoencoderConfig(image_size=9, net=NET)
