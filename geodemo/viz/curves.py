"""Accuracy-against-distance curves: one line per method, the share of photos within each distance."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from geodemo.eval.metrics import THRESHOLDS_KM
from geodemo.storage import atomic_path

__all__ = ["accuracy_curve", "save_accuracy_curves"]

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
