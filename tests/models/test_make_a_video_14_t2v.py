"""Make-A-Video's text-to-video pieces (chapter 14): the colour reader reads the world's ground
truth, guidance at scale 0 is the unconditional sampler, the colour DDPM's config checks itself."""

import dataclasses

import pytest
import torch

from genlib.data import moving
from genlib.data.render import COLOURS, PALETTE
from genlib.models import make_a_video as mav
from genlib.models import make_a_video_t2v as t2v
from genlib.diffusion import NoiseSchedule
from genlib.nn.unet import UNet, UNetConfig


def _flat(colour: str, brightness: float = 1.0, side: int = 8) -> torch.Tensor:
    """One frame ``3 h w`` in [-1, 1] filled with a palette colour at some brightness."""
    rgb = torch.tensor(PALETTE[colour]) * brightness
    return (rgb[:, None, None] * 2 - 1).expand(3, side, side)


def test_colours_seen_reads_hue_not_brightness():
    frames = torch.stack([_flat(c, b) for c in COLOURS for b in (1.0, 0.6)])
    seen = t2v.colours_seen(frames)
    want = torch.eye(len(COLOURS), dtype=torch.bool).repeat_interleave(2, dim=0)
    assert torch.equal(seen, want)
    assert not t2v.colours_seen(-torch.ones(2, 3, 8, 8)).any()  # black: nothing lit


def test_colours_seen_needs_min_pixels():
    frame = -torch.ones(1, 3, 8, 8)
    frame[0, :, 0, 0] = _flat("red")[:, 0, 0]  # one red pixel
    assert not t2v.colours_seen(frame, min_pixels=2).any()
    assert t2v.colours_seen(frame, min_pixels=1)[0, COLOURS.index("red")]


def test_colours_seen_matches_the_worlds_ground_truth_on_one_object_clips():
    batch = moving.sample(40, frames=4, size=16, seed=3, max_objects=1)
    truth = t2v.colours_in(batch)  # b k, one colour each
    assert torch.equal(truth.sum(1), torch.ones(40, dtype=torch.long))
    for f in range(4):
        assert torch.equal(t2v.colours_seen(batch.videos[:, f]), truth)


def test_colour_share_counts_frames():
    red, black = _flat("red"), -torch.ones(3, 8, 8)
    clip = torch.stack([red, black, red, red])[None]  # 1 t c h w
    got = t2v.colour_share(clip.expand(2, -1, -1, -1, -1),
                           torch.tensor([COLOURS.index("red"), COLOURS.index("blue")]))
    assert got.tolist() == [0.75, 0.0]
    with pytest.raises(ValueError, match="one colour per clip"):
        t2v.colour_share(clip, torch.tensor([0, 1]))


def test_labelled_frames_carry_the_first_objects_colour():
    cfg = t2v.ColourDDPMConfig.preset(batch_size=6)
    x0, colour = t2v.labelled_frames(cfg, 0)
    assert x0.shape == (6, 3, cfg.image_size, cfg.image_size) and colour.shape == (6,)
    seen = t2v.colours_seen(x0)
    assert seen[torch.arange(6), colour].all()


def test_colour_config_checks_its_label_count_and_drop_rate():
    cfg = t2v.ColourDDPMConfig.preset()
    assert cfg.unet.num_classes == len(COLOURS)
    with pytest.raises(ValueError, match="num_classes"):
        dataclasses.replace(cfg, unet=dataclasses.replace(cfg.unet, num_classes=3))
    with pytest.raises(ValueError, match="p_uncond"):
        dataclasses.replace(cfg, p_uncond=0.0)


def _tiny_video_model() -> mav.InflatedUNet:
    torch.manual_seed(0)
    net = UNet(UNetConfig(in_channels=3, image_size=8, base_channels=8, channel_mult=(1, 2), groups=4,
                          num_heads=2, attention_resolutions=(), num_classes=len(COLOURS)))
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return mav.inflate(net).eval()


def test_guidance_scale_zero_is_the_null_label_and_the_label_matters():
    model, schedule = _tiny_video_model(), NoiseSchedule("linear", 100)
    noise = torch.randn(3, 2, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    labels = torch.tensor([0, 2, 5])
    kw = dict(num_steps=3, prediction_type="v_prediction")
    uncond = t2v.sample_clips(model, schedule, noise, **kw)
    zero = t2v.sample_clips(model, schedule, noise, labels=labels, guidance_scale=0.0, **kw)
    guided = t2v.sample_clips(model, schedule, noise, labels=labels, guidance_scale=3.0, **kw)
    assert uncond.shape == noise.shape
    assert (zero - uncond).abs().max() < 1e-5  # s = 0: pred_u + 0 (pred_c - pred_u)
    assert (guided - uncond).abs().max() > 1e-3  # the label reaches every frame
    with pytest.raises(ValueError, match="one colour label per clip"):
        t2v.sample_clips(model, schedule, noise, labels=labels[:2], **kw)

