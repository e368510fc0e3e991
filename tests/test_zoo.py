"""Tests of genlib.zoo: cache hits and misses, keys, integrity checks, a cache that cannot be used,
atomic writes, switches."""

from __future__ import annotations

import dataclasses
import errno
import inspect
import json
import os
import pickle
import subprocess
import sys
import tempfile

import pytest
import torch
from safetensors import SafetensorError
from torch import nn

from genlib import zoo
from genlib.zoo import ZooError, ZooWarning


@dataclasses.dataclass
class Cfg:
    width: int = 4
    act: str = "relu"


def build(cfg: Cfg) -> nn.Module:
    return nn.Sequential(nn.Linear(3, cfg.width), nn.ReLU(), nn.Linear(cfg.width, 2))


class Trainer:
    """Counts its calls; 'training' nudges every weight so trained differs from fresh."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, model: nn.Module) -> dict:
        self.calls += 1
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
        return {"acc": 0.75, "loss": [3.0, 2.0, 1.5]}


def never_train(model: nn.Module) -> dict:
    raise AssertionError("train was called on a cache hit")


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    root = tmp_path / "cache"
    monkeypatch.setenv("GENLIB_CACHE", str(root))
    monkeypatch.setenv("GENLIB_PROFILE", "ci")
    monkeypatch.setenv("GENLIB_DEVICE", "cpu")
    monkeypatch.delenv("GENLIB_ZOO", raising=False)
    return root


def same_weights(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def files_in(folder) -> list[str]:
    return sorted(os.listdir(folder)) if folder.exists() else []


# ----------------------------------------------------------------------------- hits and misses


def test_cold_miss_trains_and_writes(cache):
    trainer = Trainer()
    r = zoo.get_or_train("tiny", build, trainer, Cfg())
    assert trainer.calls == 1 and not r.loaded
    assert r.path == cache / "tiny" / f"ci-{zoo.config_hash(Cfg())}.safetensors" and r.path.exists()
    assert len(zoo.config_hash(Cfg())) == 16
    assert not r.model.training
    assert r.info == {"acc": 0.75, "loss": [3.0, 2.0, 1.5]}
    meta = zoo.read_metadata(r.path)
    for key in ("name", "profile", "key", "config", "info", "checksum", "genlib_version", "torch_version", "created"):
        assert key in meta
    assert meta["name"] == "tiny" and meta["profile"] == "ci"


def test_hit_loads_without_training():
    first = zoo.get_or_train("tiny", build, Trainer(), Cfg())
    again = zoo.get_or_train("tiny", build, never_train, Cfg())
    assert again.loaded and again.path == first.path
    assert same_weights(first.model, again.model)
    assert again.info == first.info
    assert not again.model.training
    assert not same_weights(again.model, build(Cfg()))  # the trained weights, not a fresh init


def test_keys_separate_config_profile_extra_and_seed():
    paths = {
        zoo.path_for("tiny", Cfg()),
        zoo.path_for("tiny", Cfg(width=5)),
        zoo.path_for("tiny", Cfg(), "gpu"),
        zoo.path_for("tiny", Cfg(), extra={"steps": 10}),
        zoo.path_for("tiny", Cfg(), seed=1),
        zoo.path_for("other", Cfg()),
    }
    assert len(paths) == 6
    # dict and dataclass with the same fields, keys in any order, give the same key
    assert zoo.config_hash({"act": "relu", "width": 4}) == zoo.config_hash(Cfg())
    trainer = Trainer()
    a = zoo.get_or_train("tiny", build, trainer, Cfg(), profile="ci")
    b = zoo.get_or_train("tiny", build, trainer, Cfg(), profile="cpu")
    c = zoo.get_or_train("tiny", build, trainer, Cfg(width=5))
    assert trainer.calls == 3 and len({a.path, b.path, c.path}) == 3
    assert all(p.exists() for p in (a.path, b.path, c.path))


def test_a_new_training_revision_is_a_new_key(monkeypatch):
    before = zoo.path_for("tiny", Cfg())
    monkeypatch.setattr(zoo, "TRAINING_REVISION", zoo.TRAINING_REVISION + 1)
    assert zoo.path_for("tiny", Cfg()) != before


def test_bad_names_are_refused():
    for bad in ("../escape", "a/b", "", ".hidden"):
        with pytest.raises(ValueError):
            zoo.path_for(bad, Cfg())


def test_global_random_state_is_the_same_after_a_hit_or_a_miss():
    torch.manual_seed(123)
    zoo.get_or_train("tiny", build, Trainer(), Cfg())
    after_miss = torch.rand(3)
    torch.manual_seed(123)
    zoo.get_or_train("tiny", build, never_train, Cfg())
    after_hit = torch.rand(3)
    torch.manual_seed(123)
    assert torch.equal(after_miss, after_hit) and torch.equal(after_hit, torch.rand(3))


# ----------------------------------------------------------------------------- integrity


def _garbage(path):
    path.write_bytes(b"\xff" * path.stat().st_size)


def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _flip_tensor_byte(path):
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01  # the last byte lies in the tensor payload; the header stays valid
    path.write_bytes(bytes(data))


def _other_architecture_with_valid_metadata(width: int | None):
    def corrupt(path):
        meta = zoo.read_metadata(path)
        other = build(Cfg(width=width)) if width else nn.Sequential(nn.Linear(3, 4))
        zoo.save(other, path, {k: v for k, v in meta.items() if k != "checksum"})

    return corrupt


def _other_dtype(path):
    meta = zoo.read_metadata(path)
    zoo.save(build(Cfg()).double(), path, {k: v for k, v in meta.items() if k != "checksum"})


def _metadata(field: str, value: str):
    def corrupt(path):
        meta = zoo.read_metadata(path)
        meta[field] = value
        zoo.save(build(Cfg()), path, meta)  # a well-formed file with a valid checksum

    return corrupt


@pytest.mark.parametrize(
    "corrupt, reason",
    [
        (_garbage, "unreadable"),
        (_truncate, "unreadable"),
        (_flip_tensor_byte, "checksum mismatch"),
        (_other_architecture_with_valid_metadata(7), "shape mismatch"),
        (_other_architecture_with_valid_metadata(None), "does not match the model"),
        (_other_dtype, "dtype mismatch"),
        (_metadata("name", "someone-else"), "metadata mismatch: name"),
        (_metadata("profile", "gpu"), "metadata mismatch: profile"),
        (_metadata("key", '{"config":{"width":99}}'), "metadata mismatch: key"),
    ],
    ids=["garbage", "truncated", "checksum", "shape", "keys", "dtype", "name", "profile", "config"],
)
def test_a_bad_file_warns_and_retrains(corrupt, reason):
    trainer = Trainer()
    good = zoo.get_or_train("tiny", build, trainer, Cfg())
    corrupt(good.path)
    with pytest.warns(ZooWarning, match=reason) as record:
        again = zoo.get_or_train("tiny", build, trainer, Cfg())
    assert str(good.path) in str(record[0].message)
    assert trainer.calls == 2 and not again.loaded
    assert same_weights(again.model, good.model)  # retrained from the same seed: the same model
    meta = zoo.load_into(build(Cfg()), again.path, expect={"name": "tiny", "profile": "ci"})
    assert meta["name"] == "tiny"
    hit = zoo.get_or_train("tiny", build, never_train, Cfg())
    assert hit.loaded and same_weights(hit.model, good.model)


def test_load_into_names_the_key_and_both_dtypes(tmp_path):
    path = zoo.save(build(Cfg()).double(), tmp_path / "double.safetensors")
    model = build(Cfg())
    before = {k: v.clone() for k, v in model.state_dict().items()}
    want = r"dtype mismatch for 0\.weight: file has torch\.float64, model has torch\.float32"
    with pytest.raises(ZooError, match=want):
        zoo.load_into(model, path)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # left untouched


# ----------------------------------------------------------------------------- a cache that cannot be used


_GET_OR_TRAIN_SCRIPT = """
import json
from torch import nn
from genlib import zoo

