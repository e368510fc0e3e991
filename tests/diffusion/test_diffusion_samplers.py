"""Samplers: spacings, DDIM/DDPM identities, determinism, oracle denoisers, guidance, thresholding."""

import sys
from pathlib import Path

import pytest
import torch

from genlib.diffusion import (NoiseSchedule, ddim_sample, ddim_sigma, ddpm_sample, guidance, q_posterior,
                              reverse_step, timesteps)

sys.path.insert(0, str(Path(__file__).parent))
from oracles import GaussianOracle  # noqa: E402


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_spacings():
    assert timesteps(1000, 4, "leading") == [750, 500, 250, 0]
    assert timesteps(1000, 4, "trailing") == [999, 749, 499, 249]
    assert timesteps(1000, 4, "linspace") == [999, 666, 333, 0]
    for spacing in ("leading", "trailing", "linspace"):
        assert timesteps(37, 37, spacing) == list(range(36, -1, -1))
        for n in (1, 3, 10, 36):
            ts = timesteps(37, n, spacing)
            assert len(ts) == n and all(0 <= t < 37 for t in ts) and ts == sorted(set(ts), reverse=True)
    with pytest.raises(ValueError, match="more sampling steps than"):
        timesteps(100, 101)
    with pytest.raises(ValueError, match="unknown spacing"):
        timesteps(100, 10, "uniform")
    with pytest.raises(ValueError, match="positive integer"):
        timesteps(100, 0)


@pytest.mark.parametrize("kind", ["linear", "cosine"])
def test_eta_one_has_ddpm_posterior_variance(kind):
    s = NoiseSchedule(kind, 100)
    a = s.alphas_cumprod.tolist()
    for t in range(1, 100):
        assert ddim_sigma(a[t], a[t - 1], 1.0) ** 2 == pytest.approx(s.posterior_variance[t].item(), rel=1e-9)


def test_step_mean_is_the_posterior_mean():
    s = NoiseSchedule("linear", 50)
    g = gen()
    x0, eps = torch.randn(4, 3, generator=g, dtype=torch.float64), torch.randn(4, 3, generator=g, dtype=torch.float64)
    for t in (1, 10, 49):
        a, ap = s.alphas_cumprod[t].item(), s.alphas_cumprod[t - 1].item()
        x_t = a**0.5 * x0 + (1 - a) ** 0.5 * eps
        mean, _ = reverse_step(x_t, eps, a, ap, sigma=ddim_sigma(a, ap, 1.0), noise=None)
        expect, _ = q_posterior(s, x0, x_t, t)
        assert torch.allclose(mean, expect, atol=1e-10)


def test_ddim_eta_one_equals_ddpm_for_the_same_noise():
    s = NoiseSchedule("cosine", 40)
    model = GaussianOracle(s, 0.3, 0.5)
    a = ddim_sample(model, s, (8, 2), num_steps=40, eta=1.0, generator=gen(3)).sample
    b = ddpm_sample(model, s, (8, 2), generator=gen(3)).sample
    assert torch.allclose(a, b, atol=1e-6)


def test_eta_zero_is_deterministic_and_eta_positive_is_not():
    s = NoiseSchedule("linear", 100)
    model = GaussianOracle(s, 0.0, 0.5)
    x_T = torch.randn(6, 3, generator=gen())
    one = ddim_sample(model, s, num_steps=20, eta=0.0, x_T=x_T, generator=gen(1)).sample
    two = ddim_sample(model, s, num_steps=20, eta=0.0, x_T=x_T, generator=gen(2)).sample
    assert torch.equal(one, two)
    three = ddim_sample(model, s, num_steps=20, eta=0.5, x_T=x_T, generator=gen(1)).sample
    four = ddim_sample(model, s, num_steps=20, eta=0.5, x_T=x_T, generator=gen(2)).sample
    assert not torch.allclose(three, four)


@pytest.mark.parametrize("prediction_type", ["epsilon", "sample", "v_prediction"])
@pytest.mark.parametrize("spacing", ["leading", "trailing", "linspace"])
def test_delta_oracle_returns_the_point(prediction_type, spacing):
    s = NoiseSchedule("cosine", 200)
    model = GaussianOracle(s, 0.25, 0.0, prediction_type)
    out = ddim_sample(model, s, (5, 3), num_steps=10, spacing=spacing, prediction_type=prediction_type, generator=gen())
    assert torch.allclose(out.sample, torch.full_like(out.sample, 0.25), atol=1e-3)


