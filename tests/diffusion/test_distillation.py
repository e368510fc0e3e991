"""Progressive distillation and guidance distillation: the target's algebra, exact students on a
Gaussian toy, the sampler written with x0, guided teachers."""

import sys
from pathlib import Path

import pytest
import torch

from genlib.diffusion import NoiseSchedule, ddim_sample
from genlib.diffusion.distillation import (
    abar_at, ddim_sample_x0, ddim_step_x0, distillation_loss, guidance_distillation_loss, distillation_weight, predict_x0,
    progressive_distillation, student_grid, student_target, teacher_two_steps,
)

sys.path.insert(0, str(Path(__file__).parent))
from oracles import GaussianOracle  # noqa: E402


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("abars", [(0.01, 0.3, 0.9), (1e-6, 0.5, 1.0), (0.4, 0.45, 0.5)])
def test_one_step_with_the_target_lands_on_the_two_step_endpoint(abars):
    a_t, a_mid, a_end = abars
    g = gen(1)
    z_t, x_1, x_2 = (torch.randn(5, 3, 4, 4, generator=g, dtype=torch.float64) for _ in range(3))
    z_mid = ddim_step_x0(z_t, x_1, a_t, a_mid)  # two steps with arbitrary x0 predictions
    z_end = ddim_step_x0(z_mid, x_2, a_mid, a_end)
    x_tilde = student_target(z_t, z_end, a_t, a_end)
    assert torch.allclose(ddim_step_x0(z_t, x_tilde, a_t, a_end), z_end, atol=1e-12, rtol=0)
    if a_end == 1.0:  # the last step lands on the clean image: the target is the endpoint itself
        assert torch.allclose(x_tilde, z_end, atol=1e-12)


def test_ddim_step_x0_is_eq_12_when_x0_is_right():
    g = gen(2)
    x0, eps = torch.randn(2, 8, generator=g, dtype=torch.float64), torch.randn(2, 8, generator=g, dtype=torch.float64)
    z_t = 0.3 ** 0.5 * x0 + 0.7 ** 0.5 * eps
    assert torch.allclose(ddim_step_x0(z_t, x0, 0.3, 0.8), 0.8 ** 0.5 * x0 + 0.2 ** 0.5 * eps, atol=1e-12)


def test_grid_and_abar():
    assert student_grid(1024, 4) == [1023, 767, 511, 255]
    with pytest.raises(ValueError, match="divide T"):
        student_grid(1000, 16)
    s = NoiseSchedule("cosine", 64)
    like = torch.zeros(3, 2, 2)
    ab = abar_at(s, torch.tensor([-1, 0, 63]), like.double())
    assert ab.shape == (3, 1, 1) and ab[0].item() == 1.0 and ab[2].item() == pytest.approx(s.alphas_cumprod[63].item())
    with pytest.raises(ValueError, match="-1"):
        abar_at(s, torch.tensor([-2]), like)
    with pytest.raises(ValueError, match="weighting"):
        distillation_weight(s, torch.tensor([5]), "simple")
    t = torch.tensor([0, 31, 40, 63])
    snr = s.alphas_cumprod[t] / (1 - s.alphas_cumprod[t])
    assert torch.allclose(distillation_weight(s, t, "truncated_snr"), snr.clamp(min=1).float())
    assert torch.allclose(distillation_weight(s, t, "snr_plus_one"), (snr + 1).float())
    assert 1 < snr[0] and snr[-1] < 1  # both sides of the truncation are tested


def test_ddim_sample_x0_equals_the_library_ddim():
    s = NoiseSchedule("cosine", 64)
    oracle = GaussianOracle(s, mean=0.3, std=0.5, prediction_type="v_prediction")
    z = torch.randn(4, 1, 4, 4, generator=gen(3))
    ref = ddim_sample(oracle, s, x_T=z, num_steps=8, spacing="trailing", prediction_type="v_prediction").sample
    mine = ddim_sample_x0(oracle, s, z.double(), 8, prediction_type="v_prediction")
    assert torch.allclose(mine.float(), ref, atol=1e-4)
    clipped = ddim_sample(oracle, s, x_T=z, num_steps=8, spacing="trailing", prediction_type="v_prediction", clip_sample=0.2).sample
    assert torch.allclose(ddim_sample_x0(oracle, s, z, 8, prediction_type="v_prediction", clip=0.2), clipped, atol=1e-4)


