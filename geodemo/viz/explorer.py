"""The failure explorer: browse an explained evaluation (``scripts/evaluate.py --explain``) in the app.

It lists the evaluation folders found under the runs folder (``$GEODEMO_RUNS``, default ``runs/``
in the repository), shows a run's accuracy and cause table, a sortable list of its failures with
thumbnails, and, for a chosen photo, every stage as the pipeline recorded it (neighbours, clusters
before and after re-ranking, LMM answers, candidates, the final point) with the truth marked.
Nothing runs a model: everything is read from the stored results. Runs are named by their folder
relative to the runs folder; no server path reaches the page.

:func:`failure_explorer` lays the explorer out inside the caller's Gradio Blocks (the app adds it
as a page); the other functions are plain and testable.
"""

from __future__ import annotations

import html
import json
import math
import os
import re
import statistics
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from PIL import Image

from geodemo import env as geodemo_env
from geodemo.eval.attribution import (
    CAUSES,
    CORRECT,
    RunAttribution,
    attribute,
    attribute_run,
    cause_table_rows,
    read_attribution,
)
from geodemo.eval.harness import read_predictions
from geodemo.eval.metrics import THRESHOLDS_KM
from geodemo.eval.results import ResultStore, StoredResult
from geodemo.paths import REPO_ROOT
from geodemo.pipeline.failures import plain_words as _plain_words
from geodemo.result import LocationResult
from geodemo.viz.country_map import run_country_map_iframe
from geodemo.viz.explain import cause_sentence, error_report
from geodemo.viz.maps import MAP_PANELS, map_panel, thumbnail_data_uri
from geodemo.viz.tables import CANDIDATE_COLUMNS, LMM_COLUMNS, candidate_rows, lmm_rows, timing_text

__all__ = [
    "RUNS_ENV",
    "runs_dir",
    "find_runs",
    "RunView",
    "open_run",
    "failure_rows",
    "photo_view",
    "failure_explorer",
    "FAILURE_COLUMNS",
    "SORT_KEYS",
]

RUNS_ENV = "GEODEMO_RUNS"
ALL_FAILURES = "all failures"
FAILURE_COLUMNS = ["photo", "id", "error km", "cause", "best candidate km", "best candidate from"]
SORT_KEYS = {
    "error, largest first": ("error_km", True),
    "error, smallest first": ("error_km", False),
    "best candidate, closest first": ("best_candidate_km", False),
    "cause": ("cause", False),
    "id": ("id", False),
}
MAX_ROWS = 200  # failures listed at once (filter by cause to see others)
LIST_THUMB_PX = 72
MAP_HEIGHT = 380
_MAX_DEPTH = 4  # runs/<benchmark>/<predictor>/ is depth 2; allow some nesting


def runs_dir() -> Path:
    """The folder searched for evaluations: ``$GEODEMO_RUNS`` or ``runs/`` in the repository."""
    env = geodemo_env.get(RUNS_ENV)
    return Path(env).expanduser() if env else REPO_ROOT / "runs"


def find_runs(root: str | Path | None = None) -> list[str]:
    """Explained evaluation folders under ``root``, as paths relative to it (e.g. "im2gps3k-dev/geolocator-offline")."""
    base = Path(root) if root is not None else runs_dir()
    if not base.is_dir():
        return []
    found = []
    for dirpath, dirnames, filenames in os.walk(base):
        rel = Path(dirpath).relative_to(base)
        if len(rel.parts) >= _MAX_DEPTH:
            dirnames[:] = []
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d != "results")
        if "predictions.csv" in filenames and (Path(dirpath) / "results").is_dir():
            found.append(rel.as_posix() if rel.parts else ".")
    return sorted(found)


