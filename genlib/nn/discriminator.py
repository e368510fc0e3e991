"""A patch discriminator (PatchGAN: Isola et al. 2017, pix2pix; the one VQ-GAN trains, survey §6.1).

Instead of one real/fake logit per image, it returns a map of logits, ``b c h w -> b 1 h' w'``:
each output position judges only the input patch inside its receptive field, so the adversarial
loss rewards locally realistic texture and edges and leaves global layout to the other losses::

    conv 4x4 stride 2 (c -> width), LeakyReLU(0.2)
    for i in 1 .. layers-1:  conv 4x4 stride 2 (width 2^(i-1) -> width 2^i), BatchNorm, LeakyReLU(0.2)
    conv 4x4 stride 1 (-> width 2^layers, capped at 8x width), BatchNorm, LeakyReLU(0.2)
    conv 4x4 stride 1 (-> 1)                                             # one logit per patch

With ``layers=3`` this is pix2pix's "70x70 PatchGAN", which the released VQ-GAN code uses on
256x256 images; ``layers=1`` sees 16x16 patches. :meth:`PatchDiscriminator.receptive_field`
computes the patch side from the kernel sizes and strides (``r_in = stride * r_out + kernel -
stride``, walked from the output back to the input).
"""

from __future__ import annotations

import torch
from torch import nn


class PatchDiscriminator(nn.Module):
    """``b in_channels h w -> b 1 h' w'`` logits, one per receptive-field patch (see module doc)."""

    def __init__(self, in_channels: int = 3, width: int = 64, layers: int = 3):
        super().__init__()
        if in_channels < 1 or width < 1 or layers < 1:
            raise ValueError(f"PatchDiscriminator needs in_channels, width, layers >= 1; got {in_channels}, {width}, {layers}")
        self.in_channels = in_channels
        mods: list[nn.Module] = [nn.Conv2d(in_channels, width, 4, 2, 1), nn.LeakyReLU(0.2)]
        c = width
        for i in range(1, layers + 1):
            c_next = width * min(2**i, 8)
            stride = 2 if i < layers else 1
            mods += [nn.Conv2d(c, c_next, 4, stride, 1, bias=False), nn.BatchNorm2d(c_next), nn.LeakyReLU(0.2)]
            c = c_next
        mods.append(nn.Conv2d(c, 1, 4, 1, 1))
        self.net = nn.Sequential(*mods)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"PatchDiscriminator expects images of layout b c h w with c = {self.in_channels}, "
                             f"got {tuple(x.shape)}")
        return self.net(x)

    def receptive_field(self) -> int:
        """The side of the input patch one output logit sees, from the convolutions' kernels and
        strides (padding shifts the patch but does not change its size)."""
        r = 1
        for m in reversed(self.net):
            if isinstance(m, nn.Conv2d):
                r = m.stride[0] * r + m.kernel_size[0] - m.stride[0]
        return r