class AffineStudent(torch.nn.Module):
    """x^ = A[t] z + B[t]: the form of every exact sampler on Gaussian data (it predicts ``sample``)."""

    def __init__(self, T):
        super().__init__()
        self.A = torch.nn.Parameter(torch.zeros(T, dtype=torch.float64))
        self.B = torch.nn.Parameter(torch.zeros(T, dtype=torch.float64))

    def forward(self, z, t):
        return self.A[t].reshape(-1, 1, 1, 1) * z + self.B[t].reshape(-1, 1, 1, 1)


def fit_student(teacher, schedule, n, kind, m, c):
    """Least squares, per grid timestep, of Algorithm 4's target on z_t (exact: the target is affine in z_t)."""
    student = AffineStudent(len(schedule))
    g = gen(4)
    for t in student_grid(len(schedule), n):
        x = m + c * torch.randn(256, 1, 2, 2, generator=g, dtype=torch.float64)
        a = schedule.alphas_cumprod[t].item()
        z = a ** 0.5 * x + (1 - a) ** 0.5 * torch.randn(x.shape, generator=g, dtype=torch.float64)
        tt = torch.full((256,), t)
        z_end, t_end = teacher_two_steps(teacher, schedule, z, tt, n, prediction_type=kind)
        target = student_target(z, z_end, a, abar_at(schedule, t_end, z))
        design = torch.stack([z.flatten(), torch.ones(z.numel(), dtype=torch.float64)], 1)
        sol = torch.linalg.lstsq(design, target.flatten()[:, None]).solution.flatten()
        with torch.no_grad():
            student.A[t], student.B[t] = sol[0], sol[1]
    return student


