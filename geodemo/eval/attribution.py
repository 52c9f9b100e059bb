"""Where accuracy is lost: each photo's failure attributed to the first stage that lost the truth.

A photo *fails* when its great-circle error is ``>= threshold_km`` (750 km by default, the
"country" band of the protocol). :func:`attribute` reads only the recorded
:class:`~geodemo.result.LocationResult` and the true location, and gives every photo exactly one
cause from :data:`CAUSES`, checked in this order (a point is *near* when it is ``< threshold_km``
from the truth):

1. ``not a failure``: the prediction is near the truth.
2. ``stage error``: there is no prediction to follow (the pipeline failed on the photo, or left
   no final point), or the LMM stage itself failed (every call errored) while the evidence it was
   given still held the truth.
3. ``retrieval``: nothing ever came near: no retrieved neighbour, no GPS- or text-gallery
   candidate and no LMM answer.
4. ``re-ranking``: a retrieved neighbour was near, but clustering left every near neighbour out
   of the main cluster, and no gallery candidate or LMM answer was near either.
5. ``unparsed``: the LMM was on and the truth was still in the evidence, but none of its answers
   gave a usable coordinate.
6. ``lmm``: the LMM was on and the truth was still in the evidence, but none of its parsed
   answers was near.
7. ``candidates``: the truth survived re-ranking (a near neighbour in the main cluster) but no
   candidate handed to verification was near (the candidate list was cut before it).
8. ``verification``: a near candidate existed and verification chose another.

Besides the cause, each :class:`Attribution` gives the oracle's distance (the best candidate's
distance to the truth: what a perfect verifier would have scored) and the best neighbour's.
:func:`attribute_run` attributes a whole evaluation folder written by
``evaluate(..., explain=True)`` and writes ``attribution.csv``.
"""

from __future__ import annotations

import csv
import io
import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from geodemo.eval.harness import read_predictions
from geodemo.eval.results import ResultStore
from geodemo.geo import haversine_km
from geodemo.result import LocationResult
from geodemo.storage import write_text

__all__ = [
    "FAILURE_KM",
    "CAUSES",
    "CAUSE_MEANINGS",
    "CORRECT",
    "Attribution",
    "RunAttribution",
    "attribute",
    "attribute_run",
    "read_attribution",
    "cause_counts",
    "cause_table_rows",
    "cause_table_markdown",
    "ATTRIBUTION_CSV",
]

FAILURE_KM = 750.0
ATTRIBUTION_CSV = "attribution.csv"
CORRECT = "not a failure"

CAUSE_MEANINGS: dict[str, str] = {
    "stage error": "a stage failed and left no prediction, or the LMM stage failed while the evidence held the truth",
    "retrieval": "no retrieved neighbour, gallery candidate or LMM answer came near the truth",
    "re-ranking": "a near neighbour was retrieved but clustering left it out of the main cluster",
    "unparsed": "the LMM's answers gave no usable coordinate while the evidence held the truth",
    "lmm": "none of the LMM's parsed answers was near the truth while the evidence held it",
    "candidates": "the main cluster held a near neighbour but no candidate handed to verification was near",
    "verification": "a near candidate existed and verification chose another",
    CORRECT: "the prediction is within the threshold",
}
CAUSES: tuple[str, ...] = tuple(CAUSE_MEANINGS)  # pipeline order, "not a failure" last
_GALLERY_SOURCES = ("gps-gallery", "text-gallery")
_STAGE_ORDER = ("load", "segmentation", "encode", "retrieval", "multiview", "rerank", "clues", "lmm",
                "candidates", "gps-gallery", "text-gallery", "verification", "fusion", "geocode")  # fmt: skip


@dataclass(frozen=True)
class Attribution:
    """One photo's cause, with the distances that support it (km; NaN when there was nothing)."""

    cause: str  # one of CAUSES
    detail: str  # one plain sentence with this photo's figures
    error_km: float  # the prediction's error (inf when there is no prediction)
    threshold_km: float
    stage: str = ""  # the failed stage, for "stage error"
    best_candidate_km: float = math.nan  # the oracle: best candidate's distance to the truth
    best_candidate_source: str = ""
    best_neighbour_km: float = math.nan
    best_neighbour_rank: int | None = None  # 1-based retrieval rank of the closest neighbour

    @property
    def failed(self) -> bool:
        return self.cause != CORRECT


