"""Tests of the shapes world (genlib.data.shapes) and its renderer (genlib.data.render).

The ground truth the book's metrics rely on is checked against the pixels: every object's colour
sits at its centre, its painted area matches its shape and size, empty cells are background, and
the caption's facts (count, colours, relation) hold in the attributes and the true centres.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from genlib.data import captions, render, shapes
from genlib.data.captions import GRID, KINDS, Prompt, match_batch, parse_caption
from genlib.data.render import COLOURS, PALETTE, SHAPES

PROPERTY = settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
seeds = st.integers(min_value=0, max_value=2**32 - 1)
sizes = st.sampled_from(shapes.SIZES)

# Palette in the image range [-1, 1], one row per colour index.
PAL = torch.tensor([PALETTE[c] for c in COLOURS]) * 2 - 1
# Area of each shape in units of r^2 (from the SDFs in render.py): circle pi r^2; square of
# half-side 0.85 r; triangle of base 2r and height 1.8 r; cross of two 2r x 0.72r bars.
AREA = {"circle": math.pi, "square": 1.7**2, "triangle": 1.8, "cross": 2 * (2 * 0.72) - 0.72**2}


def same_batch(a: shapes.ShapesBatch, b: shapes.ShapesBatch) -> bool:
    return (
        torch.equal(a.images, b.images)
        and a.prompts == b.prompts
        and a.captions == b.captions
        and a.attrs.keys() == b.attrs.keys()
        and all(torch.equal(a.attrs[k], b.attrs[k]) for k in a.attrs if k != "centers")
        and torch.equal(a.attrs["centers"].nan_to_num(-7.0), b.attrs["centers"].nan_to_num(-7.0))
    )


def objects(batch: shapes.ShapesBatch, i: int):
    """(slot, cell, colour index, shape index, size index, (x, y) in pixels) of image i."""
    size = batch.images.shape[-1]
    out = []
    for slot, cell in enumerate(batch.attrs["slot_cell"][i].tolist()):
        if cell < 0:
            continue
        x, y = (batch.attrs["centers"][i, slot] * size).tolist()
        a = batch.attrs
        labels = [int(a[f"cell_{name}"][i, cell]) - 1 for name in ("colour", "shape", "size")]
        out.append((slot, cell, *labels, (x, y)))
    return out


def coverage(pixels: torch.Tensor, colour: int) -> torch.Tensor:
    """How much of ``colour`` over the black background each pixel holds (``3 ...`` -> ``...``)."""
    d = PAL[colour] + 1
    shape = (3,) + (1,) * (pixels.ndim - 1)
    return ((pixels + 1) * d.reshape(shape)).sum(0) / (d @ d)


# ----------------------------------------------------------------------------- determinism, layout


@PROPERTY
@given(seed=seeds, size=sizes)
def test_same_seed_same_batch_and_other_seed_differs(seed, size):
    a = shapes.sample(12, size=size, seed=seed)
    b = shapes.sample(12, size=size, seed=seed)
    assert same_batch(a, b)
    c = shapes.sample(12, size=size, seed=seed + 1)
    assert not torch.equal(a.images, c.images)
    assert a.captions != c.captions


@pytest.mark.parametrize("size", shapes.SIZES)
def test_images_shape_dtype_and_range(size):
    b = shapes.sample(20, size=size, seed=0)
    assert b.images.shape == (20, 3, size, size)
    assert b.images.dtype == torch.float32
    assert b.images.min() >= -1.0 and b.images.max() <= 1.0
    assert b.images.min() == -1.0  # background is black
    assert len(b) == 20 and len(b.prompts) == 20 and len(b.captions) == 20
    assert all(isinstance(p, Prompt) for p in b.prompts)
    for key, shape in {
        "cell_colour": (20, 9), "cell_shape": (20, 9), "cell_size": (20, 9), "count": (20,),
        "kind": (20,), "centers": (20, 3, 2), "slot_cell": (20, 3),
    }.items():
        assert b.attrs[key].shape == shape, key


def test_empty_sample():
    b = shapes.sample(0, size=32, seed=0)
    assert b.images.shape == (0, 3, 32, 32) and b.prompts == [] and len(b) == 0


def test_every_kind_colour_and_shape_occurs():
    b = shapes.sample(400, size=16, seed=0)
    assert set(p.kind for p in b.prompts) == set(KINDS)
    assert set(b.attrs["cell_colour"][b.attrs["cell_colour"] > 0].tolist()) == set(range(1, len(COLOURS) + 1))
    assert set(b.attrs["cell_shape"][b.attrs["cell_shape"] > 0].tolist()) == set(range(1, len(SHAPES) + 1))
    assert set(b.attrs["count"].tolist()) == {1, 2, 3}
    assert set(b.attrs["cell_size"][b.attrs["cell_size"] > 0].tolist()) == {1, 2}


# ----------------------------------------------------------------------------- attributes vs pixels


@PROPERTY
@given(seed=seeds, size=st.sampled_from([32, 64]))
def test_pixel_at_each_centre_has_the_objects_palette_colour(seed, size):
    b = shapes.sample(16, size=size, seed=seed)
    for i in range(len(b)):
        for _, _, colour, _, _, (x, y) in objects(b, i):
            pixel = b.images[i, :, int(y), int(x)]
            assert torch.allclose(pixel, PAL[colour], atol=1e-5), (i, x, y)


@PROPERTY
@given(seed=seeds)
def test_centre_pixel_at_16px_is_mostly_the_objects_colour(seed):
    # At 16 px a small triangle or cross is only ~1.4 px in radius: its centre pixel is partly
    # covered (measured >= 0.51). It is still a blend of exactly its colour and the background.
    b = shapes.sample(16, size=16, seed=seed)
    for i in range(len(b)):
        for _, _, colour, shape, _, (x, y) in objects(b, i):
            pixel = b.images[i, :, int(y), int(x)]
            cov = coverage(pixel, colour)
            assert cov > 0.5
            assert torch.allclose(pixel, -1 + (PAL[colour] + 1) * cov, atol=1e-5)
            if SHAPES[shape] in ("circle", "square"):
                assert cov == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("size,tol,mean_tol", [(32, 0.10, 0.05), (64, 0.05, 0.015)])
def test_painted_area_matches_shape_and_size(size, tol, mean_tol):
    """Each object's colour coverage inside its cell is its shape's area at its size's radius.

    Each object alone is within ``tol`` (a neighbour's anti-aliased edge may spill into the cell);
    the mean per (shape, size) is within ``mean_tol``, tighter than the 8% between a circle and
    a square of one radius, so a swapped shape or size label fails.
    """
    b = shapes.sample(150, size=size, seed=4)
    side = size / GRID
    errors: dict[tuple[int, int], list[float]] = {}
    for i in range(len(b)):
        for _, cell, colour, shape, obj_size, _ in objects(b, i):
            r = shapes.RADIUS[shapes.OBJECT_SIZES[obj_size]] * side
            row, col = divmod(cell, GRID)
            y0, y1, x0, x1 = (round(v) for v in (row * side, (row + 1) * side, col * side, (col + 1) * side))
            area = coverage(b.images[i, :, y0:y1, x0:x1], colour).sum().item()
            expected = AREA[SHAPES[shape]] * r * r
            assert abs(area / expected - 1) < tol, (i, cell, SHAPES[shape], area, expected)
            errors.setdefault((shape, obj_size), []).append(area / expected - 1)
    assert len(errors) == len(SHAPES) * len(shapes.OBJECT_SIZES)
    for key, errs in errors.items():
        assert abs(np.mean(errs)) < mean_tol, (key, np.mean(errs))


@PROPERTY
@given(seed=seeds, size=sizes)
def test_empty_cells_are_background_around_their_centre(seed, size):
    b = shapes.sample(16, size=size, seed=seed)
    side = size / GRID
    centres = np.arange(size) + 0.5
    for i in range(len(b)):
        for cell in range(GRID * GRID):
            if b.attrs["cell_colour"][i, cell] > 0:
                continue
            row, col = divmod(cell, GRID)
            ys = np.nonzero(np.abs(centres - (row + 0.5) * side) <= 0.25 * side)[0]
            xs = np.nonzero(np.abs(centres - (col + 0.5) * side) <= 0.25 * side)[0]
            assert len(ys) and len(xs)
            region = b.images[i][:, ys[0] : ys[-1] + 1, xs[0] : xs[-1] + 1]
            assert (region == -1).all(), (i, cell)


@PROPERTY
@given(seed=seeds)
def test_cell_labels_agree_with_slots_count_and_centres(seed):
    b = shapes.sample(32, size=32, seed=seed)
    a = b.attrs
    occupied = a["cell_colour"] > 0
    assert torch.equal(occupied, a["cell_shape"] > 0) and torch.equal(occupied, a["cell_size"] > 0)
    assert a["cell_colour"].max() <= len(COLOURS) and a["cell_shape"].max() <= len(SHAPES)
    assert a["cell_size"].max() <= len(shapes.OBJECT_SIZES)
    present = a["slot_cell"] >= 0
    assert torch.equal(a["count"], present.sum(1)) and torch.equal(a["count"], occupied.sum(1))
    assert torch.equal(torch.isnan(a["centers"]).any(-1), ~present)
    assert torch.equal(torch.isnan(a["centers"]).all(-1), ~present)
    for i in range(len(b)):
        cells = [c for c in a["slot_cell"][i].tolist() if c >= 0]
        assert len(set(cells)) == len(cells)  # distinct cells
        assert set(cells) == set(torch.nonzero(occupied[i]).flatten().tolist())
        assert a["slot_cell"][i, : len(cells)].ge(0).all()  # present slots come first
        assert a["kind"][i] == KINDS.index(b.prompts[i].kind)
        for slot, cell in enumerate(cells):
            x, y = a["centers"][i, slot].tolist()
            row, col = divmod(cell, GRID)
            # the centre lies within JITTER cell sides of its cell's centre
            assert abs(x * GRID - (col + 0.5)) <= shapes.JITTER + 1e-6
            assert abs(y * GRID - (row + 0.5)) <= shapes.JITTER + 1e-6


@PROPERTY
@given(seed=seeds)
def test_prompts_name_exactly_the_objects_in_the_scene(seed):
    b = shapes.sample(32, size=16, seed=seed)
    a = b.attrs
    for i, p in enumerate(b.prompts):
        assert len(p.objects) == a["count"][i]
        occupied = [c for c in range(9) if a["cell_colour"][i, c] > 0]
        truth = sorted((COLOURS[a["cell_colour"][i, c] - 1], SHAPES[a["cell_shape"][i, c] - 1]) for c in occupied)
        assert sorted(p.objects) == truth
        # slot order is prompt order
        for j, cell in enumerate(x for x in a["slot_cell"][i].tolist() if x >= 0):
            assert p.objects[j] == (COLOURS[a["cell_colour"][i, cell] - 1], SHAPES[a["cell_shape"][i, cell] - 1])


# ----------------------------------------------------------------------------- captions vs truth


@PROPERTY
@given(seed=seeds)
def test_captions_parse_back_and_ground_truth_matches(seed):
    b = shapes.sample(40, size=16, seed=seed)
    for p, text in zip(b.prompts, b.captions):
        assert parse_caption(text) == p
    assert match_batch(b.prompts, b.attrs["cell_colour"], b.attrs["cell_shape"]).all()


@PROPERTY
@given(seed=seeds)
def test_position_relation_holds_between_true_centres(seed):
    b = shapes.sample(24, size=32, seed=seed, kinds=["position"])
    assert all(p.kind == "position" for p in b.prompts)
    margin = (1 - 2 * shapes.JITTER) / GRID - 1e-6  # different rows/columns are this far apart
    for p, c in zip(b.prompts, b.attrs["centers"]):
        (x0, y0), (x1, y1) = c[0].tolist(), c[1].tolist()
        assert p.objects[0][0] != p.objects[1][0]  # two different colours
        gap = {"left of": x1 - x0, "right of": x0 - x1, "above": y1 - y0, "below": y0 - y1}[p.relation]
        assert gap >= margin, (p.text, c)


def test_all_four_relations_occur():
    b = shapes.sample(200, size=16, seed=0, kinds="position")
    assert {p.relation for p in b.prompts} == set(captions.RELATIONS)


@PROPERTY
@given(seed=seeds)
def test_count_prompts_repeat_one_object(seed):
    b = shapes.sample(24, size=16, seed=seed, kinds=["count"])
    a = b.attrs
    for i, p in enumerate(b.prompts):
        assert p.kind == "count" and len(set(p.objects)) == 1
        occupied = a["cell_colour"][i] > 0
        assert len(set(a["cell_colour"][i][occupied].tolist())) == 1
        assert len(set(a["cell_shape"][i][occupied].tolist())) == 1
        assert a["count"][i] == len(p.objects) == occupied.sum()


def test_colour_prompts_name_two_different_colours():
    b = shapes.sample(100, size=16, seed=1, kinds=["colour"])
    assert all(p.kind == "colour" and p.objects[0][0] != p.objects[1][0] for p in b.prompts)
    assert (b.attrs["count"] == 2).all()


@PROPERTY
@given(
    seed=seeds,
    colours=st.lists(st.sampled_from(COLOURS), min_size=2, max_size=4, unique=True),
    shape_names=st.lists(st.sampled_from(SHAPES), min_size=1, max_size=3, unique=True),
    kinds=st.lists(st.sampled_from(KINDS), min_size=1, max_size=4, unique=True),
)
def test_restrictions_are_honoured(seed, colours, shape_names, kinds):
    b = shapes.sample(24, size=32, seed=seed, colours=colours, shapes=shape_names, kinds=kinds)
    for p in b.prompts:
        assert p.kind in kinds
        assert all(c in colours and s in shape_names for c, s in p.objects)
    cc, cs = b.attrs["cell_colour"], b.attrs["cell_shape"]
    assert {COLOURS[c - 1] for c in cc[cc > 0].tolist()} <= set(colours)
    assert {SHAPES[s - 1] for s in cs[cs > 0].tolist()} <= set(shape_names)
    # the pixels agree: every object's centre pixel is one of the allowed palette colours
    allowed = PAL[[COLOURS.index(c) for c in colours]]
    for i in range(len(b)):
        for *_, (x, y) in objects(b, i):
            pixel = b.images[i, :, int(y), int(x)]
            assert (pixel - allowed).abs().amax(1).min() < 1e-5


def test_one_colour_works_for_shape_and_count_scenes():
    b = shapes.sample(30, size=16, seed=0, colours="green", kinds=["shape", "count"])
    assert {c for p in b.prompts for c, _ in p.objects} == {"green"}


# ----------------------------------------------------------------------------- errors


@pytest.mark.parametrize("size", [20, 0, 48, "32"])
def test_bad_size(size):
    with pytest.raises(ValueError, match="size must be one of 16, 32, 64"):
        shapes.sample(2, size=size)


def test_unknown_colour_lists_the_palette():
    with pytest.raises(ValueError, match="unknown colour 'pink'") as err:
        shapes.sample(2, colours=["red", "pink"])
    for name in COLOURS:
        assert name in str(err.value)


def test_unknown_shape_and_kind():
    with pytest.raises(ValueError, match="unknown shape 'hexagon'.*circle, square, triangle, cross"):
        shapes.sample(2, shapes=["hexagon"])
    with pytest.raises(ValueError, match="unknown prompt kind 'style'.*shape, colour, count, position"):
        shapes.sample(2, kinds=["style"])


@pytest.mark.parametrize("kinds", [None, ["colour"], ["position"], ["shape", "position"]])
def test_one_colour_with_two_colour_kinds(kinds):
    with pytest.raises(ValueError, match="at least two colours"):
        shapes.sample(2, colours=["red"], kinds=kinds)


@pytest.mark.parametrize("n", [-1, 2.0, "3", None])
def test_bad_n(n):
    with pytest.raises(ValueError, match="n must be a non-negative integer"):
        shapes.sample(n)


@pytest.mark.parametrize("arg", ["colours", "shapes", "kinds"])
def test_empty_restriction(arg):
    with pytest.raises(ValueError, match="at least one"):
        shapes.sample(2, **{arg: []})


# ----------------------------------------------------------------------------- batch and stream


def test_batch_indexing_and_slicing():
    b = shapes.sample(10, size=16, seed=3)
    one = b[4]
    assert len(one) == 1 and one.images.shape == (1, 3, 16, 16)
    assert torch.equal(one.images[0], b.images[4]) and one.prompts == [b.prompts[4]]
    assert one.captions == [b.captions[4]]
    for k, v in b.attrs.items():
        assert torch.equal(one.attrs[k].nan_to_num(-7), v[4:5].nan_to_num(-7)), k
    part = b[2:8:2]
    assert len(part) == 3 and part.prompts == [b.prompts[i] for i in (2, 4, 6)]
    assert torch.equal(part.images, b.images[2:8:2])
    assert torch.equal(part.attrs["cell_colour"], b.attrs["cell_colour"][2:8:2])
    last = b[-1]
    assert last.prompts == [b.prompts[-1]] and torch.equal(last.images[0], b.images[-1])
    picked = b[[1, 0]]
    assert picked.prompts == [b.prompts[1], b.prompts[0]]
    assert same_batch(b[:], b)
    with pytest.raises(IndexError):
        b[10]


def test_stream_is_deterministic_and_batches_differ():
    a, b, c = shapes.stream(8, size=16, seed=5), shapes.stream(8, size=16, seed=5), shapes.stream(8, size=16, seed=6)
    first = [next(a) for _ in range(3)]
    second = [next(b) for _ in range(3)]
    other = [next(c) for _ in range(3)]
    for x, y in zip(first, second):
        assert same_batch(x, y)
    assert not torch.equal(first[0].images, first[1].images)
    assert not torch.equal(first[1].images, first[2].images)
    for x, y in zip(first, other):
        assert not torch.equal(x.images, y.images)
    assert all(len(x) == 8 and x.images.shape[-1] == 16 for x in first)


def test_stream_passes_options_through():
    s = shapes.stream(6, size=32, seed=0, kinds=["count"], colours=["red"])
    for _ in range(2):
        batch = next(s)
        assert batch.images.shape == (6, 3, 32, 32)
        assert all(p.kind == "count" and p.objects[0][0] == "red" for p in batch.prompts)



def test_image_and_captioned_streams_are_the_streams_fields():
    stream = shapes.stream(4, size=16, seed=2)
    full = [next(stream), next(stream)]
    images = shapes.image_stream(4, size=16, seed=2)
    captioned = shapes.captioned_stream(4, size=16, seed=2)
    for batch in full:
        assert torch.equal(next(images), batch.images)
        x, texts = next(captioned)
        assert torch.equal(x, batch.images) and texts == batch.captions


# ----------------------------------------------------------------------------- render_objects


def _one(x, y, r, shape, colour="red", size=32):
    return render.render_objects(
        np.array([[[x, y]]]), np.array([[r]]), np.array([[SHAPES.index(shape)]]),
        np.array([[COLOURS.index(colour)]]), np.array([[True]]), size,
    )


@pytest.mark.parametrize(
    "shape,expected",
    [("circle", lambda r: math.pi * r * r), ("square", lambda r: (1.7 * r) ** 2)],
)
@pytest.mark.parametrize("r", [3.0, 5.5, 9.0])
def test_render_area_of_circle_and_square(shape, expected, r):
    img = _one(16.3, 15.8, r, shape)
    area = coverage(img[0], COLOURS.index("red")).sum().item()
    assert abs(area / expected(r) - 1) < 0.10, (area, expected(r))


@pytest.mark.parametrize("shape", SHAPES)
def test_render_colour_at_centre_and_black_far_away(shape):
    img = _one(10.0, 20.0, 6.0, shape, colour="blue")
    assert torch.allclose(img[0, :, 20, 10], PAL[COLOURS.index("blue")], atol=1e-6)
    assert (img[0, :, :, 20:] == -1).all()  # nothing right of x = 20
    assert (img[0, :, :10, :] == -1).all()  # nothing above y = 10 (apex of the triangle at y = 14)


def test_render_absent_slots_draw_nothing_and_later_slots_on_top():
    centers = np.array([[[16, 16], [16, 16]], [[8, 8], [24, 24]]], dtype=float)
    radii = np.full((2, 2), 6.0)
    shape_ids = np.zeros((2, 2), dtype=int)
    colour_ids = np.array([[0, 2], [1, 3]])
    present = np.array([[True, True], [False, False]])
    img = render.render_objects(centers, radii, shape_ids, colour_ids, present, 32)
    assert img.shape == (2, 3, 32, 32) and img.dtype == torch.float32
    assert torch.allclose(img[0, :, 16, 16], PAL[2])  # slot 1 (blue) over slot 0 (red)
    assert (img[1] == -1).all()


def test_render_zero_objects():
    ids = np.zeros((3, 0), int)
    img = render.render_objects(np.zeros((3, 0, 2)), np.zeros((3, 0)), ids, ids, ids.astype(bool), 16)
    assert img.shape == (3, 3, 16, 16) and (img == -1).all()


@pytest.mark.parametrize(
    "centers,radii,match",
    [
        (np.zeros((2, 3)), np.zeros((2, 3)), "centers must have layout 'b k 2'"),
        (np.zeros((2, 3, 3)), np.zeros((2, 3)), "centers must have layout 'b k 2'"),
        (np.zeros((2, 3, 2)), np.zeros((2, 2)), "radii must have layout 'b k'"),
        (np.zeros((2, 3, 2)), np.zeros((3,)), "radii must have layout 'b k'"),
    ],
)
def test_render_shape_errors(centers, radii, match):
    ids = np.zeros((2, 3), int)
    with pytest.raises(ValueError, match=match):
        render.render_objects(centers, radii, ids, ids, ids.astype(bool), 16)


@pytest.mark.parametrize("name", ["shape_ids", "colour_ids", "present"])
def test_render_label_shape_errors(name):
    args = dict(centers=np.zeros((2, 3, 2)), radii=np.ones((2, 3)), shape_ids=np.zeros((2, 3), int),
                colour_ids=np.zeros((2, 3), int), present=np.ones((2, 3), bool), size=16)
    args[name] = args[name][:, :2]
    with pytest.raises(ValueError, match=f"{name} must have layout 'b k' = \\(2, 3\\)"):
        render.render_objects(**args)


def test_colour_and_shape_index():
    assert [render.colour_index(c) for c in COLOURS] == list(range(len(COLOURS)))
    assert [render.shape_index(s) for s in SHAPES] == list(range(len(SHAPES)))
    with pytest.raises(ValueError, match="expected one of red, green"):
        render.colour_index("Red")
    with pytest.raises(ValueError, match="expected one of circle"):
        render.shape_index("circles")