@pytest.mark.parametrize("sampler", ["ddpm_small", "ddpm_large", "ddim0", "ddim1"])
def test_gaussian_oracle_samples_have_the_data_statistics(sampler):
    s = NoiseSchedule("linear", 1000)  # fine steps: the discretisation error is small
    model = GaussianOracle(s, 0.5, 0.3)
    shape = (2000, 2)
    if sampler.startswith("ddpm"):
        x = ddpm_sample(model, s, shape, variance="fixed_small" if sampler.endswith("small") else "fixed_large", generator=gen()).sample
    else:
        x = ddim_sample(model, s, shape, num_steps=200, eta=float(sampler[-1]), generator=gen()).sample
    assert x.mean().item() == pytest.approx(0.5, abs=0.02)
    tol = 0.03 if sampler != "ddpm_large" else 0.06  # the large variance over-disperses slightly
    assert x.std().item() == pytest.approx(0.3, abs=tol)


def test_prediction_types_give_the_same_samples():
    s = NoiseSchedule("linear", 60)
    outs = [ddim_sample(GaussianOracle(s, 0.1, 0.4, k), s, (16, 3), num_steps=12, eta=0.5, prediction_type=k,
                        generator=gen(5)).sample for k in ("epsilon", "sample", "v_prediction")]
    assert torch.allclose(outs[0], outs[1], atol=1e-4) and torch.allclose(outs[0], outs[2], atol=1e-4)


def test_record_trajectory():
    s = NoiseSchedule("linear", 30)
    out = ddim_sample(GaussianOracle(s), s, (3, 2), num_steps=7, record=True, generator=gen())
    tr = out.trajectory
    assert len(tr.timesteps) == 7 and len(tr.xs) == 8 and len(tr.x0s) == 7
    assert torch.equal(tr.xs[-1], out.sample)
    xs, x0s = tr.stacked()
    assert xs.shape == (8, 3, 2) and x0s.shape == (7, 3, 2)


def test_guidance_conventions_and_batching():
    s = NoiseSchedule("linear", 40)
    model = GaussianOracle(s, 0.0, 0.5)
    cond, uncond = torch.full((6,), 1.0), torch.zeros(6)
    x_T = torch.randn(6, 2, generator=gen())
    # scale 1 is the conditional model alone; scale 0 the unconditional one
    c1 = ddim_sample(model, s, x_T=x_T, num_steps=10, cond=cond, uncond=uncond, guidance_scale=1.0).sample
    c_only = ddim_sample(model, s, x_T=x_T, num_steps=10, cond=cond).sample
    u_only = ddim_sample(model, s, x_T=x_T, num_steps=10, cond=uncond).sample
    c0 = ddim_sample(model, s, x_T=x_T, num_steps=10, cond=cond, uncond=uncond, guidance_scale=0.0).sample
    assert torch.allclose(c1, c_only) and torch.allclose(c0, u_only, atol=1e-6)
    # one batched call per step for tensor conditions
    model.calls = 0
    ddim_sample(model, s, x_T=x_T, num_steps=10, cond=cond, uncond=uncond, guidance_scale=3.0)
    assert model.calls == 10
    # conversions
    g = gen()
    e_c, e_u = torch.randn(3, 2, generator=g), torch.randn(3, 2, generator=g)
    w = 2.5
    # Same values, summed in a different order: entries near 0 after cancellation differ by fp32
    # rounding of the larger terms (about 1e-7), so the tolerance is absolute.
    assert torch.allclose(guidance.cfg_combine(e_c, e_u, guidance.scale_from_survey(w)), w * e_c + (1 - w) * e_u, atol=1e-5)
    assert torch.allclose(guidance.cfg_combine(e_c, e_u, guidance.scale_from_imagen(w)), (1 + w) * e_c - w * e_u, atol=1e-5)
    with pytest.raises(ValueError, match="needs uncond"):
        ddim_sample(model, s, x_T=x_T, num_steps=10, cond=cond, guidance_scale=2.0)


