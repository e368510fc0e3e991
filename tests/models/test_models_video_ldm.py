"""Video-LDM: alpha = 1 is the image model, only temporal layers learn, context masks, shapes, zoo."""

import pytest
import torch

from genlib.diffusion import diffusion_loss
from genlib.models import video_ldm as vl
from genlib.nn.convnets import ConvNetConfig
from genlib.nn.unet import UNetConfig
from genlib.nn.video import from_frames, to_frames

UNET = UNetConfig(in_channels=4, image_size=8, base_channels=8, channel_mult=(1, 2), groups=4, num_heads=2,
                  attention_resolutions=(4,))


def _image(seed: int = 0) -> vl.ImageLDM:
    torch.manual_seed(seed)
    model = vl.ImageLDM(vl.ImageLDMConfig(unet=UNET))
    for p in model.parameters():  # nonzero everywhere (a fresh U-Net's output conv is zero)
        p.data.add_(0.05 * torch.randn_like(p))
    return model.eval()


def _video(kind: str = "conv3d+attention", frames: int = 4, **kw) -> vl.VideoLDM:
    model = vl.VideoLDM(vl.VideoLDMConfig(temporal=kind, frames=frames, **kw), _image())
    for p in model.temporal_parameters():  # as if trained: temporal branches no longer the identity
        p.data.add_(0.1 * torch.randn_like(p))
    return model.eval()


@pytest.mark.parametrize("kind", vl.KINDS)
def test_alpha_one_is_the_image_model_frame_by_frame(kind):
    model = _video(kind)
    z = torch.randn(2, 4, 4, 8, 8)
    t = torch.tensor([5, 700])
    ctx = vl.make_context(z, vl.context_mask("interpolate", 4))
    with torch.no_grad():
        model.set_alpha(1.0)
        out = model(z, t, ctx)
        model.set_alpha(None)
        mixed = model(z, t, ctx)
        ref = from_frames(model.image(to_frames(z), t.repeat_interleave(4)), 4)
    assert torch.equal(out, ref)  # 1 * z + 0 * z' is z, bit for bit
    assert (mixed - ref).abs().max() > 1e-4  # the learned alphas do mix time in


def test_fresh_temporal_layers_leave_the_image_model_unchanged_for_any_alpha():
    image = _image()
    model = vl.VideoLDM(vl.VideoLDMConfig(frames=3, alpha_init=0.3), image).eval()
    z = torch.randn(2, 4, 3, 8, 8)
    with torch.no_grad():
        out = model(z, torch.tensor([1, 999]), vl.make_context(z, vl.context_mask("predict", 3, 1)))
        ref = from_frames(image(to_frames(z), torch.tensor([1, 999]).repeat_interleave(3)), 3)
    assert torch.allclose(out, ref, atol=1e-5)


def test_only_temporal_parameters_require_grad():
    model = _video()
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    assert trainable == {id(p) for p in model.temporal_parameters()}
    assert not any(p.requires_grad for p in model.image.parameters())
    kinds = {type(m.temporal).__name__ for m in model.mixers.values()}
    assert kinds == {"TemporalConvBlock", "TemporalAttention"}
    attn_only = _video("attention-only")
    assert {type(m.temporal).__name__ for m in attn_only.mixers.values()} == {"TemporalAttention"}
    assert len(attn_only.mixers) == len(model.mixers)


def test_alpha_is_a_sigmoid_of_a_learnable_logit():
    mixer = vl.TemporalMixer(8, "attention", context_channels=None, heads=2, groups=4, alpha_init=0.25)
    assert mixer.alpha().item() == pytest.approx(0.25)
    mixer.fixed_alpha = 1.0
    assert mixer.alpha().item() == 1.0
    with pytest.raises(ValueError, match="alpha_init"):
        vl.TemporalMixer(8, "conv", context_channels=None, groups=4, alpha_init=1.0)
    with pytest.raises(ValueError, match="'conv' or 'attention'"):
        vl.TemporalMixer(8, "lstm", context_channels=None, groups=4)


def test_context_puts_given_frames_and_the_mask_in():
    z = torch.randn(2, 4, 5, 8, 8)
    known = vl.context_mask("interpolate", 5)
    assert known.tolist() == [True, False, False, False, True]
    assert vl.context_mask("predict", 5, given=2).tolist() == [True, True, False, False, False]
    assert not vl.context_mask("none", 5).any()
    c = vl.make_context(z, known)
    assert c.shape == (2, 5, 5, 8, 8)
    assert torch.equal(c[:, :4, known], z[:, :, known])
    assert (c[:, :4, ~known] == 0).all()
    assert torch.equal(c[:, 4], known.float().view(1, 5, 1, 1).expand(2, 5, 8, 8))
    per_clip = torch.tensor([[True, False, False, False, False], [False] * 5])
    c2 = vl.make_context(z, per_clip)
    assert torch.equal(c2[0, :4, 0], z[0, :, 0]) and (c2[1] == 0).all()


