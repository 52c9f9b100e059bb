"""``GeoLocator``: a preset's list of stages run over one photo.

>>> from geodemo.pipeline import GeoLocator
>>> locator = GeoLocator.from_preset("offline")
>>> result = locator.locate("photo.jpg")          # LocationResult
>>> result.lat, result.lon, result.place, result.verifier

A preset (``geodemo/pipeline/presets/*.json``) names its stages in order (``"stages": ["load",
"encode", "retrieve", ...]``, see :mod:`geodemo.pipeline.stages`) and holds each stage's settings in
the section the stage reads. Components (encoder, segmenter, descriptor, gallery, aligner, LMM)
load lazily, once per locator, and can be injected: ``GeoLocator(config, encoder=fake, ...)``.
Optional stages that fail are recorded (``LocationResult.errors``, ``error_details``,
``unavailable``) and the rest still runs; the encoder or descriptor and the gallery are required
and fail with a clear message.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable, Collection, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import fields, replace
from pathlib import PurePath
from typing import Any

import numpy as np

from geodemo.imageio import load_image
from geodemo.pipeline.components import Components
from geodemo.pipeline.context import LocateContext, new_result
from geodemo.pipeline.options import InvalidOptionError, LocateOptions
from geodemo.pipeline.presets import load_preset
from geodemo.pipeline.stages import Stage, get_stage
from geodemo.result import LocationResult

__all__ = ["GeoLocator", "LocateOptions", "InvalidOptionError", "build_stages", "TOP_LEVEL_KEYS"]

# keys of a preset that are not stage sections
TOP_LEVEL_KEYS = ("name", "description", "paper", "based_on", "analogue_of", "compare_with", "device", "encoder",
                  "segmenter", "descriptor", "gallery", "stages", "weights", "seed", "hub", "recorded")
# keys of a stage section that a component reads rather than the stage
_COMPONENT_KEYS = {"verifier": {"aligner"}}


def build_stages(config: dict[str, Any]) -> list[Stage]:
    """The preset's stages, each configured from its section; unknown stages, sections or keys raise."""
    names = config.get("stages")
    if not names or not isinstance(names, list):
        raise ValueError(f"preset {config.get('name')!r} lists no stages (a \"stages\" list of stage names)")
    classes = [get_stage(str(n)) for n in names]
    sections = {c.section for c in classes if c.section}
    stray = sorted(k for k in config if k not in TOP_LEVEL_KEYS and k not in sections
                   and not set(config[k] or {}) <= _COMPONENT_KEYS.get(k, set()))
    if stray:
        raise ValueError(f"preset {config.get('name')!r}: section(s) {stray} are read by none of its stages "
                         f"({', '.join(names)}); remove them or add the stage that reads them")
    stages = []
    for cls in classes:
        shared = {f.name for other in classes if other.section == cls.section and other is not cls
                  for f in fields(other.Config)}
        allowed = shared | _COMPONENT_KEYS.get(cls.section or "", set())
        section = config.get(cls.section) if cls.section else None
        stages.append(cls.from_section(section, allowed))
    return stages


