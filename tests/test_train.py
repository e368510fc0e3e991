"""Tests of genlib.train: the loop learns, EMA follows its closed form, history round-trips."""

from __future__ import annotations

import collections
import functools
import json
import math

import pytest
import torch
from torch import nn

from genlib import train, zoo
from genlib.train import EMA, History, fit


@pytest.fixture(autouse=True)
def env(monkeypatch):
    monkeypatch.setenv("GENLIB_DEVICE", "cpu")
    monkeypatch.setenv("GENLIB_PROFILE", "ci")
    monkeypatch.setenv("GENLIB_STATIC", "1")


W_TRUE = torch.tensor([[1.5], [-2.0], [0.5]])


def regression_batch(step: int, n: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """x: (n, 3), y = x @ w + 0.3: (n, 1), drawn from the global generator."""
    x = torch.randn(n, 3)
    return x, x @ W_TRUE + 0.3


def mse(model: nn.Module, batch) -> torch.Tensor:
    x, y = batch
    return ((model(x) - y) ** 2).mean()


def test_loss_decreases_on_a_tiny_regression():
    torch.manual_seed(0)
    model = nn.Linear(3, 1)
    h = fit(model, mse, regression_batch, 300, lr=0.05)
    assert len(h) == 300 and h.seconds > 0
    assert h.last(20) < 0.01 * h.loss[0]
    assert torch.allclose(model.weight.detach(), W_TRUE.T, atol=0.05)


def test_same_seed_same_history_other_seed_other_history():
    def run(seed):
        torch.manual_seed(seed)
        model = nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 1))
        return fit(model, mse, regression_batch, 25, seed=seed, weight_decay=0.01, warmup=5)

    a, b, c = run(1), run(1), run(2)
    assert a.loss == b.loss
    assert a.loss != c.loss


# ----------------------------------------------------------------------------- EMA


class Scalar(nn.Module):
    def __init__(self, value: float):
        super().__init__()
        self.p = nn.Parameter(torch.tensor([value]))


def test_ema_matches_the_closed_form():
    d = 0.9
    m = Scalar(2.0)
    ema = EMA(m, d, warmup=False)
    for v in (1.0, 3.0):
        m.p.data.fill_(v)
        ema.update(m)
    # s_2 = d^2 p0 + d (1 - d) p1 + (1 - d) p2
    expected = d * d * 2.0 + d * (1 - d) * 1.0 + (1 - d) * 3.0
    assert ema.shadow["p"].item() == pytest.approx(expected, abs=1e-6)
    assert ema.num_updates == 2

    with ema.apply(m):
        assert m.p.item() == pytest.approx(expected, abs=1e-6)
    assert m.p.item() == 3.0  # raw weights are back

    other = EMA(Scalar(0.0), 0.5)
    other.load_state_dict(ema.state_dict())
    assert other.decay == d and other.shadow["p"].item() == pytest.approx(expected, abs=1e-6)
    ema.copy_to(m)
    assert m.p.item() == pytest.approx(expected, abs=1e-6)


def test_ema_warmup_forgets_a_zero_initialised_layer():
    """A weight that starts at 0 and grows linearly to 1 over n steps: without warmup the average
    keeps decay^n of the zero start (the DDPM output-scale bug); with it the share is negligible."""
    d, n = 0.995, 800
    plain, warm = Scalar(0.0), Scalar(0.0)
    emas = EMA(plain, d, warmup=False), EMA(warm, d)
    assert emas[1].current_decay == pytest.approx(0.1)
    for i in range(1, n + 1):
        for model, ema in zip((plain, warm), emas):
            model.p.data.fill_(1.0)  # already at its final value: the average should be 1
            ema.update(model)
    assert emas[0].shadow["p"].item() == pytest.approx(1 - d ** n, abs=1e-6)  # 0.982: 1.8% short
    assert emas[1].shadow["p"].item() > 1 - 1e-6
    assert emas[1].current_decay == pytest.approx(min(d, (1 + n) / (10 + n)))  # still ramping up at n=800
    restored = EMA(Scalar(0.0), 0.5, warmup=False)
    restored.load_state_dict(emas[1].state_dict())
    assert restored.warmup and restored.num_updates == n


