"""The trained-model cache: ask for a model by name, load it if a valid copy is cached, else train it.

A chapter that needs a trained model calls :func:`get_or_train`. The cache key is the model's
name, the profile and a short hash of its configuration, so one chapter can load a model another
chapter trained, and every chapter still runs from a cold cache (it then trains the model itself).

Where the files live
    ``$GENLIB_CACHE`` if set, else ``$XDG_CACHE_HOME/genlib``, else ``~/.cache/genlib``. One file
    per model: ``<cache>/<name>/<profile>-<hash>.safetensors``. The hash is the first 16 hex
    digits of the SHA-256 of canonical JSON (sorted keys) holding the config, the ``extra``
    settings, the seed, the zoo format version and ``TRAINING_REVISION`` (bumped when shared
    training code changes what a config trains).

What a file holds
    The model's ``state_dict`` as safetensors (never pickle), and text metadata: name, profile,
    the key JSON, the ``info`` the training function returned (e.g. a loss history), a SHA-256
    checksum of the tensors, the genlib and torch versions and the creation date.

When a cached file is not trusted
    A file that cannot be parsed (garbage bytes, a cut-off file), whose checksum does not match
    its tensors, whose metadata names another model, profile or config, or whose tensors do not
    fit the freshly built model (missing or extra keys, other shapes or dtypes) is never loaded: a
    :class:`ZooWarning` names the file and the reason, the file is deleted and the model is
    retrained. Files are written to a temporary file of their own (a unique name in the same folder)
    and renamed into place with ``os.replace``, so a crash leaves either the old file or the new
    one, never half a file, and two processes saving the same model never share a temporary name.

When the cache cannot be used
    Something other than a regular file at a model's path (a directory, a FIFO, a link to one) is
    an error raised before any training, naming the path to remove; the zoo deletes only what it
    wrote. A cache that cannot be written (read-only, full, its folder not makeable) costs the
    cache, not the model: :func:`get_or_train` warns "not cached" with the reason and returns the
    trained model. :func:`clear` never follows a symbolic link out of the cache.

When two processes want the same model
    Chapters run side by side share one cache: the first to miss takes a lock file beside the
    model's path and trains, the others wait for its file and load it (:mod:`genlib.zoo_lock`).

The switch ``GENLIB_ZOO``
    ``on`` (default) uses the cache; ``refresh`` retrains every model asked for and overwrites its
    file (for instructors who changed training code); ``off`` always trains and neither reads nor
    writes the cache.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import enum
import hashlib
import json
import os
import random
import re
import stat
import warnings
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from genlib import config as _config
from genlib import zoo_lock as _lock

FORMAT_VERSION = 1
# Part of every cache key. Bump it when shared training code changes what a given config trains
# (revision 2: the EMA warmup of genlib.train), so that models cached before are not loaded as if
# nothing had changed; a chapter's own training function is covered by its config and ``extra``.
TRAINING_REVISION = 2
SUFFIX = ".safetensors"
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_MODES = ("on", "refresh", "off")


class ZooError(Exception):
    """A cached file that must not be loaded, or a cache path holding something other than a
    file; the message says why."""


class ZooWarning(UserWarning):
    """Raised (as a warning) when a cached file is discarded and the model retrained."""


@dataclasses.dataclass
class Trained:
    """What :func:`get_or_train` returns.

    ``model`` is in eval mode on the requested device; ``info`` is the JSON-ready dict the training
    function returned (the same on a cache hit as on the run that trained it); ``path`` is the
    cache file (``None`` when ``GENLIB_ZOO=off`` or when the file could not be written);
    ``loaded`` says whether the weights came from it.
    """

    model: torch.nn.Module
    info: dict
    path: Path | None
    loaded: bool

    def annotated(self) -> torch.nn.Module:
        """The model with ``model.info`` (the training info) and ``model.from_cache`` (whether it
        was loaded) set, the form every ``load_*`` function of genlib returns."""
        self.model.info, self.model.from_cache = self.info, self.loaded
        return self.model


@dataclasses.dataclass
class Cached:
    """One file in the cache, as :func:`list_cached` reports it."""

    name: str
    profile: str
    hash: str
    path: Path
    bytes: int
    created: str | None  # None when the file's metadata cannot be read


# ----------------------------------------------------------------------------- keys and paths


def cache_dir() -> Path:
    """The cache folder, read from the environment at each call (it need not exist yet)."""
    root = os.environ.get("GENLIB_CACHE", "").strip()
    if root:
        return Path(root).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME", "").strip()
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "genlib"


def mode() -> str:
    """The ``GENLIB_ZOO`` switch: ``on`` (default), ``refresh`` or ``off``."""
    value = os.environ.get("GENLIB_ZOO", "").strip().lower() or "on"
    if value not in _MODES:
        raise ValueError(f"GENLIB_ZOO={value!r} is not a mode; expected one of {', '.join(_MODES)}")
    return value


def _jsonable(obj: Any) -> Any:
    """``json.dumps`` fallback: dataclasses, objects with ``to_dict``, paths, dtypes, scalars."""
    if callable(getattr(obj, "to_dict", None)):
        return obj.to_dict()
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    if isinstance(obj, enum.Enum):
        return obj.value
    if isinstance(obj, (Path, torch.dtype, torch.device)):
        return str(obj)
    if isinstance(obj, np.generic) or (isinstance(obj, torch.Tensor) and obj.numel() == 1):
        return obj.item()
    if isinstance(obj, (set, frozenset)):
        return sorted(obj)
    raise TypeError(f"cannot store {type(obj).__name__} as JSON: {obj!r}")


def to_json(obj: Any) -> str:
    """Canonical JSON: sorted keys, no spaces, tuples as lists. Equal configs give equal text."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=_jsonable)


