"""The benchmark harness: run any :class:`Predictor` over a :class:`GeoDataset` and score it.

``evaluate`` feeds photos to the predictor in batches (the predictor never sees ground truth),
appends one CSV row per photo as it goes, and writes ``summary.json`` and ``table.md`` at the end.
Re-running with the same ``out_dir`` skips the photos already in ``predictions.csv``, so a long
run that was interrupted resumes where it stopped. A run killed mid-row leaves a torn last line:
it is dropped on resume and that photo is predicted again (rows that do not parse are redone too).
"""

from __future__ import annotations

import csv
import io
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from geodemo.data.dataset import GeoDataset, GeoSample
from geodemo.eval.metrics import accuracy_table, distances_km, geoscore
from geodemo.eval.report import markdown_table
from geodemo.eval.results import ResultStore
from geodemo.result import to_jsonable
from geodemo.storage import drop_torn_tail, write_json, write_text

__all__ = ["QueryPhoto", "Predictor", "EvalReport", "evaluate", "read_predictions", "CSV_COLUMNS"]

CSV_COLUMNS = ["id", "group", "true_lat", "true_lon", "pred_lat", "pred_lon", "error_km", "geoscore", "error"]


@dataclass
class QueryPhoto:
    """What a predictor is given: the photo and who took it, never where."""

    id: str
    image: Image.Image
    group: str | None = None


@runtime_checkable
class Predictor(Protocol):
    """Anything that turns photos into coordinates: ``predict(batch) -> (N, 2)`` [lat, lon].

    Return NaN for a photo it cannot place; the harness charges it the maximum error.
    """

    name: str

    def predict(self, batch: list[QueryPhoto]) -> np.ndarray: ...


@dataclass
class EvalReport:
    """Result of one :func:`evaluate` run (``metrics`` as :func:`accuracy_table` returns them)."""

    benchmark: str
    predictor: str
    metrics: dict[str, float]
    n_photos: int  # photos in the (limited) set
    n_unreadable: int  # photos whose image could not be read: reported, not scored
    seconds: float  # predictor wall time in this run (resumed photos not included)
    out_dir: Path
    csv_path: Path
    summary_path: Path
    table_path: Path
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("out_dir", "csv_path", "summary_path", "table_path"):
            data[key] = str(data[key])
        return data


def _complete_row(row: dict[str | None, Any]) -> bool:
    """A row with every column and a readable ground truth (a torn or glued row fails this)."""
    if None in row or any(row.get(c) is None for c in CSV_COLUMNS) or not row.get("id"):
        return False
    truth = (_float(row["true_lat"]), _float(row["true_lon"]))
    if not all(math.isfinite(v) for v in truth) or abs(truth[0]) > 90 or abs(truth[1]) > 180:
        return False
    pred = (row["pred_lat"], row["pred_lon"])
    return all(v == "" or math.isfinite(_float(v)) for v in pred) and (pred[0] == "") == (pred[1] == "")


def read_predictions(csv_path: str | Path) -> dict[str, dict[str, str]]:
    """Complete rows of a ``predictions.csv`` by photo id (the last one wins; {} when there is no file)."""
    path = Path(csv_path)
    if not path.is_file():
        return {}
    with open(path, newline="", encoding="utf-8", errors="replace") as fh:
        return {row["id"]: row for row in csv.DictReader(fh) if _complete_row(row)}


def _float(value: str | None) -> float:
    try:
        return float(value) if value not in (None, "") else math.nan
    except ValueError:
        return math.nan


def _predict_batch(predictor: Predictor, batch: list[QueryPhoto]) -> tuple[np.ndarray, list[str]]:
    """Predict a batch; if the batch fails, retry photo by photo so one bad photo costs only itself."""

    def call(photos: list[QueryPhoto]) -> list[np.ndarray]:
        pred = np.asarray(predictor.predict(photos), dtype=np.float64).reshape(-1, 2)
        if len(pred) != len(photos):
            raise ValueError(f"predictor {predictor.name!r} returned {len(pred)} rows for {len(photos)} photos")
        return list(pred)

    preds, errors = _per_photo_fallback(call, batch)
    return np.stack([np.full(2, math.nan) if p is None else p for p in preds]), errors


