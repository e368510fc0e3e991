"""Tests of the video layers (genlib.nn.video): shapes, identities at initialisation, which
positions each attention layer reads, and the analytic costs against PyTorch's FLOP counter."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from einops import rearrange
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from genlib.nn import video as V

PROPERTY = settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
C = 8


def clip(b=2, c=C, t=5, h=6, w=6, seed=0):
    return torch.randn(b, c, t, h, w, generator=torch.Generator().manual_seed(seed))


def every_layer(c=C):
    return {
        "FullConv3d": V.FullConv3d(c, c, layout=V.CHANNELS_FIRST),
        "FullConv3d kt=1 stride 2": V.FullConv3d(c, 2 * c, kernel_t=1, stride=2, layout=V.CHANNELS_FIRST),
        "Conv2Plus1d": V.Conv2Plus1d(c, c, layout=V.CHANNELS_FIRST),
        "Conv2Plus1d mid stride 2": V.Conv2Plus1d(c, c, mid_channels=V.r2plus1d_mid_channels(c, c), stride=2,
                                                  mid_activation=True, layout=V.CHANNELS_FIRST),
        "SpatialAttention": V.SpatialAttention(c, heads=2, layout=V.CHANNELS_FIRST),
        "TemporalAttention": V.TemporalAttention(c, heads=2, layout=V.CHANNELS_FIRST),
        "TemporalAttention causal": V.TemporalAttention(c, heads=2, causal=True, layout=V.CHANNELS_FIRST),
        "FullAttention": V.FullAttention(c, heads=2, layout=V.CHANNELS_FIRST),
        "AxialAttention3d": V.AxialAttention3d(c, heads=2, layout=V.CHANNELS_FIRST),
        "AxialAttention3d parallel": V.AxialAttention3d(c, heads=2, parallel=True, layout=V.CHANNELS_FIRST),
        "spatial then temporal": nn.Sequential(V.SpatialAttention(c, heads=2, layout=V.CHANNELS_FIRST), V.TemporalAttention(c, heads=2, layout=V.CHANNELS_FIRST)),
    }


@pytest.mark.parametrize("name", list(every_layer()))
def test_shapes(name):
    layer = every_layer()[name]
    x = clip()
    y = layer(x)
    t, h, w = getattr(layer, "out_shape", lambda *s: s)(5, 6, 6)
    c_out = getattr(layer, "out_channels", C)
    assert y.shape == (2, c_out, t, h, w)
    if "Attention" in name or "temporal" in name:
        assert y.shape == x.shape


@pytest.mark.parametrize("name", list(every_layer()))
def test_analytic_cost_matches_counted(name):
    torch.manual_seed(0)
    layer = every_layer()[name]
    t, h, w = 4, 6, 5
    cost = V.layer_cost(layer, t, h, w)
    assert cost.params == V.num_parameters(layer)
    assert cost.macs == V.counted_macs(layer, clip(b=1, t=t, h=h, w=w))
    assert cost.flops == 2 * cost.macs


def test_score_counts():
    t, h, w = 8, 16, 16
    full, spatial, temporal = (V.layer_cost(cls(C, layout=V.CHANNELS_FIRST), t, h, w).scores for cls in (V.FullAttention, V.SpatialAttention, V.TemporalAttention))
    assert full == (t * h * w) ** 2
    assert spatial + temporal == (h * w) ** 2 * t + t**2 * h * w
    assert V.layer_cost(V.AxialAttention3d(C, layout=V.CHANNELS_FIRST), t, h, w).scores == t * h * w * (t + h + w)


def test_conv3d_matches_survey_sum_with_bounds_k_minus_1():
    """App. C.4's sum, with each index running over the k taps 0..k-1, is what Conv3d computes."""
    torch.manual_seed(0)
    x, wt = torch.randn(1, 1, 5, 6, 7), torch.randn(1, 1, 3, 3, 3)
    y = F.conv3d(x, wt)  # no padding: valid positions only
    by_sum = torch.zeros_like(y)
    for a in range(3):
        for m in range(3):
            for n in range(3):
                by_sum += x[:, :, a:a + 3, m:m + 4, n:n + 5] * wt[0, 0, a, m, n]
    assert torch.allclose(y, by_sum, atol=1e-5)


