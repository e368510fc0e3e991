"""GANs (Goodfellow et al. 2014; survey §5): a generator, a discriminator, eq. 9 and Algorithm 1.

The discriminator outputs a *logit* ``l``; its probability that the input is real is
``D(x) = sigmoid(l)``, so ``log D(x) = logsigmoid(l)`` and ``log(1 - D(x)) = logsigmoid(-l)``
(exact and stable for any ``l``). Eq. 9's value, as a mean over a minibatch of ``m``:

    V(D, G) = 1/m sum_i [ log D(x_i) + log(1 - D(G(z_i))) ]         (eq. 9)

* :func:`discriminator_loss` is ``-V``: D ascends V by descending it (Algorithm 1, inner loop).
* :func:`generator_loss` with ``kind="minimax"`` is eq. 9's second term, which G descends
  (Algorithm 1 as printed); ``kind="non_saturating"`` is ``-1/m sum log D(G(z_i))``, the variant
  the GAN paper itself recommends for training (same fixed point, strong gradients early on).
* :func:`train_gan` is Algorithm 1: ``k`` discriminator steps, then one generator step.

Here the networks are :class:`ToyGenerator` / :class:`ToyDiscriminator`, MLPs on 2-D points (the
ring of Gaussians, where mode collapse shows); :mod:`genlib.models.cgan` has DCGAN-style image
networks and the conditional GAN.

The toy discriminator can *pack* (PacGAN, Lin et al. 2018): it judges ``pack`` samples at once,
all real or all generated. A generator that puts every sample on one mode makes packs whose
members look alike, which a packed discriminator can see and a single-sample one cannot.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Callable

import torch
import torch.nn as nn
import torch.nn.functional as F
from einops import rearrange
from tqdm.auto import tqdm

from genlib import config, train, zoo
from genlib.data import toy2d

LOSSES = ("non_saturating", "minimax")


# ----------------------------------------------------------------------------- eq. 9


def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """``-V(D, G)`` of eq. 9 from D's logits on real and generated samples (D minimises this)."""
    return -(F.logsigmoid(real_logits).mean() + F.logsigmoid(-fake_logits).mean())


def generator_loss(fake_logits: torch.Tensor, kind: str = "non_saturating") -> torch.Tensor:
    """G's loss from D's logits on generated samples.

    ``minimax``: ``mean log(1 - D(G(z)))``, eq. 9's second term (Algorithm 1's generator step).
    ``non_saturating``: ``-mean log D(G(z))``. Both push D(G(z)) up; their gradients with respect
    to the logit are ``-D(G(z))`` and ``-(1 - D(G(z)))``: when D confidently rejects a sample
    (D(G(z)) near 0, as early in training) the first vanishes and the second does not.
    """
    if kind == "minimax":
        return F.logsigmoid(-fake_logits).mean()
    if kind == "non_saturating":
        return -F.logsigmoid(fake_logits).mean()
    raise ValueError(f"unknown generator loss {kind!r}; expected one of {', '.join(LOSSES)}")


# ----------------------------------------------------------------------------- 2-D toy networks


@dataclasses.dataclass(frozen=True)
class ToyGANConfig:
    """MLPs for 2-D data: noise ``z_dim``, ``depth`` hidden layers of ``width``; the discriminator
    judges ``pack`` points at once (1: the original GAN)."""

    z_dim: int = 16
    width: int = 128
    depth: int = 2
    pack: int = 1

    def __post_init__(self):
        if min(self.z_dim, self.width, self.depth, self.pack) < 1:
            raise ValueError(f"ToyGANConfig needs positive sizes, got {self}")

    @classmethod
    def preset(cls, pack: int = 1) -> "ToyGANConfig":
        """The ring GAN's networks in the active profile, with a ``pack``-sample discriminator."""
        return cls(z_dim=16, width=config.pick(ci=32, cpu=128, gpu=128), depth=2, pack=pack)


def _mlp(d_in: int, d_out: int, width: int, depth: int, act: type[nn.Module]) -> nn.Sequential:
    layers, d = [], d_in
    for _ in range(depth):
        layers += [nn.Linear(d, width), act()]
        d = width
    return nn.Sequential(*layers, nn.Linear(d, d_out))


class ToyGenerator(nn.Module):
    """``z: b z_dim -> b 2``."""

    def __init__(self, cfg: ToyGANConfig):
        super().__init__()
        self.cfg, self.z_dim = cfg, cfg.z_dim
        self.net = _mlp(cfg.z_dim, 2, cfg.width, cfg.depth, nn.ReLU)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if z.ndim != 2 or z.shape[1] != self.z_dim:
            raise ValueError(f"ToyGenerator expects z of layout b z_dim = (b, {self.z_dim}), got {tuple(z.shape)}")
        return self.net(z)


