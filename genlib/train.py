"""A small training loop, shared by every chapter: :func:`fit`, its :class:`History` and :class:`EMA`.

One training step is the textbook one::

    loss = loss_fn(model, batch)          # forward pass (in bf16/fp16 autocast on CUDA)
    loss.backward()                       # gradients
    clip_grad_norm_(params, grad_clip)    # optional
    optimizer.step()                      # AdamW unless told otherwise
    ema.update(model)                     # optional: shadow = decay * shadow + (1 - decay) * param

The loss of every step is kept in a :class:`History` (plain floats, JSON-ready, so
:mod:`genlib.zoo` can store it beside the weights and a chapter can plot the curve even when it
loads the model from the cache).

Progress bars: ``fit`` shows a ``tqdm.auto`` bar in a terminal or a live Jupyter kernel. When
``GENLIB_STATIC`` is set (the book build, nbval, ``make notebooks``) there is no bar by default,
because a bar's text would land in the stored notebook outputs that nbval compares.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import time
from typing import Any, Callable, Iterable, Iterator, Mapping

import torch
import torch.utils.data
from tqdm.auto import tqdm

from genlib import config as _config

Batch = Any  # a tensor, or a tuple / list / dict of them (nested), or anything loss_fn accepts


# ----------------------------------------------------------------------------- history


@dataclasses.dataclass
class History:
    """What :func:`fit` records: the loss of every step and any extra scalars.

    ``loss[i]`` is the loss at step ``i``; ``scalars[key][i]`` the value ``loss_fn`` reported for
    ``key`` at step ``i`` (``None`` on steps where it reported none; ``grad_norm`` is the gradient
    norm before clipping when ``grad_clip`` is set). ``seconds`` is the wall time of the loop.
    """

    loss: list[float] = dataclasses.field(default_factory=list)
    scalars: dict[str, list[float | None]] = dataclasses.field(default_factory=dict)
    seconds: float = 0.0

    def __len__(self) -> int:
        return len(self.loss)

    def series(self, key: str = "loss") -> list[float | None]:
        """The per-step values of ``key`` (``"loss"`` or a scalar name)."""
        if key == "loss":
            return self.loss
        if key not in self.scalars:
            raise KeyError(f"no scalar {key!r} in this history; it has {['loss', *self.scalars]}")
        return self.scalars[key]

    def smoothed(self, k: int = 20, key: str = "loss") -> list[float]:
        """Trailing moving average over the last ``k`` steps (fewer at the start); same length.

        Steps with no value (``None``) are skipped; a window with no values gives ``nan``.
        """
        if k < 1:
            raise ValueError(f"window k must be >= 1, got {k}")
        values = self.series(key)
        out, total, count = [], 0.0, 0
        for i, v in enumerate(values):
            if v is not None:
                total, count = total + v, count + 1
            if i >= k and values[i - k] is not None:
                total, count = total - values[i - k], count - 1
            out.append(total / count if count else math.nan)
        return out

    def last(self, n: int = 20, key: str = "loss") -> float:
        """Mean of the last ``n`` recorded values of ``key`` (``nan`` if there are none)."""
        values = [v for v in self.series(key)[-n:] if v is not None]
        return sum(values) / len(values) if values else math.nan

    def to_dict(self) -> dict:
        """A plain dict of lists and floats (JSON-ready); :meth:`from_dict` reverses it."""
        return {"loss": list(self.loss), "scalars": {k: list(v) for k, v in self.scalars.items()}, "seconds": self.seconds}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "History":
        return cls(list(d["loss"]), {k: list(v) for k, v in d.get("scalars", {}).items()}, float(d.get("seconds", 0.0)))


# ----------------------------------------------------------------------------- EMA


class EMA:
    """An exponential moving average of a model's floating-point parameters.

    After each optimiser step ``update(model)`` does, for every parameter ``p`` with shadow ``s``:

        s <- decay * s + (1 - decay) * p

    With ``warmup=False`` the decay is constant, and after updates with parameters ``p_1 .. p_n``
    the shadow is ``decay^n * p_0 + sum_i (1 - decay) * decay^(n - i) * p_i``: the initial weights
    keep a share ``decay^n``. For a short run that share is not small (0.999 over 2,000 steps leaves
    13.5%), and for a network whose output layer starts at zero it shrinks every output by that
    share. A diffusion model's noise estimate comes out a few percent too small, which ancestral
    sampling hides and DDIM's deterministic sampler turns into visible leftover noise. So by default
    (``warmup=True``) update ``n`` (counting from 0) uses ``min(decay, (1 + n) / (10 + n))``, the
    warmup common in diffusion code bases: the first updates average fast, and the share of ``p_0``
    after ``n`` updates is at most ``prod_k (9 / (10 + k))``, below 1e-6 after 20 updates.
    Buffers (e.g. BatchNorm running statistics) are not averaged; the model keeps its own.
    """

    def __init__(self, model: torch.nn.Module, decay: float = 0.999, *, warmup: bool = True):
        if not 0.0 <= decay <= 1.0:
            raise ValueError(f"EMA decay must be in [0, 1], got {decay}")
        self.decay = float(decay)
        self.warmup = bool(warmup)
        self.num_updates = 0
        self.shadow = {n: p.detach().clone() for n, p in model.named_parameters() if p.dtype.is_floating_point}

    @property
    def current_decay(self) -> float:
        """The decay the next :meth:`update` uses (``decay``, or less during the warmup)."""
        if not self.warmup:
            return self.decay
        return min(self.decay, (1 + self.num_updates) / (10 + self.num_updates))

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        """Move every shadow a step ``1 - current_decay`` towards the model's current parameter."""
        decay = self.current_decay
        pairs = [(self.shadow[n], p.detach()) for n, p in model.named_parameters() if n in self.shadow]
        if pairs:
            shadows = [s for s, _ in pairs]
            # One fused launch per device and dtype instead of one per parameter (on a GPU, a U-Net's
            # 170 tiny launches a step); the same lerp as ``s.lerp_(p, 1 - decay)`` for each.
            torch._foreach_lerp_(shadows, [p.to(s.dtype) for s, p in pairs], 1.0 - decay)
        self.num_updates += 1

    @torch.no_grad()
    def copy_to(self, model: torch.nn.Module) -> None:
        """Overwrite the model's parameters with the averaged ones (the raw ones are lost)."""
        for n, p in model.named_parameters():
            if n in self.shadow:
                p.copy_(self.shadow[n])

    @contextlib.contextmanager
    def apply(self, model: torch.nn.Module) -> Iterator[torch.nn.Module]:
        """``with ema.apply(model):`` the model holds the averaged weights; the raw ones return after."""
        backup = {n: p.detach().clone() for n, p in model.named_parameters() if n in self.shadow}
        self.copy_to(model)
        try:
            yield model
        finally:
            with torch.no_grad():
                for n, p in model.named_parameters():
                    if n in backup:
                        p.copy_(backup[n])

    def state_dict(self) -> dict:
        return {"decay": self.decay, "warmup": self.warmup, "num_updates": self.num_updates,
                "shadow": dict(self.shadow)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.decay = float(state["decay"])
        self.warmup = bool(state.get("warmup", False))
        self.num_updates = int(state["num_updates"])
        for n, v in state["shadow"].items():
            self.shadow[n].copy_(v)


# ----------------------------------------------------------------------------- budget


@dataclasses.dataclass(frozen=True, kw_only=True)
class Budget:
    """The training budget every model config shares: ``steps`` of AdamW on ``batch_size`` examples
    at peak learning rate ``lr`` after ``warmup`` linear warm-up steps, from ``seed``. Configs that
    train something inherit it (``class XConfig(Budget)``) and redeclare only the defaults that
    differ; their ``preset()`` picks the active profile's values."""

    steps: int = 1000
    batch_size: int = 64
    lr: float = 1e-3
    warmup: int = 100
    seed: int = 0

    def __post_init__(self):
        if self.steps < 0 or self.batch_size < 1 or self.warmup < 0:
            raise ValueError(f"need steps >= 0, batch_size >= 1 and warmup >= 0, got steps={self.steps}, "
                             f"batch_size={self.batch_size}, warmup={self.warmup}")
        if not self.lr > 0:
            raise ValueError(f"lr must be positive, got {self.lr}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# ----------------------------------------------------------------------------- helpers


def step_seed(seed: int, step: int) -> int:
    """The seed of the data drawn at training ``step`` of a run with ``seed``: ``seed * 1_000_003 +
    step``. Every batch source in genlib uses it, so a batch depends on (seed, step) only: the
    same on every run, whether the model is trained now or was loaded and retrained later."""
    return seed * 1_000_003 + step


def random_batches(data: torch.Tensor | tuple[torch.Tensor, ...], batch_size: int, labels: torch.Tensor | None = None,
                   *, seed: int = 0, transform: Callable[[Batch, torch.Generator], Batch] | None = None):
    """``step -> `` ``batch_size`` rows of ``data`` drawn with replacement, from a generator seeded
    by :func:`step_seed`. ``data`` is a tensor, or a tuple of tensors with one row per example
    (the same rows are drawn from each; the batch is a tuple too); ``labels`` adds a second entry
    ``(x, y)``. ``transform(batch, generator)`` post-processes a batch (noise, masks); it gets the
    step's generator, so what it draws from it is tied to the step as well."""
    parts = data if isinstance(data, tuple) else (data,) if labels is None else (data, labels)
    if len({len(p) for p in parts}) != 1:
        raise ValueError(f"data and labels must have one entry per row of data (one row per example), got lengths {[len(p) for p in parts]}")
    single = len(parts) == 1

    def batch(step: int):
        g = torch.Generator().manual_seed(step_seed(seed, step))
        idx = torch.randint(len(parts[0]), (batch_size,), generator=g)
        picked = parts[0][idx] if single else tuple(p[idx] for p in parts)
        return picked if transform is None else transform(picked, g)

    return batch


def to_device(batch: Batch, device: torch.device | str) -> Batch:
    """Move every tensor in ``batch`` (a tensor, or nested tuples, lists, dicts) to ``device``."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, Mapping):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):  # a namedtuple
        return type(batch)(*(to_device(v, device) for v in batch))
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(v, device) for v in batch)
    return batch


def prefetched(make: Callable[[], Iterable[Batch]], ahead: int = 4, *, enabled: bool | None = None) -> Iterator[Batch]:
    """Iterate over ``make()``, drawn by a worker process that keeps ``ahead`` batches ready.

    On a GPU the training step is mostly Python launching kernels, and drawing a batch of the
    shapes world takes the CPU about 12-16 ms per 128 scenes. A thread helps little: the step's
    Python and the drawing's Python take turns holding the interpreter lock. A worker process (a
    ``DataLoader`` with one worker) draws in parallel. The batches and their order are exactly
    those of ``make()``: use it for a source that draws from its own seeded generator (such as
    ``shapes.stream``), not from the global random state. ``make`` is a zero-argument callable
    that builds the iterable in the worker; use module-level functions (``functools.partial`` of
    one), which any start method can send to a process. Tensors are pinned on a CUDA machine, so
    moving them to the GPU (``to_device``, non-blocking) does not wait.

    ``enabled`` (default: when :func:`genlib.config.device` is CUDA) ``False`` iterates over
    ``make()`` here, in this process: on a CPU the worker would only compete with PyTorch's threads.
    """
    if not callable(make):
        raise TypeError(f"make must be a zero-argument callable that returns the batches, got {type(make).__name__}")
    if not isinstance(ahead, int) or isinstance(ahead, bool) or ahead < 1:
        raise ValueError(f"ahead must be a positive integer (batches drawn in advance), got {ahead!r}")
    if enabled is None:
        enabled = _config.device().type == "cuda"
    if not enabled:
        return iter(make())
    loader = torch.utils.data.DataLoader(
        _Batches(make), batch_size=None, num_workers=1, prefetch_factor=ahead,
        pin_memory=torch.cuda.is_available(),
        generator=torch.Generator(),  # the worker's seed: not drawn from the global random state
    )
    return iter(loader)


class _Batches(torch.utils.data.IterableDataset):
    """``make()``'s batches as a dataset, for :func:`prefetched`'s worker."""

    def __init__(self, make: Callable[[], Iterable[Batch]]):
        self.make = make

    def __iter__(self):
        return iter(self.make())


def batched(fn, images: torch.Tensor, batch_size: int = 512):
    """``fn`` (a bound method of a module, e.g. an evaluator's or an autoencoder's) on ``images`` in
    chunks of ``batch_size``, on the module's device; outputs (tensors, or dicts of tensors)
    concatenated on the CPU."""
    if len(images) == 0:
        raise ValueError("need at least one image, got an empty batch")
    dev = _config.module_device(fn.__self__)
    outs = [fn(images[i : i + batch_size].to(dev)) for i in range(0, len(images), batch_size)]
    if isinstance(outs[0], dict):
        return {k: torch.cat([o[k] for o in outs]).cpu() for k in outs[0]}
    return torch.cat(outs).cpu()


def batch_source(batches: Iterable[Batch] | Callable[[int], Batch]) -> Callable[[int], Batch]:
    """Turn ``batches`` into a function ``step -> batch``."""
    if isinstance(batches, torch.Tensor):
        raise TypeError("batches is a single tensor; to reuse one batch every step pass `lambda step: x`")
    if not hasattr(batches, "__iter__"):
        if callable(batches):
            return batches
        raise TypeError(f"batches must be an iterable or a callable step -> batch, got {type(batches).__name__}")
    it = iter(batches)
    reiterable = it is not batches  # a list or DataLoader restarts; a generator does not

    def next_batch(step: int) -> Batch:
        nonlocal it
        try:
            return next(it)
        except StopIteration:
            if not reiterable:
                raise ValueError(
                    f"the batch iterator ran out at step {step}; pass a list, a DataLoader or a "
                    "callable step -> batch instead of a one-shot iterator"
                ) from None
            it = iter(batches)
            try:
                return next(it)
            except StopIteration:
                raise ValueError("batches is empty") from None

    return next_batch


def autocast_dtype(amp: bool | str | None, device: torch.device) -> torch.dtype | None:
    """The autocast dtype: bf16 where the GPU supports it, else fp16; ``None`` (off) on the CPU."""
    names = {"bf16": torch.bfloat16, "bfloat16": torch.bfloat16, "fp16": torch.float16, "float16": torch.float16}
    if isinstance(amp, str) and amp not in names:
        raise ValueError(f"amp={amp!r}: expected None, True, False, 'bf16' or 'fp16'")
    if device.type != "cuda" or amp is False:
        return None
    if isinstance(amp, str):
        return names[amp]
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def show_progress() -> bool:
    """Whether training loops show a progress bar by default: yes, unless ``GENLIB_STATIC`` is set
    (the book build, nbval and ``make notebooks``, where a bar would only clutter the output)."""
    return os.environ.get("GENLIB_STATIC", "").strip() in ("", "0")


# ----------------------------------------------------------------------------- the loop


def fit(
    model: torch.nn.Module,
    loss_fn: Callable[[torch.nn.Module, Batch], torch.Tensor | tuple[torch.Tensor, Mapping[str, Any]]],
    batches: Iterable[Batch] | Callable[[int], Batch],
    steps: int,
    *,
    lr: float = 1e-3,
    optimizer: torch.optim.Optimizer | None = None,
    weight_decay: float = 0.0,
    warmup: int = 0,
    ema: EMA | None = None,
    ema_decay: float | None = None,
    grad_clip: float | None = None,
    amp: bool | str | None = None,
    device: str | torch.device | None = None,
    seed: int | None = None,
    progress: bool | None = None,
    desc: str = "train",
    log_every: int = 10,
) -> History:
    """Train ``model`` in place for ``steps`` optimiser steps and return the :class:`History`.

    ``batches`` is an iterable of batches (a list or DataLoader is restarted when it runs out) or
    a callable ``step -> batch``. Tensors in a batch are moved to ``device`` (default
    :func:`genlib.config.device`; the model is moved there too). ``loss_fn(model, batch)`` returns
    a scalar loss tensor, or ``(loss, {"name": value, ...})`` to record extra scalars.

    Options: ``optimizer`` (default ``AdamW(lr, weight_decay)`` over the trainable parameters, the
    fused implementation on a GPU);
    ``warmup`` steps of linear learning-rate warmup (``lr * (step + 1) / warmup``); ``grad_clip``,
    the max total gradient norm; ``ema``, an :class:`EMA` updated after every step, or
    ``ema_decay``, which keeps one internally and copies the averaged weights into the model at
    the end; ``amp``: autocast on CUDA (``None``/``True``: bf16 if supported, else fp16 with a
    gradient scaler; ``False``: off; nothing happens on the CPU); ``seed`` seeds everything first,
    so the same seed gives the same loss history on the same CPU; ``progress`` shows a bar
    (default: yes, unless ``GENLIB_STATIC`` is set); the bar and the recorded history are
    refreshed every ``log_every`` steps (reading losses back from the GPU only then).
    A loss that turns ``nan`` or ``inf`` stops training with ``FloatingPointError``.
    """
    if steps < 0 or log_every < 1:
        raise ValueError(f"need steps >= 0 and log_every >= 1, got steps={steps}, log_every={log_every}")
    steps = _config.capped(steps)  # GENLIB_MAX_STEPS, for rehearsals
    if ema is not None and ema_decay is not None:
        raise ValueError("pass either ema (an EMA you keep) or ema_decay (fit keeps one), not both")
    dev = torch.device(device) if device is not None else _config.device()
    if seed is not None:
        _config.seed_everything(seed)
    model.to(dev)
    was_training = model.training
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    # On a GPU (the model is there now), one fused kernel updates every parameter.
    fused = True if dev.type == "cuda" else None
    opt = optimizer if optimizer is not None else torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay,
                                                                    fused=fused)
    base_lrs = [g["lr"] for g in opt.param_groups]
    amp_dtype = autocast_dtype(amp, dev)
    scaler = torch.amp.GradScaler("cuda") if amp_dtype == torch.float16 else None
    if ema_decay is not None:
        ema = EMA(model, ema_decay)
    next_batch = batch_source(batches)

    history = History()
    pending: list[tuple[torch.Tensor, dict[str, Any]]] = []
    bar = tqdm(total=steps, desc=desc, disable=not (show_progress() if progress is None else progress))
    start = time.perf_counter()
    try:
        for step in range(steps):
            if warmup > 0:
                for group, base in zip(opt.param_groups, base_lrs):
                    group["lr"] = base * min(1.0, (step + 1) / warmup)
            batch = to_device(next_batch(step), dev)
            autocast = torch.autocast(dev.type, dtype=amp_dtype) if amp_dtype else contextlib.nullcontext()
            with autocast:
                out = loss_fn(model, batch)
            loss, scalars = out if isinstance(out, tuple) else (out, {})
            if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
                raise TypeError(f"loss_fn must return a scalar loss tensor, got {type(loss).__name__}")
            scalars = {k: v.detach() if isinstance(v, torch.Tensor) else v for k, v in scalars.items()}

            opt.zero_grad(set_to_none=True)
            (scaler.scale(loss) if scaler else loss).backward()
            if grad_clip is not None:
                if scaler:
                    scaler.unscale_(opt)  # clip the true gradients, not the scaled ones
                scalars["grad_norm"] = torch.nn.utils.clip_grad_norm_(params, grad_clip).detach()
            if scaler:
                scaler.step(opt)
                scaler.update()
            else:
                opt.step()
            if ema is not None:
                ema.update(model)

            pending.append((loss.detach().float().reshape(()), scalars))
            if (step + 1) % log_every == 0 or step == steps - 1:
                flush_pending(pending, history)
                pending.clear()
                bar.update(step + 1 - bar.n)
                bar.set_postfix(loss=f"{history.last(log_every):.4g}")
    finally:
        bar.close()
        for group, base in zip(opt.param_groups, base_lrs):
            group["lr"] = base
        model.train(was_training)
    history.seconds = time.perf_counter() - start
    if ema_decay is not None:
        ema.copy_to(model)
    return history


def flush_pending(pending: list[tuple[torch.Tensor, dict[str, Any]]], history: History) -> None:
    """Append the pending steps' values to ``history`` (one device-to-host read for the losses)."""
    first = len(history.loss)
    losses = torch.stack([loss for loss, _ in pending]).cpu().tolist()
    for i, v in enumerate(losses):
        if not math.isfinite(v):
            raise FloatingPointError(f"the loss is {v} at step {first + i}: if the batches can hold NaN or inf, "
                                     f"check the data; otherwise training diverged (try a lower lr or grad_clip)")
    history.loss.extend(losses)
    # The extra scalars too: one read per device, not one per value (each read waits for the GPU).
    read: dict[tuple[int, str], float] = {}
    on_device: dict[torch.device, list[tuple[tuple[int, str], torch.Tensor]]] = {}
    for i, (_, s) in enumerate(pending):
        for key, v in s.items():
            if isinstance(v, torch.Tensor):
                if v.numel() != 1:
                    raise ValueError(f"the scalar {key!r} that loss_fn reports must hold one value, got shape {tuple(v.shape)}")
                on_device.setdefault(v.device, []).append(((i, key), v.detach().float().reshape(())))
            elif v is not None:
                read[i, key] = float(v)
    for entries in on_device.values():
        read.update(zip((where for where, _ in entries), torch.stack([v for _, v in entries]).cpu().tolist()))
    keys = set(history.scalars).union(*(s.keys() for _, s in pending))
    for key in sorted(keys):
        column = history.scalars.setdefault(key, [None] * first)
        column.extend(read.get((i, key)) for i in range(len(pending)))