def test_thresholding():
    g = gen()
    x0 = torch.randn(4, 3, 8, 8, generator=g) * torch.tensor([0.2, 1.0, 2.0, 5.0]).reshape(4, 1, 1, 1)
    sc = guidance.dynamic_threshold_scale(x0, 0.995)
    assert (sc >= 1).all() and sc[0] == 1.0 and sc[3] > 5
    out = guidance.dynamic_threshold(x0, 0.995)
    assert torch.equal(out[0], x0[0])  # in range: untouched
    assert out.abs().max() <= 1.0 + 1e-6
    assert torch.equal(guidance.dynamic_threshold(x0, 0.995, max_value=1.0), guidance.static_threshold(x0, 1.0))
    with pytest.raises(ValueError, match="percentile"):
        guidance.dynamic_threshold_scale(x0, 1.5)


def test_sampler_clipping_keeps_x0_in_range():
    s = NoiseSchedule("linear", 50)
    model = GaussianOracle(s, 0.0, 3.0)  # data far outside [-1, 1]
    for kw in (dict(clip_sample=1.0), dict(dynamic_percentile=0.9, dynamic_max=1.0)):
        out = ddim_sample(model, s, (4, 16), num_steps=10, record=True, generator=gen(), **kw)
        assert max(x0.abs().max().item() for x0 in out.trajectory.x0s) <= 1.0 + 1e-5
    with pytest.raises(ValueError, match="not both"):
        ddim_sample(model, s, (4, 16), num_steps=10, clip_sample=1.0, dynamic_percentile=0.9)


def test_bad_input():
    s = NoiseSchedule("linear", 50)
    model = GaussianOracle(s)
    with pytest.raises(ValueError, match="more sampling steps"):
        ddim_sample(model, s, (2, 3), num_steps=51)
    with pytest.raises(ValueError, match="unknown prediction_type"):
        ddim_sample(model, s, (2, 3), num_steps=5, prediction_type="score")
    with pytest.raises(ValueError, match="does not match"):
        ddim_sample(model, s, (2, 3), x_T=torch.zeros(2, 4), num_steps=5)
    with pytest.raises(ValueError, match="eta"):
        ddim_sample(model, s, (2, 3), num_steps=5, eta=-1)
    with pytest.raises(ValueError, match="unknown variance"):
        ddpm_sample(model, s, (2, 3), variance="learned")
    with pytest.raises(ValueError, match="x_t's layout"):
        ddim_sample(lambda x, t: x[:1], s, (2, 3), num_steps=5)


# ----------------------------------------------------------------------------- bad input (issue 14)


def _zero_eps(x_t, t, cond=None):
    return torch.zeros_like(x_t)


@pytest.mark.parametrize("sampler", [ddim_sample, ddpm_sample])
def test_zero_steps_is_an_error_not_the_default(sampler):
    """``num_steps=0`` once ran the default (50 or all T steps) because ``0 or default`` is the default."""
    with pytest.raises(ValueError, match="num_steps must be a positive integer"):
        sampler(_zero_eps, NoiseSchedule("cosine", 20), (2, 3), num_steps=0)


@pytest.mark.parametrize("clip", [0.0, -1.0, float("nan"), float("inf"), "1"])
def test_clip_sample_must_be_a_positive_number(clip):
    with pytest.raises(ValueError, match="clip_sample must be a positive"):
        ddim_sample(_zero_eps, NoiseSchedule("cosine", 20), (2, 3), num_steps=2, clip_sample=clip)


@pytest.mark.parametrize("scale", [float("nan"), float("inf"), "7.5", None])
def test_guidance_scale_must_be_a_finite_number(scale):
    s = NoiseSchedule("cosine", 20)
    cond, uncond = torch.ones(2, 1), torch.zeros(2, 1)
    with pytest.raises(ValueError, match="guidance_scale must be a finite number"):
        ddim_sample(_zero_eps, s, (2, 3), num_steps=2, cond=cond, uncond=uncond, guidance_scale=scale)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
