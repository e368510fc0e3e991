"""Tests of the toy 2-D worlds and the mode-coverage score."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from genlib.data import toy2d

WORLDS = sorted(toy2d.WORLDS)


@pytest.mark.parametrize("name", WORLDS)
def test_same_seed_same_points_other_seed_other_points(name):
    x1, y1 = toy2d.sample(name, 300, seed=7)
    x2, y2 = toy2d.sample(name, 300, seed=7)
    x3, _ = toy2d.sample(name, 300, seed=8)
    assert torch.equal(x1, x2) and torch.equal(y1, y2)
    assert not torch.equal(x1, x3)


@settings(max_examples=40, deadline=None)
@given(name=st.sampled_from(WORLDS), n=st.integers(0, 400), seed=st.integers(0, 2**63))
def test_any_n_and_seed_gives_n_finite_points_in_the_box(name, n, seed):
    x, y = toy2d.sample(name, n, seed=seed)
    assert x.shape == (n, 2) and x.dtype == torch.float32
    assert y.shape == (n,)
    assert torch.isfinite(x).all()
    assert x.abs().max().item() < 3.5 if n else True  # roughly [-2, 2]^2 plus noise


@pytest.mark.parametrize(
    "world, centers",
    [(toy2d.ring, toy2d.ring_centers()), (toy2d.grid, toy2d.grid_centers())],
)
def test_mode_index_is_the_nearest_centre(world, centers):
    x, mode = world(2000, seed=3)
    assert mode.dtype == torch.int64
    index, distance = toy2d.nearest_mode(x, centers)
    assert torch.equal(index, mode)
    assert distance.max() < 6 * 0.05
    counts = torch.bincount(mode, minlength=len(centers)).double()
    assert counts.min() > 0.5 * counts.mean()  # every mode has about the same weight


def test_centres_lie_where_the_docstrings_say():
    ring = toy2d.ring_centers(modes=4, radius=3.0)
    assert torch.allclose(ring, torch.tensor([[3.0, 0.0], [0.0, 3.0], [-3.0, 0.0], [0.0, -3.0]]), atol=1e-6)
    grid = toy2d.grid_centers(side=5)
    assert grid.shape == (25, 2)
    assert torch.equal(grid[0], torch.tensor([-2.0, -2.0])) and torch.equal(grid[7], torch.tensor([0.0, -1.0]))


def test_checkerboard_points_sit_on_their_dark_square():
    squares = 4
    x, square = toy2d.checkerboard(3000, squares=squares, seed=1)
    w = 4.0 / squares
    col = torch.floor((x[:, 0] + 2) / w).long().clamp(0, squares - 1)
    row = torch.floor((x[:, 1] + 2) / w).long().clamp(0, squares - 1)
    assert torch.equal(row * squares + col, square)
    assert ((row + col) % 2 == 0).all()
    assert len(torch.unique(square)) == squares * squares // 2


def test_moons_and_spiral_labels_split_the_points():
    x, moon = toy2d.moons(2000, noise=0.0, seed=0)
    # noiseless: upper moon points (shifted back and unscaled) lie on the unit circle
    upper = x[moon == 0] / 1.5 + torch.tensor([0.5, 0.25])
    assert torch.allclose(upper.norm(dim=1), torch.ones(len(upper)), atol=1e-5)
    _, arm = toy2d.spiral(1000, arms=3, seed=0)
    assert set(arm.tolist()) == {0, 1, 2}


def test_swiss_roll_ground_truth_is_the_position_along_the_roll():
    x, u = toy2d.swiss_roll_2d(1000, noise=0.0, seed=0)
    assert u.dtype == torch.float32 and 0 <= u.min() and u.max() <= 1
    radius = x.norm(dim=1)
    expected = (2 / (4.5 * math.pi)) * 1.5 * math.pi * (1 + 2 * u)
    assert torch.allclose(radius, expected, atol=1e-5)


def test_sample_names_the_known_worlds_and_options():
    with pytest.raises(ValueError, match="known worlds: ring, grid, moons"):
        toy2d.sample("rings", 10)
    with pytest.raises(ValueError, match="takes modes, radius, std; got unknown sigma"):
        toy2d.sample("ring", 10, sigma=0.1)
    x, y = toy2d.sample("ring", 10, seed=2, modes=3)
    assert int(y.max()) <= 2


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: toy2d.ring(-1), "n must be an integer >= 0"),
        (lambda: toy2d.ring(10, std=-0.1), "std must be >= 0"),
        (lambda: toy2d.ring(10, seed=-1), "seed must be an integer >= 0"),
        (lambda: toy2d.ring(10, seed=1.5), "seed must be an integer"),
        (lambda: toy2d.grid(10, side=0), "side must be an integer >= 1"),
        (lambda: toy2d.checkerboard(10, squares=1), "squares must be an integer >= 2"),
    ],
)
def test_bad_arguments_are_named(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_mode_coverage_full_collapsed_and_off_target():
    centers, std = toy2d.ring_centers(8), 0.05
    x, mode = toy2d.ring(4000, std=std, seed=0)
    full = toy2d.mode_coverage(x, centers, std)
    assert full.modes_covered == 8 and full.covered.all()
    # within 3 std in 2-D: 1 - exp(-9/2) = 0.989 of a Gaussian's mass
    assert abs(full.high_quality - (1 - math.exp(-4.5))) < 0.01
    assert int(full.counts.sum()) == round(full.high_quality * 4000)

    collapsed = toy2d.mode_coverage(x[mode < 3], centers, std)
    assert collapsed.modes_covered == 3
    assert collapsed.covered.tolist() == [True] * 3 + [False] * 5

    off = toy2d.mode_coverage(x * 0.5, centers, std)  # all points halfway to the centre
    assert off.modes_covered == 0 and off.high_quality == 0.0

    strict = toy2d.mode_coverage(x[:40], centers, std, min_count=10)
    assert strict.modes_covered < 8


def test_mode_coverage_checks_layouts():
    with pytest.raises(ValueError, match="points must be a tensor laid out 'n d'"):
        toy2d.mode_coverage(torch.zeros(10), toy2d.ring_centers(), 0.05)
    with pytest.raises(ValueError, match="same d"):
        toy2d.mode_coverage(torch.zeros(10, 3), toy2d.ring_centers(), 0.05)
    with pytest.raises(ValueError, match="std must be > 0"):
        toy2d.mode_coverage(torch.zeros(10, 2), toy2d.ring_centers(), 0.0)
    empty = toy2d.mode_coverage(torch.zeros(0, 2), toy2d.ring_centers(), 0.05)
    assert empty.modes_covered == 0 and empty.high_quality == 0.0
    assert np.array_equal(empty.counts.numpy(), np.zeros(8))
