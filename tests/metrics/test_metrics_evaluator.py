"""Tests of the shapes world's evaluator (genlib.metrics.evaluator): code paths and shapes of a
tiny trained evaluator, the zoo cache, and the scoring functions with a perfect (oracle)
predictor, where every score is known."""

from __future__ import annotations

import types

import pytest
import torch

from genlib import zoo
from genlib.data import captions, shapes
from genlib.data.render import COLOURS, SHAPES
from genlib.metrics import evaluator as ev

TINY = ev.EvaluatorConfig(size=32, width=4, cell_features=4, steps=30, batch_size=16, seed=3)
LABELS = ("cell_colour", "cell_shape", "cell_size")
ALL_KINDS = set(captions.KINDS) | {"all"}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny convolutions run ~10x faster on one thread than on two when the 2-core CI machine is
    busy (OpenMP threads wait on each other): 0.7 s vs 6.5 s to train the tiny evaluator."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """A cold cache of our own (the session's GENLIB_CACHE may hold other models) and the CPU."""
    root = tmp_path_factory.mktemp("evaluator-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GENLIB_CACHE", str(root))
        mp.setenv("GENLIB_DEVICE", "cpu")
        mp.setenv("GENLIB_PROFILE", "ci")
        mp.delenv("GENLIB_ZOO", raising=False)
        yield root


@pytest.fixture(scope="module")
def tiny(cache):
    assert not zoo.path_for("shapes-evaluator", TINY).exists()
    return ev.load_evaluator(32, TINY)


@pytest.fixture(scope="module")
def batch():
    return shapes.sample(64, size=32, seed=11)


def oracle(model: ev.ShapesEvaluator, truth: shapes.ShapesBatch, labels: dict | None = None) -> ev.ShapesEvaluator:
    """``model`` with ``predict`` replaced by a lookup of each image's ground truth (or of
    ``labels``, a corrupted copy of it)."""
    labels = labels or {k: truth.attrs[k] for k in LABELS}
    row = {img.numpy().tobytes(): i for i, img in enumerate(truth.images)}

    def predict(self, x):
        idx = torch.tensor([row[img.cpu().numpy().tobytes()] for img in x])
        return {k: labels[k][idx].clone() for k in LABELS}

    model.predict = types.MethodType(predict, model)
    return model


# ----------------------------------------------------------------------------- training and cache


def test_trains_once_then_loads_from_the_cache(tiny, cache, monkeypatch):
    path = zoo.path_for("shapes-evaluator", TINY)
    assert path.exists() and path.is_relative_to(cache) and path.name.startswith("ci-")
    assert isinstance(tiny, ev.ShapesEvaluator) and tiny.cfg == TINY and not tiny.training
    assert set(tiny.info) == {"history", "accuracy"}
    assert set(tiny.info["accuracy"]) == {"colour", "shape", "size", "count", "position"}

    def no_training(model):
        raise AssertionError("the evaluator was retrained on a cache hit")

    monkeypatch.setattr(ev, "train_evaluator", no_training)
    again = ev.load_evaluator(32, TINY)
    assert again is not tiny and again.info == tiny.info
    sa, sb = tiny.state_dict(), again.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_profile_presets(monkeypatch):
    monkeypatch.setenv("GENLIB_PROFILE", "ci")
    ci = ev.EvaluatorConfig.preset(16)
    assert ci.size == 16 and ci.steps < ev.EvaluatorConfig().steps
    monkeypatch.setenv("GENLIB_PROFILE", "gpu")
    assert ev.EvaluatorConfig.preset(64).size == 64
    assert ev.EvaluatorConfig.preset().steps > ci.steps


# ----------------------------------------------------------------------------- shapes of outputs


def test_forward_predict_and_class_probs_shapes(tiny, batch):
    x = batch.images[:5]
    logits = tiny(x)
    assert list(logits) == ["colour", "shape", "size"]
    assert logits["colour"].shape == (5, len(COLOURS) + 1, 9)
    assert logits["shape"].shape == (5, len(SHAPES) + 1, 9)
    assert logits["size"].shape == (5, len(shapes.OBJECT_SIZES) + 1, 9)
    pred = tiny.predict(x)
    assert set(pred) == set(LABELS)
    for k, top in zip(LABELS, (len(COLOURS), len(SHAPES), len(shapes.OBJECT_SIZES))):
        assert pred[k].shape == (5, 9) and pred[k].dtype == torch.int64
        assert pred[k].min() >= 0 and pred[k].max() <= top
    probs = tiny.class_probs(x)
    assert probs.shape == (5, len(COLOURS) * len(SHAPES))
    assert (probs >= 0).all() and torch.allclose(probs.sum(1), torch.ones(5), atol=1e-5)


def test_predicted_scenes_never_hold_half_an_object(tiny):
    x = torch.rand(16, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    x[:4] = -1  # blank images too
    pred = tiny.predict(x)
    empty = pred["cell_colour"] == 0
    assert torch.equal(empty, pred["cell_shape"] == 0) and torch.equal(empty, pred["cell_size"] == 0)


def test_features_shape_and_batching(tiny):
    x = shapes.sample(530, size=32, seed=2).images  # more than one internal batch of 512
    f = ev.features(tiny, x)
    assert f.shape == (530, 9 * TINY.cell_features) and f.dtype == torch.float32
    assert torch.allclose(f[-4:], tiny.features(x[-4:]), atol=1e-5)
    assert torch.allclose(f[:3], tiny.features(x[:3]), atol=1e-5)
    cells = tiny.cell_embeddings(x[:2])
    assert cells.shape == (2, 9, TINY.cell_features)
    assert torch.equal(cells.flatten(1), tiny.features(x[:2]))


@pytest.mark.parametrize("size,cell", [(16, 6), (32, 11), (64, 22)])
def test_untrained_evaluator_reads_every_size(size, cell):
    model = ev.ShapesEvaluator(ev.EvaluatorConfig(size=size, width=4, cell_features=4))
    assert model.cell == cell
    x = torch.zeros(2, 3, size, size)
    assert model.cells(x).shape == (2 * 9, 3, cell, cell)
    assert model(x)["colour"].shape == (2, len(COLOURS) + 1, 9)
    assert model.features(x).shape == (2, 36)


@pytest.mark.parametrize("size", [16, 32, 64])
def test_cells_are_row_major(size):
    model = ev.ShapesEvaluator(ev.EvaluatorConfig(size=size, width=4, cell_features=4))
    side = size / 3
    for cell in range(9):
        row, col = divmod(cell, 3)
        img = -torch.ones(1, 3, size, size)
        y, x = round((row + 0.5) * side), round((col + 0.5) * side)
        img[..., y - 1 : y + 1, x - 1 : x + 1] = 1.0  # a bright dot at the cell's centre
        bright = model.cells(img).flatten(1).amax(1) > -0.5
        assert bright.nonzero().flatten().tolist() == [cell]


# ----------------------------------------------------------------------------- predict, by hand


def test_predict_leaves_unoccupied_cells_empty_in_all_three_labels():
    model = ev.ShapesEvaluator(ev.EvaluatorConfig(size=32, width=4, cell_features=4))
    colour = torch.zeros(2, len(COLOURS) + 1, 9)
    shape = torch.zeros(2, len(SHAPES) + 1, 9)
    size = torch.zeros(2, 3, 9)
    occupied = torch.tensor([[1, 0, 0, 1, 0, 0, 0, 0, 1], [0] * 9], dtype=torch.bool)
    colour[:, 0] = torch.where(occupied, -5.0, 5.0)  # the empty class wins where not occupied
    colour[:, 3] = torch.where(occupied, 4.0, 0.0)  # colour index 2 where occupied
    # the shape and size heads think *every* cell is empty (class 0), with a runner-up
    shape[:, 0], shape[:, 2] = 9.0, 1.0
    size[:, 0], size[:, 2] = 9.0, 1.0
    # ... and in unoccupied cells they are sure of a non-empty class
    shape[:, 4] = torch.where(occupied, 0.0, 20.0)
    size[:, 1] = torch.where(occupied, 0.0, 20.0)
    model.forward = lambda x: {"colour": colour, "shape": shape, "size": size}
    pred = model.predict(torch.zeros(2, 3, 32, 32))
    expected = {"cell_colour": 3, "cell_shape": 2, "cell_size": 2}
    for k, label in expected.items():
        assert torch.equal(pred[k], torch.where(occupied, label, 0)), k


def test_class_probs_of_a_one_object_scene_is_its_class():
    model = ev.ShapesEvaluator(ev.EvaluatorConfig(size=32, width=4, cell_features=4))
    colour = torch.full((1, 7, 9), -30.0)
    shape = torch.full((1, 5, 9), -30.0)
    colour[:, 0] = 30.0  # all cells empty ...
    colour[0, :, 4] = -30.0
    colour[0, 1 + 2, 4] = 30.0  # ... but the centre: colour 2 ('blue')
    shape[0, 1 + 3, :] = 30.0  # shape 3 ('cross')
    model.forward = lambda x: {"colour": colour, "shape": shape, "size": torch.zeros(1, 3, 9)}
    probs = model.class_probs(torch.zeros(1, 3, 32, 32))
    assert probs.argmax().item() == 2 * len(SHAPES) + 3 and probs.max() > 0.99


# ----------------------------------------------------------------------------- scores


def test_attribute_and_prompt_accuracy_keys_and_range(tiny, batch):
    acc = ev.attribute_accuracy(tiny, batch)
    assert set(acc) == {"colour", "shape", "size", "count", "position"}
    assert all(0.0 <= v <= 1.0 for v in acc.values())
    pa = ev.prompt_accuracy(tiny, batch.images, batch.prompts)
    assert set(pa) == ALL_KINDS
    assert all(0.0 <= v <= 1.0 for v in pa.values())
    assert pa == ev.prompt_accuracy(tiny, batch.images, batch.captions)  # strings are parsed
    only = shapes.sample(8, size=32, seed=0, kinds=["count"])
    assert set(ev.prompt_accuracy(tiny, only.images, only.prompts)) == {"count", "all"}


def test_perfect_predictions_score_one_everywhere(batch):
    model = oracle(ev.ShapesEvaluator(ev.EvaluatorConfig(size=32, width=4, cell_features=4)), batch)
    assert ev.attribute_accuracy(model, batch) == {k: 1.0 for k in ("colour", "shape", "size", "count", "position")}
    assert ev.prompt_accuracy(model, batch.images, batch.prompts) == {k: 1.0 for k in ALL_KINDS}


def test_swapped_colours_lower_the_colour_prompt_accuracy():
    truth = shapes.sample(60, size=32, seed=5, kinds=["colour", "shape"])
    labels = {k: truth.attrs[k].clone() for k in LABELS}
    same_shape = []
    for i, p in enumerate(truth.prompts):
        if p.kind != "colour":
            continue
        a, b = truth.attrs["slot_cell"][i, :2].tolist()
        cc = labels["cell_colour"][i]
        cc[a], cc[b] = cc[b].item(), cc[a].item()
        same_shape.append(p.objects[0][1] == p.objects[1][1])
    assert 0 < len(same_shape) < 60
    model = oracle(ev.ShapesEvaluator(ev.EvaluatorConfig(size=32, width=4, cell_features=4)), truth, labels)
    pa = ev.prompt_accuracy(model, truth.images, truth.prompts)
    # a swap goes unnoticed only when both objects have the same shape
    assert pa["colour"] == pytest.approx(sum(same_shape) / len(same_shape))
    assert pa["colour"] < 1.0 and pa["shape"] == 1.0
    acc = ev.attribute_accuracy(model, truth)
    assert acc["colour"] < 1.0 and acc["shape"] == acc["size"] == acc["count"] == acc["position"] == 1.0


def test_a_missing_object_lowers_count_and_position():
    truth = shapes.sample(40, size=32, seed=6, kinds=["count"])
    labels = {k: truth.attrs[k].clone() for k in LABELS}
    dropped = 0
    for i in range(0, 40, 2):  # erase the first object of every other scene
        cell = truth.attrs["slot_cell"][i, 0]
        for k in LABELS:
            labels[k][i, cell] = 0
        dropped += 1
    model = oracle(ev.ShapesEvaluator(ev.EvaluatorConfig(size=32, width=4, cell_features=4)), truth, labels)
    acc = ev.attribute_accuracy(model, truth)
    assert acc["count"] == pytest.approx(1 - dropped / 40) and acc["position"] == pytest.approx(1 - dropped / 40)
    assert ev.prompt_accuracy(model, truth.images, truth.prompts)["count"] == pytest.approx(1 - dropped / 40)


def test_a_moved_object_lowers_position_but_not_count():
    truth = shapes.sample(30, size=32, seed=8, kinds=["shape"])
    labels = {k: truth.attrs[k].clone() for k in LABELS}
    for i in range(10):  # move the only object of the first 10 scenes to the next cell
        cell = truth.attrs["slot_cell"][i, 0].item()
        for k in LABELS:
            labels[k][i, (cell + 1) % 9], labels[k][i, cell] = labels[k][i, cell].item(), 0
    model = oracle(ev.ShapesEvaluator(ev.EvaluatorConfig(size=32, width=4, cell_features=4)), truth, labels)
    acc = ev.attribute_accuracy(model, truth)
    assert acc["count"] == 1.0 and acc["position"] == pytest.approx(20 / 30)
    # colour, shape and size are read at the true object's cell, which is now empty
    assert acc["colour"] == acc["shape"] == acc["size"] == pytest.approx(20 / 30)
    assert ev.prompt_accuracy(model, truth.images, truth.prompts)["shape"] == 1.0  # a shape prompt ignores where


# ----------------------------------------------------------------------------- errors


@pytest.mark.parametrize("shape", [(2, 3, 16, 16), (2, 1, 32, 32), (3, 32, 32), (2, 3, 32, 31)])
def test_wrong_input_size(shape):
    model = ev.ShapesEvaluator(ev.EvaluatorConfig(size=32, width=4, cell_features=4))
    with pytest.raises(ValueError, match=r"the evaluator reads images 'b 3 32 32' in \[-1, 1\], got shape"):
        model(torch.zeros(shape))


def test_bad_config_size():
    with pytest.raises(ValueError, match="size must be one of"):
        ev.ShapesEvaluator(ev.EvaluatorConfig(size=20))


def test_prompt_accuracy_needs_one_prompt_per_image(batch):
    model = ev.ShapesEvaluator(ev.EvaluatorConfig(size=32, width=4, cell_features=4))
    with pytest.raises(ValueError, match="one prompt per image, got 3 prompts for 4 images"):
        ev.prompt_accuracy(model, batch.images[:4], batch.prompts[:3])
    with pytest.raises(ValueError, match="outside the shapes grammar"):
        ev.prompt_accuracy(model, batch.images[:1], ["a dog"])


def test_feature_maps_are_the_trunk_stages_per_cell():
    model = ev.ShapesEvaluator(ev.EvaluatorConfig(width=4, cell_features=4))
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    maps = model.feature_maps(x)
    assert [tuple(m.shape) for m in maps] == [(18, 4, 11, 11), (18, 8, 6, 6), (18, 8, 6, 6), (18, 16, 3, 3)]
    torch.testing.assert_close(maps[-1], model.trunk(model.cells(x)))
