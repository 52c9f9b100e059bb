"""``segment``: semantic segmentation of the scene (DualGeo's second view; shown on the page)."""

from __future__ import annotations

from geodemo.pipeline.context import LocateContext
from geodemo.pipeline.failures import record_failure
from geodemo.pipeline.stages import register_stage
from geodemo.pipeline.stages.base import Stage


@register_stage
class Segment(Stage):
    name = "segment"
    papers = frozenset({"dualgeo"})
    description = "segment the scene (ADE20K classes)"

    def skip(self, ctx: LocateContext) -> bool:
        # the preset names no segmenter, or nothing of this call shows or uses the segmentation
        return not ctx.components.has_segmenter or not (ctx.display or ctx.use_lmm)

    def run(self, ctx: LocateContext) -> None:
        try:
            ctx.result.segmentation = ctx.components.segmenter.segment(ctx.image)
        except Exception as exc:  # noqa: BLE001 - optional: the locator goes on without it
            record_failure(ctx.result, self.name, exc)