def _key_json(config: Any, extra: Any, seed: int | None) -> str:
    key = {"format": FORMAT_VERSION, "training": TRAINING_REVISION, "config": config, "extra": extra, "seed": seed}
    if _config.max_steps() is not None:  # a model trained for a few steps never stands in for a real one
        key["max_steps"] = _config.max_steps()
    return to_json(key)


def config_hash(config: Any, *, extra: Any = None, seed: int | None = 0) -> str:
    """16 hex digits of SHA-256 over the canonical key JSON (config, extra, seed, format, training revision)."""
    return hashlib.sha256(_key_json(config, extra, seed).encode()).hexdigest()[:16]


def _check_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise ValueError(f"model name {name!r} must be letters, digits, '_', '-' or '.'")
    return name


def path_for(
    name: str, config: Any, profile: str | None = None, *, extra: Any = None, seed: int | None = 0
) -> Path:
    """Where the model ``name`` with this config lives: ``<cache>/<name>/<profile>-<hash>.safetensors``."""
    prof = profile or _config.profile()
    return cache_dir() / _check_name(name) / f"{prof}-{config_hash(config, extra=extra, seed=seed)}{SUFFIX}"


# ----------------------------------------------------------------------------- files


def checksum(tensors: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 over every tensor in name order: its name, dtype, shape and raw bytes."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().to("cpu").contiguous().reshape(-1)
        raw = t.view(torch.uint8) if t.numel() else torch.empty(0, dtype=torch.uint8)
        h.update(f"{name}\0{t.dtype}\0{tuple(tensors[name].shape)}\0{raw.numel()}\0".encode())
        h.update(raw.numpy())
    return h.hexdigest()


def weights_digest(module: torch.nn.Module) -> str:
    """16 hex digits of :func:`checksum` over a module's parameters and buffers: the same weights
    (names, dtypes, shapes, bytes) give the same digest on any machine, so a model trained on
    frozen parts can name exactly which parts it used, in its cache key."""
    return checksum(module.state_dict())[:16]


def _state_tensors(model_or_state: torch.nn.Module | Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A state dict ready for safetensors: detached, contiguous CPU copies (tied weights cloned)."""
    state = model_or_state.state_dict() if isinstance(model_or_state, torch.nn.Module) else model_or_state
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in state.items()}


def save(
    model: torch.nn.Module | Mapping[str, torch.Tensor], path: str | os.PathLike, metadata: Mapping[str, Any] | None = None
) -> Path:
    """Write ``model``'s state dict to ``path`` as safetensors, atomically.

    ``metadata`` values that are not strings are stored as canonical JSON. ``save`` adds the
    tensor ``checksum``, ``genlib_version``, ``torch_version`` and ``created``. The file is written
    to a temporary name in the same folder and renamed into place; if anything fails the
    temporary file is removed and the exception propagates.
    """
    import genlib  # the package root, for its version; imported here to keep import order free

    tensors = _state_tensors(model)
    meta = {k: v if isinstance(v, str) else to_json(v) for k, v in (metadata or {}).items()}
    meta.update(
        checksum=checksum(tensors),
        genlib_version=str(getattr(genlib, "__version__", "unknown")),
        torch_version=torch.__version__,
        created=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    )
    return _config.write_atomically(path, lambda tmp: save_file(tensors, tmp, meta))


def read_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The text metadata of a safetensors file (raises :class:`ZooError` if it cannot be parsed)."""
    try:
        with safe_open(str(path), framework="pt") as f:
            return dict(f.metadata() or {})
    except Exception as e:  # safetensors raises its own error type for every parse failure
        raise ZooError(f"unreadable safetensors file ({e})") from e


def _read_checked(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors and metadata of ``path``, after checking that the file parses and its checksum holds."""
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = dict(f.metadata() or {})
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:
        raise ZooError(f"unreadable safetensors file ({e})") from e
    if "checksum" not in meta:
        raise ZooError("no checksum in the metadata")
    if checksum(tensors) != meta["checksum"]:
        raise ZooError("checksum mismatch: the tensor bytes changed since the file was written")
    return tensors, meta


def load_into(
    model: torch.nn.Module, path: str | os.PathLike, *, expect: Mapping[str, str] | None = None
) -> dict[str, str]:
    """Load the weights in ``path`` into ``model`` after checking them; return the file's metadata.

    Checks, in order: the file parses; the checksum matches the tensors; each ``expect`` entry
    (e.g. ``{"name": ..., "profile": ...}``) equals the metadata's; the file has exactly the
    model's state-dict keys with the same shapes and dtypes (``load_state_dict`` would silently
    cast a float64 file into a float32 model). Any failure raises :class:`ZooError` naming the
    reason, and ``model`` is left untouched.
    """
    tensors, meta = _read_checked(Path(path))
    for key, want in (expect or {}).items():
        got = meta.get(key)
        if got != want:
            raise ZooError(f"metadata mismatch: {key} is {_short(got)}, expected {_short(want)}")
    own = model.state_dict()
    missing = sorted(set(own) - set(tensors))
    unexpected = sorted(set(tensors) - set(own))
    if missing or unexpected:
        raise ZooError(f"state dict does not match the model: missing keys {missing[:5]}, unexpected keys {unexpected[:5]}")
    for k, v in own.items():
        if tuple(v.shape) != tuple(tensors[k].shape):
            raise ZooError(f"shape mismatch for {k}: file has {tuple(tensors[k].shape)}, model has {tuple(v.shape)}")
        if v.dtype != tensors[k].dtype:
            raise ZooError(f"dtype mismatch for {k}: file has {tensors[k].dtype}, model has {v.dtype}")
    try:
        model.load_state_dict(tensors, strict=True)
    except Exception as e:
        raise ZooError(f"load_state_dict failed ({e})") from e
    return meta


def _short(text: str | None, n: int = 80) -> str:
    text = repr(text)
    return text if len(text) <= n else text[: n - 3] + "..."


# ----------------------------------------------------------------------------- the cache


def _file_kind(mode: int) -> str:
    kinds = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISSOCK, "a socket"),
             (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"))
    return next((text for test, text in kinds if test(mode)), f"a file of type {stat.S_IFMT(mode):o}")


def _cached_file_exists(path: Path) -> bool:
    """Whether a cached file is at ``path``; :class:`ZooError` if something else is there.

    Only a regular file (or a link to one) is read: opening a FIFO would block for ever, and a
    directory cannot be loaded or replaced. A path that cannot be looked at (its parent is a file,
    a folder without search permission) counts as absent; the write that follows says why it fails.
    """
    try:
        info = os.stat(path)  # follows links: a link to a regular file is read like the file
    except OSError:
        return False
    if stat.S_ISREG(info.st_mode):
        return True
    what = _file_kind(info.st_mode)
    if path.is_symlink():
        what = f"a symbolic link to {what} ({os.readlink(path)})"
    raise ZooError(
        f"genlib.zoo: the cache path {path} is {what}, expected a regular file (a safetensors file the "
        "zoo wrote); the zoo deletes only its own files, so remove it yourself and run again, or set "
        "GENLIB_CACHE to another folder"
    )


@contextlib.contextmanager
def _preserved_rng(dev: torch.device) -> Iterator[None]:
    """Restore the global random states afterwards, so the caller's later draws do not depend on
    whether the model was loaded or trained."""
    states = (random.getstate(), np.random.get_state(), torch.get_rng_state())
    cuda = dev.type == "cuda" or (torch.cuda.is_available() and torch.cuda.is_initialized())
    cuda_states = torch.cuda.get_rng_state_all() if cuda else None
    try:
        yield
    finally:
        random.setstate(states[0])
        np.random.set_state(states[1])
        torch.set_rng_state(states[2])
        if cuda_states is not None:
            torch.cuda.set_rng_state_all(cuda_states)


def get_or_train(
    name: str,
    build: Callable[[Any], torch.nn.Module],
    train: Callable[[torch.nn.Module], Any],
    config: Any,
    *,
    profile: str | None = None,
    device: str | torch.device | None = None,
    extra: Any = None,
    seed: int | None = 0,
) -> Trained:
    """Load the trained model ``name`` from the cache, or build, train and cache it.

    ``build(config)`` returns a fresh untrained ``nn.Module`` (on the CPU). ``train(model)``
    trains it in place on ``device`` and may return small JSON-ready info (a dict; a ``History``
    or anything with ``to_dict`` works too), stored in the file and returned on later hits.
    ``extra`` holds settings outside the model config that change the trained weights (step
    count, learning rate, data seed); like ``config`` and ``seed`` it is part of the cache key.
    Something other than a regular file at the cache path raises :class:`ZooError` before any
    training; a cache that cannot be written gives one :class:`ZooWarning` ("not cached: ...")
    and the trained model, with ``path=None``.
    Before ``build`` the global generators are seeded with ``seed`` (unless ``None``), and after
    the call they are restored, so a chapter draws the same numbers whether the model was loaded
    or trained. ``profile`` and ``device`` default to :func:`genlib.config.profile` and
    :func:`genlib.config.device`.
    """
    prof = profile or _config.profile()
    dev = torch.device(device) if device is not None else _config.device()
    zoo_mode = mode()
    key = _key_json(config, extra, seed)
    path = path_for(name, config, prof, extra=extra, seed=seed)
    expect = {"name": name, "profile": prof, "key": key}

    cached = zoo_mode != "off" and _cached_file_exists(path)  # refuse a FIFO or folder before training

    with _preserved_rng(dev):

        def fresh() -> torch.nn.Module:
            if seed is not None:
                _config.seed_everything(seed)
            return build(config)

        model = fresh()

        def load_cached() -> Trained | None:
            """The cached model, or None after discarding a file that failed its checks."""
            nonlocal model
            try:
                meta = load_into(model, path, expect=expect)
                info = json.loads(meta.get("info", "{}"))
                return Trained(model.to(dev).eval(), info, path, loaded=True)
            except (ZooError, ValueError) as e:  # ValueError: the info JSON does not parse
                warnings.warn(f"genlib.zoo: discarding cached file {path}: {e}; retraining", ZooWarning, stacklevel=3)
                with contextlib.suppress(OSError):  # a read-only cache keeps it; the write below warns
                    path.unlink()
                model = fresh()  # never train on top of weights a failed load may have touched
                return None

        if zoo_mode == "on" and cached and (hit := load_cached()) is not None:
            return hit
        # one trainer per model: a process that finds another training it waits and loads its file
        lock = _lock.training_lock(path, lambda: _cached_file_exists(path)) if zoo_mode == "on" \
            else contextlib.nullcontext(True)
        with lock as must_train:
            if zoo_mode == "on" and (not must_train or _cached_file_exists(path)) \
                    and (hit := load_cached()) is not None:
                return hit
            model.to(dev)
            info_obj = train(model)
            info = json.loads(to_json(info_obj if info_obj is not None else {}))  # same types as on a hit
            model.eval()
            if zoo_mode == "off":
                return Trained(model, info, None, loaded=False)
            try:
                save(model, path, {"genlib.zoo.format": str(FORMAT_VERSION), **expect, "config": to_json(config),
                                   "info": to_json(info)})
            except (OSError, SafetensorError) as e:  # read-only, full, or no folder can be made there
                warnings.warn(f"genlib.zoo: not cached: cannot write {path} ({e}); returning the trained model, "
                              "which the next run trains again", ZooWarning, stacklevel=2)
                return Trained(model, info, None, loaded=False)
            return Trained(model, info, path, loaded=False)


def list_cached() -> list[Cached]:
    """Every model file in the cache, sorted by name then file name (regular files only, in model
    folders that are not links: what :func:`clear` would delete)."""
    root = cache_dir()
    out = []
    for path in sorted(root.glob(f"*/*{SUFFIX}")) if root.is_dir() else []:
        if path.parent.is_symlink() or not path.is_file():  # a dangling link, a folder, a pipe
            continue
        stem = path.name[: -len(SUFFIX)]
        prof, _, digest = stem.rpartition("-")
        try:
            created = read_metadata(path).get("created")
        except ZooError:
            created = None
        out.append(Cached(path.parent.name, prof, digest, path, path.stat().st_size, created))
    return out


def clear(name: str | None = None) -> int:
    """Delete the cached files of model ``name`` (all models if ``None``); return how many.

    Only the zoo's own files (``*.safetensors``, leftover ``*.tmp`` and the locks of processes
    that are gone) are removed, and then the
    model folders if they are empty; nothing else in the cache folder is touched. A symbolic link
    is never followed: a model folder or file that is a link loses the link, never what it points
    to (a folder linked from elsewhere keeps its files). A directory named like a model file is
    left alone.
    """
    root = cache_dir()
    if name is not None:
        folders = [root / _check_name(name)]
    else:
        folders = [p for p in root.glob("*") if p.is_dir() and _NAME_RE.match(p.name)]  # is_dir follows links
    count = 0
    for folder in folders:
        if folder.is_symlink():
            with contextlib.suppress(FileNotFoundError):
                folder.unlink()  # the link, not the folder it names
            continue
        if not folder.is_dir():
            continue
        stale_locks = [f for f in folder.glob(f"*{SUFFIX}.lock") if _lock.stale(f)]  # a live one stays
        for f in list(folder.glob(f"*{SUFFIX}")) + list(folder.glob(".*.tmp")) + stale_locks:
            if f.is_dir() and not f.is_symlink():
                continue
            with contextlib.suppress(FileNotFoundError):
                f.unlink()  # unlink never follows a link
                count += f.name.endswith(SUFFIX)
        with contextlib.suppress(OSError):
            folder.rmdir()  # only succeeds when empty
    return count
