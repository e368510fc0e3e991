"""Inception-Score-style score from a classifier's predicted class probabilities.

With ``p(y|x_i)`` the classifier's distribution over classes for image ``x_i`` and
``p(y) = 1/N sum_i p(y|x_i)`` the marginal over the generated set,

    IS = exp( 1/N sum_i KL( p(y|x_i) || p(y) ) )

The mean KL equals the mutual information between image and label,
``I(x; y) = H(y) - E_x H(y|x)``: the entropy of the marginal (high when the set covers many
classes) minus the average entropy of each prediction (low when every image is clearly one class).
So ``1 <= IS <= number of classes``: 1 when every prediction is the same or every prediction is
uniform, K when each image is one clear class and the K classes are used equally.

The survey's description is loose here: the marginal ``p(y)`` is not a "conditional entropy", and
IS is not "the exponential of the sum of these two terms" but of their *difference*, ``H(y) -
E H(y|x)``. The chapter shows both numerically.
"""

from __future__ import annotations

import math

import torch


def _checked(probs: torch.Tensor) -> torch.Tensor:
    """``probs`` as float64, after checking it is ``n k`` rows of probabilities."""
    if probs.ndim != 2 or probs.shape[0] == 0:
        raise ValueError(f"probs must have layout 'n k' (images x classes) with n >= 1, got shape {tuple(probs.shape)}")
    p = probs.detach().to(torch.float64)
    if (p < 0).any() or not torch.allclose(p.sum(1), torch.ones(p.shape[0], dtype=torch.float64), atol=1e-4):
        raise ValueError("probs must be probabilities: non-negative rows that sum to 1 (apply softmax first)")
    return p


def inception_score(probs: torch.Tensor, splits: int = 1) -> tuple[float, float]:
    """IS of predicted probabilities ``n k`` (rows sum to 1); returns (mean, std over splits).

    ``splits > 1`` follows the original recipe: the set is cut into that many equal parts, IS is
    computed on each, and the mean and standard deviation are reported.
    """
    p = _checked(probs)
    if not 1 <= splits <= p.shape[0]:
        raise ValueError(f"splits must be between 1 and the number of images ({p.shape[0]}), got {splits}")
    scores = []
    for part in torch.tensor_split(p, splits):
        marginal = part.mean(0, keepdim=True)
        # KL(p(y|x) || p(y)); 0 log 0 = 0.
        kl = torch.where(part > 0, part * (part.clamp_min(1e-300).log() - marginal.clamp_min(1e-300).log()), 0.0).sum(1)
        scores.append(math.exp(kl.mean().item()))
    scores_t = torch.tensor(scores, dtype=torch.float64)
    # Population standard deviation (ddof = 0), as in the original recipe.
    return float(scores_t.mean()), float(scores_t.std(correction=0))


def entropy_terms(probs: torch.Tensor) -> tuple[float, float]:
    """(H(y), E_x H(y|x)) in nats: ``log IS`` is their difference (for ``splits=1``)."""
    p = _checked(probs)
    plogp = torch.where(p > 0, p * p.clamp_min(1e-300).log(), 0.0)
    marginal = p.mean(0)
    h_marginal = -torch.where(marginal > 0, marginal * marginal.clamp_min(1e-300).log(), 0.0).sum()
    return float(h_marginal), float(-plogp.sum(1).mean())
