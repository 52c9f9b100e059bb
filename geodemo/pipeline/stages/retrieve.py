"""``retrieve``: the k most similar gallery photos (and, as G3 does, the k most dissimilar)."""

from __future__ import annotations

from dataclasses import dataclass

from geodemo.pipeline.context import LocateContext
from geodemo.pipeline.stages import register_stage
from geodemo.pipeline.stages.base import Stage, option


@dataclass(frozen=True)
class RetrieveConfig:
    top_k: int = option(20, kind=int, lo=1, hi=200, label="top-k neighbours",
                        help="neighbours to retrieve")  # a call may override it
    k_dissimilar: int = 0  # least similar photos kept for RAG prompts (G3, DualGeo)
    shortlist: int = 0  # rows fetched for a later re-ranking stage (rerank.multiview), cut to top_k there


@register_stage
class Retrieve(Stage):
    name = "retrieve"
    section = "retrieval"
    Config = RetrieveConfig
    papers = frozenset({"g3", "dualgeo"})
    description = "nearest gallery photos (FAISS), similar and dissimilar"

    def run(self, ctx: LocateContext) -> None:
        cfg: RetrieveConfig = self.call_config(ctx)
        ctx.top_k = int(cfg.top_k)
        reranked = "rerank.multiview" in ctx.stage_names
        k = max(ctx.top_k, int(cfg.shortlist)) if reranked else ctx.top_k
        db = ctx.components.gallery
        hit = db.search(
            ctx.embedding[None, :], k=k, k_dissimilar=int(cfg.k_dissimilar),
            encoder_name=ctx.components.retrieval_name,
            exclude_ids=set(ctx.options.exclude_ids), exclude_groups=set(ctx.options.exclude_groups),
        )[0]
        ctx.result.neighbours = db.neighbours(hit.indices, hit.similarities)
        ctx.dissimilar = db.neighbours(hit.dissimilar_indices, hit.dissimilar_similarities)
        if ctx.result.neighbours:
            top = ctx.result.neighbours[0]
            ctx.set_answer(top.lat, top.lon)  # provisional answer: retrieval top-1
