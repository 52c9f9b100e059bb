"""``load``: decode the photo (and read its EXIF GPS, shown to the user, never used to predict).

The one place a photo is decoded and its EXIF read, for the library, the CLI and the web page alike
(the page passes its upload budget: ``LocateContext.budget``)."""

from __future__ import annotations

from geodemo.imageio import load_image, read_exif_gps
from geodemo.pipeline.context import LocateContext
from geodemo.pipeline.stages import register_stage
from geodemo.pipeline.stages.base import Stage


@register_stage
class Load(Stage):
    name = "load"
    papers = frozenset({"g3", "dualgeo", "geoclip"})
    description = "decode the photo"

    def run(self, ctx: LocateContext) -> None:
        if ctx.budget is not None:
            ctx.image = ctx.budget.load(ctx.source, name=ctx.photo_id or "the photo")
        else:
            ctx.image = load_image(ctx.source)  # bad input raises a clear ImageError: nothing to locate
        try:
            ctx.result.exif_gps = read_exif_gps(ctx.source)
        except Exception:  # noqa: BLE001 - EXIF is informative only
            ctx.result.exif_gps = None