def test_fit_with_ema_decay_leaves_the_averaged_weights_in_the_model():
    d, steps = 0.8, 6

    def run(ema_decay, seen):
        torch.manual_seed(0)
        model = nn.Linear(3, 1)

        def loss_fn(m, batch):
            seen.append(torch.cat([m.weight.detach().flatten(), m.bias.detach()]).clone())
            return mse(m, batch)

        fit(model, loss_fn, regression_batch, steps, lr=0.1, seed=0, ema_decay=ema_decay)
        return torch.cat([model.weight.detach().flatten(), model.bias.detach()])

    raw_params: list[torch.Tensor] = []
    final = run(None, raw_params)
    sequence = raw_params + [final]  # p_0 .. p_steps
    shadow = sequence[0]
    for n, p in enumerate(sequence[1:]):
        decay = min(d, (1 + n) / (10 + n))  # the default warmup
        shadow = decay * shadow + (1 - decay) * p
    averaged = run(d, [])
    assert torch.allclose(averaged, shadow, atol=1e-6)
    assert not torch.allclose(averaged, final)


# ----------------------------------------------------------------------------- history


def test_history_round_trips_through_json_and_smooths():
    h = History(loss=[4.0, 2.0, 0.0, 2.0], scalars={"acc": [None, 0.5, 0.7, 0.9]}, seconds=1.5)
    back = History.from_dict(json.loads(json.dumps(h.to_dict())))
    assert back == h
    assert h.smoothed(2) == [4.0, 3.0, 1.0, 1.0]
    assert h.smoothed(1) == h.loss
    assert h.last(2) == 1.0 and h.last(10) == 2.0
    assert h.smoothed(2, key="acc")[0] != h.smoothed(2, key="acc")[0]  # nan: no value yet
    assert h.smoothed(2, key="acc")[1:] == pytest.approx([0.5, 0.6, 0.8])
    assert h.last(3, key="acc") == pytest.approx(0.7)
    with pytest.raises(KeyError):
        h.series("nope")


def test_extra_scalars_are_recorded_per_step():
    def loss_fn(model, batch):
        loss = mse(model, batch)
        return loss, {"mae": (model(batch[0]) - batch[1]).abs().mean(), "const": 1.0}

    torch.manual_seed(0)
    h = fit(nn.Linear(3, 1), loss_fn, regression_batch, 7, log_every=3)
    assert set(h.scalars) == {"mae", "const"}
    assert len(h.scalars["mae"]) == len(h.loss) == 7
    assert h.scalars["const"] == [1.0] * 7
    # read back in one go per device, the same numbers as one at a time
    steps = [(None, {"a": torch.tensor(float(i)), "b": None if i % 2 else torch.tensor(i / 2)}) for i in range(4)]
    later = History()
    later.loss.append(0.0)
    train.flush_pending([(torch.tensor(1.0), s) for _, s in steps], later)
    assert later.scalars == {"a": [None, 0.0, 1.0, 2.0, 3.0], "b": [None, 0.0, None, 1.0, None]}
    with pytest.raises(ValueError, match="must hold one value"):
        train.flush_pending([(torch.tensor(1.0), {"v": torch.ones(2)})], History())


# ----------------------------------------------------------------------------- batches and devices


def test_to_device_moves_nested_batches():
    Pair = collections.namedtuple("Pair", "x y")
    batch = {"a": torch.ones(2), "b": (torch.zeros(1), [torch.ones(3), "label"]), "c": Pair(torch.ones(1), 3)}
    moved = train.to_device(batch, "meta")
    assert moved["a"].device.type == "meta"
    assert moved["b"][0].device.type == "meta" and moved["b"][1][0].device.type == "meta"
    assert moved["b"][1][1] == "label" and isinstance(moved["b"], tuple) and isinstance(moved["b"][1], list)
    assert isinstance(moved["c"], Pair) and moved["c"].x.device.type == "meta" and moved["c"].y == 3


def test_fit_moves_each_batch_to_the_device(monkeypatch):
    targets = []
    real = train.to_device

    def spy(batch, device):
        if isinstance(batch, tuple):  # the whole batch, not the recursive calls on its tensors
            targets.append(torch.device(device))
        return real(batch, device)

    monkeypatch.setattr(train, "to_device", spy)
    model = nn.Linear(3, 1)

    def loss_fn(m, batch):
        assert batch[0].device == m.weight.device
        return mse(m, batch)

    fit(model, loss_fn, regression_batch, 3, device="cpu")
    assert targets == [torch.device("cpu")] * 3


