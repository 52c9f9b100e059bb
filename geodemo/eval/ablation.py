"""Ablation of a preset's stages in one run, leave-one-photographer-out (``scripts/ablate.py``).

:func:`run_ablation` is the whole command. For the pipeline presets (``offline`` ...) every photo of the
benchmark is located once with the preset (its own photo and every photo by the same photographer are
excluded from the gallery; the learned verifier that scores it was trained without its photographer,
``cross_fit``); the per-photo results are stored as JSON lines. Each table row is a named function over
those stored results (:data:`ROWS`), so adding a row is adding a function and re-running with ``reuse``.
Two more tables follow: the log-linear fusion of all evidence with weights fitted by grouped
cross-validation over photographers (:mod:`geodemo.eval.fusion_ablation`), and the LMM stage on the first
``lmm_subset`` photos.

For the offline analogues (a preset whose ``descriptor`` is a trained ``dualgeo`` or ``g3`` model) the
rows are the papers' stages, scored on cached features by photographer-fold models
(:mod:`geodemo.eval.fold_ablation`); for DualGeo a second table adds + LMM on the first ``lmm_subset`` photos
(:func:`analogue_lmm_rows`).
"""

from __future__ import annotations

import json
import re
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import numpy as np
from tqdm.auto import tqdm

from geodemo.data import load_benchmark
from geodemo.eval.baselines import DensityPrior, Gallery
from geodemo.eval.fold_ablation import locate_with_lmm, run_analogue_ablation, save_ablation
from geodemo.eval.fusion_ablation import baseline_rows, collect, fit_all
from geodemo.eval.fusion_ablation import rows as fusion_rows
from geodemo.eval.harness import QueryPhoto
from geodemo.eval.metrics import ACC_KEYS, accuracy_table
from geodemo.extraction.features import image_features
from geodemo.geo import haversine_km
from geodemo.models.aligners import read_pretrained
from geodemo.paths import checkpoints_dir
from geodemo.pipeline import GeoLocator, LocateOptions
from geodemo.pipeline.presets import load_preset
from geodemo.scoring.fusion import WEIGHTS_DIR
from geodemo.storage import atomic_open, read_text, write_json, write_text

if TYPE_CHECKING:
    from geodemo.eval.fold_ablation import AnalogueAblation

__all__ = ["AblationOptions", "Context", "ROWS", "run_ablation", "table", "run_photos", "read_records", "fold_locators"]


@dataclass
class AblationOptions:
    """Everything ``scripts/ablate.py`` parses (see its ``--help``)."""

    benchmark: str = "im2gps3k-dev"
    preset: str = "offline"
    limit: int | None = None
    out: Path | None = None
    reuse: bool = False
    cross_fit: str = "auto"
    lmm_subset: int = 50
    fusion: bool = True
    save_weights: str | None = None
    tau_km: float = 3000.0
    num_folds: int = 3
    progress: bool = True
    cached_only: bool = False  # offline analogues: only photos whose label maps are cached
    analogue: bool = False  # the preset's model is trained by photographer folds (geodemo.train.folds.is_fold_trained)


@dataclass
class Context:
    """What row functions may use besides the stored records."""

    benchmark: str
    locator: object  # the GeoLocator
    gallery_meta: object
    dataset: object


RowFn = Callable[[list[dict], Context], np.ndarray]


def _coords(records: list[dict], pick: Callable[[dict], tuple[float, float] | None]) -> np.ndarray:
    out = np.full((len(records), 2), np.nan)
    for i, r in enumerate(records):
        p = pick(r)
        if p is not None:
            out[i] = p
    return out


def row_density_prior(records: list[dict], ctx: Context) -> np.ndarray:
    """Always the densest gallery place (200 km), with the query's photographer left out."""
    meta = ctx.gallery_meta
    prior = DensityPrior(Gallery(f"{ctx.benchmark}-gallery", meta.coords, meta.ids, meta.groups))
    return prior.predict([QueryPhoto(r["id"], None, r["group"]) for r in records])