class ToyDiscriminator(nn.Module):
    """``x: (b pack) 2 -> b`` logits: consecutive groups of ``pack`` points are judged together."""

    def __init__(self, cfg: ToyGANConfig):
        super().__init__()
        self.pack = cfg.pack
        self.net = _mlp(2 * cfg.pack, 1, cfg.width, cfg.depth, nn.ReLU)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 2 or x.shape[1] != 2 or x.shape[0] % self.pack:
            raise ValueError(f"ToyDiscriminator expects x of layout (b pack) 2 with pack = {self.pack}, "
                             f"got {tuple(x.shape)}")
        return self.net(rearrange(x, "(b p) d -> b (p d)", p=self.pack)).squeeze(1)


# ----------------------------------------------------------------------------- Algorithm 1


class GANPair(nn.Module):
    """The generator and the discriminator as one module, so :mod:`genlib.zoo` caches both."""

    def __init__(self, generator: nn.Module, discriminator: nn.Module):
        super().__init__()
        self.generator, self.discriminator = generator, discriminator


@dataclasses.dataclass(frozen=True)
class GANTraining:
    """Algorithm 1's settings: ``steps`` generator updates, ``k`` discriminator updates before
    each, minibatches of ``batch_size`` (``m``), Adam with ``lr`` and ``betas`` for both networks
    (DCGAN's beta1 = 0.5), and the generator's loss ``loss`` (see :func:`generator_loss`)."""

    steps: int = 1000
    k: int = 1
    batch_size: int = 64
    lr: float = 2e-4
    betas: tuple[float, float] = (0.5, 0.999)
    loss: str = "non_saturating"

    def __post_init__(self):
        if self.steps < 0 or self.k < 1 or self.batch_size < 1 or self.lr <= 0:
            raise ValueError(f"GANTraining needs steps >= 0, k >= 1, batch_size >= 1, lr > 0; got {self}")
        if self.loss not in LOSSES:
            raise ValueError(f"unknown generator loss {self.loss!r}; expected one of {', '.join(LOSSES)}")

    @classmethod
    def preset(cls, task: str = "ring", loss: str = "non_saturating") -> "GANTraining":
        """Algorithm 1's settings in the active profile for chapter 05's two GANs: ``"ring"`` (the
        2-D ring, MLPs, large batches) or ``"digits"`` (the conditional 16x16 digits GAN)."""
        if task == "ring":
            return cls(steps=config.pick(ci=60, cpu=1500, gpu=1500), batch_size=256, lr=1e-3, loss=loss)
        if task == "digits":
            return cls(steps=config.pick(ci=30, cpu=800, gpu=3000), batch_size=config.pick(ci=32, cpu=64, gpu=128),
                       lr=2e-4, loss=loss)
        raise ValueError(f"unknown task {task!r}; expected 'ring' or 'digits'")


