"""Markdown tables: our runs beside the published rows for the same benchmark."""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from geodemo.eval.metrics import ACC_KEYS, THRESHOLDS_KM, accuracy_at, geoscore
from geodemo.eval.published import published_for

__all__ = ["markdown_table", "metrics_from_errors"]


def _pct(value: float | None) -> str:
    return "–" if value is None or not math.isfinite(value) else f"{100.0 * value:.2f}"


def _num(value: float | None, digits: int = 1) -> str:
    return "–" if value is None or not math.isfinite(value) else f"{value:,.{digits}f}"


def markdown_table(results: Mapping[str, Mapping[str, float]], benchmark: str, published: bool = True) -> str:
    """A Markdown table: one row per run in ``results`` (name -> :func:`accuracy_table` dict), then
    the published rows for ``benchmark``'s family. Accuracies in percent (strict ``<`` thresholds).
    """
    km = " | ".join(f"< {t:g} km" for t in THRESHOLDS_KM)
    lines = [
        f"**{benchmark}** — share of photos within each distance (%), great-circle error",
        "",
        f"| Method | Photos | {km} | Median km | GeoScore |",
        "|---|---:|" + "---:|" * len(THRESHOLDS_KM) + "---:|---:|",
    ]
    for name, m in results.items():
        accs = " | ".join(_pct(m.get(k)) for k in ACC_KEYS)
        lines.append(
            f"| **{name}** ({'recorded' if name.startswith('recorded:') else 'ours'}) | {int(m.get('n', 0))} | "
            f"{accs} | {_num(m.get('median_km'))} | "
            f"{_num(m.get('geoscore'), 0)} |"
        )
    rows = published_for(benchmark) if published else []
    for row in rows:
        mark = "" if row.verified else " †"
        accs = " | ".join(f"{a:.2f}" for a in row.acc)
        lines.append(f"| {row.method}, {row.venue}{mark} | paper ({row.benchmark}) | {accs} | – | – |")
    if rows:
        lines.append("")
        lines.append(
            f"Published rows are each paper's own figures on the full {rows[0].benchmark} test set; "
            "† = not re-checked against a second copy of the paper's table."
        )
    return "\n".join(lines)


def metrics_from_errors(err: np.ndarray) -> dict[str, float]:
    """The accuracy figures of a set of great-circle errors (NaN = no answer, a miss)."""
    e = np.where(np.isfinite(err), err, np.inf)
    out: dict[str, float] = {"n": int(len(e)), "n_failed": int((~np.isfinite(err)).sum())}
    for t in THRESHOLDS_KM:
        out[f"acc@{t:g}"] = accuracy_at(e, t)
    out["median_km"] = float(np.median(e)) if len(e) else float("nan")
    out["geoscore"] = float(np.mean(geoscore(np.minimum(e, 20_038.0)))) if len(e) else float("nan")
    return out