def row_retrieval_top1(records: list[dict], ctx: Context) -> np.ndarray:
    """The gallery's nearest photo by the global descriptor (FAISS, before any re-ranking)."""
    db = ctx.locator.gallery
    feats = image_features(ctx.locator.config["encoder"], ctx.dataset, progress=False)
    row = {sid: i for i, sid in enumerate(feats.ids)}
    x = np.stack([feats.embeddings[row[r["id"]]] for r in records]).astype(np.float32)
    hits = db.search(x, k=1, exclude_ids=[{r["id"]} for r in records],
                     exclude_groups=[{r["group"]} if r["group"] else set() for r in records])
    out = np.full((len(records), 2), np.nan)
    for i, h in enumerate(hits):
        if len(h.indices):
            out[i] = db.meta.coords[h.indices[0]]
    return out


def row_multiview_top1(records: list[dict], ctx: Context) -> np.ndarray:
    """The top-1 after multi-view re-ranking of the shortlist."""
    return _coords(records, lambda r: (r["result"]["neighbours"][0]["lat"], r["result"]["neighbours"][0]["lon"])
                   if r["result"]["neighbours"] else None)


def _best_candidate(records: list[dict], key: str, sources: tuple[str, ...] | None) -> np.ndarray:
    def pick(r: dict):
        cands = [c for c in r["result"]["candidates"]
                 if (sources is None or c["source"] in sources) and not c["source"].startswith("lmm:")]
        vals = [c["details"].get(key, c["score"]) if key != "score" else c["score"] for c in cands]
        ok = [(v, c) for v, c in zip(vals, cands, strict=True) if v is not None]
        if not ok:
            return None
        best = max(ok, key=lambda vc: vc[0])[1]  # first of ties
        return best["lat"], best["lon"]

    return _coords(records, pick)


def row_verifier_retrieval(records: list[dict], ctx: Context) -> np.ndarray:
    """The learned verifier's best among the cluster centre and the retrieved photos."""
    return _best_candidate(records, "verifier_score", ("cluster-centre", "retrieval"))


def row_verifier_gps(records: list[dict], ctx: Context) -> np.ndarray:
    """The learned verifier's best once GPS-gallery points are candidates too."""
    return _best_candidate(records, "verifier_score", None)


def row_clue_prior(records: list[dict], ctx: Context) -> np.ndarray:
    """Verifier scores re-weighted by the text-clue prior (no clue: no change)."""
    return _best_candidate(records, "score", None)


def row_reranked_top1(records: list[dict], ctx: Context) -> np.ndarray:
    def pick(r: dict):
        res = r["result"]
        if not res["neighbours"] or not res["clusters_after"]:
            return None
        n = res["neighbours"][res["clusters_after"]["order"][0]]
        return n["lat"], n["lon"]

    return _coords(records, pick)


def row_cluster_centre(records: list[dict], ctx: Context) -> np.ndarray:
    def pick(r: dict):
        ca = r["result"]["clusters_after"]
        main = next((c for c in ca["clusters"] if c["is_main"]), None) if ca else None
        return (main["centre_lat"], main["centre_lon"]) if main else None

    return _coords(records, pick)


def row_verified(records: list[dict], ctx: Context) -> np.ndarray:
    return _coords(records, lambda r: (r["result"]["lat"], r["result"]["lon"]))


def row_oracle(records: list[dict], ctx: Context) -> np.ndarray:
    """The candidate nearest the truth: the ceiling any verifier over these candidates can reach."""
    def pick(r: dict):
        cands = r["result"]["candidates"]
        if not cands:
            return None
        c = np.array([[x["lat"], x["lon"]] for x in cands])
        return tuple(c[int(np.argmin(haversine_km(c, np.array([r["lat"], r["lon"]])[None, :])))])

    return _coords(records, pick)


ROWS: list[tuple[str, RowFn]] = [
    ("density prior", row_density_prior),
    ("retrieval top-1 (global descriptor)", row_retrieval_top1),
    ("+ re-ranking: multi-view query, top-1", row_multiview_top1),
    ("+ DBSCAN clustering, nearest to main centre", row_reranked_top1),
    ("+ DBSCAN clustering, main cluster centre", row_cluster_centre),
    ("+ learned verifier (fold-held-out) over retrieval candidates", row_verifier_retrieval),
    ("+ GPS-gallery candidates", row_verifier_gps),
    ("+ text clues (clue prior)", row_clue_prior),
    ("+ reciprocal-match acceptance = full pipeline (final answer)", row_verified),
    ("oracle best-of-candidates", row_oracle),
]


