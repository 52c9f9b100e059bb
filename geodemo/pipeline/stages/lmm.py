"""``lmm``: K prompts x N samples to a multimodal model (G3's geo-diversification, DualGeo's last step).

The prompts cite the retrieved neighbours in retrieval order (G3) or in the re-ranked order
(DualGeo: ``"neighbours": "reranked"``), with the dissimilar ones for RAG prompts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from geodemo.lmm import LMMConfig, LMMContext
from geodemo.lmm.backends import backend_status, list_backends
from geodemo.models.segmentation import describe_segmentation
from geodemo.pipeline.context import LocateContext
from geodemo.pipeline.failures import record_failure
from geodemo.pipeline.stages import register_stage
from geodemo.pipeline.stages.base import Stage, option
from geodemo.result import LMMRecord

NEIGHBOUR_ORDERS = ("retrieval", "reranked")
_HOW_TO_ADD = ("start the LMM backend (e.g. `ollama serve` with the model pulled), or choose another backend "
               "in the LMM settings")


@dataclass(frozen=True)
class LMMStageConfig:
    enabled: bool = option(False, kind=bool, flag="lmm", label="LMM stage", help="run the LMM stage")
    neighbours: str = "retrieval"  # retrieval | reranked: the order the prompts cite the similar photos in
    settings: dict[str, Any] = field(default_factory=dict)  # the rest: geodemo.lmm.LMMConfig + backend options
    # per-call overrides of settings["backend"], ["model"] and ["samples"] (None: the preset's)
    backend: str | None = option(None, kind=str, flag="lmm-backend", label="LMM backend", max_len=100,
                                 choices=list_backends, help="the LMM backend (a registered one)")
    model: str | None = option(None, kind=str, flag="lmm-model", label="LMM model", max_len=200,
                               help="the LMM model of that backend")
    samples: int | None = option(None, kind=int, lo=1, hi=20, flag="lmm-samples", label="answers per prompt",
                                 help="answers the LMM gives per prompt")


@register_stage
class LMM(Stage):
    name = "lmm"
    section = "lmm"
    Config = LMMStageConfig
    papers = frozenset({"g3", "dualgeo"})
    description = "multimodal model answers (zero-shot / RAG prompts)"

    @classmethod
    def from_section(cls, section: dict[str, Any] | None, allowed: set[str] = frozenset()) -> LMM:
        section = dict(section or {})
        order = str(section.pop("neighbours", "retrieval"))
        if order not in NEIGHBOUR_ORDERS:
            raise ValueError(f"lmm.neighbours must be one of {NEIGHBOUR_ORDERS}, got {order!r}")
        enabled = bool(section.pop("enabled", False))
        LMMConfig.from_dict(section)  # bad prompt kinds or sample counts raise here, at build time
        return cls(LMMStageConfig(enabled, order, section))

    def settings(self, ctx: LocateContext) -> dict[str, Any]:
        """The LMM settings of this call (the call's ``lmm`` options override the preset's)."""
        out = dict(self.config.settings)
        cfg: LMMStageConfig = self.call_config(ctx)
        if cfg.backend is not None:
            if cfg.backend != out.get("backend"):
                out.pop("model", None)  # the preset's model belongs to its own backend: use the new one's default
            out["backend"] = cfg.backend
        if cfg.model is not None:
            out["model"] = cfg.model
        if cfg.samples is not None:
            out["samples"] = int(cfg.samples)
        return out

    def skip(self, ctx: LocateContext) -> bool:
        return not ctx.use_lmm

    def _description(self, ctx: LocateContext) -> str:
        parts = []
        if ctx.result.segmentation is not None:
            try:
                parts.append("Scene: " + describe_segmentation(ctx.result.segmentation))
            except Exception:  # noqa: BLE001 - the description is a courtesy to text-only models
                pass
        if ctx.result.clues is not None and getattr(ctx.result.clues, "summary", ""):
            parts.append("Text clues: " + ctx.result.clues.summary)
        return ". ".join(parts)

    def run(self, ctx: LocateContext) -> None:
        recorded = ctx.components.recorded("lmm")
        if recorded:
            self._run_recorded(ctx, recorded[0])
            return
        try:
            nb = list(ctx.result.neighbours)
            clustering = ctx.result.clusters_after
            main = clustering.main if clustering is not None else None
            reranked = [nb[i] for i in clustering.order] if clustering is not None else nb
            context = LMMContext(
                neighbours=reranked if self.config.neighbours == "reranked" else nb,
                dissimilar=list(ctx.dissimilar),
                main_cluster=[nb[i] for i in clustering.order if main is None or i in main.members]
                if clustering is not None else nb,
                description=self._description(ctx),
                clues=ctx.result.clues,
            )
            lmm = ctx.components.lmm_stage(self.settings(ctx))
            ctx.sources.append(str(lmm.backend.model))
            ctx.result.lmm_records = list(lmm.run(ctx.image, context))
        except Exception as exc:  # noqa: BLE001 - optional stage
            record_failure(ctx.result, self.name, exc, how_to_add=_HOW_TO_ADD)
            return
        records = ctx.result.lmm_records
        failed = [r.error for r in records if r.error]
        if failed and len(failed) == len(records):
            # "not installed" only when the calls themselves said so (no server, no model): a time-out or
            # a refused call is a failure, whatever a quick probe of the backend finds now
            missing = all(r.not_installed for r in records)
            how = None
            if missing:
                settings = self.settings(ctx)
                how = backend_status(str(settings.get("backend", "")),
                                     **{k: settings.get(k) for k in ("model", "host", "api_key_env")})
            record_failure(ctx.result, self.name, f"every LMM call failed; first error: {failed[0]}",
                           unavailable=missing, how_to_add=how)

    def _run_recorded(self, ctx: LocateContext, recorded) -> None:
        """The LMM's answers read from a recorded file (how G3 runs: llm_predict.py writes them, verification
        reads them), one record per recorded point, ``recorded: NAME``; a photo the file lacks is said plainly."""
        ctx.sources.append(recorded.name)
        what = f"recorded: {recorded.name}"
        if ctx.photo_id is None:
            record_failure(ctx.result, self.name, f"{what}: the photo has no file name to look its answer up by")
            return
        points = recorded.answers(ctx.photo_id)
        ctx.result.lmm_records = [
            LMMRecord(prompt_kind="recorded" if p.kind == "answer" else p.kind, prompt=what, sample=p.sample,
                      raw_answer=p.raw if p.raw is not None else f"{p.lat}, {p.lon}", lat=p.lat, lon=p.lon,
                      backend="recorded", model=recorded.name, cached=True) for p in points]
        if not points:
            rejected = recorded.rejected(ctx.photo_id)
            why = f" ({rejected[0].reason})" if rejected else ""
            record_failure(ctx.result, self.name, f"{what} has no answer for this photo{why}")
