"""Tests of the moving-shapes clip evaluator (genlib.metrics.clip_evaluator): a tiny evaluator
trains and is cached, its labels follow the world's ground truth, its Fréchet distance is zero for
identical sets, and the damage in time (shuffle, freeze) and per frame does what it says."""

from __future__ import annotations

import pytest
import torch

from genlib import zoo
from genlib.data import degrade, moving
from genlib.metrics import clip_evaluator as ce
from genlib.metrics import evaluator as ev
from genlib.metrics.frechet import frechet_distance_features

TINY = ce.ClipEvaluatorConfig(size=16, frames=4, width=4, steps=8, batch_size=8, seed=3)


@pytest.fixture(scope="module", autouse=True)
def cache(tmp_path_factory):
    """The module runs on one CPU thread (tiny convolutions run much faster on one thread when the
    2-core machine is busy), in the `ci` profile, with a cold model cache of its own."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("clip-evaluator-cache")
    env = {"GENLIB_CACHE": str(root), "GENLIB_DEVICE": "cpu", "GENLIB_PROFILE": "ci"}
    with pytest.MonkeyPatch.context() as mp:
        for name, value in env.items():
            mp.setenv(name, value)
        mp.delenv("GENLIB_ZOO", raising=False)
        yield root
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tiny(cache):
    assert not zoo.path_for("clip-evaluator", TINY).exists()
    return ce.load_clip_evaluator(TINY)


@pytest.fixture(scope="module")
def batch():
    return moving.sample(12, frames=TINY.frames, size=TINY.size, seed=11)


def test_trains_once_then_loads_from_the_cache(tiny, cache, monkeypatch):
    path = zoo.path_for("clip-evaluator", TINY)
    assert path.exists() and path.is_relative_to(cache)
    assert isinstance(tiny, ce.ClipEvaluator) and tiny.cfg == TINY and not tiny.training
    assert len(tiny.info["history"]["loss"]) == TINY.steps
    assert set(tiny.info["accuracy"]) == {"colour", "shape", "direction", "empty"}

    def no_training(model):
        raise AssertionError("the clip evaluator was retrained on a cache hit")

    monkeypatch.setattr(ce, "train_clip_evaluator", no_training)
    again = ce.load_clip_evaluator(TINY)
    sa, sb = tiny.state_dict(), again.state_dict()
    assert again.info == tiny.info and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_profile_presets(monkeypatch):
    steps = {}
    for profile in ("ci", "cpu", "gpu"):
        monkeypatch.setenv("GENLIB_PROFILE", profile)
        steps[profile] = ce.ClipEvaluatorConfig.preset().steps
    assert steps["ci"] < steps["cpu"] < steps["gpu"]


def test_frechet_distance_of_identical_sets_is_zero(tiny, batch):
    f = ce.clip_features(tiny, batch.videos)
    assert f.shape == (12, 8 * TINY.width)
    assert abs(frechet_distance_features(f, f)) < 1e-6


def test_features_do_not_depend_on_the_batch_split(tiny, batch):
    whole = ce.clip_features(tiny, batch.videos)
    split = ce.clip_features(tiny, batch.videos, batch_size=5)
    assert torch.allclose(whole, split, atol=1e-5)


def test_forward_and_predict_shapes(tiny, batch):
    side = TINY.size // ce.DOWNSAMPLE
    logits = tiny(batch.videos)
    assert {k: tuple(v.shape) for k, v in logits.items()} == {
        name: (12, classes, TINY.frames, side, side) for name, classes in ce.HEADS.items()}
    pred = tiny.predict(batch.videos)
    empty = pred["colour"] == 0
    assert all((pred[name][empty] == 0).all() and (pred[name][~empty] > 0).all() for name in ce.HEADS)


def test_targets_mark_each_objects_cell_with_its_attributes(batch):
    targets = ce.clip_targets(batch)
    side = TINY.size // ce.DOWNSAMPLE
    for i in range(len(batch)):
        for f in range(TINY.frames):
            for k in torch.nonzero(batch.attrs["present"][i]).flatten().tolist():
                x, y = (batch.attrs["centers"][i, f, k] * side).long().clamp(0, side - 1).tolist()
                if sum(1 for j in range(batch.attrs["present"].shape[1]) if batch.attrs["present"][i, j]) == 1:
                    assert targets["colour"][i, f, y, x] == batch.attrs["colour"][i, k] + 1
                    assert targets["shape"][i, f, y, x] == batch.attrs["shape"][i, k] + 1
                    assert targets["direction"][i, f, y, x] == batch.attrs["direction"][i, f, k] + 1
                assert targets["colour"][i, f, y, x] > 0
        occupied = (targets["colour"][i] > 0).flatten(1).sum(1)
        assert (occupied >= 1).all() and (occupied <= batch.attrs["present"][i].sum()).all()


def test_bad_layout_names_b_t_c_h_w(tiny):
    with pytest.raises(ValueError, match="b t c h w"):
        tiny.features(torch.zeros(2, 3, TINY.frames, TINY.size, TINY.size))  # b c t h w
    for fn in (ce.freeze_frames, ce.shuffle_frames):
        with pytest.raises(ValueError, match="b t c h w"):
            fn(torch.zeros(2, 3, 16, 16))
    with pytest.raises(ValueError, match="size"):
        ce.ClipEvaluator(ce.ClipEvaluatorConfig(size=20))


def test_shuffle_keeps_each_clips_frames_and_is_seeded(batch):
    clips = batch.videos
    shuffled = ce.shuffle_frames(clips, seed=5)
    assert torch.equal(shuffled, ce.shuffle_frames(clips, seed=5))
    assert not torch.equal(shuffled, clips)
    for a, b in zip(clips, shuffled):
        assert sorted(f.numpy().tobytes() for f in a) == sorted(f.numpy().tobytes() for f in b)


def test_freeze_repeats_the_first_frame(batch):
    frozen = ce.freeze_frames(batch.videos)
    assert frozen.shape == batch.videos.shape
    assert torch.equal(frozen, batch.videos[:, :1].expand_as(frozen))


def test_per_frame_applies_an_image_function_to_every_frame(batch):
    blurred = ce.per_frame(degrade.gaussian_blur, batch.videos, 1.0)
    assert torch.allclose(blurred[2, 3], degrade.gaussian_blur(batch.videos[2, 3][None], 1.0)[0], atol=1e-6)


def test_per_frame_metric_cannot_see_a_shuffle(cache, batch):
    images = ev.load_evaluator(16, ev.EvaluatorConfig(size=16, width=4, cell_features=4, steps=2, batch_size=4))
    f = ce.frame_features(images, batch.videos)
    g = ce.frame_features(images, ce.shuffle_frames(batch.videos, seed=1))
    assert f.shape[0] == 12 * TINY.frames
    assert sorted(map(tuple, f.tolist())) == sorted(map(tuple, g.tolist()))