calls = []
try:
    r = zoo.get_or_train("tiny", lambda cfg: nn.Linear(3, cfg["width"]), lambda m: calls.append(1), {"width": 4})
    out = {"error": None, "loaded": r.loaded}
except Exception as e:
    out = {"error": type(e).__name__, "message": str(e)}
print(json.dumps({**out, "calls": len(calls)}))
"""


def _get_or_train_in_a_subprocess(timeout: float = 60.0) -> dict:
    """``get_or_train`` of a tiny model in a child process, which the timeout kills if it hangs.

    Opening a FIFO for reading blocks until a writer comes, and safetensors holds the GIL while it
    opens a file, so a thread with a join timeout would hang the suite with it."""
    try:
        done = subprocess.run([sys.executable, "-c", _GET_OR_TRAIN_SCRIPT], capture_output=True, text=True,
                              timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        pytest.fail(f"get_or_train hung for {timeout:.0f} s on a non-regular file at the cache path")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("zoo_mode", ["on", "refresh"])
@pytest.mark.parametrize("kind", ["directory", "fifo", "symlink-to-fifo"])
def test_a_non_regular_file_at_the_cache_path_is_an_error_before_training(kind, zoo_mode, tmp_path, monkeypatch):
    path = zoo.path_for("tiny", {"width": 4})
    path.parent.mkdir(parents=True)
    if kind == "directory":
        path.mkdir()
    elif kind == "fifo":
        os.mkfifo(path)
    else:
        os.mkfifo(tmp_path / "pipe")
        path.symlink_to(tmp_path / "pipe")
    monkeypatch.setenv("GENLIB_ZOO", zoo_mode)
    got = _get_or_train_in_a_subprocess()
    assert got["error"] == "ZooError", got
    assert str(path) in got["message"] and "regular file" in got["message"] and "remove" in got["message"]
    assert got["calls"] == 0  # refused before any training was spent
    assert path.is_dir() if kind == "directory" else path.is_fifo()  # nothing deleted
    monkeypatch.setenv("GENLIB_ZOO", "off")  # off never looks at the cache
    assert zoo.get_or_train("tiny", lambda cfg: nn.Linear(3, cfg["width"]), Trainer(), {"width": 4}).path is None


def test_an_unwritable_cache_warns_not_cached_and_returns_the_trained_model(tmp_path, monkeypatch):
    # The cache path's parent is a regular file, so no folder can be made there; unlike chmod this
    # stops writes for root too.
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("GENLIB_CACHE", str(blocker / "cache"))
    trainer = Trainer()
    with pytest.warns(ZooWarning, match="not cached") as record:
        r = zoo.get_or_train("tiny", build, trainer, Cfg())
    assert len(record) == 1 and str(blocker / "cache") in str(record[0].message)
    assert trainer.calls == 1 and not r.loaded and r.path is None
    assert r.info == {"acc": 0.75, "loss": [3.0, 2.0, 1.5]} and not r.model.training
    assert not same_weights(r.model, build(Cfg()))  # the trained weights
    assert blocker.read_text() == "not a folder"


def _make_read_only(cache, monkeypatch) -> None:
    """Every write under ``cache`` fails with EROFS from now on, as on a read-only mount.

    Monkeypatched (os.unlink, os.replace, tempfile.mkstemp, os.open for writing: the training
    lock) because chmod does not stop root."""

    def refuse(target) -> None:
        if str(target).startswith(str(cache)):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(target))

    real_unlink, real_replace, real_mkstemp, real_open = os.unlink, os.replace, tempfile.mkstemp, os.open

    def open_(path, flags, *args, **kwargs):
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            refuse(path)
        return real_open(path, flags, *args, **kwargs)

    def unlink(path, *args, **kwargs):
        refuse(path)
        return real_unlink(path, *args, **kwargs)

    def replace(src, dst, *args, **kwargs):
        refuse(dst)
        return real_replace(src, dst, *args, **kwargs)

    def mkstemp(*args, **kwargs):
        refuse(kwargs.get("dir"))
        return real_mkstemp(*args, **kwargs)

    monkeypatch.setattr(os, "unlink", unlink)
    monkeypatch.setattr(os, "replace", replace)
    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
    monkeypatch.setattr(os, "open", open_)


def test_a_read_only_cache_with_a_bad_file_warns_and_returns_the_trained_model(cache, monkeypatch):
    trainer = Trainer()
    good = zoo.get_or_train("tiny", build, trainer, Cfg())
    _garbage(good.path)
    garbage = good.path.read_bytes()
    _make_read_only(cache, monkeypatch)
    with pytest.warns(ZooWarning) as record:
        again = zoo.get_or_train("tiny", build, trainer, Cfg())
    messages = [str(w.message) for w in record]
    assert any("discarding" in m and "unreadable" in m for m in messages)
    assert sum("not cached" in m for m in messages) == 1
    assert trainer.calls == 2 and not again.loaded and again.path is None
    assert same_weights(again.model, good.model)  # retrained from the same seed
    assert good.path.read_bytes() == garbage  # the read-only file is left as it was


def test_a_read_only_cache_folder_warns_once_on_a_miss(cache, monkeypatch):
    (cache / "tiny").mkdir(parents=True)
    _make_read_only(cache, monkeypatch)
    trainer = Trainer()
    with pytest.warns(ZooWarning, match="not cached") as record:
        r = zoo.get_or_train("tiny", build, trainer, Cfg())
    assert len(record) == 1 and "Read-only file system" in str(record[0].message)
    assert trainer.calls == 1 and r.path is None and not r.loaded
    assert files_in(cache / "tiny") == []


def test_a_write_error_inside_safetensors_warns_not_cached(cache, monkeypatch):
    def disk_full(tensors, filename, metadata=None):
        raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")

    monkeypatch.setattr(zoo, "save_file", disk_full)
    with pytest.warns(ZooWarning, match="not cached.*No space left") as record:
        r = zoo.get_or_train("tiny", build, Trainer(), Cfg())
    assert len(record) == 1 and r.path is None and not r.loaded
    assert files_in(cache / "tiny") == []  # the temporary file is gone too


def test_info_that_is_not_json_is_refused_before_anything_is_written(cache):
    with pytest.raises(TypeError):
        zoo.get_or_train("tiny", build, lambda m: {"model": m}, Cfg())
    assert files_in(cache / "tiny") == []


# ----------------------------------------------------------------------------- atomic writes


def test_training_that_raises_leaves_no_file(cache):
    def boom(model):
        raise RuntimeError("out of memory, say")

    with pytest.raises(RuntimeError, match="out of memory"):
        zoo.get_or_train("tiny", build, boom, Cfg())
    assert files_in(cache / "tiny") == []


def test_a_failed_save_leaves_no_temp_file_and_keeps_the_old_file(cache, monkeypatch):
    good = zoo.get_or_train("tiny", build, Trainer(), Cfg())
    before = good.path.read_bytes()

    def half_write_then_fail(tensors, filename, metadata=None):
        with open(filename, "wb") as f:
            f.write(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(zoo, "save_file", half_write_then_fail)
    with pytest.raises(OSError, match="disk full"):
        zoo.save(build(Cfg()), good.path, {"name": "tiny"})
    with pytest.raises(OSError, match="disk full"):
        zoo.save(build(Cfg()), cache / "fresh" / "x.safetensors")
    assert files_in(cache / "tiny") == [good.path.name]
    assert good.path.read_bytes() == before
    assert files_in(cache / "fresh") == []


def test_two_writers_of_one_file_use_distinct_temporary_files(cache, monkeypatch):
    """Two processes sharing a cache may save the same model at once: each writes its own
    temporary file (never one shared name) and renames it into place, so neither crashes and a
    reader sees one whole file. The second writer is simulated inside the first one's write."""
    path = cache / "tiny" / "ci-0000000000000000.safetensors"
    first, second = build(Cfg(width=4)), build(Cfg(width=4))
    with torch.no_grad():
        second[0].weight.add_(1.0)
    real_save_file, temps = zoo.save_file, []

    def interleaved(tensors, filename, metadata=None):
        temps.append(filename)
        if len(temps) == 1:
            zoo.save(second, path, {"writer": "second"})  # the other process, mid-write of the first
            assert zoo.load_into(build(Cfg()), path)["writer"] == "second"
        real_save_file(tensors, filename, metadata)

    monkeypatch.setattr(zoo, "save_file", interleaved)
    zoo.save(first, path, {"writer": "first"})
    assert len(temps) == 2 and temps[0] != temps[1]
    assert all(os.path.dirname(t) == str(path.parent) for t in temps)  # same folder: rename is atomic
    loaded = build(Cfg())
    assert zoo.load_into(loaded, path)["writer"] == "first" and same_weights(loaded, first)  # last rename wins
    assert files_in(path.parent) == [path.name]


