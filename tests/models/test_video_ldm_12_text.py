"""Video-LDM with a text-to-image backbone (chapter 12): alpha = 1 is still the image model with the
caption passed, the caption reaches every frame, guidance's two ends, and the colour reader."""

import dataclasses

import pytest
import torch

from genlib.data import moving
from genlib.data.render import COLOURS
from genlib.models import video_ldm as vl
from genlib.nn.unet import UNetConfig
from genlib.nn.video import from_frames, to_frames

N_TEXT, D_TEXT = 5, 8  # text states per caption, their width
UNET = UNetConfig(in_channels=4, image_size=8, base_channels=8, channel_mult=(1, 2), groups=4, num_heads=2,
                  attention_resolutions=(4,), context_dim=D_TEXT)


def _image(seed: int = 0) -> vl.ImageLDM:
    torch.manual_seed(seed)
    model = vl.ImageLDM(vl.ImageLDMConfig(unet=UNET, max_len=N_TEXT))
    for p in model.parameters():  # nonzero everywhere (fresh output and cross-attention projections are zero)
        p.data.add_(0.05 * torch.randn_like(p))
    model.null_text.normal_()
    return model.eval()


def _video(frames: int = 4, **kw) -> vl.VideoLDM:
    model = vl.VideoLDM(vl.VideoLDMConfig(frames=frames, **kw), _image())
    for p in model.temporal_parameters():  # as if trained
        p.data.add_(0.1 * torch.randn_like(p))
    return model.eval()


def _text(b: int, seed: int = 1) -> torch.Tensor:
    return torch.randn(b, N_TEXT, D_TEXT, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("kind", vl.KINDS)
def test_alpha_one_is_the_text_to_image_model_frame_by_frame_with_the_caption(kind):
    model = _video(temporal=kind)
    z, t, text = torch.randn(2, 4, 4, 8, 8), torch.tensor([5, 700]), _text(2)
    cond = vl.VideoCond(vl.make_context(z, vl.context_mask("interpolate", 4)), text)
    with torch.no_grad():
        model.set_alpha(1.0)
        out = model(z, t, cond)
        model.set_alpha(None)
        mixed = model(z, t, cond)
        ref = from_frames(model.image(to_frames(z), t.repeat_interleave(4), text.repeat_interleave(4, 0)), 4)
        other_caption = from_frames(model.image(to_frames(z), t.repeat_interleave(4), _text(8, seed=2)), 4)
    assert torch.equal(out, ref)
    assert (mixed - ref).abs().max() > 1e-4
    assert (other_caption - ref).abs().max() > 1e-4  # the caption matters: the identity is not vacuous


def test_no_caption_means_the_empty_captions_states_and_a_bare_context_means_no_caption():
    model = _video()
    z, t = torch.randn(2, 4, 4, 8, 8), torch.tensor([300, 300])
    ctx = vl.make_context(z, vl.context_mask("predict", 4, 1))
    null = model.image.null_text.expand(2, -1, -1)
    with torch.no_grad():
        bare = model(z, t, ctx)
        assert torch.equal(bare, model(z, t, vl.VideoCond(ctx, None)))
        assert torch.equal(bare, model(z, t, vl.VideoCond(ctx, null)))
        assert (bare - model(z, t, vl.VideoCond(ctx, _text(2)))).abs().max() > 1e-4
        assert torch.equal(model.image(z[:, :, 0], t), model.image(z[:, :, 0], t, null))


def test_an_unconditional_image_model_refuses_text():
    image = vl.ImageLDM(vl.ImageLDMConfig(unet=dataclasses.replace(UNET, context_dim=None)))
    assert not image.cfg.conditional and not hasattr(image, "null_text")
    with pytest.raises(ValueError, match="unconditional"):
        image(torch.randn(1, 4, 8, 8), torch.tensor([1]), _text(1))


def test_guidance_scale_zero_is_the_empty_caption_and_one_is_the_caption_alone():
    model = _video()
    text, known = _text(2), vl.context_mask("interpolate", 4)
    z_known = torch.randn(2, 4, 4, 8, 8)
    kw = dict(known=known, z_known=z_known, num_steps=3, seed=5)
    empty = vl.sample(model, 2, **kw)
    assert torch.allclose(vl.sample(model, 2, text=text, guidance_scale=0.0, **kw), empty, atol=1e-6)
    alone = vl.sample(model, 2, text=text, **kw)
    assert torch.allclose(vl.sample(model, 2, text=text, guidance_scale=1.0, **kw), alone)
    guided = vl.sample(model, 2, text=text, guidance_scale=3.0, **kw)
    assert (guided - alone).abs().max() > 1e-4 and (alone - empty).abs().max() > 1e-4
    with pytest.raises(ValueError, match="one caption's states per clip"):
        vl.sample(model, 2, text=_text(3), **kw)


def test_training_with_captions_moves_only_temporal_layers_and_needs_one_caption_per_clip():
    model = vl.VideoLDM(vl.VideoLDMConfig(frames=3, steps=2, batch_size=2, warmup=0), _image())
    before = {k: v.clone() for k, v in model.image.state_dict().items()}
    latents = torch.randn(4, 4, 3, 8, 8)
    out = vl.train_video_ldm(model, latents, _text(4))
    assert len(out["history"]["loss"]) == 2
    assert all(torch.equal(v, model.image.state_dict()[k]) for k, v in before.items())
    with pytest.raises(ValueError, match="one caption's states per clip"):
        vl.train_video_ldm(model, latents)
    with pytest.raises(ValueError, match="one caption's states per clip"):
        vl.train_video_ldm(model, latents, _text(3))


def test_prompts_name_each_clips_colour_and_shape():
    batch = vl.training_batch(6, 2, seed=3)
    for prompt, caption in zip(vl.prompts(batch), batch.captions):
        assert caption.startswith(prompt + " moving ")


def test_the_colour_reader_reads_rendered_clips_and_says_no():
    batch = moving.sample(64, frames=3, size=16, seed=4, max_objects=1)
    truth = batch.attrs["colour"][:, 0]
    assert torch.equal(vl.clip_colour(batch.videos), truth)
    assert vl.colour_agreement(batch.videos, truth).sum() == 64
    assert vl.colour_agreement(batch.videos, (truth + 1) % len(COLOURS)).sum() == 0
    dimmer = (batch.videos + 1) * 0.8 - 1  # 80% brightness: the hue, and so the vote, stays
    assert torch.equal(vl.clip_colour(dimmer), truth)
    black = -torch.ones(2, 3, 3, 16, 16)
    assert vl.clip_colour(black).tolist() == [-1, -1]  # nothing lit: no colour, never agreement
    assert vl.colour_agreement(black, torch.zeros(2, dtype=torch.long)).sum() == 0
    with pytest.raises(ValueError, match="one asked colour per clip"):
        vl.colour_agreement(batch.videos, truth[:3])
    with pytest.raises(ValueError, match="b t c h w"):
        vl.colour_votes(batch.videos[:, 0])
