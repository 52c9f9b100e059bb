"""geodemo web app: drag in a photo, see where it was taken and why.

Layout and event wiring only. A Gradio Blocks page over the library: the Locate button calls
:func:`geodemo.web.handlers.locate_stream` once per request, which checks the request
(:mod:`geodemo.web.policy`), runs the preset's :class:`geodemo.pipeline.GeoLocator` stage by stage
and hands back each partial ``LocationResult`` rendered (:mod:`geodemo.viz.page`) as named updates;
this file maps the names to its components. The settings are generated from the options the
stages declare (:func:`geodemo.web.inputs.option_controls`).

The same pipeline is the API endpoint ``/locate`` (the LocationResult JSON, no server paths):
``gradio_client.Client(url).predict(handle_file(path), api_name="/locate")``; ``/thumbnail`` serves a
neighbour's gallery photo by id. Run: ``.venv/bin/python app.py`` (env ``GEODEMO_HOST``,
``GEODEMO_PORT`` (default 127.0.0.1:7860, or Gradio's ``GRADIO_SERVER_NAME``/``GRADIO_SERVER_PORT``),
``GEODEMO_PRESET``, ``GEODEMO_WARMUP=0`` to skip loading the models before serving). The page is
built by :func:`build_demo`, not at import; ``app.demo`` builds it on first access (Spaces, ``gradio app.py``).
Request bodies over the photo budget are refused from their declared length
(:class:`geodemo.web.limits.BodyLimit`); uploads leave Gradio's cache after ``GEODEMO_UPLOAD_MAX_AGE_S``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import gradio as gr

# Importing geodemo (any submodule) first installs its torchvision guard before vision libraries.
from geodemo import env
from geodemo.viz.explorer import failure_explorer
from geodemo.viz.page import OUTPUT_NAMES, blank_outputs
from geodemo.viz.tables import CANDIDATE_COLUMNS, LMM_COLUMNS
from geodemo.web.examples import example_rows
from geodemo.web.handlers import BUDGET, locate_api, locate_stream, rerender_overlay, thumbnail_api, warmup
from geodemo.web.inputs import PhotoInput, RawDropdown, option_controls
from geodemo.web.limits import BodyLimit, max_body_bytes, upload_cache_policy
from geodemo.web.policy import (
    DEFAULT_CHOICE,
    DEFAULT_PRESET,
    TEXT_LIMITS,
    available_presets,
    unavailable_backends_markdown,
)

MAX_UPLOAD = BUDGET.max_bytes  # Gradio's own upload route refuses larger files (HTTP 413)
MAX_BODY = max_body_bytes(MAX_UPLOAD)  # any request body: refused from its declared length (BodyLimit)

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
    """The Gradio Blocks page (built when asked: ``python app.py``, ``app.demo``, the tests)."""
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
                    settings = option_controls()  # generated from the stages' options
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

        def on_locate(photo: str | None, truth: str | None, key: str | None, preset: str, *rest: Any) -> Iterator[dict]:
            """The one call into the library per request; its named updates go to the components."""
            *values, opacity = rest
            for update in locate_stream(photo, truth, key, preset, values, opacity):
                yield {components[name]: value for name, value in update.items()}

        def clear_outputs() -> dict:
            return {components[name]: value for name, value in blank_outputs().items()}

        run.click(clear_outputs, None, list(components.values()), queue=False, api_visibility="private").then(
            on_locate,
            inputs=[photo, truth_box, example_key, preset, *settings, opacity],
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
        api_button.click(locate_api, inputs=[photo, preset, *settings], outputs=api_out, api_name="locate",
                         concurrency_limit=2)
        thumb_id = gr.Textbox(visible=False)
        thumb_out = gr.Image(type="pil", visible=False, format="jpeg")
        gr.Button(visible=False).click(thumbnail_api, inputs=[thumb_id, preset], outputs=thumb_out,
                                       api_name="thumbnail", concurrency_limit=4)
    with demo.route("Failure explorer", "/explorer"):  # explained evaluations under $GEODEMO_RUNS (runs/)
        failure_explorer()
    return demo


def launch_options() -> dict[str, Any]:
    """What every launch of the page passes to ``demo.launch`` (``python app.py``, the tests): the upload
    size, the request-body limit (:class:`geodemo.web.limits.BodyLimit`), the style, no raw errors."""
    from starlette.middleware import Middleware

    return {"max_file_size": MAX_UPLOAD, "css": CSS, "show_error": False,
            "app_kwargs": {"middleware": [Middleware(BodyLimit, max_bytes=MAX_BODY)]}}


_DEMO: gr.Blocks | None = None


def __getattr__(name: str) -> Any:
    """``app.demo``: the page, built on first access (what Spaces and ``gradio app.py`` look up)."""
    global _DEMO
    if name == "demo":
        if _DEMO is None:
            _DEMO = build_demo()
        return _DEMO
    raise AttributeError(f"module 'app' has no attribute {name!r}")


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    warmup()
    __getattr__("demo").queue(default_concurrency_limit=2, max_size=32).launch(
        # None lets Gradio read GRADIO_SERVER_NAME / GRADIO_SERVER_PORT (set by Spaces), else 127.0.0.1:7860.
        server_name=env.get("GEODEMO_HOST"),
        server_port=env.get_int("GEODEMO_PORT", None),
        **launch_options(),
    )
