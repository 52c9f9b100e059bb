"""geodemo web app: drag in a photo, see where it was taken and why.

A Gradio Blocks front end over :class:`geodemo.pipeline.GeoLocator`. The page renders every stage
of the ``LocationResult`` as it arrives (``GeoLocator.iter_locate``): segmentation overlay and
class shares, retrieved neighbours on a map, clusters before and after re-ranking, the LMM's
answers, the final point with its uncertainty circle and, when the truth is known (EXIF GPS or an
example's ground truth), the error, the accuracy bands and a plain-language failure explanation.

The same function is exposed as the API endpoint ``/locate`` (returns the LocationResult JSON),
so ``gradio_client.Client(url).predict(handle_file(path), api_name="/locate")`` works.
Run: ``.venv/bin/python app.py`` (env ``GEODEMO_HOST``, ``GEODEMO_PORT`` (default 127.0.0.1:7860, or
Gradio's ``GRADIO_SERVER_NAME``/``GRADIO_SERVER_PORT``), ``GEODEMO_PRESET`` (default: :func:`geodemo.pipeline.choice.choose_preset`),
``GEODEMO_WARMUP=0`` to skip loading the models before serving).

Whatever a client sends is checked on the server by :func:`geodemo.web.policy.validate_request`
(the request resolved with the preset's defaults, then the allow-lists ``GEODEMO_WEB_LMM_BACKENDS``
and ``GEODEMO_LMM_MODELS``, number ranges and text lengths); request bodies over the photo budget
are refused from their declared length (:class:`geodemo.web.limits.BodyLimit`) and uploads leave
Gradio's cache after ``GEODEMO_UPLOAD_MAX_AGE_S``. Every photo, uploaded, pasted, sent as a ``data:`` URL or through the API, has the same
budget (:class:`geodemo.imageio.PhotoBudget`: ``GEODEMO_MAX_UPLOAD_MB``, ``GEODEMO_WEB_MAX_PIXELS``).
Answers carry no server paths (:func:`geodemo.redact.public_dict`); a neighbour's thumbnail is
served by its gallery id (API ``/thumbnail``).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path
from typing import Any

import gradio as gr
from PIL import Image

# Importing geodemo (any submodule) first installs its torchvision guard before vision libraries.
from geodemo import env
from geodemo.errors import describe
from geodemo.imageio import ImageError, read_exif_gps
from geodemo.redact import public_dict, redact, redact_paths
from geodemo.result import LocationResult
from geodemo.viz import error_report, lmm_rows, map_iframe, timing_text
from geodemo.viz.explain import decision_sentence
from geodemo.viz.maps import cluster_map, neighbour_map, result_map
from geodemo.viz.tables import CANDIDATE_COLUMNS, LMM_COLUMNS, candidate_rows
from geodemo.web.inputs import PhotoInput, RawDropdown, RawNumber, RawRadio, plain_errors
from geodemo.web.limits import BodyLimit, max_body_bytes, upload_cache_policy
from geodemo.web.policy import (  # noqa: F401 - re-exported: the app's request rules live in geodemo.web.policy
    DEFAULT_CHOICE,
    DEFAULT_PRESET,
    PRESET_DEFAULT,
    TEXT_LIMITS,
    WEB_RANGES,
    RequestError,
    available_backends,
    available_presets,
    check_text,
    parse_example_key,
    parse_truth,
    preset_source,
    unavailable_backends_markdown,
    validate_request,
)

logger = logging.getLogger("geodemo.app")

BUDGET = PhotoInput.budget  # one budget for every way a photo arrives
MAX_UPLOAD = BUDGET.max_bytes  # Gradio's own upload route refuses larger files (HTTP 413)
MAX_BODY = max_body_bytes(MAX_UPLOAD)  # any request body: refused from its declared length (BodyLimit)
MAP_HEIGHT = 420
RECOGNISED_SETS = ("im2gps3k-dev", "osv5m-sample")  # shared benchmarks whose photos are recognised by name

# ---------------------------------------------------------------------------------------------
# Locators: one per preset, created once and shared read-only by all requests.

_LOCATORS: dict[str, Any] = {}
_LOCATORS_LOCK = threading.Lock()


def get_locator(preset: str):
    """The cached :class:`GeoLocator` for ``preset`` (built on first use, thread-safe)."""
    with _LOCATORS_LOCK:
        locator = _LOCATORS.get(preset)
        if locator is None:
            from geodemo.pipeline import GeoLocator

            t0 = time.perf_counter()
            from geodemo.data.recorded import recorded_for

            config = preset_source(preset)
            locator = GeoLocator.from_preset(config, **recorded_for(config))
            logger.info("loaded preset %s in %.1f s", preset, time.perf_counter() - t0)
            _LOCATORS[preset] = locator
        return locator


# ---------------------------------------------------------------------------------------------
# Inputs: the photo, the optional truth and example identity.


def read_photo(path: str) -> tuple[Image.Image, tuple[float, float] | None]:
    """The uploaded photo (RGB, upright, at most the working size) and its EXIF GPS, within the photo
    budget; :class:`ImageError` (naming the file only, never its server path) when unreadable."""
    image = BUDGET.load(path, name=Path(path).name)
    return image, read_exif_gps(path)


@lru_cache(maxsize=1)
def example_samples() -> list[Any]:
    """The embedded default's example photos (``assets/examples``), ids as in their gallery; [] without."""
    from dataclasses import replace

    try:
        from geodemo.data import load_examples

        dataset = load_examples()
    except Exception as exc:  # noqa: BLE001 - no examples: the app still runs
        logger.info("no bundled examples: %s", exc)
        return []
    return [replace(s, id=s.meta.get("gallery_id") or s.id) for s in dataset.samples if s.image_path is not None]


