"""The web page's and the API's handlers: what ``app.py`` wires to its buttons and endpoints.

A photo's way through :func:`locate_stream`: the request is checked (:func:`geodemo.web.policy.validate_request`),
the preset's :class:`~geodemo.pipeline.GeoLocator` runs its stages over the uploaded file (its load stage
decodes the photo within the upload budget and reads its EXIF GPS, once), and each partial
:class:`~geodemo.result.LocationResult` comes back rendered (:class:`geodemo.viz.page.PageRenderer`) as
named updates of the page's outputs.
"""

from __future__ import annotations

import inspect
import logging
import math
import threading
import time
from collections.abc import Callable, Iterator
from functools import lru_cache
from pathlib import Path
from typing import Any

import gradio as gr
from PIL import Image

from geodemo import env
from geodemo.errors import describe
from geodemo.imageio import ImageError, load_image
from geodemo.pipeline import GeoLocator
from geodemo.pipeline.presets import recorded_for
from geodemo.redact import public_dict
from geodemo.result import LocationResult
from geodemo.viz.page import PageRenderer, overlay_image, prediction_markdown, status_markdown, truth_markdown
from geodemo.web.examples import recognise_benchmark_photo
from geodemo.web.inputs import PhotoInput, plain_errors
from geodemo.web.policy import (
    DEFAULT_PRESET,
    RequestError,
    check_text,
    parse_example_key,
    parse_truth,
    preset_source,
    validate_request,
    web_options,
)

__all__ = ["BUDGET", "THUMBNAIL_SIDE", "get_locator", "locate_api", "locate_stream", "rerender_overlay",
           "thumbnail_api", "warmup"]

logger = logging.getLogger("geodemo.app")

BUDGET = PhotoInput.budget  # one budget for every way a photo arrives
THUMBNAIL_SIDE = 256

# One locator per preset, created once and shared read-only by all requests.
_LOCATORS: dict[str, GeoLocator] = {}
_LOCATORS_LOCK = threading.Lock()


def get_locator(preset: str) -> GeoLocator:
    """The cached :class:`GeoLocator` for ``preset`` (built on first use, thread-safe)."""
    with _LOCATORS_LOCK:
        locator = _LOCATORS.get(preset)
        if locator is None:
            t0 = time.perf_counter()
            config = preset_source(preset)
            locator = GeoLocator.from_preset(config, **recorded_for(config))
            logger.info("loaded preset %s in %.1f s", preset, time.perf_counter() - t0)
            _LOCATORS[preset] = locator
        return locator


def _message(text: str) -> dict[str, Any]:
    return {"status": text}


def _opacity(value: Any) -> float:
    return min(max(float(value), 0.0), 1.0) if isinstance(value, (int, float)) and math.isfinite(value) else 0.5


def locate_stream(photo: str | None, truth_text: str | None, example_key: str | None, preset: Any,
                  settings: Any, opacity: Any) -> Iterator[dict[str, Any]]:
    """The page's handler: named updates (:data:`geodemo.viz.page.OUTPUT_NAMES`) after every pipeline
    stage; ``settings`` are the option controls' values (:func:`geodemo.web.policy.option_values`).
    Never raises: a refusal or a failure is a status line."""
    try:
        if not photo:
            yield _message("⚠️ Drop a photo (or click an example) first.")
            return
        try:  # every text and setting is checked before the photo is read
            typed_truth = parse_truth(truth_text)
            ids, groups = parse_example_key(example_key)
            known = None if ids else recognise_benchmark_photo(photo)
            if known is not None:
                ids, groups = {str(known[1].id)}, ({str(known[1].group)} if known[1].group else set())
            preset, options = validate_request(preset, settings, ids, groups)
        except RequestError as exc:
            yield _message(f"⚠️ {describe(exc)[0]}")
            return
        yield _message(f"⏳ loading the `{preset}` pipeline (first use only) …")
        locator = get_locator(preset)
        ctx = locator.new_context(photo, options, budget=BUDGET)
        renderer: PageRenderer | None = None
        truth, truth_source = None, ""
        stages: list[str] = []
        last: LocationResult | None = None
        t0 = time.perf_counter()
        try:
            for stage, partial in locator.run_stages(ctx):
                if renderer is None:  # the load stage has decoded the photo and read its EXIF GPS
                    truth, truth_source = _truth(typed_truth, partial.exif_gps, ids, known)
                    renderer = PageRenderer(ctx.image, truth, _opacity(opacity))
                    yield {"status": "⏳ running …", "overlay": ctx.image}
                stages.append(stage)
                last = partial
                update = renderer.render(partial, final=False)
                update["status"] = status_markdown(stages, partial, "next stage …")
                yield update
        except ImageError as exc:
            if renderer is not None:
                raise
            yield _message(f"⚠️ This file cannot be used as a photo: {describe(exc)[0]}")
            return
        if last is None or renderer is None:
            yield _message("⚠️ The pipeline returned no result.")
            return
        elapsed = time.perf_counter() - t0
        update = renderer.render(last, final=True)
        error_line, explanation = truth_markdown(last, truth, truth_source)
        update.update(
            status=status_markdown(stages, last, None) + f" · **done in {elapsed:.1f} s**",
            prediction=prediction_markdown(last),
            error_line=error_line,
            explanation=explanation,
            result_json=public_dict(last),
        )
        logger.info("located %s in %.2f s (preset %s)", Path(photo).name, elapsed, preset)
        yield update
    except Exception as exc:  # noqa: BLE001 - the page shows a message, the log keeps the traceback
        logger.exception("locate failed")
        yield _message(f"⚠️ Something went wrong while locating this photo: {describe(exc)[0][:300]}. "
                       "The details are in the server log.")