def fold_locators(preset: str, pattern: str, **overrides: Any) -> dict[str, object]:
    """Cross-fitting: one locator per trained fold; maps each held-out photographer to the locator whose
    aligner never saw that photographer (``pattern`` like ``offline-verifier-fold{}of3``); ``overrides``
    are merged into the preset as :meth:`GeoLocator.from_preset` merges them."""
    by_group: dict[str, object] = {}
    i = 0
    while (checkpoints_dir() / pattern.format(i)).is_dir():
        name = pattern.format(i)
        cfg, _ = read_pretrained(checkpoints_dir() / name)
        locator = GeoLocator.from_preset(preset, verifier={"aligner": name}, gallery={"progress": False}, **overrides)
        for g in cfg.get("training", {}).get("held_out_groups", []):
            by_group[g] = locator
        i += 1
    if i == 0:
        raise FileNotFoundError(f"no fold checkpoints {pattern.format(0)} under {checkpoints_dir()}")
    return by_group


def run_photos(
    dataset, locator, out_file: Path, limit: int | None, options=None, by_group: dict | None = None,
    progress: bool = True, resume: bool = False,
) -> list[dict]:
    """Locate every photo (leave-one-photographer-out) and store one JSON line per photo.

    With ``by_group`` (cross-fitting), each photo is located by the locator whose aligner was trained
    without its photographer; photos of photographers in no fold are skipped. With ``resume``, the photos
    already in ``out_file`` are kept and the others are located and appended one line at a time (a run
    killed midway loses at most the photo it was on); without it the file appears whole or not at all.
    """
    samples = dataset.samples[:limit] if limit else dataset.samples
    feats = image_features(locator.config["encoder"], dataset, progress=progress)  # cached on disk
    index = {sid: i for i, sid in enumerate(feats.ids)}
    records = read_records(out_file) if resume else []
    done = {r["id"] for r in records}
    opened = _appending(out_file, records) if resume else atomic_open(out_file)
    todo = [s for s in samples if s.id not in done]
    with opened as fh:  # without resume, a run killed midway leaves no half file for --reuse to take
        for s in tqdm(todo, desc="locating", unit="photo", disable=not progress):
            i = index[s.id]
            if not feats.valid[i]:
                continue
            use = locator
            if by_group is not None:
                use = by_group.get(s.group)
                if use is None:
                    continue
            q = QueryPhoto(s.id, dataset.open_image(s), s.group)
            bank = use.view_bank()  # the benchmark's photos are in the gallery: reuse their views
            views = bank.views_of(s.id) if bank is not None else None
            result = use.locate_query(q, options, embedding=feats.embeddings[i], views=views)
            rec = {"id": s.id, "group": s.group, "lat": s.lat, "lon": s.lon, "result": result.to_dict()}
            fh.write(json.dumps(rec) + "\n")
            fh.flush()
            records.append(rec)
    return records


def read_records(path: Path) -> list[dict]:
    """The whole JSON lines :func:`run_photos` wrote (a run killed midway: its cut-off last line is dropped)."""
    records = []
    if Path(path).is_file():
        for line in Path(path).read_text().splitlines():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                break
    return records


@contextmanager
def _appending(path: Path, records: list[dict]) -> Iterator[IO[str]]:
    """``path`` rewritten with ``records`` (so no cut-off line stays), then open for appending."""
    with atomic_open(path) as fh:
        fh.writelines(json.dumps(r) + "\n" for r in records)
    with open(path, "a", encoding="utf-8") as fh:
        yield fh


def row_lmm_only(records: list[dict], ctx: Context) -> np.ndarray:
    """The first LMM answer that parsed (NaN when none did): the LMM on its own."""
    return _coords(records, lambda r: next(((x["lat"], x["lon"]) for x in r["result"]["lmm_records"]
                                            if x["lat"] is not None), None))


