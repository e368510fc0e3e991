import pytest
import torch

from genlib.nn.unet import UNet, UNetConfig, num_parameters

TINY = dict(base_channels=8, channel_mult=(1, 2), num_res_blocks=1, groups=4, num_heads=2, image_size=8,
            attention_resolutions=(4,))


def _trained_like(model):
    """Give the zero-initialised layers weights, as after some training."""
    torch.manual_seed(1)
    for p in model.parameters():
        if p.abs().sum() == 0 and p.ndim > 1:
            torch.nn.init.normal_(p, std=0.05)
    return model


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("levels", [(1,), (1, 2), (1, 2, 2)])
def test_output_shape_and_zero_at_init(seed, levels):
    torch.manual_seed(seed)
    cfg = UNetConfig(**{**TINY, "channel_mult": levels, "in_channels": 1 + seed % 3})
    x = torch.randn(2, cfg.in_channels, 8, 8)
    out = UNet(cfg)(x, torch.tensor([0, 999]))
    assert out.shape == x.shape
    assert torch.equal(out, torch.zeros_like(out))


def test_int_float_and_scalar_timesteps():
    model = _trained_like(UNet(UNetConfig(**TINY)))
    x = torch.randn(2, 3, 8, 8)
    a = model(x, torch.tensor([5, 5]))
    assert torch.allclose(a, model(x, torch.tensor([5.0, 5.0])))
    assert torch.allclose(a, model(x, 5))
    assert not torch.allclose(a, model(x, torch.tensor([5, 600])))


def test_out_channels_and_rectangular_input():
    model = UNet(UNetConfig(**TINY, out_channels=6))
    assert model(torch.randn(1, 3, 8, 12), torch.tensor([1])).shape == (1, 6, 8, 12)


def test_class_conditioning_changes_output_and_none_is_null_label():
    model = _trained_like(UNet(UNetConfig(**TINY, num_classes=4)))
    x, t = torch.randn(2, 3, 8, 8), torch.tensor([10, 10])
    y0, y1 = model(x, t, torch.tensor([0, 0])), model(x, t, torch.tensor([1, 1]))
    assert not torch.allclose(y0, y1)
    assert torch.allclose(model(x, t), model(x, t, torch.tensor([4, 4])))


def test_context_conditioning():
    model = _trained_like(UNet(UNetConfig(**TINY, context_dim=6)))
    x, t = torch.randn(2, 3, 8, 8), torch.tensor([10, 10])
    assert not torch.allclose(model(x, t, torch.randn(2, 5, 6)), model(x, t, torch.randn(2, 5, 6)))
    assert model(x, t).shape == x.shape


def test_batch_independence():
    model = _trained_like(UNet(UNetConfig(**TINY))).eval()
    x, t = torch.randn(3, 3, 8, 8), torch.tensor([1, 2, 3])
    full = model(x, t)
    assert torch.allclose(full[1:2], model(x[1:2], t[1:2]), atol=1e-5)