def test_callable_iterable_and_one_shot_batches():
    steps_seen = []

    def from_step(step):
        steps_seen.append(step)
        return regression_batch(step)

    fit(nn.Linear(3, 1), mse, from_step, 5)
    assert steps_seen == [0, 1, 2, 3, 4]

    data = [regression_batch(i) for i in range(3)]
    used = []

    def loss_fn(m, batch):
        used.append(next(i for i, b in enumerate(data) if b[0] is batch[0]))
        return mse(m, batch)

    fit(nn.Linear(3, 1), loss_fn, data, 7)
    assert used == [0, 1, 2, 0, 1, 2, 0]  # the list restarts when it runs out

    with pytest.raises(ValueError, match="ran out at step 3"):
        fit(nn.Linear(3, 1), mse, (b for b in data), 5)
    with pytest.raises(ValueError, match="empty"):
        fit(nn.Linear(3, 1), mse, [], 2)
    with pytest.raises(TypeError, match="single tensor"):
        fit(nn.Linear(3, 1), mse, torch.zeros(3), 2)


def _count_to(n):
    yield from range(n)


def _broken():
    yield 1
    raise RuntimeError("the source broke")


def _nested():
    yield torch.ones(2), {"y": torch.zeros(1)}, ["a caption"]


def test_prefetched_worker_yields_the_same_batches_in_order_and_ends():
    from genlib.data import shapes

    make = functools.partial(shapes.image_stream, 8, size=16, seed=3)
    plain = [b.images for b, _ in zip(shapes.stream(8, size=16, seed=3), range(5))]
    state = torch.get_rng_state()
    ahead = train.prefetched(make, 2, enabled=True)
    drawn = [next(ahead) for _ in range(5)]
    assert torch.equal(state, torch.get_rng_state())  # the worker's seed is not drawn from the global state
    assert all(torch.equal(a, b) for a, b in zip(plain, drawn))
    del ahead
    assert list(train.prefetched(functools.partial(_count_to, 5), enabled=True)) == [0, 1, 2, 3, 4]
    images, labels, texts = next(train.prefetched(_nested, enabled=True))
    assert torch.equal(images, torch.ones(2)) and torch.equal(labels["y"], torch.zeros(1)) and texts == ["a caption"]
    ahead = train.prefetched(_broken, enabled=True)
    assert next(ahead) == 1
    with pytest.raises(RuntimeError, match="the source broke"):
        next(ahead)


def test_prefetched_runs_here_on_the_cpu_and_checks_its_arguments():
    made = []
    it = train.prefetched(lambda: made.append("here") or iter([1, 2, 3]))  # GENLIB_DEVICE=cpu: no worker
    assert made == ["here"] and list(it) == [1, 2, 3]
    with pytest.raises(ValueError, match="ahead must be a positive integer"):
        train.prefetched(_broken, 0)
    with pytest.raises(TypeError, match="zero-argument callable"):
        train.prefetched([1, 2])


def test_fit_on_prefetched_batches_matches_fit_on_the_stream():
    from genlib.data import shapes

    def run(enabled):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, 1))
        stream = train.prefetched(functools.partial(shapes.image_stream, 4, size=16, seed=1), enabled=enabled)
        return fit(model, lambda m, x: m(x).pow(2).mean(), stream, 6, seed=0).loss

    assert run(True) == run(False)


# ----------------------------------------------------------------------------- options


def test_gradient_clipping_bounds_the_update():
    model = nn.Linear(3, 1)
    before = torch.cat([p.detach().flatten() for p in model.parameters()]).clone()
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    huge = lambda step: (torch.full((4, 3), 100.0), torch.full((4, 1), -1000.0))  # noqa: E731
    h = fit(model, mse, huge, 1, optimizer=opt, grad_clip=0.5)
    after = torch.cat([p.detach().flatten() for p in model.parameters()])
    assert (after - before).norm().item() == pytest.approx(0.5, rel=1e-4)  # lr * clip
    assert h.scalars["grad_norm"][0] > 100  # the norm before clipping


