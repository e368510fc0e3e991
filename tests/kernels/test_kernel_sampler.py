"""The fused sampler step equals the plain-PyTorch stages, and the stages obey their identities."""

import random

import pytest
import torch

from genlib.kernels import sampler_step, sampler_step_reference

# (atol, rtol) against the fp32 reference; outputs rounded to the input dtype (bf16: 1 ulp).
TOLERANCE = {torch.float32: (2e-5, 2e-5), torch.float16: (4e-3, 2e-3), torch.bfloat16: (3e-2, 2e-2)}


def random_arguments(rng: random.Random, gen: torch.Generator, dtype: torch.dtype):
    """x_t, eps_cond and a random mix of the step's options: guidance, per-sample coefficients,
    noise, static or dynamic clipping, what the prediction is."""
    b = rng.randint(1, 4)
    shape = (b, *[rng.randint(1, 9) for _ in range(rng.randint(0, 3))])
    x_t, eps_cond = (torch.randn(shape, generator=gen).to(dtype) for _ in range(2))

    def coefficient(low, high):
        if rng.random() < 0.5:
            return rng.uniform(low, high)
        return low + (high - low) * torch.rand(b, generator=gen)

    kwargs = dict(abar_t=coefficient(0.02, 0.9), abar_prev=coefficient(0.9, 0.999))
    if rng.random() < 0.6:
        eps_uncond = torch.randn(shape, generator=gen).to(dtype)
        kwargs.update(eps_uncond=eps_uncond, guidance_scale=rng.uniform(1, 8))
    if rng.random() < 0.6:
        kwargs.update(sigma=coefficient(0.0, 0.3), noise=torch.randn(shape, generator=gen).to(dtype))
    clip = rng.choice(["none", "static", "dynamic"])
    if clip == "static":
        kwargs.update(clip_sample_range=rng.uniform(0.5, 2))
    if clip == "dynamic":
        kwargs.update(dynamic_threshold=1 + torch.rand(b, generator=gen))
    kwargs.update(prediction_type=rng.choice(["epsilon", "sample", "v_prediction"]))
    return x_t, eps_cond, kwargs


@pytest.mark.parametrize("dtype", list(TOLERANCE), ids=str)
def test_sampler_step_matches_reference_on_random_shapes(dtype, force_triton):
    rng = random.Random(f"sampler-{dtype}")
    gen = torch.Generator().manual_seed(0)
    atol, rtol = TOLERANCE[dtype]
    for case in range(50):
        x_t, eps_cond, kwargs = random_arguments(rng, gen, dtype)
        x_prev, x0 = sampler_step(x_t, eps_cond, **kwargs)
        upcast = {k: v.float() if isinstance(v, torch.Tensor) else v for k, v in kwargs.items()}
        ref_prev, ref_x0 = sampler_step_reference(x_t.float(), eps_cond.float(), **upcast)
        assert x_prev.dtype == x0.dtype == dtype and x_prev.shape == x_t.shape

        def message(s):
            return f"case {case}, shape {tuple(x_t.shape)}, options {sorted(kwargs)}: {s}"

        torch.testing.assert_close(x0.float(), ref_x0, atol=atol, rtol=rtol, msg=message)
        torch.testing.assert_close(x_prev.float(), ref_prev, atol=atol, rtol=rtol, msg=message)


def test_ddim_step_to_the_same_noise_level_is_the_identity():
    """abar_prev = abar_t and sigma = 0: x_prev = sqrt(abar) x0 + sqrt(1 - abar) eps = x_t."""
    gen = torch.Generator().manual_seed(1)
    x_t, eps = torch.randn(3, 8, generator=gen), torch.randn(3, 8, generator=gen)
    x_prev, _ = sampler_step_reference(x_t, eps, abar_t=0.4, abar_prev=0.4)
    torch.testing.assert_close(x_prev, x_t)


def test_guidance_scale_one_is_the_conditional_prediction(force_triton):
    gen = torch.Generator().manual_seed(2)
    x_t, eps_c, eps_u = (torch.randn(2, 3, 5, generator=gen) for _ in range(3))
    step = dict(abar_t=0.3, abar_prev=0.6)
    guided = sampler_step(x_t, eps_c, eps_uncond=eps_u, guidance_scale=1.0, **step)
    plain = sampler_step(x_t, eps_c, **step)
    for g, p in zip(guided, plain):
        torch.testing.assert_close(g, p)


def test_clipping_recomputes_eps_from_the_clipped_x0(force_triton):
    """After clipping, x0 and eps' still explain x_t: x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps'."""
    gen = torch.Generator().manual_seed(3)
    x_t, eps = 3 * torch.randn(2, 50, generator=gen), torch.randn(2, 50, generator=gen)
    abar_t, abar_prev = 0.5, 0.8
    step = dict(abar_t=abar_t, abar_prev=abar_prev, clip_sample_range=1.0)
    x_prev, x0 = sampler_step(x_t, eps, **step)
    assert x0.abs().max() <= 1.0
    eps_prime = (x_t - abar_t**0.5 * x0) / (1 - abar_t) ** 0.5
    torch.testing.assert_close(x_prev, abar_prev**0.5 * x0 + (1 - abar_prev) ** 0.5 * eps_prime)


