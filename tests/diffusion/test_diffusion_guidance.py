"""genlib.diffusion.guidance.drop_condition: condition dropout for classifier-free guidance."""

import pytest
import torch

from genlib.diffusion.guidance import drop_condition


def test_labels_are_replaced_by_the_null_label_at_rate_p():
    labels = torch.randint(10, (20_000,), generator=torch.Generator().manual_seed(0))
    assert torch.equal(drop_condition(labels, 10, 0.0), labels)
    assert bool((drop_condition(labels, 10, 1.0) == 10).all())
    out = drop_condition(labels, 10, 0.1, generator=torch.Generator().manual_seed(1))
    dropped = out == 10
    assert abs(dropped.float().mean().item() - 0.1) < 0.01
    assert torch.equal(out[~dropped], labels[~dropped])


def test_contexts_are_replaced_row_by_row():
    ctx, null = torch.randn(64, 5, 3), torch.zeros(5, 3)
    out = drop_condition(ctx, null, 0.5, generator=torch.Generator().manual_seed(2))
    dropped = (out == 0).flatten(1).all(1)
    assert 0 < int(dropped.sum()) < 64
    assert torch.equal(out[~dropped], ctx[~dropped])
    same = drop_condition(ctx, null[None], 0.5, generator=torch.Generator().manual_seed(2))
    assert torch.equal(same, out)


def test_bad_input_is_named():
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        drop_condition(torch.zeros(3, dtype=torch.long), 10, 1.5)
    with pytest.raises(ValueError, match="one label"):
        drop_condition(torch.zeros(3, dtype=torch.long), torch.zeros(1), 0.5)
    with pytest.raises(ValueError, match="b n d"):
        drop_condition(torch.zeros(3, 5, 4), torch.zeros(4, 5), 0.5)