def _km(value: float) -> str:
    if not math.isfinite(value):
        return "no distance"
    return f"{value:,.0f} km" if value >= 10 else f"{value:.1f} km"


def _distances(points: Sequence[tuple[float, float]], truth: tuple[float, float]) -> np.ndarray:
    if not points:
        return np.zeros(0)
    return np.asarray(haversine_km(np.asarray(points, dtype=float), np.asarray(truth, dtype=float)[None, :]),
                      dtype=float).reshape(-1)


def attribute(
    result: LocationResult | None,
    truth: tuple[float, float] | Sequence[float],
    *,
    threshold_km: float = FAILURE_KM,
) -> Attribution:
    """The cause of ``result``'s error (see the module docstring for the fixed list and its order).

    ``result=None`` stands for a photo the pipeline failed on (no result recorded).
    """
    t = (float(truth[0]), float(truth[1]))
    T = float(threshold_km)
    if result is None:
        return Attribution("stage error", "The pipeline failed on this photo and recorded no result.",
                           math.inf, T, stage="pipeline")

    has_point = math.isfinite(result.lat) and math.isfinite(result.lon)
    err = float(_distances([(result.lat, result.lon)], t)[0]) if has_point else math.inf
    cands = [c for c in result.candidates if math.isfinite(c.lat) and math.isfinite(c.lon)]
    d_cand = _distances([(c.lat, c.lon) for c in cands], t)
    d_nb = _distances([(n.lat, n.lon) for n in result.neighbours], t)
    accepted = [r for r in result.lmm_records if r.accepted]
    d_lmm = _distances([(float(r.lat), float(r.lon)) for r in accepted], t)
    base = {"error_km": err, "threshold_km": T}
    if d_cand.size:
        i = int(np.argmin(d_cand))
        base.update(best_candidate_km=float(d_cand[i]), best_candidate_source=cands[i].source)
    if d_nb.size:
        j = int(np.argmin(d_nb))
        base.update(best_neighbour_km=float(d_nb[j]), best_neighbour_rank=j + 1)

    def cause(name: str, detail: str, stage: str = "") -> Attribution:
        return Attribution(name, detail, stage=stage, **base)

    if err < T:
        return cause(CORRECT, f"The prediction is {_km(err)} from the truth, within {T:g} km: not a failure.")
    if not has_point:
        order = [*result.stages, *_STAGE_ORDER]  # the stages the preset ran, in order
        stage = next((s for s in order if s in result.errors), "") or next(iter(result.errors), "verification")
        return cause("stage error", f"No location was predicted: the {stage} stage failed.", stage)

    near_nb = np.flatnonzero(d_nb < T)
    near_gallery = [c for c, d in zip(cands, d_cand, strict=True) if d < T and c.source in _GALLERY_SOURCES]
    near_lmm = int((d_lmm < T).sum())
    if near_nb.size == 0 and not near_gallery and near_lmm == 0:
        extra = [what for what, present in (
            ("gallery candidates", any(c.source in _GALLERY_SOURCES for c in cands)),
            ("LMM answers", bool(accepted)),
        ) if present]  # fmt: skip
        closest = f"closest neighbour {_km(base['best_neighbour_km'])}" if d_nb.size else "no neighbour retrieved"
        also = f" (nor any of the {' or '.join(extra)})" if extra else ""
        return cause("retrieval", f"Nothing came within {T:g} km of the truth: none of the {len(d_nb)} retrieved "
                                  f"neighbours{also}; {closest}.")

    clustering = result.clusters_after
    main = clustering.main if clustering is not None else None
    near_in_main = [int(i) for i in near_nb if main is not None and int(i) in main.members]
    if near_nb.size and not near_in_main and not near_gallery and near_lmm == 0:
        if main is None:
            where = "clustering chose no main cluster"
        else:
            d_main = float(_distances([(main.centre_lat, main.centre_lon)], t)[0])
            where = f"none was in the main cluster ({main.support} photos, centre {_km(d_main)} from the truth)"
        were = "was" if near_nb.size == 1 else "were"
        return cause("re-ranking", f"{near_nb.size} of {len(d_nb)} retrieved neighbours {were} within {T:g} km of "
                                   f"the truth (the first at rank {int(near_nb[0]) + 1}), but {where}.")

    lmm_on = bool(result.lmm_records) or "lmm" in result.errors
    if lmm_on and near_lmm == 0:
        records = result.lmm_records
        if not accepted and (not records or all(r.error for r in records)):
            return cause("stage error", "The evidence still held the truth, but the LMM stage failed "
                                        "(no answer came back), so it added no candidate.", "lmm")
        if not accepted:
            return cause("unparsed", f"None of the LMM's {len(records)} answers gave a usable coordinate, while "
                                     f"the evidence held a point within {T:g} km of the truth.")
        return cause("lmm", f"None of the LMM's {len(accepted)} parsed answers was within {T:g} km of the truth "
                            f"(closest {_km(float(d_lmm.min()))}), while the evidence held a point that was.")

    if not (d_cand < T).any():
        return cause("candidates", f"The main cluster held a neighbour within {T:g} km of the truth, but no "
                                   f"candidate handed to verification was that close (best "
                                   f"{_km(base.get('best_candidate_km', math.nan))}).")
    return cause("verification", f"A candidate within {T:g} km of the truth existed ({base['best_candidate_source']}, "
                                 f"{_km(base['best_candidate_km'])} away) but verification chose another, "
                                 f"{_km(err)} away.")