def _lmm_won(result: dict) -> bool:
    """The final answer is an LMM answer (DualGeo's decision, or an LMM candidate that won verification)."""
    return result["verifier"].startswith("lmm-answer") or any(
        c["source"].startswith("lmm:") and c["lat"] == result["lat"] and c["lon"] == result["lon"]
        for c in result["candidates"])


def lmm_summary(plain: list[dict] | None, with_lmm: list[dict]) -> str:
    """Parse rate, how often an LMM answer was final, and seconds per photo with the LMM (and without,
    given the same photos' records located without it)."""
    answers = [x for r in with_lmm for x in r["result"]["lmm_records"]]
    parsed = sum(x["lat"] is not None for x in answers)
    failed = sum(bool(x["error"]) for x in answers)
    cached = sum(bool(x.get("cached")) for x in answers)  # their photos' LMM time is a cache read
    won = sum(_lmm_won(r["result"]) for r in with_lmm)

    def per_photo(recs: list[dict], stage: str | None = None) -> float:
        def total(timings: dict) -> float:
            return timings["total"] if "total" in timings else sum(timings.values())

        t = [total(r["result"]["timings"]) if stage is None else r["result"]["timings"].get(stage, 0.0)
             for r in recs]
        return float(np.mean(t)) if t else float("nan")

    models = sorted({f"{x['backend']}:{x['model']}" for x in answers})
    without = f"{per_photo(plain):.1f} s without the LMM, " if plain is not None else ""
    return (f"LMM ({', '.join(models)}): {parsed}/{len(answers)} answers parsed, {failed} failed calls, "
            f"{cached} read from the answer cache; "
            f"an LMM answer was the final answer for {won}/{len(with_lmm)} photos; "
            f"time per photo {without}{per_photo(with_lmm):.1f} s with it "
            f"(LMM stage {per_photo(with_lmm, 'lmm'):.1f} s)")


def table(rows: dict[str, dict], n_photos: int, benchmark: str, preset: str) -> str:
    head = " | ".join(f"acc@{k.split('@')[1]} km" for k in ACC_KEYS)
    lines = [
        f"Ablation on {benchmark} ({n_photos} photos, preset {preset}, leave-one-photographer-out; "
        "accuracy = share of photos with error < threshold, %)",
        "",
        f"| Stage | {head} | median km |",
        "|---|" + "---:|" * (len(ACC_KEYS) + 1),
    ]
    for name, m in rows.items():
        accs = " | ".join(f"{100 * m[k]:.1f}" for k in ACC_KEYS)
        lines.append(f"| {name} | {accs} | {m['median_km']:.0f} |")
    return "\n".join(lines)


def fusion_report(dataset, args: AblationOptions, pattern: str) -> tuple[str, dict[str, dict]]:
    """The fusion rows (:mod:`geodemo.eval.fusion_ablation`) as a table, and their metrics."""
    folds = re.fullmatch(r".*fold\{\}of(\d+)", pattern or "")
    if folds is None:
        return "fusion rows skipped: they need fold verifiers (--cross-fit)", {}
    num_folds = int(folds.group(1))
    t0 = time.perf_counter()
    photos, timings = collect(dataset, num_folds, use_clues=True)
    preds, fitted = fusion_rows(photos, tau_km=args.tau_km)
    preds = {**baseline_rows(photos, load_preset("offline")["gallery"]["datasets"]), **preds}
    truth = np.stack([p.truth for p in photos])
    metrics = {name: accuracy_table(pred, truth) for name, pred in preds.items()}
    text = table(metrics, len(photos), args.benchmark, f"{args.preset}, log-linear fusion, {num_folds} photographer folds")
    n_clues = sum(1 for p in photos if p.clue_summary)
    text += (f"\n\nphotos with a text clue: {n_clues}; seconds: "
             + ", ".join(f"{k} {v:.0f}" for k, v in timings.items() if k != "clue_reports")
             + f"; total {time.perf_counter() - t0:.0f}")
    for w in fitted:
        text += f"\nfold {w.meta['held_out_fold']} weights: " + ", ".join(
            f"{n}={v:.3f}" for n, v in zip(w.features, w.weights, strict=True))
    if args.save_weights:
        w = fit_all(photos, tau_km=args.tau_km)
        w.meta.update({"benchmark": args.benchmark, "verifiers": f"fold verifiers ({num_folds} folds) for features",
                       "deploy_verifier": "offline-verifier"})
        path = w.save(WEIGHTS_DIR / f"{args.save_weights}.json")
        text += f"\nsaved {path}"
    return text, metrics