def test_context_changes_the_output_once_trained_and_sampling_keeps_given_frames():
    model = _video()
    z = torch.randn(2, 4, 4, 8, 8)
    t = torch.tensor([300, 300])
    with torch.no_grad():
        a = model(z, t, vl.make_context(z, vl.context_mask("predict", 4, 1)))
        b = model(z, t, vl.make_context(z, vl.context_mask("interpolate", 4)))
    assert (a - b).abs().max() > 1e-5
    known = vl.context_mask("interpolate", 4)
    out = vl.sample(model, 2, known=known, z_known=z, num_steps=2)
    assert out.shape == z.shape and torch.equal(out[:, :, known], z[:, :, known])


def test_bad_shapes_raise_clear_errors():
    model = _video()
    with pytest.raises(ValueError, match="b c t h w"):
        model(torch.randn(2, 4, 8, 8), torch.tensor([1, 2]))  # a batch of images, not clips
    with pytest.raises(ValueError, match="c=4"):
        model(torch.randn(2, 3, 4, 8, 8), torch.tensor([1, 2]))
    with pytest.raises(ValueError, match=r"b \(c\+1\) t h w"):
        model(torch.randn(2, 4, 4, 8, 8), torch.tensor([1, 2]), torch.randn(2, 4, 4, 8, 8))
    with pytest.raises(ValueError, match="bool tensor of layout t or b t"):
        vl.make_context(torch.randn(1, 4, 4, 8, 8), torch.ones(3, dtype=torch.bool))
    with pytest.raises(ValueError, match="context kind"):
        vl.context_mask("extrapolate", 4)
    with pytest.raises(ValueError, match="temporal must be one of"):
        vl.VideoLDMConfig(temporal="conv-only")
    with pytest.raises(ValueError, match="b t c h w"):
        vl.encode_clips(vl.FrameAutoencoder(vl.FrameAutoencoderConfig(net=ConvNetConfig(channels=(8, 16), latent_channels=4))),
                        torch.randn(2, 3, 4, 16, 16))


def test_a_few_training_steps_lower_the_loss_of_the_temporal_layers():
    torch.manual_seed(0)
    model = vl.VideoLDM(vl.VideoLDMConfig(frames=3, masks=("none",), context=False), _image())
    z0 = torch.randn(4, 4, 3, 8, 8) * 0.5 + torch.linspace(-1, 1, 3).view(1, 1, 3, 1, 1)  # a strong trend over time
    t, noise = torch.full((4,), 500), torch.randn_like(z0)
    loss = lambda: diffusion_loss(model, model.schedule, z0, t=t, noise=noise)  # noqa: E731
    before = loss().item()
    opt = torch.optim.Adam(model.temporal_parameters(), lr=3e-3)
    image_state = {k: v.clone() for k, v in model.image.state_dict().items()}
    for _ in range(15):
        opt.zero_grad()
        loss().backward()
        opt.step()
    assert loss().item() < before
    assert all(torch.equal(v, model.image.state_dict()[k]) for k, v in image_state.items())


def test_temporal_decoder_equals_the_image_decoder_at_alpha_one():
    ae = vl.FrameAutoencoder(vl.FrameAutoencoderConfig(net=ConvNetConfig(channels=(8, 16), latent_channels=4)))
    dec = vl.TemporalDecoder(vl.TemporalDecoderConfig(frames=3), ae.decoder).eval()
    for p in dec.temporal_parameters():
        p.data.add_(0.1 * torch.randn_like(p))
    z = torch.randn(2, 4, 3, 8, 8)
    with torch.no_grad():
        dec.set_alpha(1.0)
        same = dec(z)
        dec.set_alpha(None)
        mixed = dec(z)
        ref = from_frames(ae.decoder(to_frames(z)), 3)
    assert same.shape == (2, 3, 3, 16, 16) and torch.equal(same, ref)
    assert (mixed - ref).abs().max() > 1e-5
    assert {id(p) for p in dec.parameters() if p.requires_grad} == {id(p) for p in dec.temporal_parameters()}


def test_video_ldm_round_trips_through_the_zoo(tmp_path, monkeypatch):
    monkeypatch.setenv("GENLIB_CACHE", str(tmp_path))
    monkeypatch.setenv("GENLIB_PROFILE", "ci")
    monkeypatch.setenv("GENLIB_STATIC", "1")
    ae = vl.load_frame_autoencoder(vl.FrameAutoencoderConfig.preset(steps=2))
    image = vl.load_image_ldm(ae, vl.ImageLDMConfig.preset(steps=2))
    trained = vl.load_video_ldm(image, ae, steps=2)
    again = vl.load_video_ldm(image, ae, steps=2)
    assert not trained.from_cache and again.from_cache
    for (k, a), (_, b) in zip(trained.state_dict().items(), again.state_dict().items()):
        assert torch.equal(a.cpu(), b.cpu()), k
    assert len(again.info["alphas"]) == len(again.mixers)
