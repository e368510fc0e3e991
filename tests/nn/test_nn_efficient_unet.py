"""Imagen's Efficient U-Net: shapes, the three changes, and cheaper than the plain U-Net."""

import math

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from genlib.nn.efficient_unet import EfficientUNet, EfficientUNetConfig
from genlib.nn.unet import UNet, UNetConfig


def _flops(net, x, t):
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        net(x, t)
    return counter.get_total_flops()


def test_shapes_zero_init_and_conditioning():
    cfg = EfficientUNetConfig(image_size=16, base_channels=8, channel_mult=(1, 2), num_res_blocks=(1, 2), groups=4,
                              num_heads=2, attention_resolutions=(4,), context_dim=12)
    net = EfficientUNet(cfg)
    x = torch.randn(2, 3, 16, 16)
    out = net(x, torch.tensor([3, 500]), torch.randn(2, 5, 12))
    assert out.shape == x.shape and (out == 0).all()  # zero-initialised output convolution
    with pytest.raises(ValueError, match="divisible by 4"):
        net(torch.randn(1, 3, 6, 6), 0)
    labelled = EfficientUNet(EfficientUNetConfig(base_channels=8, groups=4, num_heads=2, num_classes=3))
    assert labelled(torch.randn(2, 3, 16, 16), 1, torch.tensor([0, 2])).shape == (2, 3, 16, 16)


def test_blocks_per_level_and_resolution_order():
    cfg = EfficientUNetConfig(image_size=16, base_channels=8, channel_mult=(1, 2, 2), num_res_blocks=(1, 2, 4),
                              groups=4, num_heads=2)
    net = EfficientUNet(cfg)
    sizes = []
    for layer in net.down:  # a DBlock's first module is its stride-2 convolution
        assert type(layer[0]).__name__ == "Downsample"
        sizes.append(sum(type(m).__name__ == "ResBlock" for m in layer))
    assert sizes == [1, 2, 4]
    for layer in net.up:  # a UBlock upsamples last
        assert type(layer[-1]).__name__ == "Upsample"
    assert math.isclose(cfg.skip_scale, 2 ** -0.5)


def test_skip_scale_enters_the_output():
    torch.manual_seed(0)
    cfg = EfficientUNetConfig(base_channels=8, channel_mult=(1,), num_res_blocks=(1,), groups=4, num_heads=2)
    net = EfficientUNet(cfg)
    torch.nn.init.normal_(net.conv_out.weight)
    x = torch.randn(1, 3, 16, 16)
    a = net(x, 5)
    b = EfficientUNet(EfficientUNetConfig(**{**cfg.__dict__, "skip_scale": 1.0}))
    b.load_state_dict(net.state_dict())
    assert not torch.allclose(a, b(x, 5))


def test_fewer_flops_than_the_plain_unet_with_more_parameters():
    plain = UNet(UNetConfig(image_size=32, base_channels=16, channel_mult=(1, 2, 2), num_res_blocks=2, attention_resolutions=()))
    eff = EfficientUNet(EfficientUNetConfig(image_size=32, base_channels=16, channel_mult=(1, 2, 2), num_res_blocks=(2, 3, 4)))
    x, t = torch.randn(1, 3, 32, 32), torch.zeros(1)
    assert eff.num_parameters() > plain.num_parameters()
    assert _flops(eff, x, t) < 0.6 * _flops(plain, x, t)