def _truth(typed: tuple[float, float] | None, exif_gps: Any, ids: set[str], known: tuple[str, Any] | None
           ) -> tuple[tuple[float, float] | None, str]:
    """(true location, where it comes from): typed in (or an example's), else EXIF GPS, else a recognised
    benchmark photo's ground truth."""
    if typed is not None:
        return typed, ("example ground truth" if ids and known is None else "typed in")
    if exif_gps is not None:
        return (float(exif_gps[0]), float(exif_gps[1])), "EXIF GPS"
    if known is not None:
        return (float(known[1].lat), float(known[1].lon)), f"{known[0]} ground truth, recognised by file name"
    return None, "EXIF GPS"


def _named_settings(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn(photo, preset, *settings)`` with a signature that names each option (``retrieval_top_k``, ...;
    default None: the preset's value), which is what Gradio's API page and ``gradio_client`` show and fill."""
    kind = inspect.Parameter.POSITIONAL_OR_KEYWORD
    params = [inspect.Parameter("photo", kind), inspect.Parameter("preset", kind, default=DEFAULT_PRESET)]
    params += [inspect.Parameter(f"{o.section}_{o.name}", kind, default=None) for o in web_options()]
    fn.__signature__ = inspect.Signature(params)
    return fn


@_named_settings
@plain_errors("locating")
def locate_api(photo: str | None, preset: Any = DEFAULT_PRESET, *settings: Any) -> dict[str, Any]:
    """API ``/locate``: one photo's ``LocationResult`` as JSON, without server paths (``settings``: the option
    controls' values, as on the page). Refused settings, unusable photos and failures raise ``gr.Error``."""
    preset, options = validate_request(preset, settings or (None,) * len(web_options()))
    if not photo:
        raise gr.Error("no photo given")
    locator = get_locator(preset)
    try:
        *_, (_, result) = locator.run_stages(locator.new_context(photo, options, budget=BUDGET))
    except ImageError as exc:
        raise gr.Error(f"this file cannot be used as a photo: {describe(exc)[0][:300]}") from None
    return public_dict(result)


@lru_cache(maxsize=8)
def _gallery_files(preset: str) -> dict[str, str]:
    """Gallery id -> photo file of a preset's image gallery (the only files ``/thumbnail`` serves)."""
    meta = get_locator(preset).gallery.meta
    paths = meta.image_paths or []
    return {str(i): str(p) for i, p in zip(meta.ids, paths, strict=False) if p}


@plain_errors("the thumbnail")
def thumbnail_api(neighbour_id: str | None, preset: str | None = DEFAULT_PRESET) -> Image.Image:
    """API ``/thumbnail``: the thumbnail of the gallery photo a result names by id (``neighbours[].id``)."""
    preset_name, _ = validate_request(preset, {"lmm.enabled": False})
    key = (check_text("gallery id", neighbour_id) or "").strip()
    path = _gallery_files(preset_name).get(key) if key else None
    if path is None:
        raise gr.Error(f"no gallery photo with id {key[:60]!r} in preset {preset_name!r}")
    try:
        image = load_image(path, max_side=THUMBNAIL_SIDE, max_pixels=BUDGET.max_pixels, name=key)
    except ImageError:
        raise gr.Error(f"the gallery photo {key[:60]!r} cannot be read") from None
    image.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE))
    return image


def rerender_overlay(seg_state: dict | None, opacity: float) -> Image.Image | None:
    """Opacity slider: re-blend the stored label map (no new segmentation)."""
    if not seg_state:
        return None
    try:
        return overlay_image(seg_state.get("image"), seg_state.get("label_map"), opacity)
    except Exception:  # noqa: BLE001
        logger.exception("overlay re-render failed")
        return seg_state.get("image")


def warmup(preset: str = DEFAULT_PRESET) -> None:
    """Load the default preset's models and gallery before serving (skip: ``GEODEMO_WARMUP=0``)."""
    if not env.get_flag("GEODEMO_WARMUP", True):
        return
    t0 = time.perf_counter()
    try:
        get_locator(preset).warmup()
        logger.info("warmed up preset %s in %.1f s", preset, time.perf_counter() - t0)
    except Exception:  # noqa: BLE001 - the page still serves; the first request reports the problem
        logger.exception("warm-up of preset %s failed", preset)