def test_dynamic_threshold_of_one_is_static_clipping_at_one(force_triton):
    gen = torch.Generator().manual_seed(4)
    x_t, eps = 2 * torch.randn(3, 40, generator=gen), torch.randn(3, 40, generator=gen)
    kwargs = dict(abar_t=torch.tensor([0.2, 0.5, 0.7]), abar_prev=0.9)
    dynamic = sampler_step(x_t, eps, dynamic_threshold=torch.ones(3), **kwargs)
    static = sampler_step(x_t, eps, clip_sample_range=1.0, **kwargs)
    for d, s in zip(dynamic, static):
        torch.testing.assert_close(d, s)


def test_sampler_step_through_autograd_uses_the_reference(force_triton):
    gen = torch.Generator().manual_seed(5)
    x_t = torch.randn(2, 6, generator=gen)
    eps = torch.randn(2, 6, generator=gen, requires_grad=True)
    x_prev, _ = sampler_step(x_t, eps, abar_t=0.5, abar_prev=0.5)
    (grad,) = torch.autograd.grad(x_prev.sum(), eps)
    torch.testing.assert_close(grad, torch.zeros_like(grad), atol=1e-6, rtol=0)  # x_prev = x_t


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(noise=torch.zeros(2, 4)), "noise of x_t's shape"),
        (dict(abar_t=torch.full((3,), 0.5)), r"abar_t as a float or a tensor of shape \(b,\)"),
        (dict(clip_sample_range=1.0, dynamic_threshold=torch.ones(2)), "not both"),
    ],
)
def test_sampler_step_rejects_bad_arguments(kwargs, match):
    arguments = dict(abar_t=0.5, abar_prev=0.7) | kwargs
    with pytest.raises(ValueError, match=match):
        sampler_step(torch.zeros(2, 3), torch.zeros(2, 3), **arguments)


@pytest.mark.parametrize("per_sample", [False, True], ids=["scalars", "float64 tensors"])
@pytest.mark.parametrize("triton", [False, True], ids=["reference", "triton"])
def test_noise_direction_at_eta_one_into_t0_matches_float64(per_sample, triton, monkeypatch):
    """The last step of a 10-step DDPM run (t = 100 -> 0, linear schedule): abar_prev = 0.9999 and
    sigma^2 fall within 1e-7 of each other's complement, so sqrt(1 - abar_prev - sigma^2) computed
    in float32 came out 9% wrong (3.19e-4 instead of 2.92e-4). With x0 = 0 the step is that
    coefficient times eps: it must match the float64 closed form."""
    import math

    from genlib.diffusion import NoiseSchedule, ddim_sigma

    if triton:
        monkeypatch.setenv("GENLIB_KERNELS", "triton")
    abar = NoiseSchedule("linear", 1000).alphas_cumprod.tolist()
    a_t, a_prev = abar[100], abar[0]
    sig = ddim_sigma(a_t, a_prev, 1.0)
    direction = math.sqrt(1 - a_prev - sig**2)  # float64: 2.92e-4
    eps = torch.randn(2, 3, 4, generator=torch.Generator().manual_seed(0))
    x_t = math.sqrt(1 - a_t) * eps  # x0 = 0: x_prev is the noise direction alone
    coeffs = [a_t, a_prev, sig]
    if per_sample:
        coeffs = [torch.full((2,), c, dtype=torch.float64) for c in coeffs]
    x_prev, x0 = sampler_step(x_t, eps, abar_t=coeffs[0], abar_prev=coeffs[1], sigma=coeffs[2])
    assert x0.abs().max() < 1e-6
    torch.testing.assert_close(x_prev, direction * eps, rtol=1e-4, atol=1e-8)


@pytest.mark.parametrize("prediction_type", ["sample", "v_prediction"])
def test_every_kind_of_prediction_is_the_eps_step_of_the_noise_it_implies(prediction_type, force_triton):
    """A v or x0 prediction steps where the eps step of the same (x0, eps) lands, within fp32."""
    gen = torch.Generator().manual_seed(4)
    x0, eps = torch.rand(3, 40, generator=gen) * 2 - 1, torch.randn(3, 40, generator=gen)
    abar_t, abar_prev = 0.3, torch.tensor([0.5, 0.7, 0.95])
    x_t = abar_t ** 0.5 * x0 + (1 - abar_t) ** 0.5 * eps
    pred = x0 if prediction_type == "sample" else abar_t ** 0.5 * eps - (1 - abar_t) ** 0.5 * x0
    step = dict(abar_t=abar_t, abar_prev=abar_prev, clip_sample_range=0.8)
    got_prev, got_x0 = sampler_step(x_t, pred, prediction_type=prediction_type, **step)
    want_prev, want_x0 = sampler_step_reference(x_t, eps, **step)
    torch.testing.assert_close(got_x0, want_x0, atol=2e-5, rtol=2e-5)
    torch.testing.assert_close(got_prev, want_prev, atol=2e-5, rtol=2e-5)
    with pytest.raises(ValueError, match="unknown prediction_type"):
        sampler_step(x_t, pred, prediction_type="score", **step)
