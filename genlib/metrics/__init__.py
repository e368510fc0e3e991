"""Metrics: the Fréchet distance of eq. 1 (:mod:`frechet`), the Inception-Score-style score
(:mod:`inception_score`), and the shapes world's evaluator whose features and heads they read
(:mod:`evaluator`)."""

from . import evaluator, frechet, inception_score
