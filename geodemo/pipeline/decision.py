"""The one place that turns a photo's evidence into the reported answer, ``confidence`` and ``uncertainty_km``.

**confidence** is the calibrated probability that the answer lies within ``radius_km`` (25 km,
city level) of where the photo was taken. It is a logistic function of evidence every preset has:

* ``support_25km``  share of the retrieved neighbours' similarity mass within 25 km of the answer;
* ``support_200km`` the same within 200 km (region level);
* ``reciprocal_match`` 1 when the answer is a gallery photo accepted as a reciprocal neighbour.

The weights are fitted on the IM2GPS3k dev split (``scripts/calibrate_confidence.py``: the
``offline`` preset's answers with each photo's photographer left out of the gallery, regularisation
chosen by photographer-fold cross-validated log-loss) and stored with their provenance in
``geodemo/pipeline/calibration/<name>.json``.

**uncertainty_km** is the median great-circle distance from the answer to the other best evidence:
the next ``top`` candidates by verifier score, or, when no verifier scored them (DualGeo's rule:
the LMM's answer is final), the first ``top`` re-ranked neighbours; at least 1 km.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from geodemo.geo import haversine_km

__all__ = ["CALIBRATION_DIR", "FEATURES", "Calibration", "confidence_features", "confidence",
           "uncertainty_km", "load_calibration"]

CALIBRATION_DIR = Path(__file__).with_name("calibration")
FEATURES = ("support_25km", "support_200km", "reciprocal_match")


def _support(answer: np.ndarray, coords: np.ndarray, sims: np.ndarray, radius_km: float) -> float:
    if len(coords) == 0:
        return 0.0
    w = np.clip(np.asarray(sims, dtype=np.float64), 0.0, None)
    if w.sum() <= 0:
        w = np.ones(len(coords))
    near = haversine_km(np.asarray(coords, dtype=np.float64), np.asarray(answer, dtype=np.float64)[None, :]) <= radius_km
    return float((w * near).sum() / w.sum())


def confidence_features(answer: tuple[float, float], neighbour_coords: np.ndarray,
                        neighbour_similarities: np.ndarray, reciprocal_match: bool) -> np.ndarray:
    """The evidence vector (in ``FEATURES`` order) behind the confidence of one answer."""
    a = np.asarray(answer, dtype=np.float64)
    if not np.all(np.isfinite(a)):
        return np.zeros(len(FEATURES))
    nb = np.asarray(neighbour_coords, dtype=np.float64).reshape(-1, 2)
    return np.array([
        _support(a, nb, neighbour_similarities, 25.0),
        _support(a, nb, neighbour_similarities, 200.0),
        float(bool(reciprocal_match)),
    ])


@dataclass
class Calibration:
    """Logistic map from :data:`FEATURES` to P(error < ``radius_km``), with where it came from."""

    radius_km: float
    features: list[str]
    coef: list[float]
    intercept: float
    provenance: dict[str, Any] = field(default_factory=dict)

    def probability(self, x: np.ndarray) -> float:
        if list(self.features) != list(FEATURES):
            raise ValueError(f"calibration features {self.features} do not match {list(FEATURES)}")
        z = float(self.intercept + np.dot(self.coef, np.asarray(x, dtype=np.float64)))
        return float(1.0 / (1.0 + math.exp(-z)))

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2) + "\n")
        tmp.replace(path)
        return path


@lru_cache(maxsize=8)
def load_calibration(name_or_path: str) -> Calibration:
    """A calibration by name (``geodemo/pipeline/calibration/<name>.json``) or JSON path."""
    path = Path(name_or_path)
    if path.suffix != ".json":
        path = CALIBRATION_DIR / f"{name_or_path}.json"
    if not path.is_file():
        known = sorted(p.stem for p in CALIBRATION_DIR.glob("*.json"))
        raise FileNotFoundError(f"no confidence calibration {name_or_path!r}; known: {', '.join(known) or 'none'}; "
                                "fit one with scripts/calibrate_confidence.py")
    data = json.loads(path.read_text())
    return Calibration(float(data["radius_km"]), list(data["features"]), [float(c) for c in data["coef"]],
                       float(data["intercept"]), dict(data.get("provenance") or {}))


def confidence(features: np.ndarray, calibration: Calibration) -> float:
    """P(the answer is within ``calibration.radius_km``) for the evidence vector ``features``."""
    return calibration.probability(features)


def uncertainty_km(answer: tuple[float, float], candidate_coords: np.ndarray, scores: np.ndarray | None,
                   best: int | None, neighbour_coords: np.ndarray, top: int = 5, floor_km: float = 1.0,
                   fallback_km: float = 50.0) -> float:
    """Median distance from ``answer`` to the next ``top`` scored candidates (or, without scores, to
    the first ``top`` neighbours), at least ``floor_km``; ``fallback_km`` when there is no other evidence."""
    a = np.asarray(answer, dtype=np.float64)
    if not np.all(np.isfinite(a)):
        return math.nan
    if scores is not None and len(scores):
        order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")[:top]
        others = np.asarray(candidate_coords, dtype=np.float64).reshape(-1, 2)[[i for i in order.tolist() if i != best]]
    else:
        others = np.asarray(neighbour_coords, dtype=np.float64).reshape(-1, 2)[:top]
    if len(others) == 0:
        return float(fallback_km)
    return float(max(np.median(haversine_km(others, a[None, :])), floor_km))


def result_features(result: Any) -> np.ndarray:
    """:func:`confidence_features` of a finished :class:`~geodemo.result.LocationResult` (or its dict)."""
    r = result.to_dict() if hasattr(result, "to_dict") else result
    nb = r.get("neighbours") or []
    match = r.get("match") or {}
    accepted = bool(match) and match.get("reciprocal_rank", 1) < match.get("k", 0) and str(
        r.get("verifier", "")).startswith("reciprocal")
    lat, lon = r.get("lat"), r.get("lon")
    answer = (math.nan if lat is None else lat, math.nan if lon is None else lon)
    return confidence_features(answer, np.array([[n["lat"], n["lon"]] for n in nb]).reshape(-1, 2),
                               np.array([n["similarity"] for n in nb]), accepted)


def fit_calibration(x: np.ndarray, hit: np.ndarray, folds: np.ndarray, radius_km: float = 25.0,
                    c_grid: tuple[float, ...] = (0.01, 0.1, 1.0, 10.0, 100.0),
                    provenance: dict[str, Any] | None = None) -> tuple[Calibration, dict[str, Any]]:
    """Logistic calibration of ``hit`` (answer within ``radius_km``) on evidence ``x`` (N, F).

    The inverse regularisation ``C`` is chosen by photographer-fold cross-validated log-loss (each
    fold's photos predicted by a fit on the other folds); the returned calibration is refitted on
    every photo. The report holds the chosen ``C`` and the out-of-fold log-loss, Brier score and
    expected calibration error (10 bins) of that choice, next to the base rate's.
    """
    from sklearn.linear_model import LogisticRegression

    x, y, folds = np.asarray(x, np.float64), np.asarray(hit, bool).astype(int), np.asarray(folds)

    def out_of_fold(c: float) -> np.ndarray:
        p = np.zeros(len(y))
        for k in np.unique(folds):
            train, test = folds != k, folds == k
            if len(np.unique(y[train])) < 2:
                p[test] = y[train].mean()
                continue
            p[test] = LogisticRegression(C=c, max_iter=1000).fit(x[train], y[train]).predict_proba(x[test])[:, 1]
        return np.clip(p, 1e-6, 1 - 1e-6)

    def log_loss(p: np.ndarray) -> float:
        return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))

    def ece(p: np.ndarray, bins: int = 10) -> float:
        idx = np.minimum((p * bins).astype(int), bins - 1)
        return float(sum(abs(p[idx == b].mean() - y[idx == b].mean()) * (idx == b).mean()
                         for b in range(bins) if (idx == b).any()))

    scores = {c: log_loss(out_of_fold(c)) for c in c_grid}
    best_c = min(scores, key=scores.get)
    p = out_of_fold(best_c)
    base = np.full(len(y), np.clip(y.mean(), 1e-6, 1 - 1e-6))
    model = LogisticRegression(C=best_c, max_iter=1000).fit(x, y)
    report = {"C": best_c, "cv_log_loss_by_C": {str(c): round(v, 5) for c, v in scores.items()},
              "cv_log_loss": round(log_loss(p), 5), "cv_brier": round(float(np.mean((p - y) ** 2)), 5),
              "cv_ece": round(ece(p), 5), "base_rate": round(float(y.mean()), 5),
              "base_rate_log_loss": round(log_loss(base), 5), "photos": int(len(y)),
              "folds": int(len(np.unique(folds)))}
    cal = Calibration(float(radius_km), list(FEATURES), [float(v) for v in model.coef_[0]],
                      float(model.intercept_[0]), {**(provenance or {}), "fit": report})
    return cal, report