def test_gradients_reach_every_parameter_after_a_few_steps():
    model = UNet(UNetConfig(**TINY, num_classes=3, context_dim=None))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x = torch.randn(2, 3, 8, 8)
    for _ in range(4):  # zero-initialised layers unblock the gradient one step at a time
        opt.zero_grad()
        (model(x, torch.tensor([1, 2]), torch.tensor([0, 1])) - x).square().mean().backward()
        opt.step()
    missing = [n for n, p in model.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert not missing


def test_presets_follow_profile(monkeypatch):
    counts = {}
    for profile in ("ci", "cpu", "gpu"):
        monkeypatch.setenv("GENLIB_PROFILE", profile)
        counts[profile] = num_parameters(UNet(UNetConfig.preset()))
    assert counts["ci"] < 100_000 < counts["cpu"] < 1_500_000 < counts["gpu"] < 6_000_000
    assert UNetConfig.preset(in_channels=1).in_channels == 1


def test_config_round_trips_through_dict():
    cfg = UNetConfig(**TINY)
    assert UNetConfig(**cfg.to_dict()) == cfg


def test_bad_inputs():
    model = UNet(UNetConfig(**TINY))
    with pytest.raises(ValueError, match="b c h w"):
        model(torch.randn(3, 8, 8), torch.tensor([1]))
    with pytest.raises(ValueError, match="divisible by 2"):
        model(torch.randn(1, 3, 7, 8), torch.tensor([1]))
    with pytest.raises(ValueError, match="timesteps t of layout b"):
        model(torch.randn(2, 3, 8, 8), torch.tensor([1, 2, 3]))
    with pytest.raises(ValueError, match="unconditional"):
        model(torch.randn(1, 3, 8, 8), torch.tensor([1]), torch.tensor([0]))
    labelled = UNet(UNetConfig(**TINY, num_classes=2))
    with pytest.raises(ValueError, match="labels must be in"):
        labelled(torch.randn(1, 3, 8, 8), torch.tensor([1]), torch.tensor([5]))
    with pytest.raises(ValueError, match="divisible by groups"):
        UNetConfig(**{**TINY, "base_channels": 6})
    with pytest.raises(ValueError, match="image_size"):
        UNetConfig(**{**TINY, "image_size": 9})


def test_runs_under_bf16_autocast():
    model = _trained_like(UNet(UNetConfig(**TINY, context_dim=6)))
    x = torch.randn(2, 3, 8, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x, torch.tensor([3, 700]), torch.randn(2, 4, 6))
    assert out.shape == x.shape and torch.isfinite(out.float()).all()


def test_timesteps_of_the_wrong_type_or_sign_are_errors():
    import numpy as np

    model = UNet(UNetConfig(**TINY))
    x = torch.randn(2, 3, 8, 8)
    with pytest.raises(ValueError, match="timesteps t must be numbers"):
        model(x, "10")
    with pytest.raises(ValueError, match="timesteps t must be numbers"):
        model(x, torch.tensor([True, False]))
    with pytest.raises(ValueError, match="t must be >= 0"):
        model(x, torch.tensor([3, -1]))
    # numpy integers and arrays are timesteps like any other
    torch.testing.assert_close(model(x, np.int64(5)), model(x, torch.tensor([5, 5])))
    torch.testing.assert_close(model(x, np.array([5, 7])), model(x, torch.tensor([5, 7])))
    torch.testing.assert_close(model(x, np.array([5, 7], dtype=np.uint64)), model(x, torch.tensor([5, 7])))
    torch.testing.assert_close(model(x, [5, 7]), model(x, torch.tensor([5, 7])))


@pytest.mark.parametrize("groups", [0, -4])
def test_non_positive_groups_is_a_config_error(groups):
    """``groups=0`` once raised ZeroDivisionError from the divisibility check."""
    with pytest.raises(ValueError, match="groups"):
        UNetConfig(**{**TINY, "groups": groups})


def test_after_block_hook_sees_every_block_in_order_and_can_change_the_output():
    from genlib.nn.attention import AttentionBlock2d
    from genlib.nn.resblock import ResBlock

    torch.manual_seed(0)
    cfg = UNetConfig(in_channels=3, image_size=8, base_channels=8, channel_mult=(1, 2), groups=4, num_heads=2,
                     attention_resolutions=(4,))
    net = _trained_like(UNet(cfg)).eval()
    x, t = torch.randn(2, 3, 8, 8), torch.tensor([3, 700])
    calls = []

    def spy(block, h):
        calls.append(block)
        return h

    with torch.no_grad():
        plain = net(x, t)
        assert torch.equal(net(x, t, after_block=spy), plain)  # an identity hook changes nothing
        shifted = net(x, t, after_block=lambda block, h: h + 1.0)
    blocks = [m for m in net.modules() if isinstance(m, (ResBlock, AttentionBlock2d))]
    assert len(calls) == len(blocks) and {id(m) for m in calls} == {id(m) for m in blocks}
    order = [m for layer in [*net.down, net.mid, *net.up] for m in layer if isinstance(m, (ResBlock, AttentionBlock2d))]
    assert [id(m) for m in calls] == [id(m) for m in order]  # down, middle, up: the forward's own order
    assert not torch.allclose(shifted, plain)