@pytest.mark.parametrize("sampler", [ddim_sample, ddpm_sample])
def test_non_finite_start_noise_is_an_error(sampler, bad):
    x_T = torch.randn(2, 3, generator=gen())
    x_T[1, 2] = bad
    with pytest.raises(ValueError, match="x_T holds NaN or inf"):
        sampler(_zero_eps, NoiseSchedule("cosine", 20), x_T=x_T, num_steps=2)


# ----------------------------------------------------------------------------- one step, one loop (issue 16)


def test_v_prediction_step_is_exact_at_the_noisy_end_of_a_cosine_schedule():
    """At t = T - 1 of cosine T = 1024 (abar = 2.3e-9) x0 = a x_t - s v is well conditioned, but
    x0 recovered through eps divides by a = 4.8e-5: the step must read x0 from v directly."""
    s = NoiseSchedule("cosine", 1024)
    abar = s.alphas_cumprod
    t, prev = 1023, 959
    x0 = torch.rand(8, 64, generator=gen(1), dtype=torch.float64) * 2 - 1
    eps = torch.randn(8, 64, generator=gen(2), dtype=torch.float64)
    a, sd = abar[t].sqrt(), (1 - abar[t]).sqrt()
    x_t, v = a * x0 + sd * eps, a * eps - sd * x0
    want_prev = abar[prev].sqrt() * x0 + (1 - abar[prev]).sqrt() * eps  # DDIM, eta = 0, exact x0 and eps
    x_prev, x0_hat = reverse_step(x_t.float(), v.float(), abar[t].item(), abar[prev].item(),
                                  prediction_type="v_prediction")
    assert (x0_hat.double() - x0).abs().max() < 1e-5
    assert (x_prev.double() - want_prev).abs().max() < 1e-5
    # the route through eps is what this guards against: 1e-3 off
    a32, sd32 = a.float(), sd.float()
    eps_route = sd32 * x_t.float() + a32 * v.float()  # eps from v in float32, then x0 from eps
    x0_via_eps = (x_t.float() - sd32 * eps_route) / a32
    assert (x0_via_eps.double() - x0).abs().max() > 1e-4


@pytest.mark.parametrize("prediction_type", ["epsilon", "sample", "v_prediction"])
def test_every_prediction_type_steps_to_the_same_point(prediction_type):
    """The step reads x0 and eps from any kind of prediction; for an exact prediction all three land
    where the float64 DDIM update does (eta = 0 and eta = 1 with the same noise)."""
    from genlib.diffusion import target
    s = NoiseSchedule("linear", 100)
    x0 = torch.rand(4, 32, generator=gen(3), dtype=torch.float64) * 2 - 1
    eps = torch.randn(4, 32, generator=gen(4), dtype=torch.float64)
    z = torch.randn(4, 32, generator=gen(5))
    for t, prev in ((99, 49), (30, 0), (5, -1)):
        ab, ap = s.alphas_cumprod[t].item(), (s.alphas_cumprod[prev].item() if prev >= 0 else 1.0)
        x_t = ab ** 0.5 * x0 + (1 - ab) ** 0.5 * eps
        pred = target(prediction_type, x0, eps, ab)
        for eta in (0.0, 1.0):
            sig = ddim_sigma(ab, ap, eta) if prev >= 0 else 0.0
            want = ap ** 0.5 * x0 + max(1 - ap - sig ** 2, 0) ** 0.5 * eps + sig * z.double()
            got, _ = reverse_step(x_t.float(), pred.float(), ab, ap, prediction_type=prediction_type, sigma=sig,
                                  noise=z)
            assert (got.double() - want).abs().max() < 1e-4, (t, prev, eta)


def test_sampler_timesteps_start_and_last_step():
    from genlib.diffusion import Sampler
    s = NoiseSchedule("linear", 100)
    assert Sampler(s, 4, spacing="trailing").timesteps == [99, 74, 49, 24]
    part = Sampler(s, 4, spacing="trailing", start=39)
    assert part.timesteps == [39, 29, 19, 9] and part.prev(3) == -1 and part.abar(-1) == 1.0
    ddpm = Sampler(s, variance="fixed_small")
    assert len(ddpm) == 100 and not ddpm.needs_noise(99) and ddpm.needs_noise(0)
    assert not Sampler(s, 10).needs_noise(3)  # DDIM, eta = 0
    with pytest.raises(ValueError, match="start must be a timestep"):
        Sampler(s, 4, start=100)
    with pytest.raises(ValueError, match="unknown variance"):
        Sampler(s, variance="learned")