def test_r2plus1d_mid_channels_matches_3d_parameters():
    for c_in, c_out in [(64, 64), (3, 64), (128, 256)]:
        m = V.r2plus1d_mid_channels(c_in, c_out)
        full = V.FullConv3d(c_in, c_out, layout=V.CHANNELS_FIRST).cost(1, 1, 1).params - c_out  # weights, without biases
        factorised = V.Conv2Plus1d(c_in, c_out, mid_channels=m, layout=V.CHANNELS_FIRST).cost(1, 1, 1).params - m - c_out
        assert 0 <= full - factorised < 9 * c_in + 3 * c_out  # M is rounded down: one mid channel at most


def test_2plus1d_with_mid_equal_out_is_smaller_only_when_c_out_below_6_c_in():
    """Weights 9 c_in c_out + 3 c_out^2 against 27 c_in c_out: fewer exactly when c_out < 6 c_in."""
    weights = lambda layer: sum(p.numel() for name, p in layer.named_parameters() if name.endswith("weight"))
    for c_in, c_out in [(8, 8), (8, 47), (8, 48), (8, 49), (3, 64)]:
        smaller = weights(V.Conv2Plus1d(c_in, c_out, layout=V.CHANNELS_FIRST)) < weights(V.FullConv3d(c_in, c_out, layout=V.CHANNELS_FIRST))
        assert smaller == (c_out < 6 * c_in)


@given(seed=st.integers(0, 10_000), t=st.integers(1, 5), k=st.sampled_from([1, 3, 5]))
@PROPERTY
def test_identity_init_2plus1d_equals_per_frame_spatial_conv(seed, t, k):
    torch.manual_seed(seed)
    layer = V.Conv2Plus1d(C, C, kernel=k, kernel_t=3, identity_init=True, layout=V.CHANNELS_FIRST)
    x = clip(t=t, seed=seed)
    per_frame = V.from_frames(layer.spatial(V.to_frames(x)), t)
    assert torch.allclose(layer(x), per_frame, atol=1e-5)


def test_identity_init_needs_equal_widths():
    with pytest.raises(ValueError, match="mid_channels"):
        V.Conv2Plus1d(C, C, mid_channels=4, identity_init=True, layout=V.CHANNELS_FIRST)


@pytest.mark.parametrize("layer", [V.TemporalAttention(C, heads=2, zero_init=True, layout=V.CHANNELS_FIRST),
                                   V.TemporalAttention(C, heads=2, causal=True, zero_init=True, layout=V.CHANNELS_FIRST),
                                   V.SpatialAttention(C, heads=2, zero_init=True, layout=V.CHANNELS_FIRST)])
def test_zero_init_attention_is_identity(layer):
    x = clip()
    assert torch.equal(layer(x), x)


@given(seed=st.integers(0, 10_000), t=st.integers(2, 6))
@PROPERTY
def test_causal_temporal_attention_never_reads_later_frames(seed, t):
    torch.manual_seed(seed)
    layer = V.TemporalAttention(C, heads=2, causal=True, layout=V.CHANNELS_FIRST)
    x = clip(t=t, seed=seed)
    for cut in range(t - 1):
        edited = x.clone()
        edited[:, :, cut + 1:] = torch.randn_like(edited[:, :, cut + 1:])
        with torch.no_grad():
            assert torch.allclose(layer(x)[:, :, :cut + 1], layer(edited)[:, :, :cut + 1], atol=1e-6)
            assert not torch.allclose(layer(x)[:, :, cut + 1:], layer(edited)[:, :, cut + 1:])


def test_reach_of_each_attention_layer():
    torch.manual_seed(0)
    t, h, w, q = 4, 5, 5, (2, 1, 3)
    x = clip(b=1, t=t, h=h, w=w)
    reach = lambda layer: V.attention_reach(layer, x, q)
    frame = torch.zeros(t, h, w, dtype=torch.bool)
    frame[2] = True
    line = torch.zeros(t, h, w, dtype=torch.bool)
    line[:, 1, 3] = True
    axes = line.clone()
    axes[2, :, 3] = axes[2, 1, :] = True
    assert torch.equal(reach(V.SpatialAttention(C, heads=2, layout=V.CHANNELS_FIRST)), frame)  # its own frame, nothing else
    assert torch.equal(reach(V.TemporalAttention(C, heads=2, layout=V.CHANNELS_FIRST)), line)  # its own pixel in every frame
    causal_line = line.clone()
    causal_line[3:] = False
    assert torch.equal(reach(V.TemporalAttention(C, heads=2, causal=True, layout=V.CHANNELS_FIRST)), causal_line)
    assert torch.equal(reach(V.AxialAttention3d(C, heads=2, parallel=True, layout=V.CHANNELS_FIRST)), axes)
    for layer in (V.FullAttention(C, heads=2, layout=V.CHANNELS_FIRST), V.AxialAttention3d(C, heads=2, layout=V.CHANNELS_FIRST),
                  nn.Sequential(V.SpatialAttention(C, heads=2, layout=V.CHANNELS_FIRST), V.TemporalAttention(C, heads=2, layout=V.CHANNELS_FIRST))):
        assert reach(layer).all()


