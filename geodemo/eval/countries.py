"""Accuracy per country: which countries a method places well, from the bundled country outlines.

Each photo's true and predicted points are joined to the Natural Earth outlines
(:func:`geodemo.data.countries.countries_at`, GeoPandas); photos are grouped by their true country.
A row says how many photos the country has, the share answered inside that same country (a
polygon test, not a distance), the share strictly under each distance threshold, and the median
error. ``scripts/evaluate.py`` writes the table of a run as ``countries.csv``
(:func:`write_country_table`) and its map as ``countries.html`` (:mod:`geodemo.viz.country_map`)
beside ``summary.json``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from geodemo.data.countries import NO_COUNTRY, countries_at
from geodemo.eval.harness import read_predictions
from geodemo.eval.metrics import ACC_KEYS, THRESHOLDS_KM, distances_km
from geodemo.storage import write_text

__all__ = ["AT_SEA", "COUNTRY_COLUMNS", "country_accuracy", "run_country_accuracy", "write_country_table"]

#: The row of photos whose true point lies in no country (open sea, or outside the coarse outlines).
AT_SEA = "(no country)"
COUNTRY_COLUMNS = ("country", "photos", "same_country", *ACC_KEYS, "median_km")


def country_accuracy(pred: np.ndarray, truth: np.ndarray, max_km: float = 50.0) -> pd.DataFrame:
    """One row per true country of ``(N, 2)`` [lat, lon] ``truth``, most photos first (ties by name).

    ``pred`` rows may be NaN (no answer): such a photo is in no country and charged the
    maximum error, as in :func:`geodemo.eval.metrics.distances_km`.
    """
    pred = np.asarray(pred, dtype=np.float64).reshape(-1, 2)
    truth = np.asarray(truth, dtype=np.float64).reshape(-1, 2)
    errors = distances_km(pred, truth)
    true_country = countries_at(truth, max_km)
    pred_country = countries_at(pred, max_km)
    frame = pd.DataFrame({"country": [c or AT_SEA for c in true_country], "error_km": errors,
                          "same": [t != NO_COUNTRY and t == p for t, p in zip(true_country, pred_country, strict=True)]})
    rows = []
    for country, group in frame.groupby("country", sort=False):
        err = group["error_km"].to_numpy()
        rows.append({"country": country, "photos": len(group), "same_country": float(group["same"].mean()),
                     **{k: float((err < t).mean()) for k, t in zip(ACC_KEYS, THRESHOLDS_KM, strict=True)},
                     "median_km": float(np.median(err))})
    table = pd.DataFrame(rows, columns=list(COUNTRY_COLUMNS))
    return table.sort_values(["photos", "country"], ascending=[False, True], ignore_index=True)


def run_country_accuracy(run_dir: str | Path) -> pd.DataFrame:
    """:func:`country_accuracy` of a run folder's ``predictions.csv`` (unreadable photos left out, as
    in its ``summary.json``)."""
    rows = [r for r in read_predictions(Path(run_dir) / "predictions.csv").values()
            if not r["error"].startswith("unreadable image")]

    def number(text: str | None) -> float:
        return float(text) if text not in ("", None) else np.nan

    pred = np.array([[number(r["pred_lat"]), number(r["pred_lon"])] for r in rows]).reshape(-1, 2)
    truth = np.array([[number(r["true_lat"]), number(r["true_lon"])] for r in rows]).reshape(-1, 2)
    return country_accuracy(pred, truth)


def write_country_table(run_dir: str | Path) -> tuple[pd.DataFrame, Path]:
    """The run's :func:`run_country_accuracy` table, also written to ``run_dir/countries.csv``."""
    table = run_country_accuracy(run_dir)
    path = Path(run_dir) / "countries.csv"
    write_text(path, table.to_csv(index=False, float_format="%.4f"))
    return table, path
