"""Tests of genlib.zoo: cache hits and misses, keys, integrity checks, atomic writes, switches."""

from __future__ import annotations

import dataclasses
import inspect
import os
import pickle

import pytest
import torch
from torch import nn

from genlib import zoo
from genlib.zoo import ZooWarning


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
        (_metadata("name", "someone-else"), "metadata mismatch: name"),
        (_metadata("profile", "gpu"), "metadata mismatch: profile"),
        (_metadata("key", '{"config":{"width":99}}'), "metadata mismatch: key"),
    ],
    ids=["garbage", "truncated", "checksum", "shape", "keys", "name", "profile", "config"],
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
