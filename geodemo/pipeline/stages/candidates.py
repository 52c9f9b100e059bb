"""Candidate coordinates for verification, one stage per source.

* ``candidates.cluster_centre`` (ours): the main DBSCAN cluster's spherical-mean centre;
* ``candidates.retrieval`` (G3's S retrieved candidates): the first neighbours, re-ranked order
  when a clustering ran;
* ``candidates.gps_gallery`` (ours): GeoCLIP's GPS gallery searched in the aligner's GPS space;
* ``candidates.geoclip`` (GeoCLIP): ``GeoCLIP.predict``'s top k of its 100K GPS gallery, each with
  GeoCLIP's softmax probability as its score;
* ``candidates.text_gallery`` (ours): place-name prompts searched with the image embedding;
* ``candidates.lmm`` (G3): every parsed LMM answer;
* ``candidates.recorded`` (ours): another geolocator's recorded predictions, source = its name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from geodemo.models.geoclip import geoclip_predict, load_gps_gallery
from geodemo.pipeline.context import LocateContext
from geodemo.pipeline.failures import record_failure
from geodemo.pipeline.stages import register_stage
from geodemo.pipeline.stages.base import Stage
from geodemo.result import Candidate

if TYPE_CHECKING:
    from geodemo.pipeline.components import Components


@register_stage
class ClusterCentre(Stage):
    name = "candidates.cluster_centre"
    description = "main cluster centre as a candidate"

    def run(self, ctx: LocateContext) -> None:
        clustering = ctx.result.clusters_after
        if clustering is None or clustering.main is None:
            return
        m = clustering.main
        ctx.result.candidates.append(Candidate(
            m.centre_lat, m.centre_lon, "cluster-centre", retrieval_similarity=m.similarity_mass,
            details={"support": m.support, "radius_km": m.radius_km, "label": m.label}))


@dataclass(frozen=True)
class RetrievalCandidatesConfig:
    retrieval_top: int | None = None  # S: neighbours proposed (None: all kept neighbours)


@register_stage
class RetrievalCandidates(Stage):
    name = "candidates.retrieval"
    section = "candidates"
    Config = RetrievalCandidatesConfig
    papers = frozenset({"g3"})
    description = "the S first retrieved (or re-ranked) neighbours"

    def run(self, ctx: LocateContext) -> None:
        nb = ctx.result.neighbours
        clustering = ctx.result.clusters_after
        order = clustering.order if clustering is not None else range(len(nb))
        top = self.config.retrieval_top
        for i in list(order)[: int(top if top is not None else ctx.top_k)]:
            n = nb[i]
            ctx.result.candidates.append(Candidate(n.lat, n.lon, "retrieval", retrieval_similarity=n.similarity,
                                                   details={"id": n.id, "rank": n.rank, "place": n.place}))


def _gallery_candidates(ctx: LocateContext, stage: str, db, query, k: int, source: str, details,
                        encoder_name: str | None = None) -> None:
    """The ``k`` entries of gallery ``db`` nearest to ``query()`` as candidates (failures recorded)."""
    try:
        hit = db.search(np.asarray(query())[None, :], k=k, encoder_name=encoder_name)[0]
        for n in db.neighbours(hit.indices, hit.similarities, source=source):
            ctx.result.candidates.append(Candidate(n.lat, n.lon, source, retrieval_similarity=n.similarity,
                                                   details=details(n)))
    except Exception as exc:  # noqa: BLE001 - optional stage
        record_failure(ctx.result, stage, exc)


@dataclass(frozen=True)
class GPSGalleryConfig:
    enabled: bool = True
    top_k: int = 5


@dataclass(frozen=True)
class TextGalleryConfig:
    enabled: bool = True
    top_k: int = 5
    min_population: int = 100_000  # GeoNames cities at least this large


@register_stage
class GPSGalleryCandidates(Stage):
    name = "candidates.gps_gallery"
    section = "gps_gallery"
    Config = GPSGalleryConfig
    description = "GeoCLIP GPS-gallery top points in the aligner's space"

    def skip(self, ctx: LocateContext) -> bool:
        return not self.config.enabled

    def prepare(self, components: Components) -> None:
        components.gps_gallery()  # seconds on a fresh cache

    def run(self, ctx: LocateContext) -> None:
        comp = ctx.components
        gps = comp.gps_gallery()
        if gps is None:
            exc = comp.failures.get("gps_gallery") or comp.failures.get("aligner")
            record_failure(ctx.result, self.name, exc or "no aligner is configured for the GPS gallery",
                           unavailable=True)
            return
        _gallery_candidates(ctx, self.name, gps, lambda: ctx.aligner_gps(), int(self.config.top_k), "gps-gallery",
                            lambda n: {"id": n.id})


@register_stage
class GeoCLIPCandidates(Stage):
    """GeoCLIP's prediction (:func:`geodemo.models.geoclip.geoclip_predict`) with the preset's aligner,
    which must be GeoCLIP's (``verifier.aligner: "geoclip"``)."""

    name = "candidates.geoclip"
    section = "geoclip"
    Config = GPSGalleryConfig  # the same settings: enabled, top_k
    papers = frozenset({"geoclip"})
    description = "GeoCLIP's top k of its 100K GPS gallery, scored by its softmax probability"

    def skip(self, ctx: LocateContext) -> bool:
        return not self.config.enabled

    def prepare(self, components: Components) -> None:
        components.get("geoclip_gallery", load_gps_gallery)  # about 12 s once, then read from the cache

    def run(self, ctx: LocateContext) -> None:
        comp = ctx.components
        aligner = comp.aligner
        if aligner is None or getattr(aligner, "name", None) != "geoclip":
            record_failure(ctx.result, self.name, comp.failures.get("aligner")
                           or "GeoCLIP's prediction needs verifier.aligner \"geoclip\"", unavailable=True)
            return
        try:
            coords, probs = geoclip_predict(aligner, ctx.features, comp.get("geoclip_gallery", load_gps_gallery),
                                            int(self.config.top_k))
        except Exception as exc:  # noqa: BLE001 - recorded, the other sources still answer
            record_failure(ctx.result, self.name, exc)
            return
        for rank, ((lat, lon), prob) in enumerate(zip(coords, probs, strict=True)):
            ctx.result.candidates.append(Candidate(float(lat), float(lon), "geoclip", score=float(prob),
                                                   details={"probability": float(prob), "rank": rank}))


