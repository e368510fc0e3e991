"""Conv encoder/decoder stacks: shapes, factors and bad input."""

import pytest
import torch

from genlib.nn.convnets import ConvNetConfig, Decoder, Encoder


@pytest.mark.parametrize("channels", [(8,), (8, 16), (8, 16, 16)])
def test_encoder_decoder_shapes(channels):
    cfg = ConvNetConfig(in_channels=3, channels=channels, latent_channels=5, groups=4)
    enc, dec = Encoder(cfg), Decoder(cfg)
    x = torch.randn(2, 3, 16, 16)
    z = enc(x)
    assert z.shape == (2, 5, 16 // cfg.factor, 16 // cfg.factor)
    assert dec(z).shape == x.shape
    assert Encoder(cfg, out_channels=10)(x).shape[1] == 10


def test_bad_config_and_input():
    with pytest.raises(ValueError, match="multiple of groups"):
        ConvNetConfig(channels=(12,), groups=8)
    enc = Encoder(ConvNetConfig(in_channels=1, channels=(8, 8), groups=4))
    with pytest.raises(ValueError, match="b c h w"):
        enc(torch.randn(1, 16, 16))
    with pytest.raises(ValueError, match="channels"):
        enc(torch.randn(1, 3, 16, 16))
    with pytest.raises(ValueError, match="multiples of 2"):
        enc(torch.randn(1, 1, 15, 16))


def test_gradients_reach_the_first_layer():
    cfg = ConvNetConfig(in_channels=1, channels=(8, 8), latent_channels=4, groups=4)
    enc, dec = Encoder(cfg), Decoder(cfg)
    dec(enc(torch.randn(2, 1, 8, 8))).sum().backward()
    assert enc.conv_in.weight.grad.abs().sum() > 0