def _per_photo_fallback(call: Any, batch: list[QueryPhoto]) -> tuple[list[Any], list[str]]:
    """``call(batch)``; when the batch fails, ``call([photo])`` for each photo (None + the error when it fails)."""
    try:
        return call(batch), [""] * len(batch)
    except Exception:  # noqa: BLE001 - fall back to one photo at a time to isolate the failure
        if len(batch) == 1:
            raise
    outs, errors = [], []
    for query in batch:
        try:
            outs.append(call([query])[0])
            errors.append("")
        except Exception as exc:  # noqa: BLE001 - recorded in the CSV, scored as a failure
            outs.append(None)
            errors.append(f"predictor failed: {type(exc).__name__}: {exc}")
    return outs, errors


def _locate_batch(
    predictor: Any, pending: list[tuple[GeoSample, Image.Image]], store: ResultStore
) -> tuple[np.ndarray, list[str]]:
    """Locate a batch keeping each photo's full result, store the results, return the points."""
    batch = [QueryPhoto(s.id, img, s.group) for s, img in pending]
    try:
        results, errors = _per_photo_fallback(lambda photos: list(predictor.locate_batch(photos)), batch)
    except Exception as exc:  # noqa: BLE001 - a single-photo batch that failed
        results, errors = [None], [f"predictor failed: {type(exc).__name__}: {exc}"]
    for (sample, image), result, err in zip(pending, results, errors, strict=True):
        store.save(sample.id, (sample.lat, sample.lon), result, group=sample.group, error=err, image=image)
    pred = np.array([[r.lat, r.lon] if r is not None else [math.nan, math.nan] for r in results], dtype=np.float64)
    return pred.reshape(-1, 2), errors


