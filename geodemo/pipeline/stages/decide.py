"""The final answer, its confidence and uncertainty (:mod:`geodemo.pipeline.decision`), and its place name.

* ``decide.verified`` (G3): the candidate the verification stages chose;
* ``decide.top_score`` (GeoCLIP): the candidate with the highest score its source gave (GeoCLIP's
  top-1 GPS-gallery point);
* ``decide.lmm_answer`` (DualGeo): the LMM's first parsed answer; when none parses, the main
  cluster's spherical-mean centre (never a lat/lon average, never (0, 0)), else retrieval top-1;
* ``decide.calibrated`` (ours): every candidate of every source (the preset's own, LMM answers, recorded
  predictions) scored by the decision model fitted for the source set, the best expected score wins
  (:mod:`geodemo.pipeline.decision`); ``confidence`` is the winner's P(within 25 km).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from geodemo.pipeline import decision
from geodemo.pipeline.context import LocateContext
from geodemo.pipeline.failures import record_failure
from geodemo.pipeline.stages import register_stage
from geodemo.pipeline.stages.base import Stage
from geodemo.retrieval.geocode import reverse_geocode

if TYPE_CHECKING:
    from geodemo.pipeline.components import Components


@dataclass(frozen=True)
class DecisionConfig:
    calibration: str = "offline"  # geodemo/pipeline/calibration/<name>.json (or a JSON path)
    uncertainty_top: int = 5  # evidence points the uncertainty radius is the median distance to
    fallback_km: float = 50.0  # uncertainty when there is no other evidence
    base: str = "offline"  # decide.calibrated: the source-set name of the preset's own candidates


class _Decide(Stage):
    section = "decision"
    Config = DecisionConfig

    def prepare(self, components: Components) -> None:
        reverse_geocode(0.0, 0.0)  # loads the city table that names every answer's place

    def finish(self, ctx: LocateContext, scores: np.ndarray | None, best: int | None,
               confidence: float | None = None) -> None:
        """Confidence (unless given), uncertainty and place of the answer now in ``ctx.result``."""
        r, cfg = ctx.result, self.config
        if not (np.isfinite(r.lat) and np.isfinite(r.lon)):
            return
        answer = (r.lat, r.lon)
        clustering = r.clusters_after
        order = clustering.order if clustering is not None else range(len(r.neighbours))
        ranked = np.array([[r.neighbours[i].lat, r.neighbours[i].lon] for i in order]).reshape(-1, 2)
        match = r.match is not None and r.match.accepted and r.verifier.startswith("reciprocal")
        x = decision.confidence_features(answer, ctx.neighbour_coords, ctx.neighbour_similarities, match)
        try:
            r.confidence = decision.confidence(x, decision.load_calibration(cfg.calibration)) \
                if confidence is None else float(confidence)
        except Exception as exc:  # noqa: BLE001 - the answer stands; its confidence is unknown
            record_failure(r, self.name, exc)
            r.confidence = 0.0
        r.uncertainty_km = decision.uncertainty_km(answer, ctx.candidate_coords, scores, best, ranked,
                                                   int(cfg.uncertainty_top), fallback_km=float(cfg.fallback_km))
        try:
            r.place = reverse_geocode(r.lat, r.lon).text
        except Exception as exc:  # noqa: BLE001
            record_failure(r, "geocode", exc)

    def verified(self, ctx: LocateContext) -> None:
        """G3's rule: the verified best candidate (the provisional answer when nothing was verified)."""
        ver = ctx.verification
        if ver is None:  # nothing verified: the provisional (re-ranked) answer stands
            self.finish(ctx, None, None)
            return
        best = ctx.result.candidates[ver.best]
        ctx.set_answer(best.lat, best.lon)
        ctx.result.verifier = ver.verifier
        self.finish(ctx, ver.scores, ver.best)


@register_stage
class DecideVerified(_Decide):
    name = "decide.verified"
    papers = frozenset({"g3"})
    description = "answer = the verified best candidate"

    def run(self, ctx: LocateContext) -> None:
        self.verified(ctx)