def run_analogue(args: AblationOptions, out: Path) -> str:
    """The offline analogue's table (cross-fitted by photographer folds), saved in ``out``."""
    t0 = time.perf_counter()
    ab = run_analogue_ablation(args.preset, args.benchmark, num_folds=args.num_folds, limit=args.limit,
                               progress=args.progress, cached_only=args.cached_only, lmm_subset=args.lmm_subset)
    metrics = ab.metrics()
    caption = (f"{args.preset}, each photo scored by the fold model trained without its photographer "
               f"({args.num_folds} folds)")
    text = table(metrics, len(ab.ids), args.benchmark, caption)
    text += "\n\n" + "; ".join(ab.notes) + f"; {time.perf_counter() - t0:.0f} s"
    save_ablation(ab, out)
    if ab.evidence:
        lmm_text, lmm_rows = analogue_lmm_rows(ab, args.preset, load_benchmark(args.benchmark), out / "results-lmm.jsonl",
                                               reuse=args.reuse, progress=args.progress)
        text += "\n\n" + table(lmm_rows, len(ab.evidence), args.benchmark, caption + " + LMM") + "\n\n" + lmm_text
        metrics.update({f"lmm subset: {k}": v for k, v in lmm_rows.items()})
    write_json(out / "metrics.json", metrics, indent=2)
    return text


def analogue_lmm_rows(ab: AnalogueAblation, preset: str, dataset, records_file: Path, reuse: bool = False,
                      progress: bool = True) -> tuple[str, dict[str, dict]]:
    """The analogue's rows on its first ``lmm_subset`` photos, with + LMM (DualGeo's final answer: the LMM's
    parsed answer, else the main-cluster centre) and the LMM alone, the same photos' LMM-free rows above them.

    The LMM records (:func:`geodemo.eval.fold_ablation.locate_with_lmm`) are stored as JSON lines in
    ``records_file``; ``reuse`` takes them from there when they are of the same photos. Returns the summary
    line (parse rate, time) and the rows' metrics.
    """
    ids = [e.id for e in ab.evidence]
    t0 = time.perf_counter()
    records = _reused_records(records_file) if reuse else None
    if records is not None and [r["id"] for r in records] != ids:
        print(f"note: {records_file} holds other photos than the first {len(ids)}; locating them again",
              file=sys.stderr)
        records = None
    if records is None:
        records = locate_with_lmm(preset, ab.evidence, dataset, progress=progress)
        write_text(records_file, "".join(json.dumps(r) + "\n" for r in records))
    row_of = {sid: i for i, sid in enumerate(ab.ids)}
    rows = np.array([row_of[sid] for sid in ids], dtype=np.int64)
    truth = ab.truth[rows]
    plain = {name: pred[rows] for name, pred in ab.rows.items()}
    lmm = {"LMM answer alone (first parsed answer; none parsed: a miss)": row_lmm_only(records, None),
           "+ LMM (DualGeo: the LMM's answer, else the main-cluster centre)": row_verified(records, None)}
    ordered = {**{k: v for k, v in plain.items() if not k.startswith("oracle")}, **lmm,
               **{k: v for k, v in plain.items() if k.startswith("oracle")}}
    out = {name: accuracy_table(pred, truth) for name, pred in ordered.items()}
    text = f"{lmm_summary(None, records)}; {time.perf_counter() - t0:.0f} s for the LMM photos"
    return text, out