@lru_cache(maxsize=1)
def benchmark_samples() -> dict[str, list[Any]]:
    """Photos recognised by file name: the bundled examples and, with a shared folder, its benchmarks."""
    out: dict[str, list[Any]] = {}
    for s in example_samples():
        out.setdefault(s.meta.get("dataset") or "examples", []).append(s)
    try:
        from geodemo.data import load_benchmark
    except ImportError:
        return out
    for name in RECOGNISED_SETS:
        try:
            dataset = load_benchmark(name)
        except Exception as exc:  # noqa: BLE001 - no shared folder: the bundled examples only
            logger.info("no %s photos to recognise: %s", name, describe(exc)[0])
            continue
        out.setdefault(name, []).extend(
            s for s in dataset.samples if s.image_path is not None and Path(s.image_path).is_file())
    return out


def example_rows() -> list[list[str]]:
    """The bundled example photos: [path, "lat, lon", key]."""
    return [[str(s.image_path), f"{s.lat:.5f}, {s.lon:.5f}", f"{s.meta.get('dataset', '')}|{s.id}|{s.group or ''}"]
            for s in example_samples()]


@lru_cache(maxsize=1)
def _benchmark_by_file_name() -> dict[str, tuple[str, Any]]:
    index: dict[str, tuple[str, Any]] = {}
    for name, samples in benchmark_samples().items():
        for s in samples:
            index.setdefault(Path(s.image_path).name, (name, s))
    return index


def recognise_benchmark_photo(path: str) -> tuple[str, Any] | None:
    """(benchmark, sample) when an upload carries a shared benchmark photo's file name, else None.

    Lets a dropped IM2GPS3k/OSV-5M photo be scored against its ground truth with its own
    photographer left out of the gallery, as the evaluation does.
    """
    return _benchmark_by_file_name().get(Path(path).name)


# ---------------------------------------------------------------------------------------------
# Rendering: a LocationResult (partial or final) -> the page's components.


def _place_of(lat: float, lon: float) -> str | None:
    try:
        from geodemo.retrieval.geocode import reverse_geocode

        return reverse_geocode(lat, lon).text
    except Exception:  # noqa: BLE001 - names are a nicety
        return None