@register_stage
class DecideTopScore(_Decide):
    name = "decide.top_score"
    papers = frozenset({"geoclip"})
    description = "answer = the candidate its source scored highest (GeoCLIP's top-1)"

    def run(self, ctx: LocateContext) -> None:
        cands = ctx.result.candidates
        if not cands:
            self.finish(ctx, None, None)
            return
        scores = np.array([c.score if c.score is not None else -np.inf for c in cands], dtype=np.float64)
        best = int(np.argmax(scores))  # the first of equal scores
        ctx.set_answer(cands[best].lat, cands[best].lon)
        ctx.result.verifier = f"{cands[best].source}-top1"
        self.finish(ctx, scores, best)


@register_stage
class DecideLMMAnswer(_Decide):
    name = "decide.lmm_answer"
    papers = frozenset({"dualgeo"})
    description = "answer = the LMM's answer; main-cluster centre when none parses"

    def run(self, ctx: LocateContext) -> None:
        r = ctx.result
        answer = next((rec for rec in r.lmm_records if rec.accepted), None)
        main = r.clusters_after.main if r.clusters_after is not None else None
        if answer is not None:
            ctx.set_answer(answer.lat, answer.lon)
            r.verifier = f"lmm-answer:{answer.prompt_kind}"
        elif main is not None:
            if r.lmm_records:
                record_failure(r, self.name, "no LMM answer could be read; the main cluster's centre was used")
            ctx.set_answer(main.centre_lat, main.centre_lon)  # spherical mean of the members
            r.verifier = "cluster-centre (no LMM answer)"
        elif r.neighbours:
            ctx.set_answer(r.neighbours[0].lat, r.neighbours[0].lon)
            r.verifier = "retrieval-top1 (no LMM answer)"
        self.finish(ctx, None, None)


@register_stage
class DecideCalibrated(_Decide):
    name = "decide.calibrated"
    description = "best expected score over every source's candidates (model fitted per source set)"

    def run(self, ctx: LocateContext) -> None:
        r = ctx.result
        if not r.candidates:
            self.finish(ctx, None, None)
            return
        match_id = r.match.id if r.match is not None and r.match.accepted else None
        lmm = np.array([[x.lat, x.lon] for x in r.lmm_records if x.accepted], dtype=np.float64).reshape(-1, 2)
        ev = decision.Evidence(r.candidates, ctx.neighbour_coords, ctx.neighbour_similarities, lmm, match_id,
                               decision.rule_choice(r.candidates, match_id))
        source_set = decision.source_set_name(self.config.base, ctx.sources)
        try:
            model = decision.load_decision(source_set)
        except Exception as exc:  # noqa: BLE001 - a broken model file: the default rule decides
            record_failure(r, self.name, exc)
            model = None
        confidence = None
        if model is None and not ctx.sources:  # the preset's own candidates alone, no model fitted: its verifier
            self.verified(ctx)
            r.decision = {"calibration": None, "rule": f"the preset's verifier (no decision fitted for {source_set})",
                          "source": decision.source_of(r.candidates[ctx.verification.best])
                          if ctx.verification is not None else None}
            return
        if model is not None:
            best, p = model.choose(decision.candidate_features(ev, model.sources))
            for c, row in zip(r.candidates, p, strict=True):
                c.details.update({f"p_{int(rad)}km": round(float(v), 4) for rad, v in zip(model.radii_km, row, strict=True)})
            confidence = float(p[best, model.radii_km.index(25.0)]) if 25.0 in model.radii_km else None
            r.verifier = f"calibrated:{source_set}"
            r.decision = {"calibration": source_set, "source": decision.source_of(r.candidates[best]),
                          **{f"p_{int(rad)}km": round(float(v), 4) for rad, v in zip(model.radii_km, p[best], strict=True)}}
        else:
            best = decision.default_choice(ev, set(decision.BASE_SOURCES))
            if best is None:
                self.finish(ctx, None, None)
                return
            r.verifier = f"default:agreement ({source_set} has no fitted decision)"
            r.decision = {"calibration": None, "rule": "agreement between sources (no model fitted for "
                          f"{source_set})", "source": decision.source_of(r.candidates[best])}
        c = r.candidates[best]
        ctx.set_answer(c.lat, c.lon)
        scores = np.array([np.nan if x.score is None else x.score for x in r.candidates])
        self.finish(ctx, scores if np.isfinite(scores).all() else None, best, confidence)
