"""Chapter 13's toy cascade: resizing clips, the stages' conditioning, joint training's temporal mask,
and the colour measures of oscillating guidance."""

import dataclasses

import pytest
import torch

from genlib.data import moving
from genlib.data.render import COLOURS, PALETTE
from genlib.models import imagen_video as iv
from genlib.models import imagen_video_cascade as ivc
from genlib.nn.unet import UNetConfig


def small(role: str, **kw) -> ivc.VideoStageConfig:
    """A tiny stage of the toy cascade, whatever the profile."""
    stage = ivc.TOY_CASCADE[ivc.ROLES[role]]
    channels = dict(in_channels=3, num_classes=ivc.NULL_COLOUR) if role == "base" else \
        dict(in_channels=6, out_channels=3, num_classes=6)
    unet = UNetConfig(image_size=stage.height, base_channels=8, channel_mult=(1, 2), groups=4, num_heads=2,
                      attention_resolutions=(stage.height // 2,) if role == "base" else (), **channels)
    return ivc.VideoStageConfig(role=role, unet=unet, steps=2, batch_size=2, warmup=0, **kw)


def scrambled(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Every parameter moved off its initial value (the temporal layers start as the identity)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=g))
    return model


def test_the_toy_cascade_ends_at_the_world_clip():
    names = [(s.name, s.frames, s.height) for s in ivc.TOY_CASCADE]
    assert names == [("base", 4, 8), ("TSR 1", 8, 8), ("SSR 1", 8, 16)]
    assert (ivc.WORLD_FRAMES, ivc.WORLD_SIZE) == (8, 16)


def test_to_stage_skips_frames_and_pools_pixels():
    clips = torch.arange(2 * 8 * 3 * 16 * 16, dtype=torch.float32).reshape(2, 8, 3, 16, 16)
    low = ivc.to_stage(clips, 4, 8)
    assert low.shape == (2, 4, 3, 8, 8)
    assert torch.equal(low[:, 1], torch.nn.functional.avg_pool2d(clips[:, 2], 2))  # frame 2 of 8 is frame 1 of 4
    with pytest.raises(ValueError, match="integer"):
        ivc.to_stage(clips, 3, 8)
    with pytest.raises(ValueError, match="b t c h w"):
        ivc.to_stage(clips[0], 4, 8)


def test_upsampling_repeats_frames_and_interpolates_pixels():
    low = torch.randn(2, 4, 3, 8, 8)
    held = ivc.upsample(low, "time")
    assert held.shape == (2, 8, 3, 8, 8) and torch.equal(held[:, 0::2], low) and torch.equal(held[:, 1::2], low)
    assert torch.equal(ivc.to_stage(held, 4, 8), low)  # skipping frames undoes holding them
    flat = torch.full((1, 2, 3, 4, 4), 0.25)
    assert torch.allclose(ivc.upsample(flat, "space"), torch.full((1, 2, 3, 8, 8), 0.25))
    assert ivc.naive_upsample(low).shape == (2, 8, 3, 16, 16)
    with pytest.raises(ValueError, match="axis"):
        ivc.upsample(low, "depth")


def test_stage_configs_are_checked():
    assert small("base").axis is None and small("tsr").axis == "time" and small("ssr").axis == "space"
    with pytest.raises(ValueError, match="role"):
        dataclasses.replace(small("base"), role="middle")
    with pytest.raises(ValueError, match="joint"):
        small("tsr", joint_images=4)
    with pytest.raises(ValueError, match="channels"):
        dataclasses.replace(small("tsr"), unet=small("base").unet)
    with pytest.raises(ValueError, match="residual"):
        small("base", residual=True)
    with pytest.raises(ValueError, match="crop"):
        small("tsr", crop=4)
    with pytest.raises(ValueError, match="crop"):
        small("ssr", crop=6)


def test_super_resolution_stages_read_the_upsampled_clip():
    torch.manual_seed(0)
    for role, low_shape, out_shape in (("tsr", (2, 4, 3, 8, 8), (2, 8, 3, 8, 8)),
                                       ("ssr", (2, 8, 3, 8, 8), (2, 8, 3, 16, 16))):
        m = scrambled(ivc.VideoStage(small(role)))
        z, low, level = torch.randn(out_shape), torch.randn(low_shape), torch.tensor([0, 3])
        out = m(z, torch.tensor([5, 500]), (low, level))
        assert out.shape == out_shape
        assert not torch.allclose(out, m(z, torch.tensor([5, 500]), (low + 1, level)))  # the condition is read
        with pytest.raises(ValueError, match="upsamples"):
            m(z, torch.tensor([5, 500]), (low[:, :2], level))
        loss = m.loss(moving.sample(2, 8, 16, seed=1).videos, torch.tensor([0, 1]))
        assert loss.ndim == 0 and torch.isfinite(loss)


def test_residual_stages_add_their_sample_to_the_upsampled_input():
    torch.manual_seed(0)
    for role, low_shape in (("tsr", (2, 4, 3, 8, 8)), ("ssr", (2, 8, 3, 8, 8))):
        m = ivc.VideoStage(small(role, residual=True, crop=8 if role == "ssr" else None))

        class Zero(torch.nn.Module):  # predicts v = 0: the residual x0 = alpha_t z_t, nearly 0 at t = T - 1
            def forward(self, z, t, level):
                return torch.zeros(z.shape[0], z.shape[1], 3, *z.shape[-2:])

        m.net = Zero()
        low = torch.rand(low_shape) * 1.6 - 0.8
        out = ivc.super_resolve(m, low, num_steps=1, aug_level=3)
        assert torch.allclose(out, ivc.upsample(low, m.cfg.axis), atol=1e-3)  # the clean input, not the noisy one
        loss = ivc.VideoStage(small(role, residual=True, crop=8 if role == "ssr" else None)).loss(
            moving.sample(2, 8, 16, seed=1).videos, torch.tensor([0, 1]))
        assert torch.isfinite(loss)


def test_temporal_mask_makes_frames_independent():
    torch.manual_seed(0)
    base = scrambled(ivc.VideoStage(small("base")))
    x, t, c = torch.randn(2, 4, 3, 8, 8), torch.tensor([100, 700]), torch.tensor([0, 3])
    moved = x.clone()
    moved[:, 0] += 1.0
    free = base(x, t, c)
    assert not torch.allclose(free[:, 3], base(moved, t, c)[:, 3], atol=1e-4)  # frame 0 reaches frame 3
    with ivc.temporal_masked(base.net):
        masked = base(x, t, c)
        assert torch.allclose(masked[:, 3], base(moved, t, c)[:, 3], atol=1e-6)  # ... and not under the mask
        single = torch.cat([base(x[:, i:i + 1], t, c) for i in range(4)], dim=1)  # one-frame videos
        assert torch.allclose(masked, single, atol=1e-5)
    assert torch.allclose(base(x, t, c), free)  # the mask is gone after the block
    loss = base.loss(moving.sample(2, 8, 16, seed=1).videos, torch.tensor([0, 1]),
                     moving.sample(3, 1, 16, seed=2).videos[:, 0], torch.tensor([2, 3, 4]))
    assert torch.isfinite(loss)
    with pytest.raises(ValueError, match="temporal layers"):
        with ivc.temporal_masked(torch.nn.Module()):
            pass


def test_generate_runs_the_whole_cascade():
    torch.manual_seed(0)
    stages = {role: ivc.VideoStage(small(role)) for role in ivc.ROLES}
    out = ivc.generate(stages, torch.tensor([0, 5]), num_steps=2, guidance=[3.0, 1.0])
    assert {k: tuple(v.shape) for k, v in out.items()} == {
        "base": (2, 4, 3, 8, 8), "tsr": (2, 8, 3, 8, 8), "ssr": (2, 8, 3, 16, 16)}
    assert all(v.abs().max() <= 1 for v in out.values())
    with pytest.raises(ValueError, match="aug_level"):
        ivc.super_resolve(stages["tsr"], out["base"], num_steps=2, aug_level=6)


def test_palette_fit_and_colour_report():
    pure = torch.stack([torch.tensor(PALETTE[c]) for c in COLOURS])  # k 3 in [0, 1]
    pixels = (pure * 0.6 * 2 - 1)[:, :, None, None]  # k 3 1 1: each colour at 60% coverage
    k, d = iv.palette_fit(pixels)
    assert k.flatten().tolist() == list(range(len(COLOURS))) and d.max() < 1e-6
    batch = moving.sample(16, 8, 16, seed=3, max_objects=1)
    asked = batch.attrs["colour"][:, 0]
    real = iv.colour_report(batch.videos, asked)
    assert torch.equal(real["share"], torch.ones(16)) and real["off_palette"].max() == 0
    assert real["drift"].max() < 1e-5  # one flat colour per clip
    assert iv.colour_report(batch.videos, (asked + 1) % len(COLOURS))["share"].max() == 0
    pushed = (batch.videos * 1.6 + 0.6).clamp(-1, 1)  # over-saturated and brightened: off the palette
    assert iv.colour_report(pushed, asked)["off_palette"].min() > 0.1
    shifted = batch.videos.clone()
    shifted[:, 4:] = shifted[:, 4:, [1, 2, 0]]  # channels rotated in the second half: the hue drifts
    assert iv.colour_report(shifted, asked)["drift"].min() > 0.1
    with pytest.raises(ValueError, match="one colour per clip"):
        iv.colour_report(batch.videos, asked[:3])
