"""Cross-fitted ablation of the offline analogues of G3 and DualGeo on cached features.

The analogues (``dualgeo-offline``, ``g3-offline``) are trained by photographer folds
(``scripts/train.py --preset NAME --folds K`` writes ``checkpoints/NAME-fold{k}of{K}``). Here every
photo of the benchmark is scored only by the fold model whose training never saw its photographer
(:func:`fold_assignment`), against a gallery (the preset's gallery datasets) from which its own photo
and every photo by its photographer are removed. Each stage of the paper adds one row:

* DualGeo: image view only, segmentation view only, dual view (fused), DualGeo's descriptor
  (enhanced image view + raw features), + DBSCAN re-ranking, the main-cluster centre, and on the first
  ``lmm_subset`` photos + LMM (:func:`locate_with_lmm`: the preset's own LMM and decision stages over
  the same fold-held-out neighbours).
* G3: raw features, the image->GPS head alone, G3's descriptor (raw features + image->GPS embedding,
  no text tower offline), + verification of the retrieved candidates by the trained head.

Both add the density prior and the oracle best of the candidates. All views come from
:func:`model_views`, the same embeddings the trained model gives the pipeline.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from geodemo.data import load_benchmark
from geodemo.eval.baselines import DensityPrior, Gallery
from geodemo.eval.harness import QueryPhoto
from geodemo.eval.metrics import accuracy_table
from geodemo.extraction.features import load_benchmark_views, views_for
from geodemo.geo import haversine_km
from geodemo.models.aligners import load_aligner, read_pretrained
from geodemo.models.descriptors import DualGeoDescriptor, DualGeoTokenDescriptor, G3Descriptor
from geodemo.models.dualgeo import DualGeoModel
from geodemo.models.dualgeo_tokens import DualGeoTokenModel
from geodemo.paths import MissingResourceError, checkpoints_dir
from geodemo.pipeline import GeoLocator, LocateOptions
from geodemo.pipeline.presets import load_preset
from geodemo.pipeline.stages import config_from_section
from geodemo.pipeline.stages.rerank import DBSCANConfig
from geodemo.pipeline.stages.retrieve import RetrieveConfig
from geodemo.result import Clustering, Neighbour
from geodemo.retrieval.database import GalleryMeta, IndexConfig, RetrievalDatabase, SearchResult
from geodemo.retrieval.geocode import reverse_geocode_many
from geodemo.retrieval.rerank import cluster_neighbours, retrieval_order
from geodemo.storage import write_json

__all__ = [
    "model_views",
    "FoldModel",
    "load_trained",
    "load_fold_models",
    "fold_assignment",
    "AnalogueAblation",
    "RetrievedEvidence",
    "run_analogue_ablation",
    "locate_with_lmm",
]


def _unit(x: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.where(n > 0, n, 1.0)).astype(np.float32)


@torch.no_grad()
def model_views(model: nn.Module, features: dict[str, np.ndarray], batch_size: int = 128) -> dict[str, np.ndarray]:
    """Unit retrieval vectors of every row under each view the trained model offers.

    DualGeo's model (``image``, ``labelmap``) and our token-level model (``tokens``, ``labelmap``,
    ``image``): ``image``, ``segmentation`` (the GPS-space embeddings of the two views; the token model
    adds ``fused``) and ``descriptor`` (DualGeo's index vector, as :class:`DualGeoDescriptor` /
    :class:`DualGeoTokenDescriptor` build it). G3 (``image``): ``gps`` (the image->GPS head) and
    ``descriptor`` (G3's index vector, :class:`G3Descriptor`). Always ``raw``. A photo's vectors never
    depend on the other rows of its batch (eval mode, per-photo attention).
    """
    was_training = model.training
    model.eval()
    raw = np.asarray(features["image"], dtype=np.float32)
    arch = getattr(model, "architecture", None)
    out: dict[str, list[np.ndarray]] = {}
    try:
        if arch == "dualgeo":
            descriptor = DualGeoDescriptor(model.name, None, None, model, raw.shape[1])
        elif arch == "dualgeo-tokens":
            descriptor = DualGeoTokenDescriptor(model.name, None, None, model, raw.shape[1])
        else:
            descriptor = G3Descriptor(model.name, None, model)
        p = next(model.parameters())
        for s in range(0, len(raw), batch_size):
            rows = slice(s, s + batch_size)
            if arch in ("dualgeo", "dualgeo-tokens"):
                labels = torch.from_numpy(np.asarray(features["labelmap"][rows]).astype(np.int64)).to(p.device)
                if arch == "dualgeo":
                    views = model(torch.from_numpy(raw[rows]).to(p.device), labels)
                    tokens = None
                else:
                    tokens = torch.from_numpy(np.asarray(features["tokens"][rows], np.float32)).to(p.device)
                    views = model(tokens, labels)
                for k in ("image", "segmentation", "fused"):
                    if k in views:
                        out.setdefault(k, []).append(views[k].float().cpu().numpy())
                d = descriptor.describe_features(raw[rows], tokens, labels)
            else:
                d = descriptor.describe_features(raw[rows])
                out.setdefault("gps", []).append(d.gps)
            out.setdefault("descriptor", []).append(d.descriptor)
    finally:
        model.train(was_training)
    views = {k: np.concatenate(v).astype(np.float32) for k, v in out.items()}
    views["raw"] = _unit(raw)
    return views


@dataclass
class FoldModel:
    """A fold checkpoint: its folder, model, and the photographers it held out and trained on."""

    name: str
    model: nn.Module
    held_out_groups: set[str]
    train_groups: set[str]
    config: dict[str, Any] = field(default_factory=dict)


def load_trained(folder: str | Path, device: str = "cpu") -> nn.Module:
    """A trained checkpoint folder of any architecture the trainer writes (DualGeo included)."""
    cfg, _ = read_pretrained(folder)
    if cfg.get("architecture") in ("dualgeo", "dualgeo-tokens"):
        cls = DualGeoModel if cfg["architecture"] == "dualgeo" else DualGeoTokenModel
        model = cls.from_pretrained(folder, device=device)
        model.provenance = dict(cfg.get("training") or {})
        return model
    return load_aligner(folder, device=device)


def load_fold_models(preset: str, num_folds: int) -> list[FoldModel]:
    """``checkpoints/<preset>-fold{k}of{num_folds}`` for every k (clear error when one is missing)."""
    out = []
    for k in range(num_folds):
        name = f"{preset}-fold{k}of{num_folds}"
        folder = checkpoints_dir() / name
        if not (folder / "config.json").is_file():
            raise MissingResourceError(
                f"fold checkpoint {name} not found under {checkpoints_dir()}; make the fold models with "
                f"`python scripts/train.py --preset {preset} --folds {num_folds}`")
        cfg, _ = read_pretrained(folder)
        training = cfg.get("training", {})
        out.append(FoldModel(name, load_trained(folder), set(training.get("held_out_groups", [])),
                             set(training.get("train_groups", [])), cfg))
    return out


def group_key(sample_id: str, group: str | None) -> str:
    """The trainer's photographer key (``id:<id>`` for photos without one)."""
    return group if group else f"id:{sample_id}"


def fold_assignment(ids: list[str], groups: list[str | None], models: list[FoldModel]) -> np.ndarray:
    """Index of the fold model that scores each photo: the one that held out its photographer.

    -1 where no model held it out. Raises if a photo's photographer is among the training groups of
    the model chosen for it (a model never scores photos of photographers it trained on).
    """
    out = np.full(len(ids), -1, dtype=np.int64)
    for i, (sid, g) in enumerate(zip(ids, groups, strict=True)):
        key = group_key(sid, g)
        for k, m in enumerate(models):
            if key in m.held_out_groups:
                if key in m.train_groups:
                    raise ValueError(f"photographer {key!r} is both held out by and trained into {m.name}")
                out[i] = k
                break
    return out


@dataclass
class RetrievedEvidence:
    """What the preset's retrieval and DBSCAN stages give one photo, from its fold model and its
    photographer-free gallery: the input of the preset's later stages (LMM, decision)."""

    id: str
    group: str | None
    truth: tuple[float, float]
    scorer: str  # the fold model that never saw the photographer
    neighbours: list[Neighbour]  # similar, retrieval order (the + DBSCAN row's list)
    dissimilar: list[Neighbour]
    clustering: Clustering  # after re-ranking


@dataclass
class AnalogueAblation:
    """Predictions of each row on the scored photos, and what the table's caption needs."""

    preset: str
    benchmark: str
    ids: list[str]
    truth: np.ndarray
    rows: dict[str, np.ndarray]
    notes: list[str] = field(default_factory=list)
    neighbour_ids: list[list[str]] = field(default_factory=list)  # retrieved by the main view, per photo
    evidence: list[RetrievedEvidence] = field(default_factory=list)  # the first ``lmm_subset`` photos (DualGeo)

    def metrics(self) -> dict[str, dict[str, float]]:
        return {name: accuracy_table(pred, self.truth) for name, pred in self.rows.items()}


def _stage_config(config: type, preset: dict[str, Any], section: str) -> Any:
    """The stage config ``config`` as the preset's ``section`` sets it (defaults: the stage's own; keys that
    other stages of the section read are left to them)."""
    values = dict(preset.get(section) or {})
    return config_from_section(config, values, what=f"section {section!r}", allowed=set(values))


def _search(view: np.ndarray, query_rows: np.ndarray, ids: list[str], groups: list[str | None],
            coords: np.ndarray, k: int, k_dissimilar: int = 0) -> list[SearchResult]:
    """Top-``k`` (and ``k_dissimilar`` least similar) gallery rows of each query row with its photo and
    photographer excluded (FAISS, exact)."""
    db = RetrievalDatabase.build(view, GalleryMeta(ids, coords, groups=groups), "view", IndexConfig("flat"),
                                 progress=False)
    return db.search(view[query_rows], k=k, k_dissimilar=k_dissimilar, exclude_ids=[{ids[i]} for i in query_rows],
                     exclude_groups=[{groups[i]} if groups[i] else set() for i in query_rows])


def run_analogue_ablation(
    preset_name: str,
    benchmark: str = "im2gps3k-dev",
    num_folds: int = 3,
    limit: int | None = None,
    progress: bool = True,
    table: Any = None,
    query_ids: set[str] | None = None,
    cached_only: bool = False,
    lmm_subset: int = 0,
    compare: str | None = None,
) -> AnalogueAblation:
    """Every photo of ``benchmark`` scored by its fold model (see module doc); rows in table order.

    ``table`` (a :class:`~geodemo.data.FeatureTable` of the gallery) and ``query_ids`` replace the
    preset's gallery datasets and the benchmark's photos (tests use a small subset). ``cached_only`` keeps
    the photos whose label maps are already cached (nothing is segmented; the notes say how many).
    ``lmm_subset`` (DualGeo): keep the retrieved evidence of the first N scored photos for
    :func:`locate_with_lmm`. ``compare``: another analogue preset (``dualgeo-tokens-offline``, our
    token-level model; default: the preset's ``compare_with``) whose fold models score the same photos
    the same way; its descriptor and re-ranking rows join the table, so the faithful model and ours sit
    side by side.
    """
    given_table = table
    preset = load_preset(preset_name)
    spec = preset.get("descriptor") or {}
    kind = spec.get("kind")
    if kind not in ("dualgeo", "dualgeo-tokens", "g3"):
        raise ValueError(f"preset {preset_name!r} is not an offline analogue (descriptor kind {kind!r})")
    datasets = list(preset["gallery"]["datasets"])
    if table is None and benchmark not in datasets:
        raise ValueError(f"{benchmark!r} must be one of the preset's gallery datasets {datasets} "
                         "(its photos are scored leave-one-photographer-out)")
    models = load_fold_models(spec.get("checkpoint", preset_name), num_folds)
    dual = kind != "g3"
    tokens = kind == "dualgeo-tokens"
    if table is None:
        opts = views_for(models[0].model)
        table = load_benchmark_views(datasets, spec["encoder"], spec.get("segmenter") if dual else None,
                                     tokens=opts["tokens"], labelmap_size=opts["labelmap_size"],
                                     labelmap_resample=opts["labelmap_resample"], progress=progress,
                                     cached_labelmaps_only=cached_only)
        datasets_note = ", ".join(datasets)
        if cached_only:
            datasets_note += "; only photos with cached label maps"
        query_ids = set(load_benchmark(benchmark).ids())
    else:
        datasets_note = "given table"
    bench_ids = set(query_ids) if query_ids is not None else set(table.ids)
    notes = []
    if bench_ids - set(table.ids):
        notes.append(f"{len(bench_ids - set(table.ids))} {benchmark} photos left out (unreadable, or label maps not cached)")
    query_rows = np.array([i for i, sid in enumerate(table.ids) if sid in bench_ids], dtype=np.int64)
    if limit:
        query_rows = query_rows[:limit]
    fold = fold_assignment([table.ids[i] for i in query_rows], [table.groups[i] for i in query_rows], models)
    if (fold < 0).any():
        notes.append(f"{int((fold < 0).sum())} photos held out by no fold model were skipped")
    query_rows, fold = query_rows[fold >= 0], fold[fold >= 0]
    coords = table.coords.astype(np.float64)
    retrieval = _stage_config(RetrieveConfig, preset, "retrieval")  # the preset's values, else the stages' defaults
    top_k, k_dissimilar = int(retrieval.top_k), int(retrieval.k_dissimilar)
    rr = _stage_config(DBSCANConfig, preset, "rerank")
    n = len(query_rows)
    n_lmm = min(n, max(0, int(lmm_subset))) if dual else 0

    names = (["raw", "image", "segmentation", *(["fused"] if tokens else []), "descriptor"] if dual
             else ["raw", "gps", "descriptor"])
    retrieved: dict[str, list[np.ndarray]] = {v: [np.zeros(0, np.int64)] * n for v in names}
    sims: dict[str, list[np.ndarray]] = {v: [np.zeros(0)] * n for v in names}
    far: list[SearchResult | None] = [None] * n_lmm  # the main view's hits of the LMM subset (dissimilar too)
    gps_view: list[np.ndarray] = [np.zeros(0)] * n
    scorer: list[nn.Module | None] = [None] * n  # the fold model that scores each photo
    for k, fm in enumerate(models):
        members = np.flatnonzero(fold == k)
        if not len(members):
            continue
        views = model_views(fm.model, table.features)
        for v in names:
            hits = _search(views[v], query_rows[members], table.ids, table.groups, coords, top_k)
            for j, m in enumerate(members):
                retrieved[v][m], sims[v][m] = hits[j].indices, hits[j].similarities
        asked = members[members < n_lmm]
        if len(asked) and k_dissimilar:
            for m, hit in zip(asked, _search(views["descriptor"], query_rows[asked], table.ids, table.groups,
                                             coords, top_k, k_dissimilar), strict=True):
                far[m] = hit
        for m in members:
            scorer[m] = fm.model
            if not dual:
                gps_view[m] = views["gps"][query_rows[m]]
    rows: dict[str, np.ndarray] = {}
    gallery = Gallery(f"{preset_name}-gallery", coords, table.ids, table.groups)
    rows["density prior (200 km, photographer left out)"] = DensityPrior(gallery).predict(
        [QueryPhoto(table.ids[i], None, table.groups[i]) for i in query_rows])

    def top1(view: str) -> np.ndarray:
        return np.stack([coords[r[0]] if len(r) else (np.nan, np.nan) for r in retrieved[view]])

    main = "descriptor"  # what the preset's database holds
    candidates = [coords[r] for r in retrieved[main]]
    s_top = int((preset.get("candidates") or {}).get("retrieval_top") or top_k)  # G3: S retrieval candidates
    if dual:
        rows["retrieval top-1, raw MobileNet features"] = top1("raw")
        rows["image view only (top-1)"] = top1("image")
        rows["segmentation view only (top-1)"] = top1("segmentation")
        if tokens:
            rows["dual view (fused), top-1"] = top1("fused")
        rows["DualGeo descriptor (enhanced image view + raw features), top-1"] = top1("descriptor")
        reranked, centres = np.full((n, 2), np.nan), np.full((n, 2), np.nan)
        clusterings: list[Clustering | None] = [None] * n
        for i in range(n):
            if len(candidates[i]):
                c = clusterings[i] = cluster_neighbours(
                    candidates[i], sims[main][i], eps_km=float(rr.eps_km), min_samples=int(rr.min_samples),
                    weighted_centre=bool(rr.weighted_centre))
                reranked[i] = candidates[i][c.order[0]]
                mc = next(x for x in c.clusters if x.is_main)
                centres[i] = mc.centre_lat, mc.centre_lon
                candidates[i] = np.concatenate([candidates[i], centres[i][None]])
        rows[f"+ DBSCAN re-ranking ({rr.eps_km:g} km, min {rr.min_samples}), "
             "nearest to main centre"] = reranked
        rows["+ DBSCAN main-cluster centre (answer when no LMM answer parses)"] = centres
    else:
        rows["raw features (MobileNet top-1)"] = top1("raw")
        rows["image->GPS head only (top-1)"] = top1("gps")
        rows["G3 descriptor (raw + image->GPS; no text offline), top-1"] = top1("descriptor")
        verified = np.full((n, 2), np.nan)
        candidates = [c[:s_top] for c in candidates]
        for i in range(n):
            if len(candidates[i]):
                loc = scorer[i].embed_locations(candidates[i])
                verified[i] = candidates[i][int(np.argmax(loc @ gps_view[i]))]
        rows[f"+ head verification (image->GPS vs location encoder) over the top-{s_top}"] = verified
    truth = coords[query_rows]
    oracle = np.stack([c[int(np.argmin(haversine_km(c, t[None])))] if len(c) else (np.nan, np.nan)
                       for c, t in zip(candidates, truth, strict=True)])
    rows["oracle best of these candidates"] = oracle
    notes.append(f"{n} photos scored by {len(models)} fold models ({', '.join(m.name for m in models)}); "
                 f"gallery {len(table)} photos ({datasets_note}), own photographer excluded")
    neighbour_ids = [[table.ids[j] for j in r] for r in retrieved[main]]
    evidence = []
    for i in range(n_lmm):
        if clusterings[i] is None:
            continue
        q = query_rows[i]
        far_rows = far[i].dissimilar_indices if far[i] is not None else np.zeros(0, np.int64)
        far_sims = far[i].dissimilar_similarities if far[i] is not None else np.zeros(0)
        evidence.append(RetrievedEvidence(
            table.ids[q], table.groups[q], (float(coords[q, 0]), float(coords[q, 1])), models[fold[i]].name,
            _neighbours(retrieved[main][i], sims[main][i], table.ids, coords),
            _neighbours(far_rows, far_sims, table.ids, coords), clusterings[i]))
    ids = [table.ids[i] for i in query_rows]
    compare = compare if compare is not None else preset.get("compare_with")
    if compare:
        other = run_analogue_ablation(compare, benchmark, num_folds, limit, progress, given_table, query_ids,
                                      cached_only, 0, compare="")
        where = {sid: j for j, sid in enumerate(other.ids)}
        for name, pred in other.rows.items():
            if name.startswith(("DualGeo descriptor", "+ DBSCAN")):
                aligned = np.full((n, 2), np.nan)
                for i, sid in enumerate(ids):
                    if sid in where:
                        aligned[i] = pred[where[sid]]
                rows[f"{compare}: {name}"] = aligned
        missing = len(set(ids) - set(where))
        notes.append(f"rows '{compare}: ...': our token-level model's fold models on the same photos"
                     + (f" ({missing} photos it could not score count as failures)" if missing else ""))
    return AnalogueAblation(preset_name, benchmark, ids, truth, rows, notes, neighbour_ids, evidence)


def _neighbours(rows: np.ndarray, sims: np.ndarray, ids: list[str], coords: np.ndarray) -> list[Neighbour]:
    """Gallery rows as the pipeline's neighbours, named by their nearest city as the database builder names them."""
    rows = np.asarray(rows, dtype=np.int64)
    places = [p.text for p in reverse_geocode_many(coords[rows])] if len(rows) else []
    return [Neighbour(rank, ids[j], float(coords[j, 0]), float(coords[j, 1]), float(s), place=place)
            for rank, (j, s, place) in enumerate(zip(rows.tolist(), np.asarray(sims).tolist(), places, strict=True))]


#: The preset's stages whose output the fold-held-out evidence replaces (its own database and descriptor model
#: saw every photographer); every other stage of the preset runs as ``python -m geodemo locate`` runs it.
REPLACED_STAGES = ("encode", "retrieve", "rerank.dbscan")


def locate_with_lmm(
    preset_name: str | Path, evidence: list[RetrievedEvidence], dataset: Any, progress: bool = True,
) -> list[dict]:
    """DualGeo's last steps on each photo of ``evidence``: the preset's own stages (load, segment, lmm,
    decide.lmm_answer: the LMM gets the RAG prompt of the re-ranked neighbours, its parsed answer is final,
    else the main cluster's centre) with the LMM on, over the fold-held-out neighbours instead of the
    preset's database. One record per photo, ``{"id", "group", "lat", "lon", "scorer", "result"}``, as the
    pipeline ablation stores them; ``dataset`` holds the photos.
    """
    # no descriptor: the fold models' retrieval replaces it, so its checkpoint (trained on every photographer)
    # is never loaded; the segment stage then loads the same registered segmenter on its own
    locator = GeoLocator.from_preset(str(preset_name), descriptor=None)
    if "rerank.dbscan" not in locator.stage_names:
        raise ValueError(f"preset {preset_name!r} has no rerank.dbscan stage: its LMM rows are not DualGeo's")
    run = [s for s in locator.stage_names if s not in REPLACED_STAGES]
    samples = {s.id: s for s in dataset.samples}
    records = []
    for ev in tqdm(evidence, desc="LMM (fold-held-out neighbours)", unit="photo", disable=not progress):
        ctx = locator.new_context(samples[ev.id].image_path, LocateOptions({"lmm": {"enabled": True}}), display=False)
        ctx.result.neighbours, ctx.dissimilar = list(ev.neighbours), list(ev.dissimilar)
        ctx.result.clusters_before, ctx.result.clusters_after = retrieval_order(ev.clustering), ev.clustering
        first = ev.neighbours[ev.clustering.order[0]]
        ctx.set_answer(first.lat, first.lon)  # the re-ranked top-1, as rerank.dbscan leaves it
        for _ in locator.run_stages(ctx, only=run):
            pass
        records.append({"id": ev.id, "group": ev.group, "lat": ev.truth[0], "lon": ev.truth[1],
                        "scorer": ev.scorer, "result": ctx.result.to_dict()})
    return records


def save_ablation(ab: AnalogueAblation, folder: str | Path) -> None:
    """``predictions.json`` (per row, per photo) beside the table, for re-analysis."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    data = {"preset": ab.preset, "benchmark": ab.benchmark, "ids": ab.ids, "truth": ab.truth.tolist(),
            "rows": {k: np.where(np.isfinite(v), v, None).tolist() for k, v in ab.rows.items()}}
    write_json(folder / "predictions.json", data)