# --- whole runs --------------------------------------------------------------------------------


@dataclass
class RunAttribution:
    """Every photo of an evaluation folder with its cause (``rows``: one dict per photo, CSV columns)."""

    threshold_km: float
    rows: list[dict[str, str]] = field(default_factory=list)
    columns: list[str] = field(default_factory=list)

    @property
    def counts(self) -> Counter:
        return cause_counts(r["cause"] for r in self.rows)


def _fmt(value: float | None, digits: int = 3) -> str:
    return "" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def _row(photo_id: str, group: str, a: Attribution, timings: dict[str, float]) -> dict[str, str]:
    row = {
        "id": photo_id,
        "group": group,
        "error_km": _fmt(a.error_km),
        "cause": a.cause,
        "stage": a.stage,
        "best_candidate_km": _fmt(a.best_candidate_km),
        "best_candidate_source": a.best_candidate_source,
        "best_neighbour_km": _fmt(a.best_neighbour_km),
        "best_neighbour_rank": "" if a.best_neighbour_rank is None else str(a.best_neighbour_rank),
        "threshold_km": f"{a.threshold_km:g}",
    }
    row.update({f"time_{stage}_s": _fmt(sec, 4) for stage, sec in timings.items()})
    return row


def _has_answer(pred: dict[str, str]) -> bool:
    try:
        return math.isfinite(float(pred.get("error_km") or "nan"))
    except ValueError:
        return False


def _from_prediction(pred: dict[str, str], threshold_km: float) -> Attribution:
    """A photo whose stored result is missing or unreadable, judged by its ``predictions.csv`` answer."""
    err, T = float(pred["error_km"]), float(threshold_km)
    note = ("its stage-by-stage result is unreadable, so the answer comes from predictions.csv; run the "
            "evaluation again (same command) to restore it")
    if err < T:
        return Attribution(CORRECT, f"The prediction is {err:,.0f} km from the truth ({note}).", err, T)
    return Attribution("stage error", f"The prediction is {err:,.0f} km from the truth; {note}.", err, T,
                       stage="results")