def overlay_image(image: Image.Image | None, label_map: Any, opacity: float) -> Image.Image | None:
    """The photo with its segmentation blended at ``opacity`` (the photo alone without a label map)."""
    if image is None:
        return None
    if label_map is None:
        return image
    from geodemo.models.segmentation import render_overlay

    return render_overlay(image, label_map, float(opacity))


def shares_label(result: LocationResult) -> dict[str, float] | None:
    seg = result.segmentation
    return dict(list(seg.shares.items())[:10]) if seg is not None else None


def status_markdown(stages: list[str], result: LocationResult | None, running: str | None) -> str:
    """Progress line: finished stages with their timings, then the running one."""
    parts = []
    for stage in stages:
        sec = result.timings.get(stage) if result is not None else None
        failed = result is not None and stage in result.errors
        mark = "⚠️" if failed else "✅"
        parts.append(f"{mark} {stage}" + (f" ({sec:.2f} s)" if sec is not None else ""))
    if running:
        parts.append(f"⏳ {running}")
    return " · ".join(parts) if parts else ""


def errors_markdown(result: LocationResult) -> str:
    """Stages that failed, then optional parts that are not installed (how to add them)."""
    parts = []
    if result.errors:
        lines = [f"- **{stage}** failed: {redact_paths(message)}" for stage, message in result.errors.items()]
        parts.append("#### Stages that failed (the rest still ran)\n" + "\n".join(lines))
    unavailable = result.unavailable
    if unavailable:
        lines = [f"- **{stage}**: not installed: {redact_paths(how)}" for stage, how in unavailable.items()]
        parts.append("#### Optional parts not installed (the answer did without them)\n" + "\n".join(lines))
    return "\n\n".join(parts)


def has_prediction(result: LocationResult) -> bool:
    """Whether the pipeline produced a final coordinate (it leaves NaN when every stage failed)."""
    return math.isfinite(result.lat) and math.isfinite(result.lon)


def prediction_markdown(result: LocationResult) -> str:
    if not has_prediction(result):
        return "### ❓ No location could be predicted\nSee the stages that failed below."
    place = result.place or _place_of(result.lat, result.lon) or "unknown place"
    radius = f"±{result.uncertainty_km:,.0f} km" if math.isfinite(result.uncertainty_km) else "unknown"
    text = (
        f"### 📍 {place}\n"
        f"**{result.lat:.4f}, {result.lon:.4f}** · confidence {result.confidence:.2f} · "
        f"uncertainty {radius} · chosen by `{result.verifier}` · preset `{result.preset}`"
    )
    decided = decision_sentence(result)
    return text + (f"\n\n{decided}" if decided else "") + match_markdown(result)


def match_markdown(result: LocationResult) -> str:
    """One line on the re-ranked top photo match and whether it was trusted (reciprocal neighbour)."""
    m = result.match
    if m is None:
        return ""
    verdict = (f"a reciprocal neighbour (the photo would be among its {m.k} nearest gallery photos): "
               "its place was taken" if m.accepted else
               f"not a reciprocal neighbour ({m.reciprocal_rank} gallery photos are closer to it): "
               "the verifier decided")
    return f"\n\nTop photo match `{m.id}` (similarity {m.similarity:.2f}) is {verdict}."


def truth_markdown(result: LocationResult, truth: tuple[float, float] | None, source: str) -> tuple[str, str]:
    """(error line, explanation) for a known truth; ("", "") without one."""
    if truth is None:
        return "", "No true location known (no EXIF GPS in the photo, no example): no error to show."
    if not has_prediction(result):
        return f"**True location** ({source}): {truth[0]:.4f}, {truth[1]:.4f} — no prediction to compare.", ""
    report = error_report(result, truth, place_of=_place_of)
    line = f"**True location** ({source}): {truth[0]:.4f}, {truth[1]:.4f} — **{report.error_line}**"
    if not report.explanation:
        return line, f"The prediction is within {report.error_km:,.1f} km: no failure to explain."
    return line, "#### Why it went wrong\n" + "\n".join(f"- {s}" for s in report.explanation)


