"""The multi-source decision on the dev split: collect every candidate once, then score each source set.

    records = collect(dataset, "offline", recorded={"lmm": {...}, "candidates": {...}}, out_file=...)
    rows = source_set_rows(records, "offline", ["gemini-2.0-flash", "geoestimation-isns"])

``collect`` locates every photo with all the sources given (the photo's photographer left out of the
gallery and verified by the fold verifier that never saw that photographer) and stores each full result
as a JSON line. Every source set is then a subset of those candidates: each source alone, today's
decision (G3's rule: the verifier's argmax, or the reciprocal match), the calibrated decision (each photo
decided by a model fitted on the other photographer folds, its family and regularisation chosen inside
those folds) and the oracle. :func:`fit_source_set` fits the model that ships for a source set.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np

from geodemo.data import load_benchmark
from geodemo.eval.ablation import fold_locators, read_records, run_photos
from geodemo.eval.metrics import ACC_KEYS, accuracy_table
from geodemo.geo import haversine_km
from geodemo.paths import checkpoints_dir
from geodemo.pipeline import GeoLocator, LocateOptions, decision
from geodemo.pipeline.decision import Evidence, source_of
from geodemo.pipeline.presets import load_preset
from geodemo.result import LocationResult
from geodemo.storage import write_json, write_text

__all__ = ["Photos", "collect", "read_records", "source_sets", "source_set_rows", "fit_source_set", "rows_markdown"]


def collect(dataset: Any, preset: str, recorded: dict[str, dict[str, str]], out_file: Path, limit: int | None = None,
            cross_fit: str = "auto", progress: bool = True, options: Any = None, resume: bool = False) -> list[dict]:
    """Locate every photo of ``dataset`` with ``preset`` and the recorded sources (fold-held-out), storing
    one JSON line per photo in ``out_file`` (with ``resume``, photos already there are kept)."""

    locator = GeoLocator.from_preset(preset, gallery={"progress": False}, recorded=recorded)
    aligner = (locator.config.get("verifier") or {}).get("aligner")
    pattern = cross_fit
    if pattern == "auto":
        pattern = f"{aligner}-fold{{}}of3" if aligner and (checkpoints_dir() / f"{aligner}-fold0of3").is_dir() else "none"
    by_group = None
    if pattern != "none":
        by_group = fold_locators(preset, pattern, recorded=recorded)
    return run_photos(dataset, locator, out_file, limit, options, by_group=by_group, progress=progress, resume=resume)


def source_sets(base: str, external: list[str]) -> list[list[str]]:
    """Every subset of the external sources (the base alone first, all of them last)."""
    return [list(c) for n in range(len(external) + 1) for c in combinations(sorted(external), n)]


@dataclass
class Photos:
    """The stored results of a :func:`collect` run, parsed once: every source set is a view of them."""

    ids: list[str]
    groups: list[str]  # the photographer (the photo's id when there is none)
    truth: np.ndarray  # (N, 2)
    results: list[LocationResult]

    @classmethod
    def from_records(cls, records: list[dict]) -> Photos:
        return cls([str(r["id"]) for r in records], [str(r.get("group") or f"id:{r['id']}") for r in records],
                   np.array([[r["lat"], r["lon"]] for r in records], dtype=np.float64).reshape(-1, 2),
                   [LocationResult.from_dict(r["result"]) for r in records])

    def evidences(self, external: list[str]) -> list[Evidence]:
        """Each photo's evidence with only the preset's own candidates and those of ``external``."""
        keep = set(decision.BASE_SOURCES) | set(external)
        return [Evidence.from_result(r, keep) for r in self.results]


def _coords(evidences: list[Evidence], choice: list[int | None]) -> np.ndarray:
    """The chosen candidate's coordinate per photo (NaN where nothing was chosen)."""
    out = np.full((len(evidences), 2), np.nan)
    for i, (ev, j) in enumerate(zip(evidences, choice, strict=True)):
        if j is not None and j >= 0:
            out[i] = (ev.candidates[j].lat, ev.candidates[j].lon)
    return out


def _pick(evidences: list[Evidence], choose) -> np.ndarray:
    return _coords(evidences, [choose(ev) for ev in evidences])


def _oracle(ev: Evidence, truth: np.ndarray) -> int | None:
    if not ev.candidates:
        return None
    coords = np.array([[c.lat, c.lon] for c in ev.candidates])
    return int(np.argmin(haversine_km(coords, np.asarray(truth)[None, :])))


def _first_of(source: str):
    def choose(ev: Evidence) -> int | None:
        return next((j for j, c in enumerate(ev.candidates) if source_of(c) == source), None)
    return choose


