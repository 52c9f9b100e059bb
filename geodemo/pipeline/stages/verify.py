"""Verification: score every candidate against the photo.

* ``verify`` (G3's geo-verification with a GeoAligner, falling back to text and retrieval support
  in the order ``verifier.order`` lists): :mod:`geodemo.retrieval.verify`;
* ``verify.gps_head`` (G3): the descriptor model's own image->GPS head against its location
  encoder (G3's released model verifies with itself);
* ``verify.fusion`` (ours): log-linear fusion of all evidence with weights fitted on the dev split;
* ``verify.clue_prior`` (ours): scores times the text-clue country prior;
* ``verify.reciprocal`` (ours): a reciprocal-neighbour photo match overrides the verifier.

Each leaves ``ctx.verification`` (scores, best index) for the ``decide.*`` stage and writes every
candidate's ``score``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from geodemo.clues import clue_prior
from geodemo.pipeline.context import LocateContext
from geodemo.pipeline.decision import reciprocal_candidate
from geodemo.pipeline.failures import record_failure
from geodemo.pipeline.stages import register_stage
from geodemo.pipeline.stages.base import Stage
from geodemo.retrieval.verify import AlignerVerifier, SupportVerifier, TextVerifier, Verification, VerifyInput
from geodemo.scoring.apply import fused_scores

VERIFIER_KINDS = ("aligner", "text", "support")


def _set_scores(ctx: LocateContext, ver: Verification, *, detail: str | None = None) -> None:
    for c, sc in zip(ctx.result.candidates, ver.scores, strict=True):
        c.score = float(sc)
        if detail:
            c.details[detail] = float(sc)
    ctx.verification = ver


@dataclass(frozen=True)
class VerifyConfig:
    order: list[str] = field(default_factory=lambda: list(VERIFIER_KINDS))
    support_radius_km: float = 50.0


@register_stage
class Verify(Stage):
    name = "verify"
    section = "verifier"
    Config = VerifyConfig
    papers = frozenset({"g3"})
    description = "verifier chain: aligner (GPS space), else text, else retrieval support"

    @classmethod
    def from_section(cls, section, allowed=frozenset()):
        stage = super().from_section(section, allowed | {"aligner"})
        bad = [k for k in stage.config.order if k not in VERIFIER_KINDS]
        if bad:
            raise ValueError(f"unknown verifier kind(s) {bad} in verifier.order; known: {VERIFIER_KINDS}")
        return stage

    def _verifiers(self, ctx: LocateContext) -> list:
        comp, out = ctx.components, []
        for kind in self.config.order:
            if kind == "aligner" and comp.aligner is not None:
                out.append(AlignerVerifier(comp.aligner, label=comp.aligner_label))
            elif kind == "text" and getattr(comp.encoder, "has_text_tower", False):
                out.append(TextVerifier(comp.encoder))
            elif kind == "support":
                out.append(SupportVerifier(float(self.config.support_radius_km)))
        if not out or not isinstance(out[-1], SupportVerifier):
            out.append(SupportVerifier(float(self.config.support_radius_km)))
        return out

    def run(self, ctx: LocateContext) -> None:
        if not ctx.result.candidates:
            record_failure(ctx.result, self.name, "no candidates: the gallery returned no neighbour")
            return
        inp = VerifyInput(image_embedding=ctx.features if ctx.features is not None else ctx.embedding,
                          neighbour_coords=ctx.neighbour_coords,
                          neighbour_similarities=ctx.neighbour_similarities)
        comp = ctx.components
        if "aligner" in self.config.order and comp.aligner is not None:
            inp.gps_embedding = ctx.aligner_gps()  # computed once per photo, shared with other stages
        elif "aligner" in self.config.order and "aligner" in comp.failures:
            record_failure(ctx.result, self.name, comp.failures["aligner"])
        for verifier in self._verifiers(ctx):
            try:
                ver = verifier.verify(ctx.candidate_coords, inp)
            except Exception as exc:  # noqa: BLE001 - fall back to the next verifier
                record_failure(ctx.result, self.name, exc)
                continue
            _set_scores(ctx, ver, detail="verifier_score")
            return


@register_stage
class VerifyGPSHead(Stage):
    name = "verify.gps_head"
    papers = frozenset({"g3"})
    description = "the descriptor model's own image->GPS head vs its location encoder (G3)"

    def run(self, ctx: LocateContext) -> None:
        if not ctx.result.candidates:
            record_failure(ctx.result, self.name, "no candidates to verify")
            return
        descriptor = ctx.components.descriptor
        try:
            if descriptor is None or ctx.gps is None:
                raise ValueError("the preset's descriptor has no image->GPS head to verify with")
            scores = np.asarray(descriptor.embed_locations(ctx.candidate_coords), dtype=np.float64) @ ctx.gps
        except Exception as exc:  # noqa: BLE001 - the answer stays the best retrieval candidate
            record_failure(ctx.result, self.name, exc)
            return
        best = int(np.argmax(scores))  # first of ties = earliest candidate
        _set_scores(ctx, Verification(f"gps-head:{descriptor.name}", scores, best), detail="verifier_score")


@dataclass(frozen=True)
class FusionConfig:
    enabled: bool = False
    weights: str | None = None  # name in geodemo/scoring/weights or a JSON path
    gps_top_n: int = 500
    radius_km: float = 25.0
    support_km: float = 50.0
    wide_km: float = 750.0


@register_stage
class VerifyFusion(Stage):
    name = "verify.fusion"
    section = "fusion"
    Config = FusionConfig
    description = "log-linear fusion of all evidence (weights fitted on the dev split)"

    def skip(self, ctx: LocateContext) -> bool:
        return not (self.config.enabled and self.config.weights)

    def run(self, ctx: LocateContext) -> None:
        ver, comp = ctx.verification, ctx.components
        if ver is None or comp.aligner is None or not ver.verifier.startswith("aligner"):
            return
        try:
            cfg = {k: v for k, v in vars(self.config).items() if k != "enabled"}
            scores, _ = fused_scores(ctx.candidate_coords, ctx.neighbour_coords, ctx.neighbour_similarities,
                                     ctx.features, comp.aligner, comp.gps_gallery(), ctx.result.clues, cfg)
        except Exception as exc:  # noqa: BLE001 - keep the aligner's verification
            record_failure(ctx.result, self.name, exc)
            return
        best = int(np.argmax(scores))
        _set_scores(ctx, Verification(f"fusion:{self.config.weights}({ver.verifier})", scores, best),
                    detail="verifier_score")


@register_stage
class VerifyCluePrior(Stage):
    name = "verify.clue_prior"
    description = "verifier scores times the text-clue country prior"

    def run(self, ctx: LocateContext) -> None:
        ver = ctx.verification
        if ver is None or ctx.result.clues is None:
            return
        try:
            prior = clue_prior(ctx.result.clues, ctx.candidate_coords)
        except Exception as exc:  # noqa: BLE001
            record_failure(ctx.result, self.name, exc)
            return
        for c, p in zip(ctx.result.candidates, prior, strict=True):
            c.details["clue_prior"] = float(p)
        scores = ver.scores
        scores = scores - scores.min() + 1e-6 if scores.min() <= 0 else scores
        scores = scores * prior
        _set_scores(ctx, replace(ver, scores=scores, best=int(np.argmax(scores))))


@register_stage
class VerifyReciprocal(Stage):
    name = "verify.reciprocal"
    description = "a reciprocal-neighbour photo match overrides the verifier"

    def run(self, ctx: LocateContext) -> None:
        ver, match = ctx.verification, ctx.result.match
        if ver is None or match is None or not match.accepted:
            return
        i = reciprocal_candidate(ctx.result.candidates, match.id)
        if i is not None:
            ctx.verification = replace(ver, verifier=f"reciprocal-match(k={match.k})", best=i)
