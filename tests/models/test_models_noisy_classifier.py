"""genlib.models.noisy_classifier and guidance.classifier_guided_eps: classifier guidance (§8.5)."""

import math

import pytest
import torch

from genlib.data import shapes
from genlib.data.render import COLOURS, colour_index
from genlib.diffusion import NoiseSchedule
from genlib.diffusion.guidance import cfg_combine, classifier_guided_eps
from genlib.models import noisy_classifier as nc


def test_guided_eps_subtracts_the_scaled_gradient_per_sample():
    eps, grad = torch.randn(3, 2, 4, 4), torch.randn(3, 2, 4, 4)
    abar = torch.tensor([0.9, 0.5, 0.01])
    out = classifier_guided_eps(eps, grad, abar, 2.5)
    for i in range(3):
        torch.testing.assert_close(out[i], eps[i] - 2.5 * math.sqrt(1 - abar[i].item()) * grad[i])
    torch.testing.assert_close(classifier_guided_eps(eps, grad, 0.64, 1.0), eps - 0.6 * grad)
    with pytest.raises(ValueError, match="share a shape"):
        classifier_guided_eps(eps, grad[:, :1], abar, 1.0)


def test_with_the_exact_classifier_it_is_classifier_free_guidance():
    # two Gaussian classes, noised: p(x_t | y) = N(sqrt(abar) mu_y, abar s^2 + 1 - abar); Bayes gives p(y | x_t)
    abar, mu, s2 = torch.tensor(0.3, dtype=torch.float64), torch.tensor([-1.0, 2.0], dtype=torch.float64), 0.25
    x = torch.linspace(-3, 3, 11, dtype=torch.float64)[:, None].requires_grad_(True)
    var = abar * s2 + 1 - abar
    joint = math.log(0.5) - 0.5 * ((x - abar.sqrt() * mu) ** 2 / var + var.log() + math.log(2 * math.pi))
    log_px, log_px_y = joint.logsumexp(1), joint[:, 1] - math.log(0.5)
    g_u, g_c, g_y = (torch.autograd.grad(f.sum(), x, retain_graph=True)[0]
                     for f in (log_px, log_px_y, joint[:, 1] - log_px))
    sigma = (1 - abar).sqrt()
    for gamma in (0.0, 1.0, 4.0):
        torch.testing.assert_close(classifier_guided_eps(-sigma * g_u, g_y, abar, gamma),
                                   cfg_combine(-sigma * g_c, -sigma * g_u, gamma))
    # a wrong sign of the classifier term would not match
    assert not torch.allclose(classifier_guided_eps(-sigma * g_u, -g_y, abar, 4.0),
                              cfg_combine(-sigma * g_c, -sigma * g_u, 4.0))


def test_colours_present_reads_the_ground_truth():
    batch = shapes.sample(20, size=32, seed=3)
    present = nc.colours_present(batch)
    assert present.shape == (20, len(COLOURS))
    for i, p in enumerate(batch.prompts):
        named = {colour_index(c) for c, _ in p.objects}
        assert set(present[i].nonzero()[:, 0].tolist()) == named


def _tiny():
    torch.manual_seed(0)
    return nc.NoisyClassifier(nc.NoisyClassifierConfig(width=8, groups=4, steps=3, batch_size=4, warmup=0)).eval()


def test_classifier_checks_its_inputs_and_gives_log_probabilities():
    clf = _tiny()
    x, t = torch.randn(5, 4, 8, 8), torch.full((5,), 200)
    assert clf(x, t).shape == (5, len(COLOURS))
    lp = clf.log_prob(x, t, torch.tensor([0, 1, 2, 3, 4]))
    assert lp.shape == (5,) and (lp < 0).all()
    with pytest.raises(ValueError, match="b c h w"):
        clf(torch.randn(5, 3, 8, 8), t)
    with pytest.raises(ValueError, match="one int64 label per sample"):
        clf.log_prob(x, t, torch.zeros(5))
    with pytest.raises(ValueError, match="even size"):
        nc.NoisyClassifierConfig(size=7)


def test_training_lowers_the_loss_on_separable_labels():
    clf = nc.NoisyClassifier(nc.NoisyClassifierConfig(width=8, groups=4, steps=60, batch_size=32, warmup=0, lr=3e-3))
    z = torch.randn(256, 4, 8, 8)
    labels = torch.zeros(256, len(COLOURS))
    labels[:, 0] = (z[:, 0].mean((1, 2)) > 0).float()
    z[:, 0] += 3 * (2 * labels[:, :1, None] - 1)  # a strong signal in channel 0
    info = nc.train_noisy_classifier(clf, z, labels, NoiseSchedule("linear", 1000))
    loss = info["history"]["loss"]
    assert sum(loss[-10:]) / 10 < 0.8 * sum(loss[:10]) / 10
    with pytest.raises(ValueError, match="one target row"):
        nc.train_noisy_classifier(clf, z, labels[:, :2], NoiseSchedule("linear", 1000))


class _Eps(torch.nn.Module):
    prediction_type = "epsilon"

    def forward(self, x_t, t, context):
        return 0.5 * x_t + context.mean()


def test_guided_model_adds_the_classifier_gradient_to_the_unconditional_prediction():
    clf, sched = _tiny(), NoiseSchedule("linear", 1000)
    uncond = torch.full((1, 3, 2), 0.25)
    x, t, y = torch.randn(2, 4, 8, 8), torch.tensor([100, 700]), torch.tensor([1, 4])
    plain = nc.ClassifierGuided(_Eps(), clf, sched, uncond, 0.0)
    steer = nc.ClassifierGuided(_Eps(), clf, sched, uncond, 3.0)
    with torch.no_grad():  # as inside a sampler
        torch.testing.assert_close(plain(x, t, y), 0.5 * x + 0.25)
        out = steer(x, t, y)
    xg = x.clone().requires_grad_(True)
    grad, = torch.autograd.grad(clf.log_prob(xg, t, y).sum(), xg)
    torch.testing.assert_close(out, classifier_guided_eps(0.5 * x + 0.25, grad, sched.alphas_cumprod[t].float(), 3.0))

    class _V(_Eps):
        prediction_type = "v_prediction"
    with pytest.raises(ValueError, match="not 'epsilon'"):
        nc.ClassifierGuided(_V(), clf, sched, uncond, 1.0)