class PageRenderer:
    """Turns successive results of one request into component updates, re-drawing only what changed.

    One instance per request (never shared), so concurrent users cannot see each other's state.
    """

    def __init__(self, image: Image.Image, truth: tuple[float, float] | None, opacity: float):
        self.image = image
        self.truth = truth
        self.opacity = opacity
        self._seen: dict[str, Any] = {}

    def _changed(self, key: str, value: Any) -> bool:
        if self._seen.get(key, object()) == value:
            return False
        self._seen[key] = value
        return True

    def render(self, result: LocationResult, final: bool) -> dict[str, Any]:
        """Updates keyed by output name; maps only when their inputs changed."""
        out: dict[str, Any] = {}
        seg = result.segmentation
        if seg is not None and self._changed("seg", id(seg)):
            out["overlay"] = overlay_image(self.image, seg.label_map, self.opacity)
            out["shares"] = shares_label(result)
            out["seg_state"] = {"image": self.image, "label_map": seg.label_map}
        n_key = (len(result.neighbours), id(result.clusters_before))
        if result.neighbours and self._changed("neighbours", n_key):
            out["neighbour_map"] = map_iframe(neighbour_map(result, self.truth), MAP_HEIGHT, "neighbours")
        if result.clusters_before is not None and self._changed("before", id(result.clusters_before)):
            out["before_map"] = map_iframe(
                cluster_map(result, result.clusters_before, title="before re-ranking", truth=self.truth),
                MAP_HEIGHT, "clusters before re-ranking", "gd-map gd-clusters-before")
        if result.clusters_after is not None and self._changed("after", id(result.clusters_after)):
            out["after_map"] = map_iframe(
                cluster_map(result, result.clusters_after, title="after re-ranking", truth=self.truth),
                MAP_HEIGHT, "clusters after re-ranking", "gd-map gd-clusters-after")
        if self._changed("lmm", len(result.lmm_records)):
            out["lmm_table"] = redact(lmm_rows(result))
        if (result.candidates or final) and self._changed("candidates", (len(result.candidates), final)):
            out["candidates_table"] = candidate_rows(result)
            out["result_map"] = map_iframe(
                result_map(result, self.truth if final else None, show_prediction=final),
                MAP_HEIGHT, "prediction", "gd-map gd-result")
        out["errors"] = errors_markdown(result)
        out["timings"] = timing_text(result)
        return out


# ---------------------------------------------------------------------------------------------
# Handlers.

OUTPUT_NAMES = (
    "status", "overlay", "shares", "seg_state", "neighbour_map", "before_map", "after_map",
    "lmm_table", "candidates_table", "result_map", "prediction", "error_line", "explanation",
    "errors", "timings", "result_json",
)  # fmt: skip


def _message(text: str) -> dict[str, Any]:
    return {"status": text}


def locate_stream(
    photo: str | None,
    truth_text: str | None,
    example_key: str | None,
    preset: str,
    top_k: float | None,
    eps_km: float | None,
    min_samples: float | None,
    lmm_mode: str | None,
    lmm_backend: str | None,
    lmm_model: str | None,
    lmm_samples: float | None,
    opacity: float,
) -> Iterator[dict[str, Any]]:
    """The page's handler: yields named updates after every pipeline stage (never raises)."""
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
            preset, options = validate_request(preset, top_k, eps_km, min_samples, lmm_mode, lmm_backend,
                                               lmm_model, lmm_samples, ids, groups)
        except RequestError as exc:
            yield _message(f"⚠️ {describe(exc)[0]}")
            return
        try:
            image, exif_gps = read_photo(photo)
        except ImageError as exc:
            yield _message(f"⚠️ This file cannot be used as a photo: {describe(exc)[0]}")
            return
        if typed_truth is not None:
            truth, truth_source = typed_truth, ("example ground truth" if ids and known is None else "typed in")
        else:
            truth, truth_source = exif_gps, "EXIF GPS"
        if truth is None and known is not None:
            truth = (float(known[1].lat), float(known[1].lon))
            truth_source = f"{known[0]} ground truth, recognised by file name"
        opacity = min(max(float(opacity), 0.0), 1.0) if isinstance(opacity, (int, float)) and math.isfinite(opacity) else 0.5
        yield _message(f"⏳ loading the `{preset}` pipeline (first use only) …")
        locator = get_locator(preset)
        renderer = PageRenderer(image, truth, opacity)
        stages: list[str] = []
        last: LocationResult | None = None
        t0 = time.perf_counter()
        yield {"status": "⏳ running …", "overlay": image}
        for stage, partial in locator.iter_locate(image, options):
            stages.append(stage)
            last = partial
            update = renderer.render(partial, final=False)
            update["status"] = status_markdown(stages, partial, "next stage …")
            yield update
        if last is None:
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


