"""genlib.models.dit: adaLN-Zero identity at init, layouts, conditioning, FLOP count, training."""

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from genlib.diffusion import ddim_sample
from genlib.models import ddpm, dit


def small(**kw):
    return dit.DiTConfig(**{**dict(in_channels=3, image_size=8, patch_size=2, dim=16, depth=2, heads=2), **kw})


def test_block_with_zero_gates_is_exactly_the_identity():
    torch.manual_seed(0)
    block = dit.DiTBlock(16, 2)
    x, c = torch.randn(3, 5, 16), torch.randn(3, 16)
    assert torch.equal(block(x, c), x)
    # only the gates matter: non-zero shifts and scales with zero gates still give the identity
    with torch.no_grad():
        block.adaLN[1].bias.normal_()
        for gate in (2, 5):
            block.adaLN[1].bias[gate * 16:(gate + 1) * 16] = 0
    assert torch.equal(block(x, c), x)
    with torch.no_grad():
        block.adaLN[1].weight.normal_()
    assert not torch.allclose(block(x, c), x)


@pytest.mark.parametrize("num_classes", [None, 4])
def test_fresh_dit_outputs_exactly_zero_with_the_input_layout(num_classes):
    torch.manual_seed(0)
    model = dit.DiT(small(num_classes=num_classes))
    x = torch.randn(2, 3, 8, 8)
    out = model(x, torch.tensor([0, 999]), None if num_classes is None else torch.tensor([1, 4]))
    assert out.shape == x.shape and torch.equal(out, torch.zeros_like(x))


def test_class_condition_changes_the_output_once_gates_are_nonzero():
    torch.manual_seed(0)
    model = dit.DiT(small(num_classes=4))
    for p in model.parameters():  # leave adaLN-Zero's starting point
        torch.nn.init.normal_(p, std=0.1)
    x, t = torch.randn(2, 3, 8, 8), torch.tensor([10, 10])
    a, b = model(x, t, torch.tensor([0, 0])), model(x, t, torch.tensor([1, 1]))
    assert (a - b).abs().max() > 1e-4
    torch.testing.assert_close(model(x, t), model(x, t, torch.tensor([4, 4])))  # None = the null label


def test_bad_inputs():
    model = dit.DiT(small())
    with pytest.raises(ValueError, match="b c h w"):
        model(torch.randn(2, 1, 8, 8), torch.tensor([1, 2]))
    with pytest.raises(ValueError, match="timesteps"):
        model(torch.randn(2, 3, 8, 8), torch.tensor([1, 2, 3]))
    with pytest.raises(ValueError, match="unconditional"):
        model(torch.randn(2, 3, 8, 8), torch.tensor([1, 2]), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="labels must be in"):
        dit.DiT(small(num_classes=3))(torch.randn(2, 3, 8, 8), torch.tensor([1, 2]), torch.tensor([0, 7]))
    with pytest.raises(ValueError, match="divisible"):
        small(image_size=9)


@pytest.mark.parametrize("kw", [dict(), dict(patch_size=4, depth=1, mlp_ratio=2, num_classes=3)])
def test_flop_formula_matches_torch_flop_counter(kw):
    cfg = small(**kw)
    model = dit.DiT(cfg)
    x = torch.randn(3, 3, 8, 8)
    cond = None if cfg.num_classes is None else torch.tensor([0, 1, 2])
    with FlopCounterMode(display=False) as counter:
        model(x, torch.tensor([1, 2, 3]), cond)
    assert counter.get_total_flops() == dit.dit_flops(cfg, batch=3)


def test_dit_xl2_multiply_adds_match_the_paper():
    """DiT-XL/2 on 32x32x4 latents: 118.6 "Gflops" in the paper, which counts multiply-adds."""
    xl = dit.DiTConfig(in_channels=4, image_size=32, patch_size=2, dim=1152, depth=28, heads=16)
    assert abs(dit.dit_flops(xl) / 2e9 - 118.6) < 0.1


def test_presets_match_the_unet_budget(monkeypatch):
    for profile in ("ci", "cpu", "gpu"):
        monkeypatch.setenv("GENLIB_PROFILE", profile)
        cfg = dit.DiTDiffusionConfig.preset("digits")
        base = ddpm.DDPMConfig.preset("digits")
        assert (cfg.steps, cfg.batch_size, cfg.lr, cfg.image_size) == (base.steps, base.batch_size, base.lr, base.image_size)
        if profile != "ci":
            ratio = dit.DiT(cfg.dit).num_parameters() / ddpm.DDPM(base).unet.num_parameters()
            assert 0.7 < ratio < 1.5
    assert dit.DiTDiffusionConfig.preset("digits", patch_size=4).dit.patch_size == 4
    with pytest.raises(ValueError, match="must read"):
        dit.DiTDiffusionConfig(world="shapes", dit=dit.DiTConfig(in_channels=1))


def test_training_step_and_sampling_through_genlib(tmp_path, monkeypatch):
    monkeypatch.setenv("GENLIB_CACHE", str(tmp_path))
    model = dit.load_dit("digits", steps=4, batch_size=4)
    assert len(model.info["history"]["loss"]) >= 1 and not model.from_cache
    assert dit.load_dit("digits", steps=4, batch_size=4).from_cache
    x = ddpm.sample(model, 3, num_steps=2, shape=model.image_shape)
    assert x.shape == (3, 1, 16, 16) and torch.isfinite(x).all()
    out = ddim_sample(model, model.schedule, (2, *model.image_shape), num_steps=2)
    assert out.sample.shape == (2, 1, 16, 16)


def test_initial_loss_is_that_of_predicting_zero():
    torch.manual_seed(0)
    model = dit.DiTDiffusion(dit.DiTDiffusionConfig.preset("digits"))
    x0 = torch.rand(256, 1, 16, 16) * 2 - 1
    assert abs(model.loss(x0).item() - 1.0) < 0.05  # E|eps - 0|^2 = 1


def test_timesteps_out_of_range_are_errors():
    model = dit.DiT(small())
    x = torch.randn(2, 3, 8, 8)
    with pytest.raises(ValueError, match="t must be >= 0"):
        model(x, torch.tensor([-1, 2]))
    with pytest.raises(ValueError, match="timesteps t must be numbers"):
        model(x, "3")
    diffusion = dit.DiTDiffusion(dit.DiTDiffusionConfig.preset("digits"))
    x = torch.randn(2, *diffusion.image_shape)
    T = len(diffusion.schedule)
    with pytest.raises(ValueError, match=rf"\[0, {T - 1}\]"):
        diffusion(x, torch.tensor([0, T]))