def test_an_exact_teacher_gives_an_exact_student_over_halvings():
    s = NoiseSchedule("cosine", 64)
    m, c = 0.4, 0.3
    teacher, kind = GaussianOracle(s, mean=m, std=c, prediction_type="v_prediction"), "v_prediction"
    z = torch.randn(16, 1, 2, 2, generator=gen(5), dtype=torch.float64)
    reference = ddim_sample_x0(teacher, s, z, 16, prediction_type=kind)  # the 16-step teacher sampler
    n = 16
    while n > 1:
        student = fit_student(teacher, s, n // 2, kind, m, c)
        n //= 2
        got = ddim_sample_x0(student, s, z, n, prediction_type="sample")
        assert torch.allclose(got, reference, atol=1e-9), f"the {n}-step student differs from the 16-step teacher"
        # the exact student has zero loss; a perturbed one does not
        x = m + c * torch.randn(32, 1, 2, 2, generator=gen(6), dtype=torch.float64)
        kw = dict(prediction_type=kind, student_prediction_type="sample", generator=gen(7))
        loss = distillation_loss(student, teacher, s, x, n, **kw)
        assert loss.item() < 1e-12
        with torch.no_grad():
            student.B.add_(0.01)
        assert distillation_loss(student, teacher, s, x, n, **kw).item() > 1e-6
        with torch.no_grad():
            student.B.sub_(0.01)
        teacher, kind = student, "sample"
    assert n == 1


def test_the_guided_teacher_is_the_survey_combination():
    s = NoiseSchedule("cosine", 64)
    oracle = GaussianOracle(s, mean=0.0, std=0.5, prediction_type="v_prediction")
    z = torch.randn(3, 1, 2, 2, generator=gen(8), dtype=torch.float64)
    t = torch.tensor([10, 30, 60])
    cond, uncond = torch.ones(3), torch.zeros(3)
    w = torch.tensor([0.0, 1.0, 5.0])
    x_c = predict_x0(oracle, s, z, t, prediction_type="v_prediction", cond=cond)
    x_u = predict_x0(oracle, s, z, t, prediction_type="v_prediction", cond=uncond)
    guided = predict_x0(oracle, s, z, t, prediction_type="v_prediction", cond=cond, uncond=uncond, guidance_scale=1 + w)
    assert torch.allclose(guided, (1 + w.reshape(-1, 1, 1, 1)) * x_c - w.reshape(-1, 1, 1, 1) * x_u, atol=1e-12)
    with pytest.raises(ValueError, match="uncond"):
        predict_x0(oracle, s, z, t, prediction_type="v_prediction", cond=cond, guidance_scale=3.0)


def test_guidance_distillation_loss_is_zero_for_the_exact_w_student():
    s = NoiseSchedule("cosine", 64)
    oracle = GaussianOracle(s, mean=0.0, std=0.5, prediction_type="v_prediction")

    def exact(z, t, cond, w):  # a w-conditioned "network" that computes the guided teacher
        w = w.reshape(-1, 1, 1, 1)
        return (1 + w) * oracle(z, t, cond) - w * oracle(z, t, torch.zeros_like(cond))

    def wrong(z, t, cond, w):  # ignores w: the conditional model alone
        return oracle(z, t, cond)

    x = 0.5 * torch.randn(16, 1, 2, 2, generator=gen(9), dtype=torch.float64) + 1.0
    cond, uncond = torch.ones(16), torch.zeros(16)
    zero = guidance_distillation_loss(exact, oracle, s, x, cond, uncond, w_range=(1.0, 6.0), generator=gen(10))
    assert zero.item() < 1e-10  # float32 accumulation of the squared error
    assert guidance_distillation_loss(wrong, oracle, s, x, cond, uncond, w_range=(1.0, 6.0), generator=gen(10)).item() > 1e-3
    with pytest.raises(ValueError, match="w_range"):
        guidance_distillation_loss(exact, oracle, s, x, cond, uncond, w_range=(3.0, 1.0))


class Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.net = torch.nn.Conv2d(1, 1, 3, padding=1)

    def forward(self, z, t):
        return self.net(z)


def test_progressive_distillation_loop_halves_and_freezes_the_teacher():
    s = NoiseSchedule("cosine", 64)
    teacher = Tiny()
    before = [p.detach().clone() for p in teacher.parameters()]
    seen = []
    out = progressive_distillation(teacher, s, lambda step: torch.randn(4, 1, 4, 4), start_steps=8, halvings=3,
                                   steps=3, lr=1e-2, on_halving=lambda n, m, h: seen.append(n))
    assert [n for n, _, _ in out] == seen == [4, 2, 1]
    assert all(len(h) == 3 for _, _, h in out)
    assert all(torch.equal(a, b) for a, b in zip(before, teacher.parameters()))  # the first teacher is untouched
    assert out[0][1] is not teacher and out[1][1] is not out[0][1]
    with pytest.raises(ValueError, match="divisible"):
        progressive_distillation(teacher, s, lambda step: torch.randn(4, 1, 4, 4), start_steps=6, halvings=2, steps=1)


def test_ddim_sample_x0_can_start_part_way():
    """start = T - 1 is the default grid; a later start samples a partly noised z on its own grid."""
    s = NoiseSchedule("cosine", 100)
    oracle = GaussianOracle(s, mean=0.3, std=0.5, prediction_type="v_prediction")
    z = torch.randn(4, 1, 4, 4, generator=gen(3)).double()
    assert torch.equal(ddim_sample_x0(oracle, s, z, 8, prediction_type="v_prediction", start=99),
                       ddim_sample_x0(oracle, s, z, 8, prediction_type="v_prediction"))
    late = ddim_sample_x0(oracle, s, z, 8, prediction_type="v_prediction", start=40)
    assert not torch.allclose(late, ddim_sample_x0(oracle, s, z, 8, prediction_type="v_prediction"))
    for bad in (-1, 100):
        with pytest.raises(ValueError, match="start"):
            ddim_sample_x0(oracle, s, z, 8, prediction_type="v_prediction", start=bad)
