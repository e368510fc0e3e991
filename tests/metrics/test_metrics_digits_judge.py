"""The digits referee: accurate on real held-out digits, layout checked."""

import pytest
import torch

from genlib.data import digits
from genlib.metrics.digits_judge import digits_judge


def test_judge_reads_real_test_digits():
    judge = digits_judge(16)
    x, y = digits.load(16, "test")
    assert judge.test_accuracy > 0.9
    assert judge.accuracy(x, y) == pytest.approx(judge.test_accuracy)
    assert judge.predict(x[:5]).dtype == torch.int64
    # a shuffled label set is mostly wrong: the accuracy measures agreement, not a constant
    assert judge.accuracy(x, (y + 1) % 10) < 0.1


def test_judge_checks_layouts():
    judge = digits_judge(16)
    with pytest.raises(ValueError, match=r"b 1 h w = \(b, 1, 16, 16\)"):
        judge.predict(torch.zeros(2, 1, 8, 8))
    with pytest.raises(ValueError, match="labels must have layout b"):
        judge.accuracy(torch.zeros(2, 1, 16, 16), torch.zeros(3, dtype=torch.long))
