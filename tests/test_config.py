"""Tests of genlib.config: profiles, pick, device choice, seeding, interactive()."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from genlib import config


@pytest.fixture
def env(monkeypatch):
    for name in ("GENLIB_PROFILE", "GENLIB_DEVICE", "GENLIB_STATIC"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.mark.parametrize("cuda", [True, False])
def test_default_profile_follows_cuda(env, cuda):
    env.setattr(torch.cuda, "is_available", lambda: cuda)
    assert config.profile() == ("gpu" if cuda else "cpu")
    env.setenv("GENLIB_PROFILE", "   ")  # blank counts as unset
    assert config.profile() == ("gpu" if cuda else "cpu")


@pytest.mark.parametrize("value,expected", [("ci", "ci"), ("CPU", "cpu"), (" gpu \n", "gpu")])
def test_profile_from_environment(env, value, expected):
    env.setattr(torch.cuda, "is_available", lambda: False)
    env.setenv("GENLIB_PROFILE", value)
    assert config.profile() == expected


@pytest.mark.parametrize("value", ["tpu", "fast", "c i"])
def test_invalid_profile(env, value):
    env.setenv("GENLIB_PROFILE", value)
    with pytest.raises(ValueError, match=f"GENLIB_PROFILE={value.lower()!r} is not a profile; expected one of ci, cpu, gpu"):
        config.profile()
    with pytest.raises(ValueError):
        config.pick(ci=1, cpu=2, gpu=3)


@pytest.mark.parametrize("name,value", [("ci", 1), ("cpu", "two"), ("gpu", [3])])
def test_pick(env, name, value):
    env.setenv("GENLIB_PROFILE", name)
    assert config.pick(ci=1, cpu="two", gpu=[3]) == value


def test_pick_needs_all_three_by_keyword(env):
    env.setenv("GENLIB_PROFILE", "ci")
    with pytest.raises(TypeError):
        config.pick(ci=1, cpu=2)
    with pytest.raises(TypeError):
        config.pick(1, 2, 3)


def draws():
    return random.random(), np.random.rand(3).tolist(), torch.rand(3).tolist()


@pytest.mark.parametrize("seed", [0, 7, 2**32 + 5, np.int64(3)])
def test_seed_everything_reproduces_all_generators(seed):
    gen = config.seed_everything(seed)
    first, g_first = draws(), torch.rand(2, generator=gen)
    draws()  # the generators moved on
    gen2 = config.seed_everything(seed)
    assert draws() == first
    assert torch.equal(torch.rand(2, generator=gen2), g_first)
    assert isinstance(gen, torch.Generator) and gen.initial_seed() == int(seed)


def test_different_seeds_draw_differently():
    config.seed_everything(1)
    a = draws()
    config.seed_everything(2)
    assert draws() != a


@pytest.mark.parametrize("seed", [-1, 1.5, "3", None, True])
def test_bad_seed(seed):
    with pytest.raises(ValueError, match="seed must be a non-negative integer"):
        config.seed_everything(seed)


def test_device_cuda_without_cuda_raises(env):
    env.setattr(torch.cuda, "is_available", lambda: False)
    env.setenv("GENLIB_DEVICE", "cuda")
    with pytest.raises(RuntimeError, match="GENLIB_DEVICE='cuda' asks for CUDA, but torch sees no CUDA device"):
        config.device()
    env.setenv("GENLIB_DEVICE", "cuda:1")
    with pytest.raises(RuntimeError, match="asks for CUDA"):
        config.device()


def test_device_choice(env):
    env.setattr(torch.cuda, "is_available", lambda: False)
    assert config.device() == torch.device("cpu")
    env.setenv("GENLIB_DEVICE", " cpu ")
    assert config.device() == torch.device("cpu")
    env.delenv("GENLIB_DEVICE")
    env.setattr(torch.cuda, "is_available", lambda: True)
    assert config.device() == torch.device("cuda")
    env.setenv("GENLIB_DEVICE", "cuda:1")
    assert config.device() == torch.device("cuda", 1)
    env.setenv("GENLIB_DEVICE", "cpu")
    assert config.device() == torch.device("cpu")


@pytest.mark.parametrize("name", ["gpu0", "gpu", "cuda:x"])
def test_bad_device_name(env, name):
    """The error names the variable and what it may hold (torch's own message names neither)."""
    env.setenv("GENLIB_DEVICE", name)
    with pytest.raises(ValueError, match=f"GENLIB_DEVICE={name!r} is not a device.*cpu.*cuda:1"):
        config.device()


@pytest.mark.parametrize("static", ["1", "yes", " true "])
def test_not_interactive_in_a_static_build(env, static):
    env.setenv("GENLIB_STATIC", static)
    assert config.interactive() is False


@pytest.mark.parametrize("static", [None, "0", ""])
def test_not_interactive_outside_a_kernel(env, static):
    if static is not None:
        env.setenv("GENLIB_STATIC", static)
    assert config.interactive() is False  # pytest is no Jupyter kernel


class FakeKernel:
    config = {"IPKernelApp": {"connection_file": "kernel.json"}}


def test_interactive_in_a_kernel_unless_static(env):
    IPython = pytest.importorskip("IPython")
    pytest.importorskip("ipywidgets")
    env.setattr(IPython, "get_ipython", lambda: FakeKernel())
    assert config.interactive() is True
    env.setenv("GENLIB_STATIC", "1")
    assert config.interactive() is False
    env.setenv("GENLIB_STATIC", "0")
    assert config.interactive() is True
    env.setattr(IPython, "get_ipython", lambda: type("Terminal", (), {"config": {}})())
    assert config.interactive() is False  # an IPython terminal is no kernel


def test_describe(env):
    env.setenv("GENLIB_PROFILE", "ci")
    env.setenv("GENLIB_DEVICE", "cpu")
    line = config.describe()
    assert line.startswith("profile=ci device=cpu (CPU) torch=") and "+" not in line.split("torch=")[1]


def test_randn_draws_where_the_generator_lives_then_moves():
    """The same numbers as torch.randn with that generator; moved to the device asked for (meta
    stands in for a GPU here: a CPU generator cannot draw on another device directly)."""
    import torch

    from genlib import config

    expected = torch.randn(3, 4, generator=torch.Generator().manual_seed(1))
    got = config.randn((3, 4), generator=torch.Generator().manual_seed(1))
    assert torch.equal(got, expected)
    moved = config.randn((3, 4), generator=torch.Generator().manual_seed(1), device="meta", dtype=torch.float16)
    assert moved.device.type == "meta" and moved.dtype == torch.float16 and moved.shape == (3, 4)


def test_module_device_is_the_first_parameters_device():
    import torch

    from genlib import config

    assert config.module_device(torch.nn.Linear(2, 2)) == torch.device("cpu")
    assert config.module_device(torch.nn.Linear(2, 2, device="meta")).type == "meta"
    assert config.module_device(torch.nn.ReLU(), default="meta").type == "meta"


def test_check_range_reads_min_and_max_and_names_what_it_found():
    config.check_range(torch.tensor([0, 3, 9]), 0, 9, "x")
    config.check_range(torch.zeros(0, dtype=torch.long), 0, 9, "x")  # nothing to check
    with pytest.raises(ValueError, match=r"codes must lie in \[0, 9\], got values in \[-1, 3\]"):
        config.check_range(torch.tensor([-1, 3]), 0, 9, "codes must lie in [0, 9]")
    with pytest.raises(ValueError, match=r"got values in \[2, 10\]"):
        config.check_range(torch.tensor([[2, 10]], dtype=torch.int32), 0, 9, "codes must lie in [0, 9]")


def test_max_steps_caps_training_and_keys_the_cache_apart(monkeypatch):
    import torch

    from genlib import train, zoo

    monkeypatch.delenv("GENLIB_MAX_STEPS", raising=False)
    assert config.max_steps() is None and config.capped(500) == 500
    plain = zoo.config_hash({"w": 1})
    monkeypatch.setenv("GENLIB_MAX_STEPS", "2")
    assert config.capped(500) == 2 and config.capped(1) == 1
    assert zoo.config_hash({"w": 1}) != plain  # a 2-step model never stands in for a trained one
    history = train.fit(torch.nn.Linear(2, 1), lambda m, x: m(x).pow(2).mean(), lambda s: torch.randn(4, 2), 50,
                        progress=False, device="cpu")
    assert len(history.loss) == 2
    for bad in ("0", "-1", "two", "1.5"):
        monkeypatch.setenv("GENLIB_MAX_STEPS", bad)
        with pytest.raises(ValueError, match="GENLIB_MAX_STEPS"):
            config.max_steps()
