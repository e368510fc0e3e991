"""genlib.models.kl_autoencoder: layouts, the KL term's closed form, encoding by the mean, and
training with VQ-GAN's first-stage loop."""

import pytest
import torch

from genlib.models import vqgan
from genlib.models.kl_autoencoder import LOGVAR_RANGE, KLAutoencoderConfig, KLGAN
from genlib.nn.convnets import ConvNetConfig


def _tiny(kl_weight=1e-6):
    torch.manual_seed(0)
    return KLGAN(KLAutoencoderConfig(net=ConvNetConfig(in_channels=3, channels=(8, 8, 8), latent_channels=4),
                                     kl_weight=kl_weight, disc_width=4))


def test_layouts_and_encoding_is_the_posterior_mean():
    model = _tiny()
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    with torch.no_grad():
        mean, logvar = model.autoencoder.posterior(x)
    assert mean.shape == logvar.shape == (2, 4, 4, 4)
    assert float(logvar.min()) >= LOGVAR_RANGE[0] and float(logvar.max()) <= LOGVAR_RANGE[1]
    assert torch.equal(model.encode(x), mean.detach())
    assert model.decode(mean).shape == x.shape
    recon, _, _ = model(x)
    assert recon.shape == x.shape


def test_regulariser_is_the_weighted_closed_form_kl():
    model = _tiny(kl_weight=0.5)
    x = torch.rand(3, 3, 16, 16) * 2 - 1
    torch.manual_seed(1)
    _, reg, terms = model.reconstruct(x)
    mean, logvar = model.autoencoder.posterior(x)
    kl = 0.5 * (mean.pow(2) + logvar.exp() - 1 - logvar).flatten(1).sum(1).mean()
    torch.testing.assert_close(terms["kl"], kl)
    torch.testing.assert_close(reg, 0.5 * kl)


def test_trains_with_the_vqgan_loop():
    model = _tiny()
    data = torch.rand(8, 3, 16, 16) * 2 - 1
    settings = vqgan.VQGANTraining(steps=5, batch_size=4, disc_start=2, warmup=1, perceptual_weight=0.0)
    hist = vqgan.train_vqgan(model, lambda step: data[step % 2 * 4:(step % 2 + 1) * 4], settings, progress=False)
    assert len(hist) == 5 and all(v is not None for v in hist.scalars["kl"])
    assert hist.scalars["d_loss"][:2] == [None, None] and hist.scalars["d_loss"][2] is not None


def test_bad_config_is_named():
    with pytest.raises(ValueError, match="kl_weight"):
        KLAutoencoderConfig(kl_weight=-1.0)
