"""Evidence for the fusion rows of the ablation, leave-one-photographer-out.

``geodemo.eval.ablation`` (``scripts/ablate.py --fusion``, the default) calls :func:`collect` and :func:`rows`; with
``--save-weights offline`` it also fits the weights the preset can ship (:func:`fit_all`).

For each photo: the ``offline`` preset's retrieval and re-ranking with its own photo and its
photographer excluded from the gallery; a learned verifier trained WITHOUT its photographer's fold
(``checkpoints/offline-verifier-fold{k}of{K}``, see ``fold_verifier_command``); its GPS-gallery
candidates; its text clues. The fusion weights that score a photo are fitted on the other folds
(grouped K-fold on the photographer). ``rows()`` returns the predictions of every row; the table
matches ``scripts/ablate.py``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from geodemo.clues import read_clues
from geodemo.clues.reader import cached_clues
from geodemo.data import load_benchmark
from geodemo.eval import QueryPhoto
from geodemo.eval.baselines import DensityPrior, Gallery
from geodemo.extraction.features import image_features
from geodemo.geo import haversine_km
from geodemo.models.aligners import load_aligner
from geodemo.models.gps import geoclip_gps_gallery
from geodemo.pipeline import GeoLocator
from geodemo.pipeline.presets import load_preset
from geodemo.retrieval.database import GalleryMeta, IndexConfig, RetrievalDatabase
from geodemo.retrieval.galleries import gps_gallery
from geodemo.scoring.evidence import CandidateSet, gather_candidates
from geodemo.scoring.features import FEATURES
from geodemo.scoring.fusion import FusionWeights, cross_validated_choices, fit_fusion, group_folds

__all__ = ["PhotoEvidence", "fold_verifier_name", "fold_verifier_command", "collect", "rows", "fit_all",
           "baseline_rows"]


def fold_verifier_name(fold: int, num_folds: int) -> str:
    """Checkpoint folder (under ``checkpoints_dir()``) of the verifier that never saw fold ``fold``."""
    return f"offline-verifier-fold{fold}of{num_folds}"


def fold_verifier_command(fold: int, num_folds: int) -> str:
    return (f"python scripts/train.py --preset offline-verifier --folds {num_folds} --fold {fold} "
            f"--out checkpoints/{fold_verifier_name(fold, num_folds)}")


@dataclass
class PhotoEvidence:
    """One photo of the ablation: truth, fold, candidate sets per stage, and the stored result."""

    id: str
    group: str | None
    truth: np.ndarray  # (2,)
    fold: int
    base: CandidateSet  # cluster centre + retrieval, with verifier features
    full: CandidateSet  # + GPS-gallery candidates
    result: dict[str, Any] = field(default_factory=dict)
    clue_summary: str = ""


def _locate_all(dataset: Any, progress: bool, limit: int | None) -> tuple[list[dict], Any, Any]:
    """Retrieval + re-ranking of every photo with the offline preset, leave-one-photographer-out."""
    locator = GeoLocator.from_preset(
        "offline", segmenter=None, clues={"enabled": False}, gps_gallery={"enabled": False},
        verifier={"order": ["support"], "aligner": None}, lmm={"enabled": False},
    )
    feats = image_features(locator.config["encoder"], dataset, progress=progress)
    bank = locator.view_bank()  # multi-view re-ranking: the benchmark's photos are in the gallery
    records = []
    samples = dataset.samples[:limit] if limit else dataset.samples
    for i, s in enumerate(tqdm(samples, desc="retrieval (LOPO)", disable=not progress)):
        if not feats.valid[i]:
            continue
        q = QueryPhoto(s.id, s.image_path, s.group)  # the locator decodes it (cheap next to OCR)
        views = bank.views_of(s.id) if bank is not None else None
        r = locator.locate_query(q, embedding=feats.embeddings[i], views=views)
        records.append({"id": s.id, "group": s.group, "lat": s.lat, "lon": s.lon, "index": i,
                        "result": r.to_dict()})
    return records, feats, locator


def _shared_gps_gallery(aligners: list[Any], progress: bool) -> tuple[Any, Any]:
    """One GPS-gallery database and location-embedding function for all fold aligners.

    Fold verifiers keep GeoCLIP's location encoder frozen, so they share its cached 100K gallery
    embeddings; this is checked on sample points, else each aligner embeds on its own (slow).
    """
    coords, emb = geoclip_gps_gallery(progress=progress)
    sample = np.asarray(coords[:: max(1, len(coords) // 64)][:64], dtype=np.float64)
    for a in aligners:
        if not np.allclose(np.asarray(a.embed_locations(sample)), emb[:: max(1, len(coords) // 64)][:64], atol=1e-4):
            return None, None
    db = RetrievalDatabase.build(np.asarray(emb, dtype=np.float32),
                                 GalleryMeta([f"gps-{i}" for i in range(len(coords))], np.asarray(coords, np.float64)),
                                 "gps:geoclip-location-encoder", IndexConfig("flat"), progress=False)
    cache: dict[tuple[float, float], np.ndarray] = {
        (float(a), float(b)): e for (a, b), e in zip(np.asarray(coords, np.float64), emb, strict=True)}
    encoder = aligners[0]

    def embed(xy: np.ndarray) -> np.ndarray:
        keys = [(float(a), float(b)) for a, b in np.asarray(xy, dtype=np.float64)]
        missing = [k for k in dict.fromkeys(keys) if k not in cache]
        if missing:
            for k, e in zip(missing, np.asarray(encoder.embed_locations(np.array(missing))), strict=True):
                cache[k] = e
        return np.stack([cache[k] for k in keys])

    return db, embed


def collect(
    dataset: Any, num_folds: int = 5, use_clues: bool | str = True, progress: bool = True,
    limit: int | None = None,
) -> tuple[list[PhotoEvidence], dict[str, float]]:
    """Evidence of every photo (see module doc) and seconds spent per stage.

    ``use_clues``: True reads every photo's text (cached on disk), "cached" uses only reports already
    cached (other photos get no clue, and are counted), False skips clues.
    """
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    records, feats, _ = _locate_all(dataset, progress, limit)
    timings["retrieval+rerank"] = time.perf_counter() - t0
    folds = group_folds([r["group"] for r in records], [r["id"] for r in records], num_folds)
    clue_cfg = {k: v for k, v in load_preset("offline").get("clues", {}).items() if k != "apply_prior"}
    clue_cfg["enabled"] = True
    by_sample = {s.id: s for s in dataset.samples}
    reports: dict[str, Any] = {}
    t = time.perf_counter()
    if use_clues:
        for r in tqdm(records, desc="text clues", disable=not progress):
            path = by_sample[r["id"]].image_path
            reports[r["id"]] = read_clues(path, clue_cfg) if use_clues is True else cached_clues(path, clue_cfg)
    timings["clues"] = time.perf_counter() - t
    t = time.perf_counter()
    aligners = [load_aligner(fold_verifier_name(k, num_folds)) for k in range(num_folds)]
    shared_db, shared_embed = _shared_gps_gallery(aligners, progress)
    if shared_embed is not None:  # all candidate locations at once (batched)
        base_xy = [[c["lat"], c["lon"]] for r in records for c in r["result"]["candidates"]]
        if base_xy:
            shared_embed(np.array(base_xy, dtype=np.float64))
    out: list[PhotoEvidence] = []
    for k in range(num_folds):
        aligner = aligners[k]
        gps_db = shared_db if shared_db is not None else gps_gallery(aligner, progress=progress)
        members = [i for i in range(len(records)) if folds[i] == k]
        for i in tqdm(members, desc=f"fold {k + 1}/{num_folds}", disable=not progress):
            r = records[i]
            report = reports.get(r["id"])
            emb = feats.embeddings[r["index"]]
            base = gather_candidates(r["result"], emb, aligner, None, report, embed_locations=shared_embed)
            full = gather_candidates(r["result"], emb, aligner, gps_db, report, embed_locations=shared_embed)
            out.append(PhotoEvidence(r["id"], r["group"], np.array([r["lat"], r["lon"]]), k, base, full,
                                     r["result"], report.summary if report is not None else ""))
    timings["verifier+gps"] = time.perf_counter() - t
    timings["clue_reports"] = float(sum(1 for v in reports.values() if v is not None))
    out.sort(key=lambda p: p.id)
    return out, timings


def _distances(cs: CandidateSet, truth: np.ndarray) -> np.ndarray:
    if len(cs.coords) == 0:
        return np.zeros(0)
    return haversine_km(cs.coords, truth[None, :])


def _pick(photos: list[PhotoEvidence], sets: list[CandidateSet], choice: np.ndarray) -> np.ndarray:
    out = np.full((len(photos), 2), np.nan)
    for i, (cs, c) in enumerate(zip(sets, choice, strict=True)):
        if len(cs.coords):
            out[i] = cs.coords[int(c)]
    return out


def baseline_rows(photos: list[PhotoEvidence], gallery_datasets: list[str]) -> dict[str, np.ndarray]:
    """The rows of ``scripts/ablate.py`` on the same photos: density prior, retrieval top-1, re-ranked."""
    sets = [load_benchmark(name) for name in gallery_datasets]
    gallery = Gallery("offline-gallery", np.concatenate([d.coords() for d in sets]),
                      [i for d in sets for i in d.ids()], [g for d in sets for g in d.groups()])
    prior = DensityPrior(gallery).predict([QueryPhoto(p.id, None, p.group) for p in photos])
    top1 = np.full((len(photos), 2), np.nan)
    reranked = np.full((len(photos), 2), np.nan)
    for i, p in enumerate(photos):
        nb = p.result.get("neighbours") or []
        if nb:
            top1[i] = nb[0]["lat"], nb[0]["lon"]
            order = (p.result.get("clusters_after") or {}).get("order") or [0]
            reranked[i] = nb[order[0]]["lat"], nb[order[0]]["lon"]
    return {"density prior (200 km, photographer left out)": prior, "retrieval top-1 (multi-view re-ranked)": top1,
            "+ re-ranking (DBSCAN 50 km, nearest to main centre)": reranked}


def rows(photos: list[PhotoEvidence], **fit_kwargs: Any) -> tuple[dict[str, np.ndarray], list[FusionWeights]]:
    """Predictions ``(N, 2)`` of each added late stage, in order (fusion cross-validated by fold)."""
    folds = np.array([p.fold for p in photos])
    base = [p.base for p in photos]
    full = [p.full for p in photos]
    names = list(FEATURES)
    out: dict[str, np.ndarray] = {}

    def cv(sets: list[CandidateSet], use: list[str]) -> tuple[np.ndarray, list[FusionWeights]]:
        cols = [names.index(f) for f in use]
        xs = [cs.features[:, cols] for cs in sets]
        ds = [_distances(cs, p.truth) for cs, p in zip(sets, photos, strict=True)]
        choice, fitted = cross_validated_choices(xs, ds, folds, use, **fit_kwargs)
        return _pick(photos, sets, choice), fitted

    verifier_only = np.array([int(np.argmax(cs.features[:, names.index("verifier")])) if len(cs.coords) else 0
                              for cs in base])
    out["+ learned verifier (fold-held-out), argmax over retrieval candidates"] = _pick(photos, base, verifier_only)
    out["+ fusion: retrieval + support (50/750 km) + verifier (CV weights)"], _ = cv(base, ["retrieval", "support", "support_wide", "verifier"])
    out["+ GPS-gallery candidates (fusion + gallery posterior)"], _ = cv(
        full, ["retrieval", "support", "support_wide", "verifier", "gps_gallery", "gps_wide"])
    out["+ text clues (all evidence fused)"], fitted = cv(full, names)
    oracle = [int(np.argmin(_distances(cs, p.truth))) if len(cs.coords) else 0 for cs, p in zip(full, photos, strict=True)]
    out["oracle best of these candidates (incl. GPS gallery)"] = _pick(photos, full, np.array(oracle))
    return out, fitted


def fit_all(photos: list[PhotoEvidence], **fit_kwargs: Any) -> FusionWeights:
    """Weights on every photo of the dev split (what the preset ships)."""
    xs = [p.full.features for p in photos]
    ds = [_distances(p.full, p.truth) for p in photos]
    return fit_fusion(xs, ds, list(FEATURES), **fit_kwargs)