@register_stage
class TextGalleryCandidates(Stage):
    name = "candidates.text_gallery"
    section = "text_gallery"
    Config = TextGalleryConfig
    description = "place-name prompts nearest to the photo (encoder's text tower)"

    def skip(self, ctx: LocateContext) -> bool:
        return not self.config.enabled

    def prepare(self, components: Components) -> None:
        if getattr(components.encoder, "has_text_tower", False):
            components.text_gallery(int(self.config.min_population))

    def run(self, ctx: LocateContext) -> None:
        comp = ctx.components
        if not getattr(comp.encoder, "has_text_tower", False):
            record_failure(ctx.result, self.name, "the preset's encoder has no text tower", unavailable=True)
            return
        text = comp.text_gallery(int(self.config.min_population))
        if text is None:
            record_failure(ctx.result, self.name, comp.failures.get("text_gallery") or "no text gallery")
            return
        _gallery_candidates(ctx, self.name, text, lambda: ctx.features, int(self.config.top_k), "text-gallery",
                            lambda n: {"place": n.place}, encoder_name=comp.encoder.name)


@register_stage
class LMMCandidates(Stage):
    name = "candidates.lmm"
    papers = frozenset({"g3"})
    description = "every parsed LMM answer"

    def run(self, ctx: LocateContext) -> None:
        for r in ctx.result.lmm_records:
            if r.accepted:
                ctx.result.candidates.append(Candidate(float(r.lat), float(r.lon), f"lmm:{r.prompt_kind}",
                                                       details={"sample": r.sample, "model": r.model}))


@register_stage
class RecordedCandidates(Stage):
    name = "candidates.recorded"
    description = "other geolocators' recorded predictions (--recorded-candidates NAME=FILE)"

    def run(self, ctx: LocateContext) -> None:
        for recorded in ctx.components.recorded("candidates"):
            ctx.sources.append(recorded.name)
            points = recorded.points(ctx.photo_id) if ctx.photo_id is not None else []
            for rank, p in enumerate(points):
                ctx.result.candidates.append(Candidate(p.lat, p.lon, recorded.name,
                                                       details={"recorded": recorded.name, "rank": rank,
                                                                "kind": p.kind}))
            if not points:
                record_failure(ctx.result, self.name, f"recorded: {recorded.name} has no prediction for this photo")
