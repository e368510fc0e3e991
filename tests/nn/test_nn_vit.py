"""genlib.nn.vit: patchify round trips and errors, 2-D sin-cos positions, the ViT classifier."""

import math

import pytest
import torch

from genlib.nn.embeddings import timestep_embedding
from genlib.nn.vit import PatchEmbed, ViT, ViTConfig, patchify, sincos_2d, unpatchify


@pytest.mark.parametrize("seed", range(6))
def test_patchify_round_trip_on_random_shapes(seed):
    g = torch.Generator().manual_seed(seed)
    b, c, p, gh, gw = (int(torch.randint(1, 5, (1,), generator=g)) for _ in range(5))
    x = torch.randn(b, c, gh * p, gw * p, generator=g)
    tokens = patchify(x, p)
    assert tokens.shape == (b, gh * gw, p * p * c)
    assert torch.equal(unpatchify(tokens, p, (gh, gw), c), x)


def test_patch_order_is_raster_and_channels_last():
    x = torch.arange(2 * 4 * 6, dtype=torch.float32).reshape(1, 2, 4, 6)
    tokens = patchify(x, 2)  # grid 2 x 3
    # token 1 is row 0, column 1 of the grid: pixels (0..1, 2..3); channel is the fastest index
    assert torch.equal(tokens[0, 1, :2], torch.stack([x[0, 0, 0, 2], x[0, 1, 0, 2]]))
    assert torch.equal(tokens[0, 3], patchify(x[:, :, 2:4, 0:2], 2)[0, 0])


def test_patchify_errors_name_the_layout():
    with pytest.raises(ValueError, match=r"b c \(gh p\) \(gw p\).*p=4"):
        patchify(torch.zeros(1, 3, 10, 8), 4)
    with pytest.raises(ValueError, match="b c h w"):
        patchify(torch.zeros(3, 8, 8), 4)
    with pytest.raises(ValueError, match=r"b \(gh gw\) \(p p c\)"):
        unpatchify(torch.zeros(1, 5, 12), 2, (2, 2), 3)


def test_patch_embed_equals_a_strided_convolution():
    torch.manual_seed(0)
    embed = PatchEmbed(3, 4, 8)
    conv = torch.nn.Conv2d(3, 8, 4, stride=4)
    with torch.no_grad():  # the linear weight's input index is (p1 p2 c); the conv's is c p1 p2
        conv.weight.copy_(embed.proj.weight.reshape(8, 4, 4, 3).permute(0, 3, 1, 2))
        conv.bias.copy_(embed.proj.bias)
    x = torch.randn(2, 3, 8, 12)
    torch.testing.assert_close(embed(x), conv(x).flatten(2).transpose(1, 2))


def test_sincos_2d_shape_and_values():
    pos = sincos_2d((3, 5), 16)
    assert pos.shape == (15, 16)
    # patch (row 2, column 4) is token 2 * 5 + 4: rows code the first half, columns the second
    torch.testing.assert_close(pos[14], torch.cat([timestep_embedding(2, 8)[0], timestep_embedding(4, 8)[0]]))
    assert pos[0, 0] == 1 and pos[0, 4] == 0  # cos(0) = 1, sin(0) = 0
    assert math.isclose(pos[14, 8].item(), math.cos(4.0), rel_tol=1e-6)
    # each half has unit entries on the circle: cos^2 + sin^2 = 1 per frequency
    torch.testing.assert_close(pos.pow(2).sum(-1), torch.full((15,), 8.0))
    with pytest.raises(ValueError, match="divisible by 4"):
        sincos_2d((2, 2), 10)


def test_vit_layout_and_learning():
    torch.manual_seed(0)
    cfg = ViTConfig(num_classes=3, in_channels=2, image_size=8, patch_size=4, dim=16, depth=1, heads=2)
    vit = ViT(cfg)
    x = torch.randn(6, 2, 8, 8)
    assert vit(x).shape == (6, 3)
    assert vit.pos.shape == (1, 5, 16) and vit.pos.requires_grad  # learned: [CLS] + 4 patches
    with pytest.raises(ValueError, match="b c h w"):
        vit(torch.randn(6, 1, 8, 8))
    with pytest.raises(ValueError, match="divisible"):
        ViTConfig(image_size=10, patch_size=4)
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    opt = torch.optim.Adam(vit.parameters(), 1e-2)
    first = None
    for _ in range(30):
        loss = torch.nn.functional.cross_entropy(vit(x), y)
        first = loss.item() if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.5 * first  # it can fit six images
