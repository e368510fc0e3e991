"""Metrics: Fréchet distance (eq. 1), the Inception-Score-style score, and the shapes world's
evaluator whose features and heads they read."""

from .evaluator import (
    EvaluatorConfig,
    ShapesEvaluator,
    attribute_accuracy,
    features,
    load_evaluator,
    prompt_accuracy,
)
from .frechet import frechet_distance, frechet_distance_features, gaussian_stats
from .inception_score import entropy_terms, inception_score
