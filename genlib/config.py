"""Profiles, device choice and seeding: the ground floor every other genlib module stands on.

A *profile* is the budget a chapter runs under. One switch, the environment variable
``GENLIB_PROFILE``, picks it:

=======  ============================================  ==========================
profile  for                                           rough time per chapter
=======  ============================================  ==========================
``ci``   the tests on 2 CPU cores: proves the code     under 90 s
``cpu``  a reader's laptop: recognisable samples       under 5 min
``gpu``  a GPU: good samples, the reproduction tables  under 3 min on one H100
=======  ============================================  ==========================

With no ``GENLIB_PROFILE`` the profile is ``gpu`` when CUDA is available and ``cpu`` otherwise.
Every model size, dataset size and step count comes from the profile through :func:`pick`,
never from a literal in a notebook cell.
"""

from __future__ import annotations

import contextlib
import os
import random
import tempfile
from pathlib import Path
from typing import Callable, TypeVar

import numpy as np
import torch

PROFILES = ("ci", "cpu", "gpu")

T = TypeVar("T")


def profile() -> str:
    """The active profile: ``GENLIB_PROFILE`` if set, else ``gpu`` with CUDA, else ``cpu``."""
    name = os.environ.get("GENLIB_PROFILE", "").strip().lower()
    if not name:
        return "gpu" if torch.cuda.is_available() else "cpu"
    if name not in PROFILES:
        raise ValueError(
            f"GENLIB_PROFILE={name!r} is not a profile; expected one of {', '.join(PROFILES)}"
        )
    return name


def max_steps() -> int | None:
    """``GENLIB_MAX_STEPS``: a cap on every training loop's optimiser steps, or ``None`` (unset).

    For rehearsing a profile's code paths without its cost (``tests/run_fake_cuda.py`` runs the
    ``gpu`` profile with 2 steps per model). Models trained under a cap are cached under a key of
    their own, so they never stand in for fully trained ones."""
    value = os.environ.get("GENLIB_MAX_STEPS", "").strip()
    if not value:
        return None
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"GENLIB_MAX_STEPS={value!r} must be a positive whole number of steps (or unset)")
    return int(value)


def capped(steps: int) -> int:
    """``steps``, or fewer under ``GENLIB_MAX_STEPS``."""
    cap = max_steps()
    return steps if cap is None else min(steps, cap)


def pick(*, ci: T, cpu: T, gpu: T) -> T:
    """Return the value for the active profile, e.g. ``steps = pick(ci=20, cpu=1500, gpu=8000)``."""
    return {"ci": ci, "cpu": cpu, "gpu": gpu}[profile()]


def device() -> torch.device:
    """The device models run on: ``GENLIB_DEVICE`` if set (``cpu``, ``cuda``, ``cuda:1``), else
    CUDA when available, else the CPU."""
    name = os.environ.get("GENLIB_DEVICE", "").strip()
    if name:
        try:
            dev = torch.device(name)
        except RuntimeError:
            raise ValueError(f"GENLIB_DEVICE={name!r} is not a device; expected a torch device name such "
                             f"as 'cpu', 'cuda' or 'cuda:1'") from None
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeError(f"GENLIB_DEVICE={name!r} asks for CUDA, but torch sees no CUDA device")
        return dev
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def module_device(module: torch.nn.Module, default: torch.device | str = "cpu") -> torch.device:
    """The device of ``module``'s first parameter (``default`` for a module without parameters)."""
    p = next(iter(module.parameters()), None)
    return p.device if p is not None else torch.device(default)


def check_range(x: torch.Tensor, low: int, high: int, message: str) -> None:
    """Raise ``ValueError`` (``message`` and the values found) unless every value of the integer
    tensor ``x`` lies in ``[low, high]``. Min and max come back in one transfer: checking a tensor on
    a GPU waits for the GPU once, not twice."""
    if x.numel() == 0:
        return
    lo, hi = torch.stack(torch.aminmax(x)).tolist()
    if lo < low or hi > high:
        raise ValueError(f"{message}, got values in [{lo}, {hi}]")


def write_atomically(path: str | os.PathLike, write: Callable[[str], None]) -> Path:
    """Make ``path`` with ``write(tmp)``, through a temporary file of this writer's own in the same
    folder that is fsynced and moved into place in one step: readers see the old file or the new
    one, never half of one, and two writers never share a temporary file. On any failure the
    temporary file is removed and the exception propagates. The file is readable by all (0644)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; a cache or a record shared by a class should be readable
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise
    return path


def check_finite(x: torch.Tensor, name: str) -> None:
    """Raise ``ValueError`` naming ``name`` and the counts found unless every value of ``x`` is
    finite. One read-back: on a GPU it waits for the queue once, so call it per run, not per step."""
    if x.is_floating_point() or x.is_complex():
        finite = torch.isfinite(x)
        if not bool(finite.all()):
            nan = int(torch.isnan(x).sum())
            raise ValueError(f"{name} holds NaN or inf ({nan} NaN, {int((~finite).sum()) - nan} inf "
                             f"of {x.numel()} values)")


def randn(shape, *, generator: torch.Generator | None = None, device: torch.device | str | None = None,
          dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Standard normal noise of ``shape``, drawn where ``generator`` lives (the CPU's global generator
    when none is given) and then moved to ``device``: a CPU generator gives the same numbers
    whichever device the model runs on."""
    gen_device = generator.device if generator is not None else "cpu"
    noise = torch.randn(tuple(shape), generator=generator, device=gen_device, dtype=dtype)
    return noise.to(device or gen_device, non_blocking=noise.device.type == "cpu")  # no wait for a GPU's queue


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python's, NumPy's and torch's global generators (CPU and every CUDA device).

    Two runs of the same code after the same ``seed_everything(seed)`` on the same machine draw the
    same numbers. Returns a fresh CPU ``torch.Generator`` seeded with ``seed`` for code that prefers
    an explicit generator to the global one.
    """
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    seed = int(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    return torch.Generator().manual_seed(seed)


def interactive() -> bool:
    """True when live ipywidgets make sense: inside a Jupyter kernel and not a static build.

    The book build, the nbval tests and ``make notebooks`` set ``GENLIB_STATIC=1``; there the viz
    helpers draw a scrubber or small multiples instead of a widget, because a built HTML page
    cannot run Python when a slider moves.
    """
    if os.environ.get("GENLIB_STATIC", "").strip() not in ("", "0"):
        return False
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    if shell is None or "IPKernelApp" not in getattr(shell, "config", {}):
        return False
    try:
        import ipywidgets  # noqa: F401
    except ImportError:
        return False
    return True


def describe() -> str:
    """One line naming profile, device and versions, for the top of a chapter."""
    dev = device()
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "CPU"
    return f"profile={profile()} device={dev.type} ({name}) torch={torch.__version__.split('+')[0]}"
