"""A referee for generated digits: a classifier trained on the real digits' pixels.

A conditional generator asked for a "7" should draw something a classifier of real digits calls a
7. The referee is multinomial logistic regression (scikit-learn) on the flattened pixels of the
digits' train split, at the size the generator draws: simple, fitted in about a second, and
accurate on held-out real digits (its test accuracy, :attr:`DigitsJudge.test_accuracy`, is roughly
what a generator matching the data would score; one drawing only easy digits can score higher). Like the shapes evaluator it is a
stand-in for the Inception network of the papers, and says nothing about sample quality beyond
"which class does this look like".
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

from genlib.data import digits


@dataclass(frozen=True)
class DigitsJudge:
    """Predicts the digit in ``b 1 size size`` images in [-1, 1]."""

    model: object
    size: int
    test_accuracy: float

    def predict(self, images: torch.Tensor) -> torch.Tensor:
        """Labels ``b`` (int64) for ``images: b 1 size size``."""
        if images.ndim != 4 or images.shape[1:] != (1, self.size, self.size):
            raise ValueError(f"the judge expects images of layout b 1 h w = (b, 1, {self.size}, {self.size}), "
                             f"got {tuple(images.shape)}")
        flat = images.detach().float().cpu().flatten(1).numpy()
        return torch.from_numpy(np.asarray(self.model.predict(flat), dtype=np.int64))

    def accuracy(self, images: torch.Tensor, labels: torch.Tensor) -> float:
        """The share of ``images`` the judge labels as ``labels``."""
        if labels.shape != (len(images),):
            raise ValueError(f"labels must have layout b = ({len(images)},), got {tuple(labels.shape)}")
        return float((self.predict(images) == labels.cpu()).float().mean())


@lru_cache(maxsize=4)
def digits_judge(size: int = 16, seed: int = 0) -> DigitsJudge:
    """The referee for ``size x size`` digits, fitted on the train split of ``seed`` (cached)."""
    from sklearn.linear_model import LogisticRegression

    x, y = digits.load(size, "train", seed=seed)
    xt, yt = digits.load(size, "test", seed=seed)
    model = LogisticRegression(max_iter=3000).fit(x.flatten(1).numpy(), y.numpy())
    return DigitsJudge(model, size, float(model.score(xt.flatten(1).numpy(), yt.numpy())))
