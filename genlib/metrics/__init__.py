"""Metrics: the Fréchet distance of eq. 1 (:mod:`frechet`), the Inception-Score-style score
(:mod:`inception_score`), and the shapes world's evaluator whose features and heads they read
(:mod:`evaluator`), a referee for generated digits (:mod:`digits_judge`), and a reader of the
palette colours a frame shows (:mod:`colours`)."""

from . import colours, digits_judge, evaluator, frechet, inception_score