def test_linear_warmup_then_base_lr_restored():
    model = nn.Linear(3, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.2)
    lrs = []

    def loss_fn(m, batch):
        lrs.append(opt.param_groups[0]["lr"])
        return mse(m, batch)

    fit(model, loss_fn, regression_batch, 6, optimizer=opt, warmup=4)
    assert lrs == pytest.approx([0.05, 0.1, 0.15, 0.2, 0.2, 0.2])
    assert opt.param_groups[0]["lr"] == 0.2


def test_nan_loss_stops_training():
    with pytest.raises(FloatingPointError, match="step 0"):
        fit(nn.Linear(3, 1), lambda m, b: mse(m, b) * math.nan, regression_batch, 3)


def test_training_mode_restored_and_progress_bar_switch(capsys, monkeypatch):
    model = nn.Linear(3, 1).eval()
    fit(model, mse, regression_batch, 2)
    assert not model.training
    assert capsys.readouterr().err == ""  # GENLIB_STATIC=1: no bar
    fit(model, mse, regression_batch, 2, progress=True, desc="demo")
    assert "demo" in capsys.readouterr().err
    monkeypatch.delenv("GENLIB_STATIC")
    assert train.show_progress()


def test_amp_is_off_on_the_cpu_and_checks_its_argument():
    assert train.autocast_dtype(None, torch.device("cpu")) is None
    assert train.autocast_dtype("bf16", torch.device("cpu")) is None
    with pytest.raises(ValueError):
        train.autocast_dtype("fp8", torch.device("cpu"))


# ----------------------------------------------------------------------------- with the zoo


def test_history_survives_the_zoo(tmp_path, monkeypatch):
    monkeypatch.setenv("GENLIB_CACHE", str(tmp_path))

    def train_fn(model):
        return {"history": fit(model, mse, regression_batch, 20, lr=0.05)}

    first = zoo.get_or_train("linreg", lambda cfg: nn.Linear(3, cfg["out"]), train_fn, {"out": 1})
    again = zoo.get_or_train("linreg", lambda cfg: nn.Linear(3, cfg["out"]), train_fn, {"out": 1})
    assert again.loaded and again.info == first.info
    h = History.from_dict(again.info["history"])
    assert len(h) == 20 and h.last(5) < h.loss[0]


def test_random_batches_draw_the_same_rows_from_every_part_and_pass_the_generator():
    x = torch.arange(20.0).reshape(10, 2)
    y = torch.arange(10) * 10
    seen = []

    def tag(b, g):
        seen.append(g)
        return b[0], b[1], torch.rand(1, generator=g)

    batch = train.random_batches((x, y), 6, seed=3, transform=tag)
    xb, yb, r = batch(5)
    assert torch.equal(xb[:, 0] / 2 * 10, yb.float())  # row i of x and row i of y, together
    assert isinstance(seen[0], torch.Generator)
    again = batch(5)
    assert torch.equal(again[0], xb) and torch.equal(again[2], r)  # the transform's draws follow the step too
    assert not torch.equal(batch(6)[0], xb)
    assert not torch.equal(train.random_batches((x, y), 6, seed=4)(5)[0], xb)
    assert torch.equal(train.random_batches(x, 6, y, seed=3)(5)[0], xb)  # labels= is the same as a pair


def test_step_seed_is_the_one_formula_and_seed_zero_keeps_the_step():
    assert [train.step_seed(0, s) for s in range(3)] == [0, 1, 2]
    assert train.step_seed(1, 0) != train.step_seed(0, 1)
    g = torch.Generator().manual_seed(train.step_seed(2, 7))
    idx = torch.randint(10, (4,), generator=g)
    assert torch.equal(train.random_batches(torch.arange(10), 4, seed=2)(7), idx)
    with pytest.raises(ValueError, match="one entry per row"):
        train.random_batches((torch.zeros(3), torch.zeros(4)), 2)


def test_budget_rejects_impossible_budgets():
    assert train.Budget().steps == 1000
    for bad in (dict(steps=-1), dict(batch_size=0), dict(lr=0.0), dict(warmup=-2)):
        with pytest.raises(ValueError):
            train.Budget(**bad)