def _split(batch: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
    return (batch[0], batch[1]) if isinstance(batch, (tuple, list)) else (batch, None)


def train_gan(
    pair: GANPair,
    real_batch: Callable[[int], Any],
    settings: GANTraining,
    *,
    seed: int = 0,
    device: str | torch.device | None = None,
    every: int = 0,
    evaluate: Callable[[nn.Module], dict] | None = None,
    progress: bool | None = None,
    desc: str = "GAN",
) -> train.History:
    """Algorithm 1 on ``pair`` in place; returns a :class:`genlib.train.History`.

    ``real_batch(i)`` returns the ``i``-th minibatch of real data: a tensor, or ``(x, y)`` with
    labels for a conditional pair (the generated minibatch then uses the same labels). Noise comes
    from a CPU generator seeded with ``seed``. The history's ``loss`` is D's loss (``-V``, eq. 9);
    its scalars hold ``g_loss``, ``d_real`` and ``d_fake`` (mean D(x), mean D(G(z)) in the last
    discriminator step) every step, and every ``every`` steps the dict ``evaluate(generator)``
    returns (plain numbers or lists, kept as they are; ``None`` between evaluations).
    """
    dev = torch.device(device) if device is not None else config.device()
    config.seed_everything(seed)
    g = torch.Generator().manual_seed(seed)
    G, D = pair.generator.to(dev), pair.discriminator.to(dev)
    opt_g = torch.optim.Adam(G.parameters(), lr=settings.lr, betas=settings.betas)
    opt_d = torch.optim.Adam(D.parameters(), lr=settings.lr, betas=settings.betas)
    history = train.History()
    scalars = history.scalars
    show = train.show_progress() if progress is None else progress
    bar = tqdm(total=settings.steps, desc=desc, disable=not show)
    pair.train()
    start, draws = time.perf_counter(), 0

    def noise(n: int) -> torch.Tensor:
        return config.randn((n, G.z_dim), generator=g, device=dev)

    def fakes(n: int, y):
        return G(noise(n)) if y is None else G(noise(n), y)

    def judge(x, y):
        return D(x) if y is None else D(x, y)

    pending: list[torch.Tensor] = []  # per step: d_loss, g_loss, mean D(x), mean D(G(z))
    evaluations: list[tuple[int, dict]] = []

    def flush() -> None:  # one device-to-host read for the pending steps
        for d_l, g_l, d_r, d_f in torch.stack(pending).tolist():
            history.loss.append(d_l)
            for key, value in (("g_loss", g_l), ("d_real", d_r), ("d_fake", d_f)):
                scalars.setdefault(key, []).append(value)
        pending.clear()

    try:
        for step in range(config.capped(settings.steps)):  # GENLIB_MAX_STEPS caps rehearsals
            for _ in range(settings.k):  # Algorithm 1: k steps on D, ascending V
                x, y = _split(train.to_device(real_batch(draws), dev))
                draws += 1
                with torch.no_grad():
                    fake = fakes(len(x), y)
                real_logits, fake_logits = judge(x, y), judge(fake, y)
                d_loss = discriminator_loss(real_logits, fake_logits)
                opt_d.zero_grad(set_to_none=True)
                d_loss.backward()
                opt_d.step()
            # one step on G, with fresh noise (and the last real batch's labels)
            g_loss = generator_loss(judge(fakes(len(x), y), y), settings.loss)
            opt_g.zero_grad(set_to_none=True)
            g_loss.backward()
            opt_g.step()

            pending.append(torch.stack([d_loss.detach(), g_loss.detach(), torch.sigmoid(real_logits.detach()).mean(),
                                        torch.sigmoid(fake_logits.detach()).mean()]))
            if len(pending) == 50 or step == settings.steps - 1:
                flush()
                bar.update(step + 1 - bar.n)
                bar.set_postfix(d_loss=f"{history.loss[-1]:.3f}", g_loss=f"{scalars['g_loss'][-1]:.3f}")
            if evaluate is not None and every and ((step + 1) % every == 0 or step == 0):
                G.eval()
                with torch.no_grad():
                    evaluations.append((step, evaluate(G)))
                G.train()
    finally:
        bar.close()
        pair.eval()
    for step, values in evaluations:  # per-step series, None between evaluations
        for key, value in values.items():
            scalars.setdefault(key, [None] * settings.steps)[step] = value
    history.seconds = time.perf_counter() - start
    return history


@torch.no_grad()
def generate(generator: nn.Module, n: int, *, labels: torch.Tensor | None = None, seed: int = 0) -> torch.Tensor:
    """``n`` samples from ``generator`` in eval mode, noise from a CPU generator seeded with ``seed``
    (and ``labels: n`` for a conditional one); returned on the CPU."""
    was_training = generator.training
    generator.eval()
    dev = config.module_device(generator)
    z = config.randn((n, generator.z_dim), generator=torch.Generator().manual_seed(seed), device=dev)
    try:
        out = generator(z) if labels is None else generator(z, labels.to(dev))
    finally:
        generator.train(was_training)
    return out.cpu()


# ----------------------------------------------------------------------------- chapter 05's models, by profile

RING = dict(modes=8, radius=2.0, std=0.05)  # the ring of Gaussians (genlib.data.toy2d.ring)
RING_POINTS = 20000  # the training set drawn from it
CHECKPOINTS = 6  # evaluations of a ring GAN during training (and one after the first step)
EVALUATION = dict(n=2000, seed=99, kept=300)  # points generated per checkpoint, their noise seed, points stored


def ring_coverage(points: torch.Tensor):
    """:func:`genlib.data.toy2d.mode_coverage` of ``points: n 2`` on :data:`RING`."""
    centers = toy2d.ring_centers(RING["modes"], RING["radius"])
    return toy2d.mode_coverage(points, centers, std=RING["std"])


def _ring_checkpoint(G: nn.Module) -> dict:
    points = generate(G, EVALUATION["n"], seed=EVALUATION["seed"])
    cov = ring_coverage(points)
    return {"modes": cov.modes_covered, "high_quality": cov.high_quality,
            "points": [[round(v, 4) for v in p] for p in points[: EVALUATION["kept"]].tolist()]}


def load_ring_gan(pack: int = 1, seed: int = 0, loss: str = "non_saturating") -> GANPair:
    """The ring GAN with a ``pack``-sample discriminator, trained with ``seed`` (cached; trains on the
    CPU, where MLPs this small run as fast as on a GPU). ``pair.info["history"]`` holds the losses and,
    at :data:`CHECKPOINTS` points of training, the modes covered, the high-quality share and 300
    generated points."""
    cfg, settings = ToyGANConfig.preset(pack), GANTraining.preset("ring", loss)
    data, _ = toy2d.sample("ring", RING_POINTS, seed=0, **RING)

    def fit(pair: GANPair) -> dict:
        history = train_gan(pair, train.random_batches(data, settings.batch_size, seed=seed), settings, seed=seed,
                            device="cpu", every=max(1, settings.steps // CHECKPOINTS), evaluate=_ring_checkpoint,
                            desc=f"ring GAN pack={pack} seed={seed}")
        return {"history": history.to_dict()}

    trained = zoo.get_or_train("gan-ring", lambda c: GANPair(ToyGenerator(c), ToyDiscriminator(c)), fit, cfg,
                               extra={"training": settings, "ring": RING, "data": {"n": RING_POINTS, "seed": 0},
                                      "checkpoints": CHECKPOINTS, "evaluation": EVALUATION},
                               seed=seed, device="cpu")
    return trained.annotated()