def source_set_rows(photos: Photos, base: str, external: list[str], num_folds: int = 5,
                    **fit_options: Any) -> tuple[dict[str, dict], dict[str, Any]]:
    """Accuracy rows of one source set (see the module docstring) and the cross-validation details
    (with the set's ``evidences``, ``sources`` and ``features``, which :func:`fit_source_set` reuses)."""
    evidences = photos.evidences(external)
    truth = photos.truth
    sources = decision.source_vocabulary(evidences, external)
    base_kinds = set(decision.BASE_SOURCES)
    rows: dict[str, dict] = {f"{base} alone (its own rule)": accuracy_table(
        _pick(evidences, lambda ev: decision.own_choice(ev, base_kinds)), truth)}
    for name in external:
        rows[f"{name} alone"] = accuracy_table(_pick(evidences, _first_of(name)), truth)
    rows["today's decision (verifier argmax / reciprocal match)"] = accuracy_table(
        _pick(evidences, lambda ev: ev.rule), truth)
    if external:
        rows["default rule (agreement; decides when no model is fitted)"] = accuracy_table(
            _pick(evidences, lambda ev: decision.default_choice(ev, base_kinds)), truth)
    cv = decision.cross_validated_decisions(evidences, truth, photos.groups, photos.ids, sources, num_folds,
                                            **fit_options)
    rows["**calibrated decision** (photographer folds)"] = accuracy_table(
        _coords(evidences, [int(j) for j in cv["choice"]]), truth)
    rows["oracle (best candidate of the set)"] = accuracy_table(
        _coords(evidences, [_oracle(ev, t) for ev, t in zip(evidences, truth, strict=True)]), truth)
    return rows, {**cv, "evidences": evidences, "sources": sources, "groups": photos.groups}


def fit_source_set(photos: Photos, base: str, external: list[str], num_folds: int = 5,
                   provenance: dict[str, Any] | None = None, cv: dict[str, Any] | None = None, **fit_options: Any):
    """The decision model of ``base`` + ``external`` fitted on every photo (``cv``: :func:`source_set_rows`'
    details of the same set, whose evidence and features are reused)."""
    evidences = cv["evidences"] if cv else photos.evidences(external)
    sources = cv["sources"] if cv else decision.source_vocabulary(evidences, external)
    return decision.fit_decision(evidences, photos.truth, photos.groups, photos.ids, sources,
                                 decision.source_set_name(base, external), num_folds, provenance=provenance,
                                 features=cv["features"] if cv else None, **fit_options)


def rows_markdown(tables: Iterable[tuple[str, dict[str, dict]]], caption: str) -> str:
    """One markdown table: a header row per source set, then its rows (accuracy in %, median km)."""
    head = " | ".join(f"{k.split('@')[1]} km" for k in ACC_KEYS)
    lines = [caption, "", f"| source set / row | {head} | median km |", "|---|" + "---:|" * (len(ACC_KEYS) + 1)]
    for name, rows in tables:
        lines.append(f"| *{name}* |" + " |" * (len(ACC_KEYS) + 1))
        for row, m in rows.items():
            accs = " | ".join(f"{100 * m[k]:.1f}" for k in ACC_KEYS)
            lines.append(f"| {row} | {accs} | {m['median_km']:.0f} |")
    return "\n".join(lines)


def run_decision_study(benchmark: str, preset: str, recorded: dict[str, dict[str, str]], out: Path,
                       reuse: bool = False, limit: int | None = None, num_folds: int = 5, save: bool = False,
                       cross_fit: str = "auto", progress: bool = True, provenance: dict[str, Any] | None = None,
                       use_lmm: bool = False, resume: bool = False) -> str:
    """Collect (or, with ``reuse``, read ``out/results.jsonl``), print the table of every source set and,
    with ``save``, fit and write the decision model of each (dev split only). ``use_lmm`` also runs the
    preset's own (live) LMM stage: its model is one more source. ``resume`` continues a killed collection."""

    if save and benchmark != "im2gps3k-dev":
        raise ValueError("decision models are fitted on the dev split only (im2gps3k-dev)")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    results = out / "results.jsonl"
    if reuse and results.is_file():
        records = read_records(results)
    else:

        options = LocateOptions({"lmm": {"enabled": True}}) if use_lmm else None
        records = collect(load_benchmark(benchmark), preset, recorded, results, limit, cross_fit, progress, options,
                          resume=resume)
    base = str((load_preset(preset).get("decision") or {}).get("base") or preset)
    external = sorted({name for role in recorded.values() for name in role} | {
        source_of(c) for r in records for c in r["result"]["candidates"]} - set(decision.BASE_SOURCES))
    photos = Photos.from_records(records)
    tables, metrics, lines = [], {}, []
    for subset in source_sets(base, external):
        name = decision.source_set_name(base, subset)
        rows, cv = source_set_rows(photos, base, subset, num_folds)
        tables.append((name, rows))
        metrics[name] = rows
        if save:
            model, report = fit_source_set(photos, base, subset, num_folds, cv=cv, provenance={
                **(provenance or {}), "split": benchmark, "preset": preset, "photos": len(records),
                "sources": {role: sorted(files) for role, files in recorded.items()}})
            path = model.save(decision.DECISION_DIR / f"{name}.json")
            lines.append(f"{name}: {report['family']}, C={report['C']:g} -> {path.name}")
    text = rows_markdown(tables, f"Decision by source set on {benchmark} ({len(records)} photos, preset {preset}, "
                                 f"photographer folds; accuracy in %, error strictly under the distance)")
    if lines:
        text += "\n\nfitted on every photo: " + "; ".join(lines)
    write_text(out / "decision-table.md", text + "\n")
    write_json(out / "decision-metrics.json", metrics, indent=1)
    return text
