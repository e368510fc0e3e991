"""genlib.nn.discriminator: the patch discriminator's layout and its receptive field."""

import pytest
import torch

from genlib.nn.discriminator import PatchDiscriminator


@pytest.mark.parametrize("layers, expected", [(1, 16), (2, 34), (3, 70)])
def test_receptive_field_is_the_patch_one_logit_sees(layers, expected):
    """The analytic size equals the support of one interior logit's input gradient (eval mode:
    BatchNorm is then a per-channel affine map and mixes no positions). 3 layers: pix2pix's 70."""
    torch.manual_seed(layers)
    D = PatchDiscriminator(3, width=4, layers=layers).eval()
    assert D.receptive_field() == expected
    side = expected + 40
    x = torch.randn(1, 3, side, side, requires_grad=True)
    out = D(x)
    i, j = out.shape[-2] // 2, out.shape[-1] // 2
    out[0, 0, i, j].backward()
    seen = x.grad.abs().sum(1)[0] > 0
    rows, cols = seen.any(1).nonzero(), seen.any(0).nonzero()
    assert int(rows.max() - rows.min() + 1) == expected
    assert int(cols.max() - cols.min() + 1) == expected


def test_layout_and_errors():
    D = PatchDiscriminator(3, width=8, layers=1)
    assert D(torch.randn(2, 3, 32, 32)).shape == (2, 1, 14, 14)
    with pytest.raises(ValueError, match="b c h w with c = 3"):
        D(torch.randn(2, 1, 32, 32))
    with pytest.raises(ValueError, match=">= 1"):
        PatchDiscriminator(3, width=8, layers=0)
