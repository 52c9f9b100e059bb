"""Geo-localization metrics as pure functions: the papers' accuracy thresholds, errors and GeoScore.

Accuracy at ``t`` km is the share of photos whose great-circle error is *strictly* below ``t``
(IM2GPS protocol: 1 km street, 25 km city, 200 km region, 750 km country, 2500 km continent).
Values are fractions in [0, 1]; tables print them as percentages.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from geodemo.geo import EARTH_RADIUS_KM, geodesic_km, haversine_km

__all__ = [
    "THRESHOLDS_KM",
    "SCALE_NAMES",
    "ACC_KEYS",
    "MAX_ERROR_KM",
    "GEOSCORE_SCALE_KM",
    "distances_km",
    "geoscore",
    "accuracy_at",
    "accuracy_table",
]

THRESHOLDS_KM: tuple[float, ...] = (1.0, 25.0, 200.0, 750.0, 2500.0)
SCALE_NAMES: dict[float, str] = {1.0: "street", 25.0: "city", 200.0: "region", 750.0: "country", 2500.0: "continent"}
#: Keys of :func:`accuracy_table` holding the accuracies, in threshold order.
ACC_KEYS: tuple[str, ...] = tuple(f"acc@{int(t)}" for t in THRESHOLDS_KM)
#: Error charged for a photo without a usable prediction (NaN): half the Earth's circumference.
MAX_ERROR_KM = math.pi * EARTH_RADIUS_KM
#: GeoGuessr's score decay: 5000 * exp(-d / 1492.7) points for an error of d km.
GEOSCORE_SCALE_KM = 1492.7


def distances_km(pred: Any, truth: Any, method: str = "haversine") -> np.ndarray:
    """Per-photo error in km between ``(N, 2)`` [lat, lon] predictions and ground truth.

    A prediction with NaN (no answer) gets :data:`MAX_ERROR_KM` rather than being dropped or
    silently replaced by (0, 0). ``method`` is ``"haversine"`` (sphere) or ``"geodesic"`` (WGS-84).
    """
    p = np.asarray(pred, dtype=np.float64).reshape(-1, 2)
    t = np.asarray(truth, dtype=np.float64).reshape(-1, 2)
    if p.shape != t.shape:
        raise ValueError(f"{len(p)} predictions for {len(t)} ground-truth points")
    if not np.isfinite(t).all():
        raise ValueError("ground truth contains NaN or infinite coordinates")
    ok = np.isfinite(p).all(axis=1)
    out = np.full(len(p), MAX_ERROR_KM, dtype=np.float64)
    if ok.any():
        if method == "haversine":
            out[ok] = haversine_km(p[ok], t[ok])
        elif method == "geodesic":
            out[ok] = geodesic_km(p[ok], t[ok])
        else:
            raise ValueError(f"unknown distance method {method!r}; use 'haversine' or 'geodesic'")
    return out


def geoscore(distance_km: Any) -> np.ndarray:
    """GeoScore of each error: ``5000 * exp(-d / 1492.7)`` (5000 for a perfect guess)."""
    return 5000.0 * np.exp(-np.asarray(distance_km, dtype=np.float64) / GEOSCORE_SCALE_KM)


def accuracy_at(distance_km: Any, threshold_km: float) -> float:
    """Share of errors strictly below ``threshold_km`` (NaN for an empty set)."""
    d = np.asarray(distance_km, dtype=np.float64)
    return float(np.mean(d < threshold_km)) if d.size else math.nan


def accuracy_table(
    pred: Any,
    truth: Any,
    thresholds: tuple[float, ...] = THRESHOLDS_KM,
    method: str = "haversine",
) -> dict[str, float]:
    """All headline figures for one run.

    Returns ``{"n", "n_failed", "acc@1", "acc@25", "acc@200", "acc@750", "acc@2500",
    "median_km", "mean_km", "geoscore"}``; accuracies are fractions, ``geoscore`` is the mean score
    and ``n_failed`` counts NaN predictions (charged :data:`MAX_ERROR_KM`).
    """
    p = np.asarray(pred, dtype=np.float64).reshape(-1, 2)
    d = distances_km(p, truth, method=method)
    table: dict[str, float] = {"n": int(len(d)), "n_failed": int((~np.isfinite(p).all(axis=1)).sum())}
    for t in thresholds:
        table[f"acc@{t:g}"] = accuracy_at(d, t)
    table["median_km"] = float(np.median(d)) if d.size else math.nan
    table["mean_km"] = float(np.mean(d)) if d.size else math.nan
    table["geoscore"] = float(np.mean(geoscore(d))) if d.size else math.nan
    return table
