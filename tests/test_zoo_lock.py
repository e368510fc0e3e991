"""genlib.zoo_lock: concurrent chapters sharing a cache train each model once."""

import json
import os
import subprocess
import sys
import textwrap
import time

import pytest

from genlib import zoo, zoo_lock

CHILD = textwrap.dedent("""
    import sys, time, torch
    from genlib import zoo

    def build(cfg):
        return torch.nn.Linear(2, 2)

    def train(model):
        print("TRAINING", flush=True)
        time.sleep(float(sys.argv[1]))
        with torch.no_grad():
            model.weight.fill_(3.0)
        return {"trained_by": sys.argv[2]}

    r = zoo.get_or_train("locked", build, train, {"w": 2}, profile="ci", device="cpu")
    print("RESULT", r.loaded, r.info["trained_by"], float(r.model.weight[0, 0]), flush=True)
""")


@pytest.mark.slow
def test_two_processes_wanting_one_model_train_it_once(tmp_path):
    env = dict(os.environ, GENLIB_CACHE=str(tmp_path / "cache"), GENLIB_ZOO="on")
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    first = subprocess.Popen([sys.executable, str(script), "3", "first"], env=env, stdout=subprocess.PIPE, text=True)
    assert first.stdout.readline().strip() == "TRAINING"  # first holds the lock and trains
    second = subprocess.run([sys.executable, str(script), "0", "second"], env=env, capture_output=True,
                            text=True, timeout=120)
    out_first, _ = first.communicate(timeout=120)
    assert "TRAINING" not in second.stdout, second.stdout + second.stderr
    assert second.stdout.split()[-4:] == ["RESULT", "True", "first", "3.0"]  # waited, then loaded
    assert out_first.split()[-4:] == ["RESULT", "False", "first", "3.0"]
    assert not list((tmp_path / "cache").rglob("*.lock"))


def test_a_lock_left_by_a_dead_process_is_taken_over(tmp_path):
    path = tmp_path / "m" / "ci-x.safetensors"
    path.parent.mkdir()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    import socket
    zoo_lock.lock_path(path).write_text(json.dumps({"host": socket.gethostname(), "pid": int(dead.stdout),
                                                    "time": time.time()}))
    assert zoo_lock.stale(zoo_lock.lock_path(path))
    with zoo_lock.training_lock(path, lambda: False) as must_train:
        assert must_train and json.loads(zoo_lock.lock_path(path).read_text())["pid"] == os.getpid()
    assert not zoo_lock.lock_path(path).exists()


def test_a_live_lock_makes_a_waiter_time_out_with_the_lock_named(tmp_path, monkeypatch):
    path = tmp_path / "ci-x.safetensors"
    assert zoo_lock._try_take(zoo_lock.lock_path(path))  # held by this (live) process
    monkeypatch.setenv("GENLIB_ZOO_WAIT", "0.5")
    with pytest.raises(TimeoutError, match=r"ci-x\.safetensors\.lock"):
        with zoo_lock.training_lock(path, lambda: False):
            pass
    assert not zoo_lock.stale(zoo_lock.lock_path(path))


def test_a_waiter_loads_as_soon_as_the_file_is_ready(tmp_path):
    path = tmp_path / "ci-x.safetensors"
    assert zoo_lock._try_take(zoo_lock.lock_path(path))
    with zoo_lock.training_lock(path, lambda: True) as must_train:
        assert must_train is False


@pytest.mark.parametrize("value", ["0", "-3", "soon"])
def test_bad_wait_settings_are_refused(tmp_path, monkeypatch, value):
    monkeypatch.setenv("GENLIB_ZOO_WAIT", value)
    with pytest.raises(ValueError, match="GENLIB_ZOO_WAIT"):
        with zoo_lock.training_lock(tmp_path / "x.safetensors", lambda: False):
            pass


def test_clear_removes_a_dead_processs_lock_but_not_a_live_one(tmp_path, monkeypatch):
    monkeypatch.setenv("GENLIB_CACHE", str(tmp_path))
    folder = tmp_path / "tiny"
    folder.mkdir()
    live = folder / "ci-a.safetensors.lock"
    assert zoo_lock._try_take(folder / "ci-a.safetensors.lock")
    dead = folder / "ci-b.safetensors.lock"
    dead.write_text(json.dumps({"host": "elsewhere", "pid": 1, "time": time.time() - 10 ** 6}))
    zoo.clear()
    assert live.exists() and not dead.exists()