def test_tied_weights_round_trip(tmp_path):
    class Tied(nn.Module):
        def __init__(self):
            super().__init__()
            self.enc = nn.Linear(4, 4, bias=False)
            self.dec = nn.Linear(4, 4, bias=False)
            self.dec.weight = self.enc.weight

    a, b = Tied(), Tied()
    zoo.save(a, tmp_path / "tied.safetensors")
    zoo.load_into(b, tmp_path / "tied.safetensors")
    assert torch.equal(a.enc.weight, b.enc.weight) and b.dec.weight is b.enc.weight


# ----------------------------------------------------------------------------- places and switches


def test_cache_dir_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("GENLIB_CACHE", str(tmp_path / "one"))
    r = zoo.get_or_train("tiny", build, Trainer(), Cfg())
    assert r.path.is_relative_to(tmp_path / "one")
    monkeypatch.setenv("GENLIB_CACHE", str(tmp_path / "two"))
    assert zoo.path_for("tiny", Cfg()).is_relative_to(tmp_path / "two")
    monkeypatch.delenv("GENLIB_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert zoo.cache_dir() == tmp_path / "xdg" / "genlib"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert zoo.cache_dir() == zoo.Path.home() / ".cache" / "genlib"


def test_zoo_switch_off_and_refresh(cache, monkeypatch):
    trainer = Trainer()
    monkeypatch.setenv("GENLIB_ZOO", "off")
    r = zoo.get_or_train("tiny", build, trainer, Cfg())
    assert r.path is None and not r.loaded and files_in(cache / "tiny") == []
    monkeypatch.setenv("GENLIB_ZOO", "on")
    first = zoo.get_or_train("tiny", build, trainer, Cfg())
    created = first.path.stat().st_mtime_ns
    monkeypatch.setenv("GENLIB_ZOO", "refresh")
    again = zoo.get_or_train("tiny", build, trainer, Cfg())
    assert trainer.calls == 3 and not again.loaded and again.path == first.path
    assert again.path.stat().st_mtime_ns >= created
    monkeypatch.setenv("GENLIB_ZOO", "sometimes")
    with pytest.raises(ValueError, match="GENLIB_ZOO"):
        zoo.get_or_train("tiny", build, trainer, Cfg())


def test_list_and_clear(cache):
    zoo.get_or_train("a", build, Trainer(), Cfg())
    zoo.get_or_train("a", build, Trainer(), Cfg(width=5))
    zoo.get_or_train("b", build, Trainer(), Cfg())
    (cache / "notes.txt").write_text("not ours")
    listed = zoo.list_cached()
    assert [(c.name, c.profile) for c in listed] == [("a", "ci"), ("a", "ci"), ("b", "ci")]
    assert all(c.created and c.bytes > 0 and len(c.hash) == 16 for c in listed)
    assert zoo.clear("a") == 2 and [c.name for c in zoo.list_cached()] == ["b"]
    assert zoo.clear() == 1 and zoo.list_cached() == []
    assert (cache / "notes.txt").exists()


def test_clear_never_follows_a_symlink_out_of_the_cache(cache, tmp_path):
    outside = tmp_path / "outside"
    (outside / "linked").mkdir(parents=True)
    kept = [outside / "linked" / "ci-0123456789abcdef.safetensors", outside / "linked" / ".x.safetensors.1.tmp",
            outside / "lone.safetensors"]
    zoo.save(build(Cfg()), kept[0])
    kept[1].write_text("a temp file of someone else's")
    zoo.save(build(Cfg()), kept[2])
    zoo.get_or_train("a", build, Trainer(), Cfg())
    (cache / "linked").symlink_to(outside / "linked", target_is_directory=True)  # a model folder that is a link
    (cache / "a" / "ci-fedcba9876543210.safetensors").symlink_to(kept[2])  # a model file that is a link
    (cache / "a" / "not-a-file.safetensors").mkdir()  # a directory is not the zoo's to delete
    assert zoo.clear("linked") == 0 and not (cache / "linked").is_symlink()  # the link goes, not its files
    (cache / "linked").symlink_to(outside / "linked", target_is_directory=True)
    assert zoo.clear() == 2  # a's file and the link to lone.safetensors
    assert not (cache / "linked").is_symlink() and not (cache / "a" / "ci-fedcba9876543210.safetensors").is_symlink()
    assert (cache / "a" / "not-a-file.safetensors").is_dir()
    assert all(p.exists() for p in kept)
    assert zoo.load_into(build(Cfg()), kept[0]) and zoo.load_into(build(Cfg()), kept[2])


# ----------------------------------------------------------------------------- no pickle


def test_nothing_uses_pickle(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("pickle was used")

    for mod, names in ((pickle, ("load", "loads", "dump", "dumps")), (torch, ("load", "save"))):
        for name in names:
            monkeypatch.setattr(mod, name, refuse)
    first = zoo.get_or_train("tiny", build, Trainer(), Cfg())
    again = zoo.get_or_train("tiny", build, never_train, Cfg())
    assert again.loaded and same_weights(first.model, again.model)
    source = inspect.getsource(zoo)
    assert "import pickle" not in source and "torch.load(" not in source and "torch.save(" not in source


def test_list_cached_skips_what_is_not_a_model_file(tmp_path, monkeypatch):
    """A dangling link once crashed list_cached (``path.stat()``); a folder named like a model file
    and a linked model folder are not the zoo's files either."""
    import os

    monkeypatch.setenv("GENLIB_CACHE", str(tmp_path / "cache"))
    (tmp_path / "cache" / "m").mkdir(parents=True)
    os.symlink(tmp_path / "nowhere", tmp_path / "cache" / "m" / f"ci-0123456789abcdef{zoo.SUFFIX}")
    (tmp_path / "cache" / "m" / f"ci-fedcba9876543210{zoo.SUFFIX}").mkdir()
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / f"ci-00112233445566aa{zoo.SUFFIX}").write_bytes(b"x")
    os.symlink(tmp_path / "outside", tmp_path / "cache" / "linked")
    assert zoo.list_cached() == []