def evaluate(
    predictor: Predictor,
    dataset: GeoDataset,
    out_dir: str | Path,
    limit: int | None = None,
    batch_size: int = 16,
    progress: bool = True,
    resume: bool = True,
    explain: bool = False,
) -> EvalReport:
    """Score ``predictor`` on ``dataset`` (first ``limit`` photos) and write the results to ``out_dir``.

    Files: ``predictions.csv`` (one row per photo, appended as the run goes), ``summary.json``
    (metrics and run facts) and ``table.md`` (ours beside the published rows for this benchmark).
    ``explain=True`` also keeps each photo's full result in ``results/`` (:class:`ResultStore`;
    the predictor needs ``locate_batch(batch) -> list[LocationResult]``); photos scored by an
    earlier run without their result are located again.
    """
    name = getattr(predictor, "name", type(predictor).__name__)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    csv_path = out / "predictions.csv"
    data = dataset.subset(limit) if limit is not None else dataset
    if resume:
        drop_torn_tail(csv_path, "predictions file")
    done = read_predictions(csv_path) if resume else {}
    if not resume and csv_path.exists():
        csv_path.unlink()
    store = ResultStore(out) if explain else None
    if store is not None and not resume:
        store.clear()
    if store is not None and not callable(getattr(predictor, "locate_batch", None)):
        raise ValueError(f"predictor {name!r} keeps no stage-by-stage result, so its failures cannot be "
                         "explained; use a pipeline predictor (--predictor geolocator)")
    todo = [s for s in data.samples if s.id not in done or (store is not None and not store.has(s.id))]
    _forget_rows(csv_path, {s.id for s in todo if s.id in done})  # located again: their new row replaces the old

    new_file = not csv_path.exists() or csv_path.stat().st_size == 0
    started = time.perf_counter()
    with open(csv_path, "a", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=CSV_COLUMNS)
        if new_file:
            writer.writeheader()
        bar = tqdm(total=len(todo), desc=f"{name} on {data.name}", unit="photo", disable=not progress)
        pending: list[tuple[GeoSample, Image.Image]] = []

        def flush() -> None:
            if not pending:
                return
            batch = [QueryPhoto(s.id, img, s.group) for s, img in pending]
            try:
                pred, errors = _locate_batch(predictor, pending, store) if store else _predict_batch(predictor, batch)
            except Exception as exc:  # noqa: BLE001 - a single-photo batch that failed
                pred = np.full((len(batch), 2), math.nan)
                errors = [f"predictor failed: {type(exc).__name__}: {exc}"] * len(batch)
            truth = np.array([[s.lat, s.lon] for s, _ in pending])
            dist = distances_km(pred, truth)
            for (sample, _), p, d, err in zip(pending, pred, dist, errors, strict=True):
                writer.writerow(_row(sample, p, d, err))
            fh.flush()
            bar.update(len(pending))
            pending.clear()

        for sample in todo:
            try:
                image = data.open_image(sample)
            except Exception as exc:  # noqa: BLE001 - ImageError, MissingImageError or a decoder bug
                writer.writerow(_row(sample, None, None, f"unreadable image: {type(exc).__name__}: {exc}"))
                bar.update(1)
                continue
            pending.append((sample, image))
            if len(pending) >= batch_size:
                flush()
        flush()
        bar.close()
    seconds = time.perf_counter() - started

    rows = read_predictions(csv_path)
    wanted = [s.id for s in data.samples if s.id in rows]
    scored = [rows[i] for i in wanted if not rows[i]["error"].startswith("unreadable image")]
    n_unreadable = len(wanted) - len(scored)
    pred = np.array([[_float(r["pred_lat"]), _float(r["pred_lon"])] for r in scored]).reshape(-1, 2)
    truth = np.array([[_float(r["true_lat"]), _float(r["true_lon"])] for r in scored]).reshape(-1, 2)
    metrics = accuracy_table(pred, truth)

    summary_path, table_path = out / "summary.json", out / "table.md"
    report = EvalReport(
        benchmark=data.name,
        predictor=name,
        metrics=metrics,
        n_photos=len(data),
        n_unreadable=n_unreadable,
        seconds=round(seconds, 3),
        out_dir=out,
        csv_path=csv_path,
        summary_path=summary_path,
        table_path=table_path,
        extra={
            "limit": limit,
            "resumed_photos": len(data.samples) - len(todo),
            "seconds_per_photo": round(seconds / max(len(todo), 1), 4),
        },
    )
    write_json(summary_path, to_jsonable(report.to_dict()), indent=2, allow_nan=False)
    write_text(table_path, markdown_table({name: metrics}, benchmark=data.name) + "\n")
    return report


def _forget_rows(csv_path: Path, ids: set[str]) -> None:
    """Rewrite ``predictions.csv`` (atomically) without the rows of ``ids``, so a photo located again
    keeps exactly one row."""
    if not ids:
        return
    with open(csv_path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        kept = [row for row in reader if row.get("id") not in ids]
        columns = reader.fieldnames or CSV_COLUMNS
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\r\n")
    writer.writeheader()
    writer.writerows(kept)
    write_text(csv_path, buf.getvalue())


def _row(sample: GeoSample, pred: np.ndarray | None, dist: float | None, error: str) -> dict[str, Any]:
    has = pred is not None and bool(np.isfinite(pred).all())
    return {
        "id": sample.id,
        "group": sample.group or "",
        "true_lat": f"{sample.lat:.6f}",
        "true_lon": f"{sample.lon:.6f}",
        "pred_lat": f"{pred[0]:.6f}" if has else "",
        "pred_lon": f"{pred[1]:.6f}" if has else "",
        "error_km": f"{dist:.3f}" if dist is not None else "",
        "geoscore": f"{float(geoscore(dist)):.1f}" if dist is not None else "",
        "error": error if has or error else "no prediction (NaN)",
    }
