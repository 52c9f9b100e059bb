"""Re-ranking the retrieved photos.

* ``rerank.multiview`` (ours): re-score the shortlist by the best view-pair similarity and test
  whether the new top-1 is a reciprocal neighbour (:mod:`geodemo.retrieval.multiview`);
* ``rerank.dbscan`` (DualGeo): DBSCAN on the sphere (haversine), neighbours re-sorted by distance
  to the main cluster's spherical-mean centre (:mod:`geodemo.retrieval.rerank`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from geodemo.pipeline.context import LocateContext
from geodemo.pipeline.failures import record_failure
from geodemo.pipeline.stages import register_stage
from geodemo.pipeline.stages.base import Stage, option
from geodemo.result import RetrievalMatch
from geodemo.retrieval.multiview import multiview_similarities, query_views, reciprocal_rank
from geodemo.retrieval.rerank import cluster_neighbours, retrieval_order

if TYPE_CHECKING:
    from geodemo.pipeline.components import Components


@dataclass(frozen=True)
class MultiviewConfig:
    crop: float = 0.6  # side share of the four corner crops and the centre crop
    reciprocal_k: int = 0  # > 0: test whether the top-1 is a reciprocal k-nearest neighbour


@register_stage
class RerankMultiview(Stage):
    name = "rerank.multiview"
    section = "multiview"
    Config = MultiviewConfig
    description = "multi-view re-scoring of the shortlist + reciprocal-neighbour test"

    def run(self, ctx: LocateContext) -> None:
        cfg: MultiviewConfig = self.config
        bank = ctx.components.view_bank(cfg.crop)
        if bank is None or not ctx.result.neighbours:
            if bank is None:
                exc = ctx.components.failures.get("view_bank")
                record_failure(ctx.result, self.name, exc or "the gallery's photo views are not available")
            ctx.result.neighbours = ctx.result.neighbours[: ctx.top_k]
            return
        try:
            self._rerank(ctx, bank)
        except Exception as exc:  # noqa: BLE001 - keep the global-descriptor order
            record_failure(ctx.result, self.name, exc)
            ctx.result.neighbours = ctx.result.neighbours[: ctx.top_k]

    def _rerank(self, ctx: LocateContext, bank) -> None:
        cfg: MultiviewConfig = self.config
        if ctx.views is None:
            views = query_views(ctx.image, cfg.crop)
            if ctx.components.descriptor is None and ctx.embedding is not None:
                # the encode stage already embedded the whole photo (views[0]) with this encoder
                rest = ctx.components.encoder.encode_images(views[1:])
                ctx.views = np.concatenate([np.asarray(ctx.embedding, dtype=np.float32)[None], rest]).astype(np.float32)
            else:
                ctx.views = np.asarray(ctx.components.encoder.encode_images(views), dtype=np.float32)
        nb = ctx.result.neighbours
        rows = [bank.row_of(n.id) for n in nb]
        usable = [i for i, r in enumerate(rows) if r is not None and bank.valid[r]]
        sims = np.array([n.similarity for n in nb], dtype=np.float64)
        if usable:
            sims[usable] = multiview_similarities(ctx.views, bank.embeddings[[rows[i] for i in usable]])
        order = np.argsort(-sims, kind="stable")[: ctx.top_k]
        ctx.result.neighbours = [replace(nb[i], similarity=float(sims[i])) for i in order]
        top, row = ctx.result.neighbours[0], rows[int(order[0])]
        ctx.set_answer(top.lat, top.lon)
        if cfg.reciprocal_k > 0 and row is not None:
            keep = bank.keep_mask(set(ctx.options.exclude_ids), set(ctx.options.exclude_groups))
            rank = reciprocal_rank(bank, row, top.similarity, keep)
            ctx.result.match = RetrievalMatch(0, top.id, top.similarity, rank, cfg.reciprocal_k)


@dataclass(frozen=True)
class DBSCANConfig:
    eps_km: float = option(50.0, kind=float, lo=0.1, hi=5000, label="DBSCAN eps (km)",
                           help="DBSCAN radius in km")
    min_samples: int = option(2, kind=int, lo=1, hi=50, label="DBSCAN min samples", help="DBSCAN min_samples")
    weighted_centre: bool = False  # weight the spherical mean by similarity


@register_stage
class RerankDBSCAN(Stage):
    name = "rerank.dbscan"
    section = "rerank"
    Config = DBSCANConfig
    papers = frozenset({"dualgeo"})
    description = "DBSCAN (haversine) main cluster, neighbours re-sorted by distance to its centre"

    def prepare(self, components: Components) -> None:
        import sklearn.cluster  # noqa: F401 - its first import costs about a second

    def run(self, ctx: LocateContext) -> None:
        cfg: DBSCANConfig = self.call_config(ctx)
        nb = ctx.result.neighbours
        if not nb:
            return
        after = cluster_neighbours(ctx.neighbour_coords, ctx.neighbour_similarities, float(cfg.eps_km),
                                   int(cfg.min_samples), cfg.weighted_centre)
        ctx.result.clusters_before = retrieval_order(after)
        ctx.result.clusters_after = after
        first = nb[after.order[0]]
        ctx.set_answer(first.lat, first.lon)