@plain_errors("locating")
def locate_api(
    photo: str | None,
    preset: str = DEFAULT_PRESET,
    top_k: float | None = None,
    eps_km: float | None = None,
    min_samples: float | None = None,
    lmm_mode: str | None = PRESET_DEFAULT,
    lmm_backend: str | None = PRESET_DEFAULT,
    lmm_model: str | None = "",
    lmm_samples: float | None = None,
) -> dict[str, Any]:
    """API: locate one photo and return the ``LocationResult`` as JSON, without server paths.

    Refused settings, unusable photos and failures raise ``gr.Error`` with a one-line message.
    """
    preset, options = validate_request(preset, top_k, eps_km, min_samples, lmm_mode, lmm_backend,
                                       lmm_model, lmm_samples)
    if not photo:
        raise gr.Error("no photo given")
    try:
        image, exif_gps = read_photo(photo)
    except ImageError as exc:
        raise gr.Error(f"this file cannot be used as a photo: {describe(exc)[0][:300]}") from None
    out = public_dict(get_locator(preset).locate(image, options))
    if exif_gps is not None and out.get("exif_gps") is None:
        out["exif_gps"] = list(exif_gps)
    return out


THUMBNAIL_SIDE = 256


@lru_cache(maxsize=8)
def _gallery_files(preset: str) -> dict[str, str]:
    """Gallery id -> photo file of a preset's image gallery (the only files ``/thumbnail`` serves)."""
    meta = get_locator(preset).gallery.meta
    paths = meta.image_paths or []
    return {str(i): str(p) for i, p in zip(meta.ids, paths, strict=False) if p}


@plain_errors("the thumbnail")
def thumbnail_api(neighbour_id: str | None, preset: str | None = DEFAULT_PRESET) -> Image.Image:
    """API: the thumbnail of the gallery photo a result names by id (``neighbours[].id``)."""
    preset_name, _ = validate_request(preset, None, None, None, "off", None, None, None)
    key = (check_text("gallery id", neighbour_id) or "").strip()
    path = _gallery_files(preset_name).get(key) if key else None
    if path is None:
        raise gr.Error(f"no gallery photo with id {key[:60]!r} in preset {preset_name!r}")
    try:
        return _thumbnail(path, key)
    except ImageError:
        raise gr.Error(f"the gallery photo {key[:60]!r} cannot be read") from None


def _thumbnail(path: str, name: str) -> Image.Image:
    from geodemo.imageio import load_image

    image = load_image(path, max_side=THUMBNAIL_SIDE, max_pixels=BUDGET.max_pixels, name=name)
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


# ---------------------------------------------------------------------------------------------
# Layout.

CSS = """
#status {min-height: 1.5em}
.gd-map {background: #cfe3f0}
"""

INTRO = """# 🌍 geodemo — where was this photo taken?
Drop or paste a photo (or click an example). The pipeline encodes it, retrieves similar geo-tagged
photos, clusters them on the sphere, optionally asks a multimodal model, verifies the candidates and
shows every stage below, so you can see **why** it answered what it did. Maps work offline
(country outlines); OpenStreetMap tiles appear when the internet is reachable."""


