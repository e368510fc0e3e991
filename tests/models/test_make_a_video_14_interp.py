"""Make-A-Video's frame interpolation (chapter 14): linear blending is exact on linear motion,
the interpolator keeps the known frames and never reads the missing ones."""

import dataclasses

import pytest
import torch

from genlib.models import make_a_video_interp as mi


def test_known_frames_every_skip():
    assert mi.known_frames(9, 4).tolist() == [True, False, False, False, True, False, False, False, True]
    with pytest.raises(ValueError):
        mi.known_frames(1, 2)


def test_blending_is_exact_on_a_linear_ramp_and_copies_otherwise():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(2, 1, 3, 4, 4, generator=g)
    t = torch.arange(9, dtype=torch.float32)[None, :, None, None, None]
    ramp = a + t * b  # b t c h w, linear in time
    known = mi.known_frames(9, 4)
    assert (mi.blend_frames(ramp, known) - ramp).abs().max() < 1e-5
    nearest = mi.blend_frames(ramp, known, blend=False)
    assert torch.equal(nearest[:, 1], ramp[:, 0]) and torch.equal(nearest[:, 3], ramp[:, 4])
    # the midpoint of two known frames is their mean; a frame after the last known one is copied
    steps = torch.stack([torch.zeros(3, 2, 2), torch.zeros(3, 2, 2), torch.ones(3, 2, 2), torch.ones(3, 2, 2)])[None]
    filled = mi.blend_frames(steps, torch.tensor([True, False, True, False]))
    assert torch.allclose(filled[0, 1], torch.full((3, 2, 2), 0.5)) and torch.equal(filled[0, 3], steps[0, 2])
    with pytest.raises(ValueError, match="known"):
        mi.blend_frames(ramp, torch.zeros(9, dtype=torch.bool))


def _model(**kw) -> mi.FrameInterpolator:
    cfg = mi.InterpConfig(frames=5, size=8, skips=(2, 4), base_channels=8, steps=1, batch_size=1, **kw)
    torch.manual_seed(0)
    model = mi.FrameInterpolator(cfg)
    with torch.no_grad():  # as after training: no zero layers left
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return model.eval()


def test_interpolator_keeps_known_frames_and_never_reads_the_missing_ones():
    model = _model()
    g = torch.Generator().manual_seed(1)
    clips = torch.rand(2, 5, 3, 8, 8, generator=g) * 2 - 1
    known = mi.known_frames(5, 2)
    other = clips.clone()
    other[:, ~known] = torch.rand(other[:, ~known].shape, generator=g) * 2 - 1
    with torch.no_grad():
        out, out_other = model(clips, known, 4.0), model(other, known, 4.0)
        out_rate = model(clips, known, 2.0)
    assert out.shape == clips.shape
    assert torch.equal(out[:, known], clips[:, known])
    assert torch.equal(out, torch.where(known[None, :, None, None, None], clips, out_other))
    assert (out - out_rate)[:, ~known].abs().max() > 1e-4  # the rate reaches the prediction


def test_interpolation_loss_is_on_the_missing_frames():
    model = _model()
    clips = torch.randn(2, 5, 3, 8, 8)
    loss = mi.interpolation_loss(model, clips, 2)
    known = mi.known_frames(5, 2)
    with torch.no_grad():
        want = (model(clips, known, model.cfg.fps(2)) - clips)[:, ~known].pow(2).mean()
    assert torch.allclose(loss, want)
    loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_config_needs_skips_that_reach_the_last_frame():
    cfg = mi.InterpConfig(frames=9, skips=(2, 4))
    assert cfg.fps(4) == cfg.base_fps / 4 and cfg.unet.in_channels == 4 and cfg.unet.out_channels == 3
    with pytest.raises(ValueError, match="divide"):
        dataclasses.replace(cfg, skips=(3,))
    with pytest.raises(ValueError, match="divide"):
        dataclasses.replace(cfg, skips=(1,))
