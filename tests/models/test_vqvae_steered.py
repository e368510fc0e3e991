"""Chapter 04's §4.5 data: ``steered_clips``, where a fresh action moves the shape at every frame,
and the next-code predictor with one past frame."""

import pytest
import torch

from genlib.data import moving
from genlib.models.vqvae import NextCodePredictor, PredictorConfig, steered_clips

# (rows, columns) that a move of 4 pixels in each of moving.DIRECTIONS shifts the image by
SHIFT = {"left": (0, -4), "right": (0, 4), "up": (-4, 0), "down": (4, 0)}


def test_layout_and_determinism():
    a, b = steered_clips(6, frames=5, seed=3), steered_clips(6, frames=5, seed=3)
    assert a.videos.shape == (6, 5, 3, 32, 32) and len(a.captions) == 6
    assert a.attrs["direction"].shape == (6, 5, 1) and a.attrs["centers"].shape == (6, 5, 1, 2)
    assert torch.equal(a.videos, b.videos) and torch.equal(a.attrs["direction"], b.attrs["direction"])
    assert not torch.equal(a.videos, steered_clips(6, frames=5, seed=4).videos)


def test_each_frame_is_the_last_one_moved_one_step_by_its_action():
    clips = steered_clips(40, frames=6, size=32, step=0.125, seed=1)
    actions = clips.attrs["direction"][:, :, 0]
    for i in range(len(clips)):
        for t in range(5):
            dy, dx = SHIFT[moving.DIRECTIONS[actions[i, t]]]
            before, after = clips.videos[i, t], clips.videos[i, t + 1]
            # after[y, x] == before[y - dy, x - dx] wherever both exist
            ys, xs = slice(max(dy, 0), 32 + min(dy, 0)), slice(max(dx, 0), 32 + min(dx, 0))
            ys0, xs0 = slice(max(-dy, 0), 32 + min(-dy, 0)), slice(max(-dx, 0), 32 + min(-dx, 0))
            assert torch.allclose(after[:, ys, xs], before[:, ys0, xs0], atol=1e-4), (i, t)


def test_moves_are_exact_and_stay_inside_the_frame():
    clips = steered_clips(300, frames=8, size=32, step=0.125, seed=2)
    centers = clips.attrs["centers"][:, :, 0] * 32  # b t xy, pixels
    step = centers[:, 1:] - centers[:, :-1]
    unit = torch.tensor([[-1.0, 0.0], [1.0, 0.0], [0.0, -1.0], [0.0, 1.0]])
    expected = 4.0 * unit[clips.attrs["direction"][:, :-1, 0]]
    assert torch.allclose(step, expected, atol=1e-4)
    radius = torch.tensor([moving.RADIUS[s] for s in ("small", "large")])[clips.attrs["size"][:, 0]] * 32
    assert (centers >= radius[:, None, None] - 1e-4).all() and (centers <= 32 - radius[:, None, None] + 1e-4).all()


def test_actions_are_drawn_from_all_four_moves_about_equally():
    actions = steered_clips(500, frames=8, seed=5).attrs["direction"].flatten()
    share = torch.bincount(actions, minlength=4).float() / actions.numel()
    assert share.min() > 0.2 and share.max() < 0.3  # uniform among allowed moves, mostly all four


def test_bad_arguments():
    with pytest.raises(ValueError, match="too long"):
        steered_clips(2, step=0.9)
    with pytest.raises(ValueError, match="non-negative"):
        steered_clips(-1)
    with pytest.raises(ValueError, match="positive"):
        steered_clips(2, frames=0)


def test_predictor_with_one_past_frame():
    p = NextCodePredictor(PredictorConfig(num_codes=16, past=1, width=16, layers=1))
    codes, action = torch.randint(16, (3, 1, 8, 8)), torch.randint(4, (3,))
    assert p(codes, action).shape == (3, 16, 8, 8)
    assert p.rollout(codes, torch.randint(4, (3, 4))).shape == (3, 4, 8, 8)
    with pytest.raises(ValueError, match="p = 1"):
        p(torch.randint(16, (3, 2, 8, 8)), action)
