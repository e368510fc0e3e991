"""One trainer per model: a lock file beside a cache entry, so concurrent chapters share the work.

When several chapters run side by side on one machine (``benchmarks/run_chapter.py --jobs``) with
one model cache, two of them may ask for the same untrained model. Without a rule both would train
it. With :func:`training_lock`, the first takes ``<model file>.lock`` (created atomically with
``O_EXCL``, holding its host, process id and start time) and trains; the others wait until the
model file appears and load it. A lock whose process has died (same host, no such process), or
that is older than ``GENLIB_ZOO_LOCK_STALE`` seconds (default 3600: no chapter trains that long),
is stale and is taken over. A waiter gives up after ``GENLIB_ZOO_WAIT`` seconds (default 1800)
with a :class:`~genlib.zoo.ZooError`-like ``TimeoutError`` naming the lock to remove.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from pathlib import Path
from typing import Callable, Iterator

POLL_S = 0.2


def _seconds(variable: str, default: float) -> float:
    value = os.environ.get(variable, "").strip()
    if not value:
        return default
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not seconds > 0:
        raise ValueError(f"{variable}={value!r} must be a positive number of seconds")
    return seconds


def lock_path(path: Path) -> Path:
    return path.with_name(path.name + ".lock")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: it exists
        return True
    return True


def stale(lock: Path) -> bool:
    """Whether ``lock`` was left by a process that is gone, or is older than the stale limit."""
    try:
        holder = json.loads(lock.read_text())
        age = time.time() - float(holder["time"])
        if age > _seconds("GENLIB_ZOO_LOCK_STALE", 3600.0):
            return True
        return holder["host"] == socket.gethostname() and not _alive(int(holder["pid"]))
    except FileNotFoundError:
        return False  # released meanwhile: not stale, just gone
    except (OSError, ValueError, KeyError, TypeError):
        # unreadable or half-written: stale only once it is older than a writer could take
        with contextlib.suppress(OSError):
            return time.time() - lock.stat().st_mtime > 10
        return False


def _try_take(lock: Path) -> bool:
    try:
        fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as f:
        json.dump({"host": socket.gethostname(), "pid": os.getpid(), "time": time.time()}, f)
    return True


@contextlib.contextmanager
def training_lock(path: Path, ready: Callable[[], bool]) -> Iterator[bool]:
    """Hold the right to train the model cached at ``path``, or wait for whoever holds it.

    Yields ``True`` when this process holds the lock and should train (the lock is released on
    exit, whatever happens), or ``False`` when ``ready()`` became true while waiting: another
    process finished the model, so load it instead. If the folder cannot hold a lock (read-only
    cache), yields ``True`` without one: the caller trains, as it would with no lock at all.
    """
    lock = lock_path(path)
    wait_s = _seconds("GENLIB_ZOO_WAIT", 1800.0)
    deadline = time.monotonic() + wait_s
    while True:
        try:
            lock.parent.mkdir(parents=True, exist_ok=True)
            taken = _try_take(lock)
        except OSError:  # read-only or full: no lock is possible, train without one
            yield True
            return
        if taken:
            break
        if ready():
            yield False
            return
        if stale(lock):
            with contextlib.suppress(FileNotFoundError):
                lock.unlink()
            continue
        if time.monotonic() > deadline:
            raise TimeoutError(f"genlib.zoo: waited {wait_s:.0f} s for another process to train {path} "
                               f"(its lock {lock} is held); remove the lock if no process is training it")
        time.sleep(POLL_S)
    try:
        yield True
    finally:
        with contextlib.suppress(OSError):
            lock.unlink()