@dataclass
class RunView:
    """One explained evaluation, read from its folder."""

    name: str  # relative to the runs folder: what the page shows
    dir: Path
    benchmark: str
    predictor: str
    metrics: dict[str, float]
    attribution: RunAttribution
    by_id: dict[str, dict[str, str]] = field(default_factory=dict)  # attribution rows

    @property
    def failures(self) -> list[dict[str, str]]:
        return [r for r in self.attribution.rows if r["cause"] != CORRECT]

    @property
    def curves(self) -> Path | None:
        """The accuracy-against-distance curves ``scripts/evaluate.py`` saved beside this run (its own
        folder's, else the benchmark folder's that compares it with the others), None when there are none."""
        return next((p for p in (self.dir / "curves.png", self.dir.parent / "curves.png") if p.is_file()), None)


def _resolve(name: str, root: Path) -> Path:
    """The folder ``name`` names inside ``root``; ValueError for anything that leaves it."""
    folder = (root / name).resolve()
    if folder != root.resolve() and root.resolve() not in folder.parents:
        raise ValueError(f"{name!r} is not an evaluation under the runs folder")
    if not (folder / "predictions.csv").is_file() or not (folder / "results").is_dir():
        raise ValueError(f"{name!r} is not an explained evaluation (run scripts/evaluate.py --explain)")
    return folder


def open_run(name: str, root: str | Path | None = None) -> RunView:
    """Read the evaluation ``name`` (as listed by :func:`find_runs`): summary, attribution and results.

    Uses ``attribution.csv`` when it covers every stored result, else attributes the stored
    results now (without writing).
    """
    base = Path(root) if root is not None else runs_dir()
    folder = _resolve(name, base)
    return _open_cached(str(folder), name, _fingerprint(folder))


def _fingerprint(folder: Path) -> tuple[float, ...]:
    out = []
    for part in ("predictions.csv", "attribution.csv", "results"):
        try:
            out.append((folder / part).stat().st_mtime)
        except OSError:
            out.append(0.0)
    return tuple(out)


