"""Accuracy-against-distance curves: one line per method, the share of photos within each distance;
finished runs compared in one table beside their curves."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from geodemo.eval.harness import read_predictions
from geodemo.eval.metrics import THRESHOLDS_KM
from geodemo.eval.report import markdown_table, metrics_from_errors
from geodemo.storage import atomic_path

__all__ = ["accuracy_curve", "save_accuracy_curves", "compare_runs"]

_GRID_KM = np.logspace(0, np.log10(20_038.0), 200)  # 1 km to half the Earth's circumference


def accuracy_curve(errors_km: np.ndarray, grid_km: np.ndarray = _GRID_KM) -> np.ndarray:
    """Share of photos whose error is strictly under each distance of ``grid_km`` (NaN errors are misses)."""
    e = np.asarray(errors_km, dtype=np.float64)
    e = np.where(np.isfinite(e), e, np.inf)
    if e.size == 0:
        return np.zeros(len(grid_km))
    return (e[None, :] < np.asarray(grid_km)[:, None]).mean(axis=1)


def save_accuracy_curves(errors: Mapping[str, np.ndarray], path: str | Path, title: str = "") -> Path:
    """A PNG of :func:`accuracy_curve` for every named set of errors (log distance axis, the benchmark
    thresholds marked), written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5), dpi=100)
    for name, err in errors.items():
        ax.plot(_GRID_KM, 100 * accuracy_curve(err), label=f"{name} ({len(err)} photos)", linewidth=1.6)
    for t in THRESHOLDS_KM:
        ax.axvline(t, color="0.85", linewidth=0.8, zorder=0)
    ax.set_xscale("log")
    ax.set_xlim(1, 20_038)
    ax.set_ylim(0, 100)
    ax.set_xlabel("great-circle error (km)")
    ax.set_ylabel("photos within the distance (%)")
    ax.set_title(title or "accuracy against distance")
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return out


def compare_runs(folder: str | Path, benchmark: str) -> tuple[str, Path]:
    """Every finished run under ``folder`` (one sub-folder per predictor, as ``scripts/evaluate.py`` writes
    them) in one table beside the published rows, and their accuracy-against-distance curves saved as
    ``folder/curves.png``. Runs are compared as they are: each row says on how many photos it was scored."""
    root = Path(folder)
    metrics, errors = {}, {}
    for run in sorted(p for p in root.iterdir() if (p / "summary.json").is_file()):
        summary = json.loads((run / "summary.json").read_text())
        rows = read_predictions(run / "predictions.csv")
        if not rows:
            continue
        name = str(summary.get("predictor") or run.name)
        err = np.array([float(r["error_km"]) if r["error_km"] not in ("", None) else np.nan for r in rows.values()])
        errors[name] = err
        metrics[name] = metrics_from_errors(err)
    curves = save_accuracy_curves(errors, root / "curves.png", title=f"{benchmark}: accuracy against distance")
    return markdown_table(metrics, benchmark), curves
