import pytest
import torch
import torch.nn.functional as F

from genlib.nn.norms import batch_norm, group_norm, instance_norm, layer_norm, normalize

SEEDS = range(6)
ATOL = 1e-5


def _shape(g):
    """A random ``b c h w`` with ``c`` a multiple of a random group count; returns (shape, groups)."""
    groups = int(torch.randint(1, 4, (), generator=g))
    b, k, h, w = (int(torch.randint(lo, hi, (), generator=g)) for lo, hi in ((2, 5), (1, 4), (1, 6), (2, 6)))
    return (b, groups * k, h, w), groups


def _random(seed):
    g = torch.Generator().manual_seed(seed)
    shape, groups = _shape(g)
    x = torch.randn(shape, generator=g) * 3 + 1
    c = shape[1]
    weight, bias = torch.randn(c, generator=g), torch.randn(c, generator=g)
    return x, groups, weight, bias


@pytest.mark.parametrize("seed", SEEDS)
def test_each_norm_equals_torch_with_and_without_affine(seed):
    x, groups, weight, bias = _random(seed)
    for wb in ((None, None), (weight, bias)):
        assert torch.allclose(batch_norm(x, *wb), F.batch_norm(x, None, None, *wb, training=True), atol=ATOL)
        assert torch.allclose(instance_norm(x, *wb), F.instance_norm(x, weight=wb[0], bias=wb[1]), atol=ATOL)
        assert torch.allclose(group_norm(x, groups, *wb), F.group_norm(x, groups, *wb), atol=ATOL)
    assert torch.allclose(layer_norm(x), F.layer_norm(x, x.shape[1:]), atol=ATOL)


@pytest.mark.parametrize("seed", SEEDS)
def test_layer_norm_affine_per_channel_and_per_element(seed):
    x, _, weight, bias = _random(seed)
    c, h, w = x.shape[1:]
    per_element = (weight[:, None, None].expand(c, h, w), bias[:, None, None].expand(c, h, w))
    expected = F.layer_norm(x, (c, h, w), *per_element)
    assert torch.allclose(layer_norm(x, weight, bias), expected, atol=ATOL)
    g = torch.Generator().manual_seed(seed + 100)
    w_full, b_full = torch.randn(c, h, w, generator=g), torch.randn(c, h, w, generator=g)
    assert torch.allclose(layer_norm(x, w_full, b_full), F.layer_norm(x, (c, h, w), w_full, b_full), atol=ATOL)


@pytest.mark.parametrize("seed", SEEDS)
def test_batch_norm_inference_uses_running_statistics(seed):
    x, _, weight, bias = _random(seed)
    g = torch.Generator().manual_seed(seed + 200)
    mean, var = torch.randn(x.shape[1], generator=g), torch.rand(x.shape[1], generator=g) + 0.5
    expected = F.batch_norm(x, mean, var, weight, bias, training=False)
    assert torch.allclose(batch_norm(x, weight, bias, running_mean=mean, running_var=var), expected, atol=ATOL)


@pytest.mark.parametrize("seed", SEEDS)
def test_group_norm_extremes_are_layer_and_instance_norm(seed):
    x, _, weight, bias = _random(seed)
    assert torch.allclose(group_norm(x, 1, weight, bias), layer_norm(x, weight, bias), atol=ATOL)
    assert torch.allclose(group_norm(x, x.shape[1], weight, bias), instance_norm(x, weight, bias), atol=ATOL)


@pytest.mark.parametrize("seed", SEEDS)
def test_only_batch_norm_mixes_samples(seed):
    x, groups, _, _ = _random(seed)
    other = x.clone()
    other[1:] = torch.randn(other[1:].shape, generator=torch.Generator().manual_seed(seed)) * 5
    assert not torch.allclose(batch_norm(x)[0], batch_norm(other)[0], atol=1e-3)
    for norm in (layer_norm, instance_norm, lambda t: group_norm(t, groups)):
        assert torch.allclose(norm(x)[0], norm(other)[0], atol=ATOL)


def test_normalize_gives_zero_mean_unit_variance_over_its_dims():
    x = torch.randn(4, 6, 5, 5, generator=torch.Generator().manual_seed(0)) * 4 - 2
    y = normalize(x, (0, 2, 3), eps=0.0)
    assert torch.allclose(y.mean(dim=(0, 2, 3)), torch.zeros(6), atol=1e-5)
    assert torch.allclose(y.var(dim=(0, 2, 3), correction=0), torch.ones(6), atol=1e-4)


@pytest.mark.parametrize("norm", [batch_norm, layer_norm, instance_norm, lambda x: group_norm(x, 2)])
@pytest.mark.parametrize("shape", [(8,), (2, 8), (2, 8, 5), (2, 8, 2, 3, 3)])
def test_norms_reject_other_layouts(norm, shape):
    with pytest.raises(ValueError, match="expects layout b c h w"):
        norm(torch.randn(shape))


def test_group_norm_needs_groups_dividing_channels():
    with pytest.raises(ValueError, match="divisible by groups=4"):
        group_norm(torch.randn(2, 6, 3, 3), 4)
    with pytest.raises(ValueError, match="divisible by groups=0"):
        group_norm(torch.randn(2, 6, 3, 3), 0)


def test_bad_affine_and_running_statistics_shapes():
    x = torch.randn(2, 6, 3, 3)
    with pytest.raises(ValueError, match=r"weight of shape \(c,\)"):
        instance_norm(x, torch.ones(5))
    with pytest.raises(ValueError, match=r"bias of shape \(c,\) or \(c, h, w\)"):
        layer_norm(x, None, torch.zeros(6, 3))
    with pytest.raises(ValueError, match="both running_mean and running_var"):
        batch_norm(x, running_mean=torch.zeros(6))
