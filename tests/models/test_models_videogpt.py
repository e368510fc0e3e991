import math

import pytest
import torch

from genlib import train
from genlib.models import videogpt as vg

TINY = vg.VideoVQVAEConfig(hidden=8, heads=2, down_t=1, down_hw=2, blocks=1, code_dim=4, num_codes=8)


def clips(b=2, t=4, size=8, seed=0):
    return torch.rand(b, t, 3, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_layouts_and_downsampling_factors():
    torch.manual_seed(0)
    model = vg.VideoVQVAE(TINY)
    x = clips(t=4, size=8)
    out = model(x)
    assert out.recon.shape == x.shape  # b t c h w in, b t c h w out
    assert out.z_e.shape == (2, TINY.code_dim, 2, 2, 2)  # b d t/2 h/4 w/4
    codes = model.encode(x)
    assert codes.shape == (2, 2, 2, 2) and TINY.factors == (2, 4)
    assert model.decode_indices(codes).shape == x.shape


@pytest.mark.parametrize("down_t, down_hw", [(0, 1), (1, 1), (2, 2), (1, 3)])
def test_factors_for_other_settings(down_t, down_hw):
    cfg = vg.VideoVQVAEConfig(hidden=4, heads=1, down_t=down_t, down_hw=down_hw, code_dim=2, num_codes=4)
    model = vg.VideoVQVAE(cfg)
    x = clips(b=1, t=4, size=16)
    assert model.encode(x).shape == (1, *cfg.latent_shape(4, 16, 16))
    assert model(x).recon.shape == x.shape


def test_bad_layouts_raise_naming_the_layout():
    model = vg.VideoVQVAE(TINY)
    with pytest.raises(ValueError, match="b t c h w"):
        model.encode(torch.zeros(2, 3, 8, 8))
    with pytest.raises(ValueError, match="b t c h w"):
        model(torch.zeros(2, 3, 4, 8, 8))  # b c t h w given where b t c h w is expected
    with pytest.raises(ValueError, match="do not divide"):
        model(clips(t=3))
    with pytest.raises(ValueError, match="b t h w"):
        model.decode_indices(torch.zeros(2, 2, 2, dtype=torch.long))


def test_straight_through_gradient_reaches_the_encoder():
    model = vg.VideoVQVAE(TINY)
    loss, scalars = model.loss(clips())
    loss.backward()
    assert model.encoder.net[0].weight.grad.abs().sum() > 0
    assert set(scalars) == {"rec", "vq", "perplexity"}


def test_attention_res_block_keeps_shape():
    block = vg.AttentionResBlock(8, heads=2)
    x = torch.randn(2, 8, 3, 4, 5)
    assert block(x).shape == x.shape
    with pytest.raises(ValueError, match="b c t h w"):
        block(torch.randn(2, 8, 4, 5))


PRIOR = vg.VideoPriorConfig(num_codes=8, t=3, h=2, w=2, dim=16, heads=2, layers=1)


def codes(b=4, seed=0):
    return torch.randint(8, (b, 3, 2, 2), generator=torch.Generator().manual_seed(seed))


def test_sequence_is_start_then_raster_order_time_slowest():
    prior = vg.VideoPrior(PRIOR)
    c = codes()
    seq = prior.sequence(c)
    assert seq.shape == (4, 1 + 12) and (seq[:, 0] == 8).all()
    assert seq[1, 1 + (2 * 2 * 2 + 1 * 2 + 0)].item() == c[1, 2, 1, 0].item()  # (t h + y) w + x
    with pytest.raises(ValueError, match="b t h w"):
        prior.sequence(c.flatten(1))


def test_loss_is_mean_nll():
    torch.manual_seed(0)
    prior = vg.VideoPrior(PRIOR)
    c = codes()
    assert math.isclose(prior.loss(c).item(), prior.nll(c).mean().item() / PRIOR.length, rel_tol=1e-5)


def test_causal_later_codes_do_not_change_earlier_logits():
    torch.manual_seed(0)
    prior = vg.VideoPrior(PRIOR).eval()
    a = prior.sequence(codes(seed=1))
    b = a.clone()
    i = 6
    b[:, i + 1:] = torch.randint(8, b[:, i + 1:].shape, generator=torch.Generator().manual_seed(5))
    la, lb = prior.gpt(a), prior.gpt(b)
    assert torch.allclose(la[:, : i + 1], lb[:, : i + 1], atol=1e-6)
    assert not torch.allclose(la[:, i + 1:], lb[:, i + 1:])


def test_sampling_keeps_the_prefix_and_is_reproducible():
    torch.manual_seed(0)
    prior = vg.VideoPrior(PRIOR)
    prefix = codes()[:, :1]
    s1 = prior.sample(prefix, generator=torch.Generator().manual_seed(3))
    s2 = prior.sample(prefix, generator=torch.Generator().manual_seed(3))
    assert s1.shape == (4, 3, 2, 2) and torch.equal(s1[:, :1], prefix) and torch.equal(s1, s2)
    assert 0 <= int(s1.min()) and int(s1.max()) < 8  # never the start token
    assert prior.sample(n=2, generator=torch.Generator().manual_seed(0)).shape == (2, 3, 2, 2)
    with pytest.raises(ValueError, match="prefix"):
        prior.sample(torch.zeros(2, 1, 3, 3, dtype=torch.long))
    with pytest.raises(ValueError):
        prior.sample()


def test_tiny_training_lowers_both_losses():
    torch.manual_seed(0)
    model = vg.VideoVQVAE(TINY)
    x = clips(b=4)
    first = model.loss(x)[0].item()
    hist = train.fit(model, lambda m, b: m.loss(b), [x], 30, lr=3e-3, progress=False)
    assert hist.loss[-1] < first
    prior = vg.VideoPrior(PRIOR)
    c = codes(b=8)
    hist = train.fit(prior, lambda m, b: m.loss(b), [c], 40, lr=1e-2, progress=False)
    assert hist.loss[-1] < hist.loss[0] - 0.3


def test_roll_out_slides_its_prefix_and_stitch_joins_the_windows():
    torch.manual_seed(0)
    first = vg.VideoVQVAE(vg.VideoVQVAEConfig.preset()).eval()
    prior = vg.VideoPrior(vg.VideoPriorConfig.preset(first.cfg)).eval()
    t = prior.cfg.t
    codes, windows = vg.roll_out(prior, first, 3, 2, keep=t // 2, generator=torch.Generator().manual_seed(0))
    assert codes.shape == (3, 3, t, prior.cfg.h, prior.cfg.w)
    assert windows.shape == (3, 3, vg.FRAMES, 3, vg.SIZE, vg.SIZE)
    assert torch.equal(codes[:, 1:, :t // 2], codes[:, :-1, t - t // 2:])
    assert not torch.equal(codes[:, 1:, t // 2:], codes[:, :-1, t // 2:])  # the rest is sampled anew
    with torch.no_grad():
        torch.testing.assert_close(windows[:, 1], first.decode_indices(codes[:, 1]).clamp(-1, 1))
    long = vg.stitch(windows, 4)
    assert long.shape[1] == vg.FRAMES + 2 * (vg.FRAMES - 4)
    assert torch.equal(long[:, :vg.FRAMES], windows[:, 0]) and torch.equal(long[:, -4:], windows[:, 2, 4:])
    with pytest.raises(ValueError, match="0 < keep"):
        vg.roll_out(prior, first, 3, 2, keep=t)
    with pytest.raises(ValueError, match="b r t c h w"):
        vg.stitch(windows[0], 4)
