"""genlib.models.gan: eq. 9's losses, the networks' layouts, and Algorithm 1's loop."""

import math

import pytest
import torch
import torch.nn.functional as F

from genlib import train
from genlib.models import gan


def test_losses_are_eq9_written_with_binary_cross_entropy():
    gen = torch.Generator().manual_seed(0)
    real, fake = torch.randn(64, generator=gen) * 3, torch.randn(64, generator=gen) * 3
    bce = F.binary_cross_entropy_with_logits
    expected_d = bce(real, torch.ones(64)) + bce(fake, torch.zeros(64))
    torch.testing.assert_close(gan.discriminator_loss(real, fake), expected_d)
    torch.testing.assert_close(gan.generator_loss(fake, "non_saturating"), bce(fake, torch.ones(64)))
    torch.testing.assert_close(gan.generator_loss(fake, "minimax"), -bce(fake, torch.zeros(64)))
    # a discriminator that cannot tell (D = 1/2 everywhere) has -V = log 4
    zero = torch.zeros(8)
    assert math.isclose(float(gan.discriminator_loss(zero, zero)), math.log(4), rel_tol=1e-6)


def test_generator_gradients_with_respect_to_the_logit():
    """minimax: d/dl log(1 - sigmoid(l)) = -sigmoid(l); non-saturating: d/dl -log sigmoid(l) = -(1 - sigmoid(l))."""
    logits = torch.linspace(-8, 8, 17, dtype=torch.float64, requires_grad=True)
    for kind, closed in (("minimax", lambda p: -p), ("non_saturating", lambda p: -(1 - p))):
        (grad,) = torch.autograd.grad(gan.generator_loss(logits, kind) * len(logits), logits)
        torch.testing.assert_close(grad, closed(torch.sigmoid(logits.detach())))
    with pytest.raises(ValueError, match="unknown generator loss"):
        gan.generator_loss(logits, "wasserstein")


def test_toy_networks_and_packing():
    cfg = gan.ToyGANConfig(z_dim=4, width=16, pack=3)
    G, D = gan.ToyGenerator(cfg), gan.ToyDiscriminator(cfg)
    x = G(torch.randn(12, 4))
    assert x.shape == (12, 2) and D(x).shape == (4,)
    # packs are consecutive rows: swapping two packs swaps their logits
    torch.testing.assert_close(D(torch.cat([x[3:6], x[:3], x[6:]])), D(x)[[1, 0, 2, 3]])
    with pytest.raises(ValueError, match=r"\(b pack\) 2 with pack = 3"):
        D(torch.randn(10, 2))
    with pytest.raises(ValueError, match="b z_dim"):
        G(torch.randn(5, 3))
    with pytest.raises(ValueError, match="positive sizes"):
        gan.ToyGANConfig(pack=0)


def _toy_run(seed=0, k=1, steps=12, every=4):
    torch.manual_seed(seed)  # the initial weights (genlib.zoo seeds before it builds a model)
    cfg = gan.ToyGANConfig(z_dim=4, width=16, pack=2)
    pair = gan.GANPair(gan.ToyGenerator(cfg), gan.ToyDiscriminator(cfg))
    data = torch.randn(500, 2)
    calls = []
    batches = train.random_batches(data, 8, seed=seed)

    def counted(i):
        calls.append(i)
        return batches(i)

    settings = gan.GANTraining(steps=steps, k=k, batch_size=8, lr=1e-3)
    history = gan.train_gan(pair, counted, settings, seed=seed, device="cpu", every=every,
                            evaluate=lambda G: {"spread": float(gan.generate(G, 50).std())}, progress=False)
    return pair, history, calls


def test_train_gan_follows_algorithm_1():
    pair, history, calls = _toy_run(k=3)
    assert len(history) == 12 and calls == list(range(36)), "k = 3 real minibatches per generator step"
    for key in ("g_loss", "d_real", "d_fake"):
        assert len(history.series(key)) == 12 and all(v is not None for v in history.series(key))
    spread = history.series("spread")
    assert len(spread) == 12 and [i for i, v in enumerate(spread) if v is not None] == [0, 3, 7, 11]
    assert not pair.training, "the pair is left in eval mode"
    # same seed, same history; another seed, another one
    _, again, _ = _toy_run(k=3)
    _, other, _ = _toy_run(seed=1, k=3)
    assert again.loss == history.loss and other.loss != history.loss


def test_settings_are_checked():
    with pytest.raises(ValueError, match="k >= 1"):
        gan.GANTraining(k=0)
    with pytest.raises(ValueError, match="unknown generator loss"):
        gan.GANTraining(loss="hinge")
    with pytest.raises(ValueError, match="one entry per row"):
        train.random_batches(torch.zeros(5, 2), 2, torch.zeros(4))
    x, y = torch.arange(10.0)[:, None], torch.arange(10)
    xb, yb = train.random_batches(x, 4, y, seed=2)(7)
    assert torch.equal(xb[:, 0].long(), yb) and torch.equal(train.random_batches(x, 4, seed=2)(7), xb)


def test_ring_gan_is_cached_with_its_checkpoints(tmp_path, monkeypatch):
    monkeypatch.setenv("GENLIB_CACHE", str(tmp_path))
    monkeypatch.setenv("GENLIB_PROFILE", "ci")
    pair = gan.load_ring_gan(pack=2, seed=1)
    scalars = pair.info["history"]["scalars"]
    checkpoints = [m for m in scalars["modes"] if m is not None]
    assert not pair.from_cache and len(checkpoints) == gan.CHECKPOINTS + 1
    assert all(0 <= m <= gan.RING["modes"] for m in checkpoints)
    assert len([p for p in scalars["points"] if p is not None][-1]) == gan.EVALUATION["kept"]
    again = gan.load_ring_gan(pack=2, seed=1)
    assert again.from_cache and again.info == pair.info
    assert not gan.load_ring_gan(pack=2, seed=2).from_cache, "another seed is another model"
