"""``clues``: text read in the photo (OCR) and the country prior it implies (ours, not the papers')."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from geodemo.clues import read_clues
from geodemo.clues.reader import ClueConfig
from geodemo.pipeline.context import LocateContext
from geodemo.pipeline.failures import record_failure
from geodemo.pipeline.stages import register_stage
from geodemo.pipeline.stages.base import Stage


@dataclass(frozen=True)
class CluesConfig:
    enabled: bool = False
    reader: dict[str, Any] = field(default_factory=dict)  # the rest of the section: ClueConfig settings


@register_stage
class Clues(Stage):
    name = "clues"
    section = "clues"
    Config = CluesConfig
    description = "OCR text clues -> country prior"

    @classmethod
    def from_section(cls, section: dict[str, Any] | None, allowed: set[str] = frozenset()) -> Clues:
        reader = {k: v for k, v in (section or {}).items() if k != "enabled" and k not in allowed}
        ClueConfig.from_dict(reader)  # unknown keys raise a ValueError naming them
        return cls(CluesConfig(bool((section or {}).get("enabled", False)), reader))

    def skip(self, ctx: LocateContext) -> bool:
        used = ctx.display or ctx.use_lmm or "verify.clue_prior" in ctx.stage_names
        return not (self.config.enabled and used)

    def background(self, ctx: LocateContext) -> Callable[[], Any]:
        # OCR needs the photo alone: it runs beside segmentation, encoding and retrieval
        return functools.partial(read_clues, ctx.image, {"enabled": True, **self.config.reader})

    def run(self, ctx: LocateContext) -> None:
        try:
            ctx.result.clues = ctx.background_value(self.name, self.background(ctx))
        except Exception as exc:  # noqa: BLE001 - optional stage
            record_failure(ctx.result, self.name, exc)