def test_spatial_attention_never_mixes_frames():
    torch.manual_seed(0)
    layer = V.SpatialAttention(C, heads=2, layout=V.CHANNELS_FIRST)
    x = clip()
    per_frame = torch.cat([layer(x[:, :, i:i + 1]) for i in range(x.shape[2])], dim=2)
    assert torch.allclose(layer(x), per_frame, atol=1e-6)


def test_temporal_attention_sees_frame_order_only_with_positions():
    """Without frame embeddings, attention over frames is blind to order: permuting the frames
    permutes the output the same way. With them it is not."""
    torch.manual_seed(0)
    x, perm = clip(), torch.tensor([3, 0, 4, 1, 2])
    blind = V.TemporalAttention(C, heads=2, frame_positions=False, layout=V.CHANNELS_FIRST)
    assert torch.allclose(blind(x[:, :, perm]), blind(x)[:, :, perm], atol=1e-5)
    seeing = V.TemporalAttention(C, heads=2, layout=V.CHANNELS_FIRST)
    assert not torch.allclose(seeing(x[:, :, perm]), seeing(x)[:, :, perm], atol=1e-3)


def test_frames_round_trip():
    x = clip()
    frames = V.to_frames(x)
    assert frames.shape == (2 * 5, C, 6, 6)
    assert torch.equal(frames[1], x[0, :, 1])  # frame 1 of clip 0
    assert torch.equal(V.from_frames(frames, 5), x)
    assert torch.equal(frames, rearrange(x, "b c t h w -> (b t) c h w"))


@pytest.mark.parametrize("name", list(every_layer()))
def test_bad_rank_names_the_layout(name):
    layer = every_layer()[name]
    with pytest.raises(ValueError, match="b c t h w"):
        layer(torch.randn(2, C, 6, 6))  # an image batch, not clips


def test_wrong_channels_and_bad_options():
    with pytest.raises(ValueError, match="c=8"):
        V.SpatialAttention(C, layout=V.CHANNELS_FIRST)(clip(c=4))
    with pytest.raises(ValueError, match="causal"):
        V.VideoAttention(C, over="space", causal=True, layout=V.CHANNELS_FIRST)
    with pytest.raises(ValueError, match="over"):
        V.VideoAttention(C, over="diagonal", layout=V.CHANNELS_FIRST)
    with pytest.raises(ValueError, match=r"\(b t\) c h w"):
        V.from_frames(torch.randn(7, C, 4, 4), 2)


# ----------------------------------------------------------------------------- layouts (issue 14)

LAYERS = {
    "FullConv3d": lambda layout: V.FullConv3d(C, C, layout=layout),
    "Conv2Plus1d": lambda layout: V.Conv2Plus1d(C, C, stride=2, layout=layout),
    "SpatialAttention": lambda layout: V.SpatialAttention(C, heads=2, layout=layout),
    "TemporalAttention": lambda layout: V.TemporalAttention(C, heads=2, causal=True, layout=layout),
    "FullAttention": lambda layout: V.FullAttention(C, heads=2, layout=layout),
    "AxialAttention3d": lambda layout: V.AxialAttention3d(C, heads=2, parallel=True, layout=layout),
}


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_every_layer_must_be_told_its_layout(name):
    """A clip with as many frames as channels fits both layouts: no layer may guess which."""
    with pytest.raises(ValueError, match="needs layout='b c t h w'.*or layout='b t c h w'"):
        LAYERS[name](None)


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_frames_first_equals_channels_first_on_the_rearranged_clip(name):
    torch.manual_seed(0)
    first = LAYERS[name](V.FRAMES_FIRST)
    other = LAYERS[name](V.CHANNELS_FIRST)
    other.load_state_dict(first.state_dict())
    x = torch.randn(2, C, C, 4, 4)  # t = c = C: both layouts accept the shape
    with torch.no_grad():
        a = first(x)
        b = V.back_to(other(V.channels_first(x, V.FRAMES_FIRST)), V.FRAMES_FIRST)
        misread = other(x)
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    assert (a - V.back_to(misread, V.FRAMES_FIRST)).abs().max() > 1e-3  # the layouts really differ here