def build_demo() -> gr.Blocks:
    """The Gradio Blocks page."""
    presets = available_presets()
    default_preset = DEFAULT_PRESET if DEFAULT_PRESET in presets else presets[0]
    with gr.Blocks(title="geodemo: photo geo-localization", delete_cache=upload_cache_policy()) as demo:
        gr.Markdown(INTRO)
        seg_state = gr.State(None)
        with gr.Row():
            with gr.Column(scale=1):
                photo = PhotoInput(label="Photo", type="filepath", sources=["upload", "clipboard"],
                                   image_mode=None, height=320, elem_id="photo")
                truth_box = gr.Textbox(label="True location (optional: lat, lon; filled by examples)",
                                       max_length=TEXT_LIMITS["true location"],
                                       placeholder="e.g. 48.8584, 2.2945", elem_id="truth")
                example_key = gr.Textbox(visible=False, elem_id="example-key")
                run = gr.Button("📍 Locate", variant="primary", elem_id="locate")
                examples = example_rows()
                if examples:
                    gr.Examples(examples=examples, inputs=[photo, truth_box, example_key], label=(
                        "Examples (IM2GPS3k dev split, OSV-5M sample) with their true location; "
                        "the photo itself and its photographer are left out of the gallery"), examples_per_page=10,
                        visible_columns=[0, 1], elem_id="examples")
                with gr.Accordion("Settings", open=False):
                    preset = RawDropdown(presets, value=default_preset, label="Preset", elem_id="preset",
                                         info=DEFAULT_CHOICE.explanation)
                    with gr.Row():
                        top_k = RawNumber(None, label="top-k neighbours", placeholder="preset default",
                                          precision=0, minimum=WEB_RANGES["top_k"][0], maximum=WEB_RANGES["top_k"][1])
                        eps_km = RawNumber(None, label="DBSCAN eps (km)", placeholder="preset default",
                                           minimum=WEB_RANGES["eps_km"][0], maximum=WEB_RANGES["eps_km"][1])
                        min_samples = RawNumber(None, label="DBSCAN min samples", placeholder="preset default",
                                                precision=0, minimum=WEB_RANGES["min_samples"][0],
                                                maximum=WEB_RANGES["min_samples"][1])
                    lmm_mode = RawRadio([PRESET_DEFAULT, "on", "off"], value=PRESET_DEFAULT, label="LMM stage",
                                        elem_id="lmm-mode")
                    with gr.Row():
                        lmm_backend = RawDropdown(available_backends(), value=PRESET_DEFAULT, label="LMM backend",
                                                  allow_custom_value=True)
                        lmm_model = gr.Textbox("", label="LMM model", placeholder="preset default")
                        lmm_samples = RawNumber(None, label="answers per prompt", placeholder="preset default",
                                                precision=0, minimum=WEB_RANGES["lmm_samples"][0],
                                                maximum=WEB_RANGES["lmm_samples"][1])
                    gr.Markdown(unavailable_backends_markdown(), elem_id="lmm-unavailable")
            with gr.Column(scale=2):
                status = gr.Markdown("", elem_id="status")
                prediction = gr.Markdown("", elem_id="prediction")
                error_line = gr.Markdown("", elem_id="error-line")
                result_map_html = gr.HTML("", elem_id="result-map")
                explanation = gr.Markdown("", elem_id="explanation")
                errors = gr.Markdown("", elem_id="stage-errors")
        with gr.Row():
            with gr.Column(scale=2):
                overlay = gr.Image(label="Photo with its segmentation overlay", type="pil", interactive=False,
                                   elem_id="overlay", height=360)
                opacity = gr.Slider(0.0, 1.0, value=0.5, step=0.05, label="Overlay opacity", elem_id="opacity")
            shares = gr.Label(label="Class shares (segmentation)", num_top_classes=10, elem_id="shares", scale=1)
        gr.Markdown("#### Retrieved neighbours (colour = cluster; click a point for its photo or place)")
        neighbour_html = gr.HTML("", elem_id="neighbour-map")
        with gr.Row():
            with gr.Column():
                gr.Markdown("#### Clusters before re-ranking")
                before_html = gr.HTML("", elem_id="clusters-before")
            with gr.Column():
                gr.Markdown("#### Clusters after re-ranking (main cluster and its centre in bold)")
                after_html = gr.HTML("", elem_id="clusters-after")
        with gr.Accordion("LMM answers and candidates", open=True):
            lmm_table = gr.Dataframe(headers=LMM_COLUMNS, value=[], label="LMM answers", wrap=True,
                                     interactive=False, elem_id="lmm-table")
            candidates_table = gr.Dataframe(headers=CANDIDATE_COLUMNS, value=[], label="Candidates",
                                            interactive=False, elem_id="candidates-table")
        with gr.Accordion("Timings and raw result", open=False):
            timings = gr.Markdown("", elem_id="timings")
            result_json = gr.JSON(label="LocationResult", elem_id="result-json")

        components = {
            "status": status, "overlay": overlay, "shares": shares, "seg_state": seg_state,
            "neighbour_map": neighbour_html, "before_map": before_html, "after_map": after_html,
            "lmm_table": lmm_table, "candidates_table": candidates_table, "result_map": result_map_html,
            "prediction": prediction, "error_line": error_line, "explanation": explanation,
            "errors": errors, "timings": timings, "result_json": result_json,
        }  # fmt: skip
        assert set(components) == set(OUTPUT_NAMES)
        settings = [preset, top_k, eps_km, min_samples, lmm_mode, lmm_backend, lmm_model, lmm_samples]

        def on_locate(*args: Any) -> Iterator[dict]:
            for update in locate_stream(*args):
                yield {components[name]: value for name, value in update.items()}

        def clear_outputs() -> dict:
            blank = {name: "" for name in OUTPUT_NAMES}
            blank.update(overlay=None, shares=None, seg_state=None, lmm_table=[], candidates_table=[],
                         result_json=None)
            return {components[name]: value for name, value in blank.items()}

        run.click(clear_outputs, None, list(components.values()), queue=False, api_visibility="private").then(
            on_locate,
            inputs=[photo, truth_box, example_key, *settings, opacity],
            outputs=list(components.values()),
            api_visibility="private",
            concurrency_limit=2,
            show_progress="minimal",
        )
        photo.upload(lambda: ("", ""), None, [truth_box, example_key], queue=False, api_visibility="private")
        opacity.change(rerender_overlay, [seg_state, opacity], overlay, queue=False, trigger_mode="always_last",
                       api_visibility="private")

        api_out = gr.JSON(visible=False)
        api_button = gr.Button(visible=False)
        api_button.click(locate_api, inputs=[photo, *settings], outputs=api_out, api_name="locate",
                         concurrency_limit=2)
        thumb_id = gr.Textbox(visible=False)
        thumb_out = gr.Image(type="pil", visible=False, format="jpeg")
        gr.Button(visible=False).click(thumbnail_api, inputs=[thumb_id, preset], outputs=thumb_out,
                                       api_name="thumbnail", concurrency_limit=4)
    with demo.route("Failure explorer", "/explorer"):  # explained evaluations under $GEODEMO_RUNS (runs/)
        from geodemo.viz.explorer import failure_explorer

        failure_explorer()
    return demo


def launch_options() -> dict[str, Any]:
    """What every launch of the page passes to ``demo.launch`` (``python app.py``, the tests): the upload
    size, the request-body limit (:class:`geodemo.web.limits.BodyLimit`), the style, no raw errors."""
    from starlette.middleware import Middleware

    return {"max_file_size": MAX_UPLOAD, "css": CSS, "show_error": False,
            "app_kwargs": {"middleware": [Middleware(BodyLimit, max_bytes=MAX_BODY)]}}


demo = build_demo()


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


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    warmup()
    demo.queue(default_concurrency_limit=2, max_size=32).launch(
        # None lets Gradio read GRADIO_SERVER_NAME / GRADIO_SERVER_PORT (set by Spaces), else 127.0.0.1:7860.
        server_name=env.get("GEODEMO_HOST"),
        server_port=env.get_int("GEODEMO_PORT", None),
        **launch_options(),
    )
