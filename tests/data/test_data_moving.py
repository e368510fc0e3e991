"""Tests of the moving-shapes world (genlib.data.moving): layout, determinism, the physics of the
bounce, and captions that name each object's first-frame direction."""

from __future__ import annotations

import re

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from genlib.data import moving
from genlib.data.moving import DIRECTIONS
from genlib.data.render import COLOURS, PALETTE, SHAPES
from genlib.data.shapes import OBJECT_SIZES

PROPERTY = settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
seeds = st.integers(min_value=0, max_value=2**32 - 1)
UNIT = torch.tensor([[-1.0, 0.0], [1.0, 0.0], [0.0, -1.0], [0.0, 1.0]])  # left right up down (y down)
OPPOSITE = {0: 1, 1: 0, 2: 3, 3: 2}
PAL = torch.tensor([PALETTE[c] for c in COLOURS]) * 2 - 1


def radius_frac(batch: moving.MovingBatch) -> torch.Tensor:
    """``b k`` object radius as a fraction of the side (0 in empty slots)."""
    r = torch.tensor([moving.RADIUS[s] for s in OBJECT_SIZES])
    size = batch.attrs["size"]
    return torch.where(size >= 0, r[size.clamp_min(0)], torch.zeros(()))


def same(a: moving.MovingBatch, b: moving.MovingBatch) -> bool:
    return torch.equal(a.videos, b.videos) and a.captions == b.captions and all(torch.equal(a.attrs[k], b.attrs[k]) for k in a.attrs)


@pytest.mark.parametrize("size", [16, 32, 64])
@pytest.mark.parametrize("frames,k", [(1, 1), (5, 2), (3, 3)])
def test_layout(size, frames, k):
    b = moving.sample(4, frames=frames, size=size, seed=0, max_objects=k)
    assert b.videos.shape == (4, frames, 3, size, size) and b.videos.dtype == torch.float32
    assert b.videos.min() >= -1 and b.videos.max() <= 1
    assert len(b) == 4 and len(b.captions) == 4
    for key in ("colour", "shape", "size", "present"):
        assert b.attrs[key].shape == (4, k), key
    assert b.attrs["present"].dtype == torch.bool
    assert b.attrs["centers"].shape == (4, frames, k, 2)
    assert b.attrs["direction"].shape == (4, frames, k)


@PROPERTY
@given(seed=seeds)
def test_deterministic_for_a_seed(seed):
    a = moving.sample(6, frames=4, size=16, seed=seed)
    assert same(a, moving.sample(6, frames=4, size=16, seed=seed))
    assert not torch.equal(a.videos, moving.sample(6, frames=4, size=16, seed=seed + 1).videos)


@PROPERTY
@given(seed=seeds, k=st.integers(1, 3))
def test_slots_and_labels(seed, k):
    b = moving.sample(16, frames=3, size=16, seed=seed, max_objects=k)
    a = b.attrs
    present = a["present"]
    assert present[:, 0].all()  # at least one object, present slots first
    assert torch.equal(present, torch.sort(present.int(), dim=1, descending=True).values.bool())
    for key in ("colour", "shape", "size"):
        assert torch.equal(a[key] < 0, ~present), key
    assert torch.equal(a["direction"] < 0, ~present[:, None, :].expand_as(a["direction"]))
    assert a["colour"].max() < len(COLOURS) and a["shape"].max() < len(SHAPES) and a["size"].max() < len(OBJECT_SIZES)
    for i in range(len(b)):
        colours = a["colour"][i][present[i]].tolist()
        assert len(set(colours)) == len(colours)  # different colours per clip


def test_object_counts_cover_the_range():
    b = moving.sample(60, frames=1, size=16, seed=0, max_objects=3)
    assert set(b.attrs["present"].sum(1).tolist()) == {1, 2, 3}


@PROPERTY
@given(seed=seeds, size=st.sampled_from([16, 32, 64]))
def test_objects_stay_inside_the_frame(seed, size):
    b = moving.sample(12, frames=24, size=size, seed=seed, max_objects=3)
    r = radius_frac(b)[:, None, :, None]  # b 1 k 1
    c = b.attrs["centers"]
    present = b.attrs["present"][:, None, :, None].expand_as(c)
    eps = 1e-5
    assert ((c >= r - eps) & (c <= 1 - r + eps))[present].all()


@PROPERTY
@given(seed=seeds)
def test_motion_between_frames_follows_the_direction(seed):
    """Without a bounce an object moves along its direction, by its constant speed, on one axis."""
    b = moving.sample(16, frames=12, size=32, seed=seed, max_objects=2)
    c, d, present = b.attrs["centers"], b.attrs["direction"], b.attrs["present"]
    steps = 0
    for i in range(len(b)):
        for j in range(present.shape[1]):
            if not present[i, j]:
                continue
            speeds = []
            for f in range(c.shape[1] - 1):
                if d[i, f, j] != d[i, f + 1, j]:
                    continue  # a bounce happened in this step
                delta = c[i, f + 1, j] - c[i, f, j]
                along = delta @ UNIT[d[i, f, j]]
                assert along > 0, (i, j, f)
                assert torch.allclose(delta, along * UNIT[d[i, f, j]], atol=1e-5)  # no sideways motion
                speeds.append(along.item())
                steps += 1
            if speeds:
                assert max(speeds) - min(speeds) < 1e-4  # constant speed
                assert moving.SPEED[0] - 1e-5 <= speeds[0] <= moving.SPEED[1] + 1e-5
    assert steps > 0


