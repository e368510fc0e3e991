"""Make-A-Video (survey §14): the inflated U-Net equals the image U-Net at initialisation, and the
helpers keep their layouts."""

import pytest
import torch

from genlib.models import make_a_video as mav
from genlib.nn.unet import UNet, UNetConfig


def _trained_like_unet(seed: int = 0, **kw) -> UNet:
    """A small U-Net with random (not zero) weights everywhere, as after training."""
    torch.manual_seed(seed)
    cfg = UNetConfig(in_channels=3, image_size=8, base_channels=8, channel_mult=(1, 2), groups=4, num_heads=2,
                     attention_resolutions=(4,), **kw)
    net = UNet(cfg)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return net.eval()


@pytest.mark.parametrize("frames", [1, 3, 5])
def test_inflated_equals_image_model_frame_by_frame(frames):
    net = _trained_like_unet(frames, num_classes=3)
    video = mav.inflate(net).eval()
    x = torch.randn(2, frames, 3, 8, 8)  # b t c h w
    t, y = torch.tensor([5, 900]), torch.tensor([0, 2])
    with torch.no_grad():
        got = video(x, t, y)
        ref = torch.stack([net(x[:, i], t, y) for i in range(frames)], dim=1)
    assert got.shape == x.shape
    assert (got - ref).abs().max() < 1e-5
    assert ref.abs().max() > 0.1  # the comparison is not between two zeros


def test_trained_temporal_layers_mix_frames():
    net = _trained_like_unet()
    video = mav.inflate(net).eval()
    assert len(video.pseudo3d_layers()) > 0
    with torch.no_grad():
        for p in video.temporal_parameters():
            p.add_(0.1 * torch.randn_like(p))
        x = torch.randn(1, 4, 3, 8, 8)  # b t c h w
        y1 = video(x, torch.tensor([100]))
        x2 = x.clone()
        x2[:, 3] += 1.0  # change only the last frame
        y2 = video(x2, torch.tensor([100]))
    assert (y1[:, 0] - y2[:, 0]).abs().max() > 1e-4  # frame 0 now sees frame 3
    # the original model is untouched by inflation
    assert not any(isinstance(m, mav.Pseudo3dConv) for m in net.modules())


def test_inflate_keeps_the_image_models_device():
    # the new temporal layers are built on the CPU; they must join the image U-Net wherever it lives
    # (on a GPU a CPU temporal conv fed CUDA activations fails). "meta" stands in for a second device.
    net = _trained_like_unet().to("meta")
    video = mav.inflate(net)
    assert {p.device.type for p in video.parameters()} == {"meta"}
    assert {b.device.type for b in video.buffers()} <= {"meta"}


def test_inflate_rejects_images():
    video = mav.inflate(_trained_like_unet())
    with pytest.raises(ValueError, match="b t c h w"):
        video(torch.randn(2, 3, 8, 8), torch.tensor([1, 2]))


def test_inflated_reads_clips_frames_first_even_when_frames_equal_channels():
    """3 frames of RGB are 3 x 3 x h x w in both layouts: the model reads b t c h w, the data's
    layout (it once read b c t h w, so a clip from the world was silently misread)."""
    net = _trained_like_unet(1)
    video = mav.inflate(net).eval()
    x = torch.randn(2, 3, 3, 8, 8)  # b t c h w with t = c = 3
    t = torch.tensor([5, 900])
    with torch.no_grad():
        got = video(x, t)
        per_frame = torch.stack([net(x[:, i], t) for i in range(3)], dim=1)  # frame i = x[:, i]
    assert (got - per_frame).abs().max() < 1e-5
    assert (got - per_frame.transpose(1, 2)).abs().max() > 0.1  # the other reading differs


def test_flicker_and_shared_noise():
    clip = torch.zeros(1, 3, 3, 4, 4)
    clip[0, 1] = 1.0  # frames 0, 1, 2 = 0, 1, 0
    assert torch.allclose(mav.flicker(clip), torch.tensor([1.0]))
    from genlib.diffusion import NoiseSchedule

    sched = NoiseSchedule("linear", 100)
    clips = torch.zeros(2, 4, 3, 4, 4)
    # a model whose x0 guess is its noisy input keeps the noise: frames differ only through it
    ident = lambda z, t: z  # noqa: E731
    a = mav.refine_frames(ident, sched, clips, strength=0.5, num_steps=2, shared_noise=True,
                          prediction_type="sample", generator=torch.Generator().manual_seed(0))
    b = mav.refine_frames(ident, sched, clips, strength=0.5, num_steps=2, shared_noise=False,
                          prediction_type="sample", generator=torch.Generator().manual_seed(0))
    assert mav.flicker(a).max() < 1e-6 < mav.flicker(b).min()


def test_refine_frames_uses_given_noise_and_checks_its_shape():
    from genlib.diffusion import NoiseSchedule

    sched = NoiseSchedule("linear", 100)
    clips = torch.randn(2, 4, 3, 4, 4, generator=torch.Generator().manual_seed(1))
    ident = lambda z, t: z  # noqa: E731
    kw = dict(strength=0.5, num_steps=2, prediction_type="sample")
    drawn = mav.refine_frames(ident, sched, clips, shared_noise=True,
                              generator=torch.Generator().manual_seed(0), **kw)
    shared = torch.randn((2, 1, 3, 4, 4), generator=torch.Generator().manual_seed(0)).expand_as(clips)
    given = mav.refine_frames(ident, sched, clips, shared_noise=False, generator=None, noise=shared, **kw)
    assert torch.equal(given, drawn)  # the same noise, given instead of drawn: the same frames
    other = mav.refine_frames(ident, sched, clips, shared_noise=False, generator=None,
                              noise=torch.randn(clips.shape), **kw)
    assert not torch.equal(other, drawn)
    with pytest.raises(ValueError, match="noise of the clips' shape"):
        mav.refine_frames(ident, sched, clips, shared_noise=False, generator=None, noise=shared[:, :1], **kw)


def test_interpolation_input():
    clips = torch.randn(2, 5, 3, 4, 4)  # b t c h w
    known = torch.tensor([True, False, True, False, True])
    x, fps = mav.interpolation_input(clips, known, 8.0)
    assert x.shape == (2, 5, 4, 4, 4) and fps.shape == (2,)  # b t (c+1) h w
    assert torch.equal(x[:, :, 3, 0, 0], known.float().expand(2, 5))
    assert torch.equal(x[:, 1, :3], torch.zeros(2, 3, 4, 4)) and torch.equal(x[:, 2, :3], clips[:, 2])
    with pytest.raises(ValueError):
        mav.interpolation_input(clips, known[:4], 8.0)
