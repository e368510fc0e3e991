"""genlib.models.code_prior: the code sequence, eq. 10's loss, and the sliding-window sampler."""

import math

import pytest
import torch

from genlib.models.code_prior import CodePrior, CodePriorConfig, random_crops, window_origin


def _prior(h=3, w=4, codes=10, conditions=3):
    torch.manual_seed(0)
    return CodePrior(CodePriorConfig(num_codes=codes, num_conditions=conditions, height=h, width=w, dim=16, heads=2, layers=2))


def test_sequence_layout_and_loss_is_mean_nll():
    prior = _prior()
    maps, cond = torch.randint(10, (5, 3, 4)), torch.tensor([0, 1, 2, 0, 1])
    tokens = prior.sequence(maps, cond)
    assert tokens.shape == (5, 13) and torch.equal(tokens[:, 0], 10 + cond) and torch.equal(tokens[:, 1:], maps.flatten(1))
    torch.testing.assert_close(prior.nll(maps, cond).mean() / 12, prior.loss(maps, cond).detach())
    # an untrained prior is close to uniform over K + C tokens
    assert abs(prior.loss(maps, cond).item() - math.log(13)) < 0.5


@pytest.mark.parametrize("seed", range(3))
def test_window_sampler_on_the_window_is_plain_autoregressive_sampling(seed):
    prior = _prior()
    cond = torch.tensor([2, 0, 1, 1])
    a = prior.sample(cond, generator=torch.Generator().manual_seed(seed))
    b = prior.gpt.generate((10 + cond)[:, None], 12, vocab=10, generator=torch.Generator().manual_seed(seed))
    assert a.shape == (4, 3, 4) and torch.equal(a.flatten(1), b[:, 1:])


def test_window_origin_keeps_the_position_inside_and_centred_where_it_can():
    for H, W, h, w in ((5, 9, 3, 4), (8, 24, 8, 8), (3, 4, 3, 4)):
        for i in range(H):
            for j in range(W):
                top, left = window_origin(i, j, (H, W), (h, w))
                assert 0 <= top <= H - h and 0 <= left <= W - w
                assert top <= i < top + h and left <= j < left + w
                if h // 2 <= i < H - (h - h // 2) + 1:
                    assert i - top == h // 2
                if w // 2 <= j <= W - w + w // 2:
                    assert j - left == w // 2


def test_sampler_on_a_larger_canvas_feeds_at_most_one_window(monkeypatch):
    prior = _prior(h=3, w=4)
    lengths = []
    forward = prior.gpt.forward
    monkeypatch.setattr(prior.gpt, "forward", lambda tokens: lengths.append(tokens.shape[1]) or forward(tokens))
    canvas = prior.sample(torch.tensor([1, 2]), 5, 9, generator=torch.Generator().manual_seed(0))
    assert canvas.shape == (2, 5, 9) and int(canvas.max()) < 10
    assert len(lengths) == 45 and max(lengths) <= prior.cfg.gpt().block_size and min(lengths) == 1
    with pytest.raises(ValueError, match="at least the 3x4 window"):
        prior.sample(torch.tensor([1]), 2, 9)


def test_random_crops_are_crops():
    maps = torch.arange(2 * 5 * 7).reshape(2, 5, 7)
    crops, which = random_crops(maps, 3, 4, 20, torch.Generator().manual_seed(0))
    assert crops.shape == (20, 3, 4)
    for crop, w in zip(crops, which):
        top, left = divmod(int(crop[0, 0]) - 35 * int(w), 7)
        assert torch.equal(crop, maps[w, top:top + 3, left:left + 4])


def test_bad_input_is_named():
    prior = _prior()
    with pytest.raises(ValueError, match="b h w with h, w = 3, 4"):
        prior.loss(torch.zeros(2, 4, 4, dtype=torch.long), torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match=r"\[0, 2\]"):
        prior.loss(torch.zeros(2, 3, 4, dtype=torch.long), torch.tensor([0, 3]))
    with pytest.raises(ValueError, match=r"\[0, 9\]"):
        prior.loss(torch.full((2, 3, 4), 10), torch.zeros(2, dtype=torch.long))
