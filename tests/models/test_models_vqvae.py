"""VQ-VAE and the §4.5 next-code predictor: shapes, STE end to end, loss parts, training moves loss."""

import pytest
import torch

from genlib.models.vqvae import NextCodePredictor, PredictorConfig, VQVAE, VQVAEConfig
from genlib.nn.convnets import ConvNetConfig
from genlib.train import fit

NET = ConvNetConfig(in_channels=3, channels=(8, 8), latent_channels=4, groups=4)


@pytest.mark.parametrize("ema", [False, True])
def test_shapes_and_round_trip(ema):
    m = VQVAE(VQVAEConfig(net=NET, num_codes=16, ema=ema)).eval()  # eval: no EMA update
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    out = m(x)
    assert out.recon.shape == x.shape and out.quant.indices.shape == (2, 8, 8)
    idx = m.encode(x)
    assert torch.equal(idx, out.quant.indices)
    assert torch.allclose(m.decode_indices(idx), out.recon.detach(), atol=1e-6)


def test_encoder_receives_the_decoder_gradient_through_the_ste():
    m = VQVAE(VQVAEConfig(net=NET, num_codes=16))
    x = torch.randn(2, 3, 16, 16)
    z_e = m.encoder(x)
    z_e.retain_grad()
    q = m.quantizer(z_e)
    z_q = q.z_q
    z_q.retain_grad()
    m.decoder(z_q).pow(2).sum().backward()
    assert torch.equal(z_e.grad, z_q.grad)


def test_training_lowers_the_loss():
    m = VQVAE(VQVAEConfig(net=NET, num_codes=16, restart_dead=True, dead_after=5))
    data = torch.rand(8, 3, 16, 16) * 2 - 1
    h = fit(m, lambda mod, x: mod.loss(x), lambda s: data, 20, lr=3e-3, device="cpu", seed=0, progress=False)
    assert h.last(5) < h.loss[0]
    assert set(h.scalars) >= {"rec", "vq", "perplexity"}


def test_predictor_shapes_rollout_and_bad_input():
    p = NextCodePredictor(PredictorConfig(num_codes=16, past=2, width=16, layers=1))
    codes = torch.randint(16, (3, 2, 4, 4))
    action = torch.randint(4, (3,))
    assert p(codes, action).shape == (3, 16, 4, 4)
    p.loss(codes, action, torch.randint(16, (3, 4, 4))).backward()
    assert p.rollout(codes, torch.randint(4, (3, 5))).shape == (3, 5, 4, 4)
    with pytest.raises(ValueError, match="b p h w"):
        p(codes[:, :1], action)
    with pytest.raises(ValueError, match="layout b"):
        p(codes, action[:2])