def attribute_run(
    run_dir: str | Path,
    ids: Iterable[str] | None = None,
    *,
    threshold_km: float = FAILURE_KM,
    write: bool = True,
) -> RunAttribution:
    """Attribute every scored photo of an ``evaluate(..., explain=True)`` folder (only ``ids`` when
    given, in that order) and write ``attribution.csv`` there atomically (``write=False``: don't).

    Photos whose image could not be read are not scored, as in the accuracy table, and are left out.
    """
    run = Path(run_dir)
    predictions = read_predictions(run / "predictions.csv")
    store = ResultStore(run, read_only=not write)  # a reader never deletes a damaged result
    wanted = list(ids) if ids is not None else list(predictions)
    rows, timing_keys = [], {}
    for photo_id in wanted:
        pred = predictions.get(photo_id)
        if pred is None or pred.get("error", "").startswith("unreadable image"):
            continue
        stored = store.load(photo_id)
        truth = stored.truth if stored is not None else (float(pred["true_lat"]), float(pred["true_lon"]))
        result = stored.result if stored is not None else None
        a = (attribute(result, truth, threshold_km=threshold_km) if stored is not None or not _has_answer(pred)
             else _from_prediction(pred, threshold_km))
        timings = dict(result.timings) if result is not None else {}
        timing_keys.update(dict.fromkeys(timings))
        rows.append(_row(photo_id, pred.get("group", ""), a, timings))
    columns = list(_row("", "", Attribution(CORRECT, "", 0.0, threshold_km), {}))
    columns += [f"time_{k}_s" for k in timing_keys]
    out = RunAttribution(threshold_km=float(threshold_km), rows=rows, columns=columns)
    if write:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=columns, restval="")
        writer.writeheader()
        writer.writerows(rows)
        write_text(run / ATTRIBUTION_CSV, buf.getvalue())
    return out


def read_attribution(run_dir: str | Path) -> RunAttribution | None:
    """``attribution.csv`` of a run folder read back (None when there is none)."""
    path = Path(run_dir) / ATTRIBUTION_CSV
    if not path.is_file():
        return None
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        rows = [r for r in reader if r.get("id") and r.get("cause") in CAUSE_MEANINGS]
        columns = list(reader.fieldnames or [])
    threshold = float(rows[0]["threshold_km"]) if rows and rows[0].get("threshold_km") else FAILURE_KM
    return RunAttribution(threshold_km=threshold, rows=rows, columns=columns)


# --- the cause table ---------------------------------------------------------------------------


def cause_counts(causes: Iterable[str]) -> Counter:
    """Photos per cause, every cause of :data:`CAUSES` present (zero when unseen)."""
    counts = Counter(dict.fromkeys(CAUSES, 0))
    counts.update(causes)
    return counts


def cause_table_rows(counts: Counter) -> list[list]:
    """Rows ``[cause, photos, % of photos, % of failures, meaning]`` in :data:`CAUSES` order, then the total."""
    total = sum(counts.values())
    failures = total - counts.get(CORRECT, 0)
    rows = []
    for name in CAUSES:
        n = counts.get(name, 0)
        of_failures = "" if name == CORRECT else (f"{100.0 * n / failures:.1f}" if failures else "0.0")
        rows.append([name, n, f"{100.0 * n / total:.1f}" if total else "0.0", of_failures, CAUSE_MEANINGS[name]])
    rows.append(["all photos", total, "100.0" if total else "0.0", "100.0" if failures else "", ""])
    return rows


def cause_table_markdown(attribution: RunAttribution, title: str | None = None) -> str:
    """The cause table as Markdown, e.g. printed by ``scripts/evaluate.py --explain``."""
    counts = attribution.counts
    total = sum(counts.values())
    failures = total - counts.get(CORRECT, 0)
    head = title or (f"**Where accuracy is lost**: {failures} of {total} photos are {attribution.threshold_km:g} km "
                     "or more from the truth; each is attributed to the first stage that lost the truth")
    lines = [head, "", "| Cause | Photos | % of photos | % of failures | Meaning |", "|---|---:|---:|---:|---|"]
    for name, n, share, of_failures, meaning in cause_table_rows(counts):
        label = f"**{name}**" if name == "all photos" else name
        lines.append(f"| {label} | {n} | {share} | {of_failures or '–'} | {meaning} |")
    oracle = [float(r["best_candidate_km"]) for r in attribution.rows
              if r["cause"] != CORRECT and r.get("best_candidate_km")]
    if oracle:
        within = sum(d < attribution.threshold_km for d in oracle)
        lines += ["", f"Oracle: {within} of the {failures} failures had a candidate within "
                      f"{attribution.threshold_km:g} km (median best candidate {np.median(oracle):,.0f} km)."]
    return "\n".join(lines)