def run_ablation(args: AblationOptions) -> str:
    """Run the ablation of ``args.preset`` on ``args.benchmark``; returns the table text (also saved
    as ``table.md`` and ``metrics.json`` in ``args.out``)."""
    if args.save_weights and args.benchmark != "im2gps3k-dev":
        raise ValueError("fusion weights are fitted on the dev split only (im2gps3k-dev)")
    out = args.out or Path("runs") / f"ablate-{args.benchmark}-{args.preset}"
    out.mkdir(parents=True, exist_ok=True)
    if args.analogue:
        text = run_analogue(args, out)
        write_text(out / "table.md", text + "\n")
        return text
    results_file = out / "results.jsonl"
    dataset = load_benchmark(args.benchmark)
    locator = GeoLocator.from_preset(args.preset, gallery={"progress": False}).warmup()
    aligner = locator.config.get("verifier", {}).get("aligner")
    pattern = args.cross_fit
    if pattern == "auto":
        pattern = f"{aligner}-fold{{}}of3" if aligner and (checkpoints_dir() / f"{aligner}-fold0of3").is_dir() else "none"
    by_group = None if pattern == "none" else fold_locators(args.preset, pattern)
    if by_group is None and locator.aligner is not None:
        print(f"warning: verifying with aligner {aligner!r} as is; if it was trained on {args.benchmark} "
              "photos the verification rows are optimistic (use --cross-fit)", file=sys.stderr)
    t0 = time.perf_counter()
    records = _reused_records(results_file) if args.reuse else None
    if records is None:
        records = run_photos(dataset, locator, results_file, args.limit, by_group=by_group,
                             progress=args.progress)
    elapsed = time.perf_counter() - t0
    ctx = Context(args.benchmark, locator, locator.gallery.meta, dataset)
    truth = np.array([[r["lat"], r["lon"]] for r in records])
    rows = {name: accuracy_table(fn(records, ctx), truth) for name, fn in ROWS}
    verifiers = sorted({r["result"]["verifier"] for r in records})
    text = table(rows, len(records), args.benchmark, args.preset)
    text += f"\n\nverifier(s): {', '.join(verifiers)}; gallery: {len(locator.gallery)} photos "
    text += f"({', '.join(locator.config['gallery'].get('datasets', []))}); {elapsed:.0f} s for the photos"
    text += f"; cross-fitted aligner folds: {pattern}"
    if args.lmm_subset:
        lmm_file = out / "results-lmm.jsonl"
        t1 = time.perf_counter()
        lmm_records = _reused_records(lmm_file) if args.reuse else None
        if lmm_records is None:
            lmm_records = run_photos(dataset, locator, lmm_file, args.lmm_subset, LocateOptions({"lmm": {"enabled": True}}),
                                     by_group=by_group, progress=args.progress)
        lmm_elapsed = time.perf_counter() - t1
        ids = {r["id"] for r in lmm_records}
        plain = [r for r in records if r["id"] in ids]
        sub_truth = np.array([[r["lat"], r["lon"]] for r in lmm_records])
        plain_truth = np.array([[r["lat"], r["lon"]] for r in plain])
        sub_rows = {
            "+ verification (final answer), no LMM": accuracy_table(row_verified(plain, ctx), plain_truth),
            "LMM answers alone (first parsed answer)": accuracy_table(row_lmm_only(lmm_records, ctx), sub_truth),
            "+ LMM candidates (final answer)": accuracy_table(row_verified(lmm_records, ctx), sub_truth),
            "oracle best-of-candidates incl. LMM": accuracy_table(row_oracle(lmm_records, ctx), sub_truth),
        }
        text += "\n\n" + table(sub_rows, len(lmm_records), args.benchmark, args.preset + " + LMM")
        text += f"\n\n{lmm_summary(plain, lmm_records)}; {lmm_elapsed:.0f} s for the LMM photos"
        rows.update({f"lmm subset: {k}": v for k, v in sub_rows.items()})
    if args.fusion or args.save_weights:
        fusion_text, fusion_rows = fusion_report(dataset, args, pattern)
        text += "\n\n" + fusion_text
        rows.update({f"fusion: {k}": v for k, v in fusion_rows.items()})
    write_text(out / "table.md", text + "\n")
    write_json(out / "metrics.json", rows, indent=2)
    return text


def _reused_records(path: Path) -> list[dict] | None:
    """The records of an earlier run's JSON-lines file; None when there is none or it is unreadable
    (then reported once and deleted: the photos are located again)."""
    records: list[dict] = []

    def parse(text: str) -> None:
        records.extend(json.loads(line) for line in text.splitlines() if line.strip())

    return records if read_text(path, "ablation results", validate=parse) is not None else None