def test_guidance_and_threshold_objects_check_their_fields():
    with pytest.raises(ValueError, match="needs uncond"):
        guidance.Guidance(None, 3.0)
    with pytest.raises(ValueError, match="finite"):
        guidance.Guidance(torch.zeros(1), [1.0, float("nan")])
    g = guidance.Guidance(torch.zeros(1), [1.0, 2.0, 3.0])
    assert g.at(1, 3) == 2.0
    with pytest.raises(ValueError, match="one guidance scale per step"):
        g.at(0, 4)
    with pytest.raises(ValueError, match="unknown threshold kind"):
        guidance.Threshold("percentile")
    with pytest.raises(ValueError, match="positive finite"):
        guidance.Threshold.static(0.0)
    with pytest.raises(ValueError, match="cap must be >= 1"):
        guidance.Threshold.dynamic(0.9, cap=0.5)


def test_per_step_guidance_and_model_inputs_reach_the_network():
    """The loop passes one scale per step (an oscillating schedule) and extra inputs after cond."""
    from genlib.diffusion import Sampler, sample
    s = NoiseSchedule("linear", 50)
    seen = []

    def net(x, t, cond, w):
        seen.append((x.shape[0], float(w[0])))
        return 0.1 * x + cond

    cond, uncond, w = torch.ones(2, 3), torch.zeros(2, 3), torch.full((2,), 0.25)
    out = sample(net, Sampler(s, 3), torch.randn(2, 3, generator=gen()), cond=cond,
                 guide=guidance.Guidance(uncond, [1.0, 4.0, 1.0]), model_inputs=(w,))
    assert [n for n, _ in seen] == [2, 4, 2]  # guided step: one call on the doubled batch
    assert all(wv == 0.25 for _, wv in seen) and torch.isfinite(out.sample).all()


def test_dynamic_threshold_combines_guidance_once(monkeypatch):
    """With dynamic thresholding the guided prediction is formed once, before the threshold, and the
    fused step gets it with no unconditional input (it was formed twice before)."""
    from genlib.diffusion import samplers
    calls, kernel_uncond = [], []
    real_combine, real_step = guidance.cfg_combine, samplers.sampler_step
    monkeypatch.setattr(guidance, "cfg_combine", lambda *a: calls.append(1) or real_combine(*a))
    monkeypatch.setattr(samplers, "sampler_step", lambda *a, **k: kernel_uncond.append(k["eps_uncond"]) or real_step(*a, **k))
    x_t, p_c, p_u = (torch.randn(2, 16, generator=gen(i)) for i in range(3))
    x_prev, x0 = reverse_step(x_t, p_c, 0.5, 0.8, pred_uncond=p_u, guidance_scale=3.0,
                              threshold=guidance.Threshold.dynamic(0.9))
    assert calls == [1] and kernel_uncond == [None]
    ref_prev, ref_x0 = reverse_step(x_t, real_combine(p_c, p_u, 3.0), 0.5, 0.8, threshold=guidance.Threshold.dynamic(0.9))
    assert torch.equal(x_prev, ref_prev) and torch.equal(x0, ref_x0)


def test_genlib_has_one_reverse_diffusion_loop():
    """Every sampler in genlib runs through ``samplers.sample``: no other module steps a sample
    (``reverse_step`` / ``sampler_step`` / ``ddim_step_x0`` called inside a ``for`` or ``while``)."""
    import ast
    import genlib
    root = Path(genlib.__file__).parent
    steppers = {"reverse_step", "sampler_step", "ddim_step_x0", "step_between"}
    loops = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.For, ast.While)):
                for call in ast.walk(node):
                    if isinstance(call, ast.Call):
                        f = call.func
                        name = f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", None)
                        on_sampler = isinstance(f, ast.Attribute) and "sampler" in ast.unparse(f.value)
                        if name in steppers or (name == "step" and on_sampler):
                            loops.append(f"{path.relative_to(root)}:{node.lineno} ({name})")
    assert len(loops) == 1 and loops[0].startswith("diffusion/samplers.py"), loops