class GeoLocator:
    """The pipeline behind one object, configured by a preset (see ``geodemo/pipeline/presets``)."""

    def __init__(self, config: dict[str, Any], **components: Any):
        self.config = config
        self.preset = str(config.get("name", "custom"))
        self.name = f"geolocator:{self.preset}"  # the harness's Predictor name
        self.stages = build_stages(config)
        self.components = Components(config, **components)
        recorded = dict(config.get("recorded") or {})
        if recorded.get("candidates") and "candidates.recorded" not in self.stage_names:
            raise ValueError(f"preset {self.preset!r} has no candidates.recorded stage: recorded candidates "
                             "cannot join its candidates")
        for role in ("lmm", "candidates"):
            self.components.recorded(role)  # a file that cannot be read fails here, before any photo
        self.overlap = True  # start photo-only work (OCR) beside earlier stages; False: strictly in turn
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()
        self._prepared = False  # set once every stage's prepare has run or started

    @classmethod
    def from_preset(cls, name: str = "offline", components: dict[str, Any] | None = None,
                    **overrides: Any) -> GeoLocator:
        """A locator for a built-in preset (``python -m geodemo presets`` lists them) or a preset JSON path.

        ``overrides`` are deep-merged into the preset, e.g. ``segmenter=None`` or
        ``rerank={"eps_km": 25}``; ``components`` injects ready objects (``{"encoder": ...}``).
        """
        return cls(load_preset(name, **overrides), **(components or {}))

    @property
    def stage_names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.stages)

    # ------------------------------------------------------------------ components (kept for callers)
    @property
    def encoder(self) -> Any:
        return self.components.encoder

    @property
    def segmenter(self) -> Any:
        return self.components.segmenter

    @property
    def descriptor(self) -> Any:
        return self.components.descriptor

    @property
    def gallery(self) -> Any:
        return self.components.gallery

    @property
    def aligner(self) -> Any:
        return self.components.aligner

    def view_bank(self) -> Any:
        """The gallery's multi-view embeddings, or None when the preset does not re-rank by views."""
        stage = next((s for s in self.stages if s.name == "rerank.multiview"), None)
        return None if stage is None else self.components.view_bank(stage.config.crop)

    # ------------------------------------------------------------------ running
    def _use_lmm(self, options: LocateOptions) -> bool:
        stage = next((s for s in self.stages if s.name == "lmm"), None)
        if stage is None:
            return False
        asked = options.get("lmm", "enabled")
        if asked is not None:
            return bool(asked)
        return bool(stage.config.enabled) or bool(self.components.recorded("lmm"))  # recorded answers cost nothing

    def new_context(self, image: Any, options: LocateOptions | None = None, display: bool = True,
                    photo_id: str | None = None, budget: Any = None) -> LocateContext:
        """A fresh context for one photo (what :meth:`iter_locate` runs the stages over); ``photo_id``
        defaults to the file name of a path; ``budget`` (a :class:`geodemo.imageio.PhotoBudget`) limits
        what the load stage decodes (a web upload's budget) and makes its errors name the file only."""
        options = options or LocateOptions()
        if photo_id is None and isinstance(image, (str, PurePath)):
            photo_id = PurePath(image).name
        return LocateContext(result=new_result(self.preset), options=options, components=self.components,
                             stage_names=self.stage_names, source=image, display=display,
                             use_lmm=self._use_lmm(options), photo_id=photo_id, budget=budget)

    def run_stages(self, ctx: LocateContext, only: Collection[str] | None = None) -> Iterator[tuple[str, LocationResult]]:
        """Run every stage over ``ctx``, yielding ``(stage name, partial result)`` after each one run.

        Once the photo is loaded, the work later stages can do on the photo alone (OCR:
        :meth:`Stage.background`) starts in a small thread pool beside the stages before them
        (``overlap``); each stage still applies its work at its own place in the list, so the
        result is the same as with ``overlap = False``. A stage's timing is the time it added.
        ``only``: run just these of the preset's stages, in the preset's order (the caller has put the
        evidence of the others in ``ctx``, as the fold-held-out ablation does with retrieval).
        """
        unknown = sorted(set(only or ()) - set(self.stage_names))
        if unknown:
            raise ValueError(f"stage(s) {unknown} are not in preset {self.preset!r} ({', '.join(self.stage_names)})")
        stages = [s for s in self.stages if only is None or s.name in only]
        timings = ctx.result.timings
        started = not self.overlap
        for i, stage in enumerate(stages):
            if stage.skip(ctx):
                continue
            t0 = time.perf_counter()
            stage.run(ctx)
            timings[stage.name] = time.perf_counter() - t0
            ctx.result.stages.append(stage.name)
            timings.pop("total", None)  # kept last
            timings["total"] = sum(timings.values())
            if not started and ctx.image is not None:
                self._start_background(ctx, stages[i + 1:])
                started = True
            yield stage.name, ctx.result

    def _start_background(self, ctx: LocateContext, stages: list[Stage]) -> None:
        """The photo-only work of ``stages``, then (on a locator's first call, without warm-up) their
        ``prepare``, in the pool beside the stages still to run."""
        for stage in stages:
            try:
                work = None if stage.skip(ctx) else stage.background(ctx)
            except Exception:  # noqa: BLE001 - the stage meets the same error in run and records it
                work = None
            if work is not None:
                ctx.background[stage.name] = self._submit(work)
        if not self._prepared:
            self._prepared = True
            for stage in stages:
                self._submit(functools.partial(self._prepare, stage))

    def _submit(self, work: Callable[[], Any]) -> Future:
        if self._pool is None:
            with self._pool_lock:
                if self._pool is None:
                    self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="geodemo-stage")
        return self._pool.submit(work)

    def iter_locate(
        self, image: Any, options: LocateOptions | None = None, *, _embedding: np.ndarray | None = None,
        _views: np.ndarray | None = None, _display: bool = True, _features: np.ndarray | None = None,
        _gps: np.ndarray | None = None, _photo_id: str | None = None,
    ) -> Iterator[tuple[str, LocationResult]]:
        """Run the pipeline, yielding ``(stage_name, partial LocationResult)`` after each stage.

        The partial result is the same object throughout; its ``lat``/``lon`` hold the best answer
        so far (retrieval top-1, then the re-ranked top-1, then the final answer).
        """
        ctx = self.new_context(image, options, display=_display, photo_id=_photo_id)
        ctx.embedding, ctx.views, ctx.features, ctx.gps = _embedding, _views, _features, _gps
        yield from self.run_stages(ctx)

    def locate(self, image: Any, options: LocateOptions | None = None) -> LocationResult:
        """Locate one photo (path, bytes or PIL image); see :meth:`iter_locate` for the stages."""
        *_, (_, result) = self.iter_locate(image, options)
        return result

    def locate_query(self, query: Any, options: LocateOptions | None = None, display: bool = False,
                     embedding: np.ndarray | None = None, views: np.ndarray | None = None,
                     features: np.ndarray | None = None, gps: np.ndarray | None = None) -> LocationResult:
        """Locate a :class:`geodemo.eval.QueryPhoto`, leaving its own photo and photographer out."""
        opts = replace(options or LocateOptions())
        opts.exclude_ids = set(opts.exclude_ids) | {str(query.id)}
        if query.group:
            opts.exclude_groups = set(opts.exclude_groups) | {str(query.group)}
        *_, (_, result) = self.iter_locate(query.image, opts, _embedding=embedding, _views=views, _display=display,
                                           _features=features, _gps=gps, _photo_id=str(query.id))
        return result

    def _encode_batch(self, images: list[Any]) -> list[dict[str, np.ndarray | None]]:
        """Per-photo precomputed vectors for :meth:`locate_query` (one batched encoder call)."""
        descriptor = self.components.descriptor
        if descriptor is None:
            emb = self.components.encoder.encode_images(images)
            return [{"embedding": e} for e in emb]

        out = descriptor.describe([load_image(im) for im in images])
        rows = []
        for i in range(len(images)):
            rows.append({"embedding": out.descriptor[i],
                         "features": None if out.features is None else out.features[i],
                         "gps": None if out.gps is None else out.gps[i]})
        return rows

    def predict(self, batch: list[Any]) -> np.ndarray:
        """Harness entry (contract A ``Predictor``): ``(N, 2)`` [lat, lon] for a batch of QueryPhotos.

        Each photo's own id and every photo of its photographer (``group``) are excluded from the
        gallery (leave-one-photographer-out). Display-only stages (segmentation, clues without a
        prior) are skipped; a photo that cannot be placed gets NaN.
        """
        out = np.full((len(batch), 2), np.nan)
        for i, r in enumerate(self.locate_batch(batch)):
            out[i] = (r.lat, r.lon)
        return out

    def locate_batch(self, batch: list[Any]) -> list[LocationResult]:
        """Each QueryPhoto's full result, as :meth:`predict` locates it (one batched encoding, the
        photographer left out); ``evaluate(..., explain=True)`` stores them."""
        if not batch:
            return []
        rows = self._encode_batch([q.image for q in batch])
        return [self.locate_query(q, **row) for q, row in zip(batch, rows, strict=True)]

    def warmup(self) -> GeoLocator:
        """Load every component the preset's stages use now (models, galleries, indexes), not on the first call."""
        comp, names = self.components, set(self.stage_names)
        if self.config.get("descriptor"):
            _ = comp.descriptor
        else:
            _ = comp.encoder
        if "retrieve" in names:
            _ = comp.gallery
        if "segment" in names and comp.has_segmenter:
            try:
                _ = comp.segmenter
            except Exception:  # noqa: BLE001 - reported by the segment stage
                pass
        _ = comp.aligner
        self.view_bank()
        for stage in self.stages:
            self._prepare(stage)
        self._prepared = True
        return self

    def _prepare(self, stage: Stage) -> None:
        """``stage.prepare`` where the preset enables the stage; its failure is left to ``run``."""
        if getattr(stage.config, "enabled", True):
            try:
                stage.prepare(self.components)
            except Exception:  # noqa: BLE001 - the stage meets the same error in run and records it
                pass

    def describe(self) -> list[tuple[str, str, bool]]:
        """``(stage name, what it does, whether the paper the preset runs or builds on has it)`` per stage."""
        paper = self.config.get("paper") or self.config.get("based_on")
        papers = {paper} if paper else set()
        return [(s.name, s.description, bool(papers & s.papers)) for s in self.stages]
