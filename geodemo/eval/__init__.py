"""Benchmark evaluation: metrics, the resumable harness, published reference rows and baselines.

>>> from geodemo.data import load_benchmark
>>> from geodemo.eval import create_predictor, evaluate
>>> dev = load_benchmark("im2gps3k-dev")
>>> report = evaluate(create_predictor("density-prior", dev), dev, "runs/density", limit=50)
>>> report.metrics["acc@2500"]
"""

from geodemo.eval.harness import EvalReport, Predictor, QueryPhoto, evaluate, read_predictions
from geodemo.eval.metrics import ACC_KEYS, THRESHOLDS_KM, accuracy_table, distances_km, geoscore
from geodemo.eval.predictors import create_predictor, list_predictors, register_predictor
from geodemo.eval.published import PUBLISHED, PublishedResult, published_for
from geodemo.eval.report import markdown_table

__all__ = [
    "ACC_KEYS",
    "EvalReport",
    "PUBLISHED",
    "Predictor",
    "PublishedResult",
    "QueryPhoto",
    "THRESHOLDS_KM",
    "accuracy_table",
    "create_predictor",
    "distances_km",
    "evaluate",
    "geoscore",
    "list_predictors",
    "markdown_table",
    "published_for",
    "read_predictions",
    "register_predictor",
]