def test_bounce_flips_direction_at_a_wall():
    b = moving.sample(64, frames=32, size=32, seed=1, max_objects=2)
    c, d, present = b.attrs["centers"], b.attrs["direction"], b.attrs["present"]
    r = radius_frac(b)
    bounces = 0
    for i, f, j in torch.nonzero(d[:, 1:] != d[:, :-1]).tolist():
        assert present[i, j]
        before, after = d[i, f, j].item(), d[i, f + 1, j].item()
        assert after == OPPOSITE[before], (i, f, j)  # reversed, never turned
        # it hit the wall it was moving towards: that wall is within one step of the new centre
        axis = 0 if before in (0, 1) else 1
        wall = r[i, j] if before in (0, 2) else 1 - r[i, j]
        assert abs(c[i, f + 1, j, axis] - wall) <= moving.SPEED[1] + 1e-5
        # and the centre moved by less than one step along the old direction, then came back
        assert (c[i, f + 1, j] - c[i, f, j]) @ UNIT[before] < moving.SPEED[1]
        bounces += 1
    assert bounces > 10


def test_bounce_reflects_about_the_wall():
    """Between frames a bounce keeps the distance travelled: |step| = speed, reflected."""
    b = moving.sample(64, frames=32, size=32, seed=2, max_objects=1)
    c, d = b.attrs["centers"][:, :, 0], b.attrs["direction"][:, :, 0]
    r = radius_frac(b)[:, 0]
    checked = 0
    for i in range(len(b)):
        speeds = [((c[i, f + 1] - c[i, f]) @ UNIT[d[i, f]]).item() for f in range(c.shape[1] - 1) if d[i, f] == d[i, f + 1]]
        if not speeds:
            continue
        speed = speeds[0]
        for f in range(c.shape[1] - 1):
            if d[i, f] == d[i, f + 1]:
                continue
            u = UNIT[d[i, f]]
            axis = 0 if u[0] != 0 else 1
            wall = (1 - r[i]) if u[axis] > 0 else r[i]
            # unreflected position overshoots the wall by as much as the reflected one falls short
            overshoot = (c[i, f, axis] + speed * u[axis] - wall).abs()
            shortfall = (c[i, f + 1, axis] - wall).abs()
            assert abs(overshoot - shortfall) < 1e-4
            checked += 1
    assert checked > 5


@PROPERTY
@given(seed=seeds)
def test_caption_names_objects_and_first_frame_directions(seed):
    b = moving.sample(12, frames=6, size=16, seed=seed, max_objects=3)
    a = b.attrs
    pattern = re.compile(rf"^a ({'|'.join(COLOURS)}) ({'|'.join(SHAPES)}) moving ({'|'.join(DIRECTIONS)})$")
    for i, caption in enumerate(b.captions):
        parts = caption.split(" and ")
        assert len(parts) == a["present"][i].sum()
        for j, part in enumerate(parts):
            m = pattern.match(part)
            assert m, part
            assert m.groups() == (COLOURS[a["colour"][i, j]], SHAPES[a["shape"][i, j]], DIRECTIONS[a["direction"][i, 0, j]])


def test_first_frame_pixels_show_the_objects():
    b = moving.sample(20, frames=2, size=64, seed=0, max_objects=1)
    for i in range(len(b)):
        x, y = (b.attrs["centers"][i, 0, 0] * 64).tolist()
        pixel = b.videos[i, 0, :, int(y), int(x)]
        assert torch.allclose(pixel, PAL[b.attrs["colour"][i, 0]], atol=1e-5)
        assert (b.videos[i, 0, :, 0, 0] == -1).all() or (b.videos[i, 0, :, -1, -1] == -1).all()


def test_frames_differ_and_one_frame_clip_has_no_motion():
    b = moving.sample(5, frames=3, size=32, seed=0)
    assert not torch.equal(b.videos[:, 0], b.videos[:, 1])
    one = moving.sample(5, frames=1, size=32, seed=0)
    assert torch.equal(one.videos[:, 0], b.videos[:, 0])  # the first frame does not depend on length
    assert one.captions == b.captions


def test_empty_sample():
    b = moving.sample(0, frames=3, size=16)
    assert b.videos.shape == (0, 3, 3, 16, 16) and b.captions == []


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(n=-1), "n must be a non-negative integer"),
        (dict(n=2.5), "n must be a non-negative integer"),
        (dict(n=2, size=20), "size must be one of 16, 32, 64"),
        (dict(n=2, frames=0), "frames must be a positive integer"),
        (dict(n=2, frames=2.0), "frames must be a positive integer"),
        (dict(n=2, max_objects=0), "max_objects must be 1, 2 or 3"),
        (dict(n=2, max_objects=4), "max_objects must be 1, 2 or 3"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        moving.sample(**kwargs)