@lru_cache(maxsize=8)
def _open_cached(folder_text: str, name: str, _fingerprint: tuple[float, ...]) -> RunView:
    folder = Path(folder_text)
    summary: dict[str, Any] = {}
    try:
        summary = json.loads((folder / "summary.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        pass
    attribution = read_attribution(folder)
    stored = sum(1 for _ in (folder / "results").glob("*.json"))
    if attribution is None or len(attribution.rows) < stored:
        attribution = attribute_run(folder, write=False)
    metrics = summary.get("metrics") or {}
    return RunView(
        name=name, dir=folder, benchmark=str(summary.get("benchmark") or "?"),
        predictor=str(summary.get("predictor") or "?"), metrics=metrics, attribution=attribution,
        by_id={r["id"]: r for r in attribution.rows},
    )


# --- what the page shows -----------------------------------------------------------------------


def summary_markdown(view: RunView) -> str:
    """The run in a few lines: what was evaluated, its accuracy over the attributed photos, the failures."""
    title = f"{view.predictor} on {view.benchmark}" if view.predictor != "?" else "Evaluation"
    lines = [f"### {html.escape(title)} ({html.escape(view.name)})"]
    if view.predictor == "?":
        lines.append("No summary.json yet: the run is still going or was interrupted; this shows the photos done.")
    errors = [_float(r["error_km"]) for r in view.attribution.rows]
    if errors:
        accs = " · ".join(f"< {t:g} km: {100.0 * sum(e < t for e in errors) / len(errors):.1f}%" for t in THRESHOLDS_KM)
        median = f"{statistics.median(errors):,.0f} km" if all(map(math.isfinite, errors)) else "–"
        lines.append(f"{len(errors)} photos · {accs} · median error {median}")
    n_fail = len(view.failures)
    lines.append(f"\n**{n_fail}** of {len(view.attribution.rows)} photos are {view.attribution.threshold_km:g} km "
                 "or more from the truth; each is attributed to the first stage that lost the truth.")
    return "\n".join(lines)


def cause_rows(view: RunView) -> list[list]:
    return cause_table_rows(view.attribution.counts)


def _float(text: str | None) -> float:
    try:
        return float(text) if text not in (None, "") else math.inf
    except ValueError:
        return math.inf


def _thumb_cell(view: RunView, photo_id: str) -> str:
    uri = thumbnail_data_uri(ResultStore(view.dir, read_only=True).thumbnail_path(photo_id), size=LIST_THUMB_PX)
    if not uri:
        return ""
    return f'<img src="{uri}" alt="photo" style="height:{LIST_THUMB_PX}px;border-radius:3px">'


def failure_rows(view: RunView, cause: str = ALL_FAILURES, sort: str = "error, largest first",
                 limit: int = MAX_ROWS) -> tuple[list[list], list[str]]:
    """The failures to list (one row per photo, :data:`FAILURE_COLUMNS`) and their ids, in order."""
    rows = [r for r in view.failures if cause in (ALL_FAILURES, r["cause"])]
    key, reverse = SORT_KEYS.get(sort, SORT_KEYS["error, largest first"])
    if key in ("error_km", "best_candidate_km"):
        rows.sort(key=lambda r: _float(r[key]), reverse=reverse)
    else:
        rows.sort(key=lambda r: (r[key], r["id"]), reverse=reverse)
    rows = rows[:limit]
    table = [
        [_thumb_cell(view, r["id"]), r["id"], _round(r["error_km"]), r["cause"], _round(r["best_candidate_km"]),
         r.get("best_candidate_source", "")]
        for r in rows
    ]
    return table, [r["id"] for r in rows]


def _round(text: str) -> float | None:
    value = _float(text)
    return round(value, 1) if math.isfinite(value) else None


_CLASS_NAME = re.compile(r"\b[A-Z][A-Za-z]*(?:Error|Exception|Warning): ")


def plain_words(message: str) -> str:
    """A recorded message for the page: no server path and no exception class name (results stored by
    older versions of the pipeline kept both)."""
    return _plain_words(_CLASS_NAME.sub("", str(message)))


@dataclass
class PhotoView:
    """Everything the page shows for one photo (Markdown/HTML strings, table rows, the photo)."""

    header: str
    explanation: str
    neighbour_map: str
    before_map: str
    after_map: str
    result_map: str
    lmm_rows: list[list]
    candidate_rows: list[list]
    photo: Any  # PIL image or None
    stage_errors: str


def photo_view(view: RunView, photo_id: str) -> PhotoView:
    """One photo's stored result, stage by stage, with the truth marked on every map."""
    stored: StoredResult | None = ResultStore(view.dir, read_only=True).load(photo_id)  # never writes the run
    if stored is None:
        return _prediction_only_view(view, photo_id)
    truth, result = stored.truth, stored.result
    photo = _open_photo(stored.thumbnail)
    row = view.by_id.get(photo_id, {})
    head = [f"### `{photo_id.replace('`', '')}`", f"**True location**: {truth[0]:.4f}, {truth[1]:.4f}"]
    if result is None:
        head.append("The pipeline failed on this photo; no stage was recorded.")
        blank = ""
        return PhotoView("\n\n".join(head), f"- Cause: **{row.get('cause', 'stage error')}**", blank, blank, blank,
                         blank, [], [], photo, f"- {plain_words(stored.error)}" if stored.error else "")
    report = error_report(result, truth, failure_km=view.attribution.threshold_km) if _has_point(result) else None
    if report is not None:
        place = f" ({html.escape(result.place)})" if result.place else ""
        head.append(f"**Prediction**: {result.lat:.4f}, {result.lon:.4f}{place} · **{report.error_line}** · "
                    f"chosen by `{result.verifier}` · preset `{result.preset}`")
        sentences = report.explanation or [cause_sentence(report.attribution)]
    else:
        head.append("**No location was predicted.**")
        sentences = [cause_sentence(attribute(result, truth, threshold_km=view.attribution.threshold_km))]
    if result.timings:
        head.append(f"Timings: {timing_text(result)}")
    explanation = "#### Why\n" + "\n".join(f"- {plain_words(s)}" for s in sentences)
    maps = {panel: map_panel(panel, result, truth, MAP_HEIGHT, show_prediction=_has_point(result))
            for panel in MAP_PANELS}
    errors = "\n".join(f"- **{html.escape(stage)}**: {html.escape(plain_words(msg))}" for stage, msg in result.errors.items())
    lmm = [[*r[:3], plain_words(str(r[3])), r[4]] for r in lmm_rows(result)]
    return PhotoView("\n\n".join(head), explanation, maps["neighbours"], maps["before"], maps["after"],
                     maps["result"], lmm, candidate_rows(result), photo,
                     ("#### Stages that reported a problem\n" + errors) if errors else "")


def _prediction_only_view(view: RunView, photo_id: str) -> PhotoView:
    """A photo whose stored result is unreadable: its answer as ``predictions.csv`` holds it."""
    pred = read_predictions(view.dir / "predictions.csv").get(photo_id)
    if pred is None:
        raise ValueError(f"no stored result for photo {photo_id!r} in {view.name}")
    head = [f"### `{photo_id.replace('`', '')}`",
            f"**True location**: {_float(pred.get('true_lat')):.4f}, {_float(pred.get('true_lon')):.4f}"]
    if pred.get("pred_lat") and pred.get("pred_lon"):
        head.append(f"**Prediction**: {_float(pred['pred_lat']):.4f}, {_float(pred['pred_lon']):.4f} · "
                    f"**{_float(pred.get('error_km')):,.0f} km off** (from predictions.csv)")
    else:
        head.append("**No location was predicted.**")
    row = view.by_id.get(photo_id, {})
    why = ("#### Why\n- The stored stage-by-stage result of this photo is unreadable (the explorer leaves the run "
           "as it is); run the evaluation again with the same command to restore it.")
    photo = _open_photo(ResultStore(view.dir, read_only=True).thumbnail_path(photo_id))
    return PhotoView("\n\n".join(head), why + (f"\n- Cause: **{row['cause']}**" if row.get("cause") else ""),
                     "", "", "", "", [], [], photo, "")


def _has_point(result: LocationResult) -> bool:
    return math.isfinite(result.lat) and math.isfinite(result.lon)


def _open_photo(path: Path | None) -> Any:
    if path is None:
        return None
    try:
        with Image.open(path) as im:
            return im.convert("RGB")
    except (OSError, ValueError):
        return None


# --- the Gradio layout -------------------------------------------------------------------------


def failure_explorer(root: str | Path | None = None) -> None:
    """Lay the explorer out inside the current ``gr.Blocks`` context (a page or a tab of the app).

    ``root`` fixes the runs folder; by default :func:`runs_dir` is read on every refresh.
    """
    import gradio as gr

    def base() -> Path:
        return Path(root) if root is not None else runs_dir()

    gr.Markdown(
        "## Failure explorer\nOpen an evaluation made with `scripts/evaluate.py --explain` to see where "
        "accuracy is lost: the cause of every failure, and each failed photo stage by stage, with the truth "
        "marked. Nothing is run again: the page reads the stored results."
    )
    with gr.Row():
        run = gr.Dropdown(choices=find_runs(base()), value=None, label="Evaluation (under the runs folder)",
                          elem_id="explorer-run", scale=4)
        refresh = gr.Button("↻ Refresh the list", elem_id="explorer-refresh", scale=1)
    status = gr.Markdown("", elem_id="explorer-status")
    summary = gr.Markdown("", elem_id="explorer-summary")
    causes = gr.Dataframe(headers=["cause", "photos", "% of photos", "% of failures", "meaning"], value=[],
                          interactive=False, wrap=True, elem_id="explorer-causes", label="Causes")
    curves = gr.Image(label="Accuracy against distance (this run beside the others on the benchmark)",
                      type="pil", interactive=False, height=320, elem_id="explorer-curves")
    with gr.Accordion("Accuracy per country (< 750 km; hover a country for its row)", open=False):
        countries = gr.HTML("", elem_id="explorer-countries")
    with gr.Row():
        cause = gr.Dropdown([ALL_FAILURES, *[c for c in CAUSES if c != CORRECT]], value=ALL_FAILURES,
                            label="Show", elem_id="explorer-cause")
        sort = gr.Dropdown(list(SORT_KEYS), value="error, largest first", label="Sort by", elem_id="explorer-sort")
        photo_id = gr.Dropdown(choices=[], value=None, label="Photo", allow_custom_value=False,
                               elem_id="explorer-photo")
    failures = gr.Dataframe(headers=FAILURE_COLUMNS, datatype=["html", "str", "number", "str", "number", "str"],
                            value=[], interactive=False, max_height=420, elem_id="explorer-failures",
                            label=f"Failures (click a row; at most {MAX_ROWS} listed)")
    with gr.Row():
        with gr.Column(scale=1):
            photo = gr.Image(label="Photo", type="pil", interactive=False, height=260, elem_id="explorer-image")
        with gr.Column(scale=2):
            header = gr.Markdown("", elem_id="explorer-header")
            explanation = gr.Markdown("", elem_id="explorer-explanation")
            stage_errors = gr.Markdown("", elem_id="explorer-errors")
    gr.Markdown("#### Final point, candidates and the truth")
    result_html = gr.HTML("", elem_id="explorer-result-map")
    gr.Markdown("#### Retrieved neighbours (colour = cluster; the truth in green)")
    neighbour_html = gr.HTML("", elem_id="explorer-neighbour-map")
    with gr.Row():
        with gr.Column():
            gr.Markdown("#### Clusters before re-ranking")
            before_html = gr.HTML("", elem_id="explorer-clusters-before")
        with gr.Column():
            gr.Markdown("#### Clusters after re-ranking")
            after_html = gr.HTML("", elem_id="explorer-clusters-after")
    lmm_table = gr.Dataframe(headers=LMM_COLUMNS, value=[], label="LMM answers", wrap=True, interactive=False,
                             elem_id="explorer-lmm")
    candidates = gr.Dataframe(headers=CANDIDATE_COLUMNS, value=[], label="Candidates", interactive=False,
                              elem_id="explorer-candidates")
    photo_outputs = [header, explanation, stage_errors, photo, result_html, neighbour_html, before_html,
                     after_html, lmm_table, candidates]

    def refresh_list(current: str | None):
        names = find_runs(base())
        return gr.update(choices=names, value=current if current in names else None)

    def load_run(name: str | None, cause_name: str, sort_name: str):
        if not name:
            return "Choose an evaluation.", "", [], [], gr.update(choices=[], value=None), None, ""
        try:
            view = open_run(name, base())
        except ValueError as exc:
            return f"⚠️ {exc}", "", [], [], gr.update(choices=[], value=None), None, ""
        table, ids = failure_rows(view, cause_name, sort_name)
        note = "" if ids else "No failure of this kind in this evaluation."
        curve = _open_photo(view.curves)
        return (note, summary_markdown(view), cause_rows(view), table, gr.update(choices=ids, value=None), curve,
                run_country_map_iframe(view.dir))

    def show_photo(name: str | None, chosen: str | None):
        if not name or not chosen:
            return ["", "", "", None, "", "", "", "", [], []]
        try:
            v = photo_view(open_run(name, base()), chosen)
        except ValueError as exc:
            return [f"⚠️ {exc}", "", "", None, "", "", "", "", [], []]
        return [v.header, v.explanation, v.stage_errors, v.photo, v.result_map, v.neighbour_map, v.before_map,
                v.after_map, v.lmm_rows, v.candidate_rows]

    def pick_row(evt: gr.SelectData):
        row = evt.row_value or []
        return gr.update(value=row[1]) if len(row) > 1 and row[1] else gr.update()

    pick_row.__annotations__["evt"] = gr.SelectData  # a class, not a string: Gradio injects the event by it

    list_outputs = [status, summary, causes, failures, photo_id, curves, countries]
    refresh.click(refresh_list, run, run, queue=False, api_visibility="private")
    for trigger in (run.change, cause.change, sort.change):
        trigger(load_run, [run, cause, sort], list_outputs, api_visibility="private")
    failures.select(pick_row, None, photo_id, api_visibility="private")
    photo_id.change(show_photo, [run, photo_id], photo_outputs, api_visibility="private")
