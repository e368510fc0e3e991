"""genlib.nn.perceptual: the LPIPS-style distance through a frozen network's feature maps."""

import pytest
import torch
import torch.nn as nn

from genlib.nn.perceptual import perceptual_distance


def _net():
    torch.manual_seed(0)
    layers = nn.ModuleList([nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU()),
                            nn.Sequential(nn.Conv2d(8, 8, 3, stride=2, padding=1), nn.ReLU())]).requires_grad_(False)

    def maps(x):
        out = []
        for layer in layers:
            x = layer(x)
            out.append(x)
        return out
    return maps


def test_zero_for_equal_images_positive_otherwise_and_per_image():
    maps = _net()
    x = torch.randn(4, 3, 16, 16)
    assert torch.allclose(perceptual_distance(maps, x, x), torch.zeros(4))
    y = x.clone()
    y[2] += 0.5 * torch.randn(3, 16, 16)
    d = perceptual_distance(maps, x, y)
    assert d.shape == (4,) and d[2] > 0 and torch.all(d[[0, 1, 3]] == 0)


def test_matches_the_formula_and_ignores_feature_scale():
    maps = _net()
    x, y = torch.randn(2, 3, 8, 8), torch.randn(2, 3, 8, 8)
    expected = 0
    for a, b in zip(maps(x), maps(y)):
        a = a / a.norm(dim=1, keepdim=True).clamp_min(1e-10)
        b = b / b.norm(dim=1, keepdim=True).clamp_min(1e-10)
        expected = expected + ((a - b) ** 2).sum(1).mean((1, 2))
    torch.testing.assert_close(perceptual_distance(maps, x, y), expected)
    scaled = lambda z: [3.0 * f for f in maps(z)]  # noqa: E731
    torch.testing.assert_close(perceptual_distance(scaled, x, y), expected)


def test_gradient_reaches_the_image_and_errors():
    maps = _net()
    x = torch.randn(2, 3, 8, 8, requires_grad=True)
    perceptual_distance(maps, x, torch.randn(2, 3, 8, 8)).sum().backward()
    assert x.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="b c h w"):
        perceptual_distance(maps, torch.randn(2, 3, 8, 8), torch.randn(2, 3, 8, 4))
