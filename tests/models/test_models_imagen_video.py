"""Imagen Video pieces: the cascade table, oscillating guidance, the w-conditioned student, probes."""

import pytest
import torch

from genlib.diffusion import NoiseSchedule, target
from genlib.models import imagen_video as iv
from genlib.nn.unet import UNet, UNetConfig


def test_the_published_cascade_is_computed_from_the_base():
    stages = iv.IMAGEN_VIDEO
    assert len(stages) == 7 and [s.name[:3] for s in stages].count("TSR") == 3 and [s.name[:3] for s in stages].count("SSR") == 3
    last = stages[-1]
    assert (last.frames, last.fps, last.height, last.width) == (128, 24, 768, 1280)
    assert all(s.seconds == pytest.approx(16 / 3) for s in stages)  # temporal SR keeps the clip's length
    assert sum(s.params for s in stages) == pytest.approx(11.65e9)  # the survey's "11.6 billion"
    rows = iv.stage_table(stages)
    assert [r[5] for r in rows] == ["(generates)", "time x2", "space x2", "space x4", "time x2", "time x2", "space x4"]
    assert rows[-1][-1] == 128 ** 2 and len(rows[0]) == len(iv.STAGE_COLUMNS)
    with pytest.raises(ValueError, match="factor"):
        iv.cascade(iv.IMAGEN_VIDEO_BASE, [("depth", 2)])
    with pytest.raises(ValueError, match="factor"):
        iv.cascade(iv.IMAGEN_VIDEO_BASE, [("time", 1)])


def test_oscillating_guidance():
    assert iv.oscillating_guidance(6, 15, 1) == [15, 1, 15, 1, 15, 1]
    assert iv.oscillating_guidance(6, 15, 1, oscillating_steps=3) == [15, 1, 15, 1, 1, 1]
    assert iv.oscillating_guidance(3, 15, 1, oscillating_steps=0) == [1, 1, 1]
    with pytest.raises(ValueError, match="oscillating_steps"):
        iv.oscillating_guidance(3, 15, 1, oscillating_steps=4)


def test_guidance_conditioned_student_starts_as_the_teacher_and_then_reads_w():
    torch.manual_seed(0)
    unet = UNet(UNetConfig(in_channels=1, image_size=8, base_channels=8, channel_mult=(1, 2), attention_resolutions=(),
                           num_classes=3, groups=4))
    with torch.no_grad():  # "trained": no zero-initialised layer left
        for p in unet.parameters():
            p.add_(0.05 * torch.randn_like(p))
    student = iv.GuidanceConditioned(unet)
    x, t, c = torch.randn(4, 1, 8, 8), torch.tensor([1, 50, 500, 900]), torch.tensor([0, 1, 2, 3])
    ref = unet(x, t, c)
    assert torch.allclose(student(x, t, c, torch.tensor([0.0, 1.0, 4.0, 8.0])), ref, atol=1e-6)
    torch.nn.init.normal_(student.w_embed.mlp[-1].weight, std=0.1)
    a, b = student(x, t, c, torch.zeros(4)), student(x, t, c, torch.full((4,), 4.0))
    assert not torch.allclose(a, b, atol=1e-4)
    assert torch.allclose(unet(x, t, c), ref)  # the hook is gone after the call
    with pytest.raises(ValueError, match="layout b"):
        student(x, t, c, torch.zeros(3))
    with pytest.raises(ValueError, match="time_embed"):
        iv.GuidanceConditioned(torch.nn.Linear(2, 2))


def test_probe_timesteps_and_x0_errors():
    s = NoiseSchedule("cosine", 1024)
    ts = iv.probe_timesteps(s, (10.0, 1.0, 0.01))
    assert ts == sorted(ts) and abs(s.snr[ts[1]].item() - 1) < 0.01
    g = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(8, 3, 4, 4, generator=g), torch.randn(8, 3, 4, 4, generator=g)

    class Cheat(torch.nn.Module):  # knows the answer: predicts the exact v target
        def forward(self, x_t, t):
            return target("v_prediction", x0, eps, s.alphas_cumprod[t[0].item()].item())

    errors = iv.x0_errors(Cheat(), s, x0, eps, ts, "v_prediction")
    assert max(errors) < 1e-8


def test_distill_config_presets():
    cfg = iv.DistillConfig.preset()
    assert cfg.student_steps == [cfg.start_steps // 2 ** (k + 1) for k in range(cfg.halvings)]
    assert cfg.start_steps % 2 ** cfg.halvings == 0
    assert iv.denoiser_config("v_prediction").num_train_timesteps % (2 * cfg.start_steps) == 0
