"""The DDPM model: presets, bad input, a tiny training run through the zoo, and sampling."""

import pytest
import torch

from genlib.models import ddpm


def test_preset_is_valid_and_small_in_ci():
    for world in ddpm.WORLDS:
        cfg = ddpm.DDPMConfig.preset(world, "cosine")
        assert cfg.world == world and cfg.schedule == "cosine" and cfg.image_size == 16
        assert cfg.unet.in_channels == (3 if world == "shapes" else 1)
        assert sum(p.numel() for p in ddpm.DDPM(cfg).parameters()) < 300_000


@pytest.mark.parametrize("profile, size, max_params", [("cpu", 16, 1_000_000), ("gpu", 32, 6_000_000)])
def test_presets_of_the_larger_profiles(monkeypatch, profile, size, max_params):
    monkeypatch.setenv("GENLIB_PROFILE", profile)
    cfg = ddpm.DDPMConfig.preset("shapes", "linear")
    assert cfg.image_size == size and cfg.ema_decay is not None and cfg.steps >= 800
    assert sum(p.numel() for p in ddpm.DDPM(cfg).parameters()) < max_params
    assert ddpm.DDPMConfig.preset("shapes", "linear", steps=7).steps == 7


def test_bad_config():
    with pytest.raises(ValueError, match="unknown world"):
        ddpm.DDPMConfig.preset("cifar")
    with pytest.raises(ValueError, match="unknown schedule kind"):
        ddpm.DDPMConfig.preset("shapes", "sigmoid")
    with pytest.raises(ValueError, match="unknown prediction_type"):
        ddpm.DDPMConfig.preset("shapes", prediction_type="score")
    cfg = ddpm.DDPMConfig.preset("shapes")
    with pytest.raises(ValueError, match="must read"):
        ddpm.DDPMConfig(world="digits", unet=cfg.unet, image_size=16)


def test_train_load_and_sample(tmp_path, monkeypatch):
    monkeypatch.setenv("GENLIB_CACHE", str(tmp_path))
    model = ddpm.load_ddpm("digits", "linear", steps=6, batch_size=4)
    assert not model.from_cache and len(model.info["history"]["loss"]) == 6
    again = ddpm.load_ddpm("digits", "linear", steps=6, batch_size=4)
    assert again.from_cache
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))
    x = ddpm.sample(model, 3, num_steps=4, seed=1)
    assert x.shape == (3, 1, 16, 16) and x.abs().max() <= 1.0 + 1e-5
    assert torch.equal(ddpm.sample(model, 3, num_steps=4, seed=1, amp="bf16"), x)  # autocast is CUDA-only
    with pytest.raises(ValueError, match="amp="):
        ddpm.sample(model, 3, num_steps=4, amp="fp8")
    y = ddpm.sample(model, 3, sampler="ddpm", num_steps=5, seed=1)
    assert y.shape == x.shape
    z, traj = ddpm.sample(model, 2, num_steps=4, record=True)
    assert len(traj.xs) == 5
    with pytest.raises(ValueError, match="unknown sampler"):
        ddpm.sample(model, 2, sampler="euler")
    with pytest.raises(ValueError, match="asked for"):
        ddpm.load_ddpm("shapes", "linear", cfg=model.cfg)


def test_toy_denoiser(tmp_path, monkeypatch):
    monkeypatch.setenv("GENLIB_CACHE", str(tmp_path))
    model = ddpm.load_toy_ddpm("ring", steps=5)
    x, traj = ddpm.sample(model, 50, num_steps=10, record=True, clip_sample=None)
    assert x.shape == (50, 2) and len(traj.x0s) == 10
    with pytest.raises(ValueError, match="layout b d"):
        model(torch.zeros(3, 3), torch.zeros(3, dtype=torch.long))


def test_autocast_wrapper_passes_the_samplers_arguments_through(tmp_path, monkeypatch):
    """The CUDA path of ``sample`` wraps the network; on the CPU torch disables CUDA autocast (with
    a warning), so the wrapped sampler must give exactly the unwrapped samples."""
    import warnings

    from genlib.diffusion import ddim_sample

    monkeypatch.setenv("GENLIB_CACHE", str(tmp_path))
    model = ddpm.load_ddpm("digits", "linear", steps=2, batch_size=4).eval()
    wrapped = ddpm._Autocast(model, torch.bfloat16)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        a = ddim_sample(wrapped, model.schedule, (2, 1, 16, 16), num_steps=3, generator=torch.Generator().manual_seed(0))
    b = ddim_sample(model, model.schedule, (2, 1, 16, 16), num_steps=3, generator=torch.Generator().manual_seed(0))
    assert a.sample.dtype == torch.float32 and torch.equal(a.sample, b.sample)


def test_forward_rejects_timesteps_outside_the_schedule():
    model = ddpm.DDPM(ddpm.DDPMConfig.preset("digits"))
    x = torch.randn(2, 1, 16, 16)
    T = model.cfg.num_train_timesteps
    for bad in (torch.tensor([0, T]), torch.tensor([-1, 3]), T):
        with pytest.raises(ValueError, match=rf"\[0, {T - 1}\]"):
            model(x, bad)
    assert model(x, T - 1).shape == x.shape


def test_sample_with_zero_steps_is_an_error():
    model = ddpm.DDPM(ddpm.DDPMConfig.preset("digits"))
    for sampler in ("ddim", "ddpm"):
        with pytest.raises(ValueError, match="num_steps must be a positive integer"):
            ddpm.sample(model, 1, sampler=sampler, num_steps=0)
