"""Gradio input components and handler wrapping for the web app: what a client sends reaches
:mod:`geodemo.web.policy` unchanged, and whatever goes wrong comes back as one plain sentence.

- :class:`PhotoInput`: ``gr.Image`` that hands the handler the uploaded file's path, undecoded,
  after the photo budget's byte check (uploads, pastes and ``data:`` URLs alike).
- :class:`RawNumber`, :class:`RawDropdown`, :class:`RawRadio`: Gradio's own components, minus their
  silent coercion (1.5 -> 2, ``true`` -> 1) and their message-less failures (NaN, text): the value
  goes to :func:`geodemo.web.policy.validate_request`, which refuses it in words.
- :func:`option_controls`: one control per option the stages let a call override (their labels,
  ranges and choices), in the order :func:`geodemo.web.policy.option_values` reads them.
- :func:`plain_errors`: every exception a handler raises becomes a ``gr.Error`` with plain words
  (the traceback goes to the log), so no API answer is ``{"error": null}``.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gradio as gr

from geodemo.errors import describe
from geodemo.imageio import ImageError, PhotoBudget
from geodemo.web.policy import PRESET_DEFAULT, RequestError, offered_choices, web_options

__all__ = ["PhotoInput", "RawDropdown", "RawNumber", "RawRadio", "option_controls", "plain_errors"]

logger = logging.getLogger("geodemo.web")


def plain_errors(what: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator: a handler's refusals and failures become ``gr.Error("<what> failed: plain words")``.

    :class:`RequestError` and :class:`ImageError` are shown as they are (they speak to the user);
    anything else is logged with its traceback and described by :func:`geodemo.errors.describe`.
    """

    def wrap(fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def handler(*args: Any, **kwargs: Any) -> Any:
            try:
                return fn(*args, **kwargs)
            except gr.Error:
                raise
            except (RequestError, ImageError) as exc:
                raise gr.Error(describe(exc)[0][:400]) from None
            except Exception as exc:  # noqa: BLE001 - the log keeps the traceback, the caller gets one line
                logger.exception("%s failed", what)
                raise gr.Error(f"{what} failed: {describe(exc)[0][:300]}") from None

        return handler

    return wrap


class _Raw:
    """Mixin: the component's value reaches the handler as the client sent it (checked there, in words)."""

    def preprocess(self, payload: Any) -> Any:  # type: ignore[override]
        return payload


class RawNumber(_Raw, gr.Number):
    """``gr.Number`` without rounding or bound errors: the stage declaring the option checks it."""

    is_template = True


class RawDropdown(_Raw, gr.Dropdown):
    """``gr.Dropdown`` whose value is checked against the server's lists by the handler (short messages)."""

    is_template = True


class RawRadio(_Raw, gr.Radio):
    """``gr.Radio`` whose value is checked by the handler."""

    is_template = True


class PhotoInput(gr.Image):
    """``gr.Image`` that hands the handler the uploaded file's path, undecoded.

    Gradio's own decoding would turn a non-image into an unreadable server error and would drop
    the EXIF block (GPS); ``geodemo.imageio.load_image`` reads it instead, with readable errors.
    A ``data:`` URL is decoded into the cache only after its size is checked, and the file is
    registered with the page's temporary files, so the cache's time limit removes it as it does uploads.
    """

    is_template = True  # rendered by the built-in Image front end
    budget: PhotoBudget = PhotoBudget.for_web()

    def preprocess(self, payload):  # type: ignore[override]
        """The file's path, after the photo budget's byte check (uploads, pastes and data URLs alike)."""
        if payload is None:
            return None
        if getattr(payload, "path", None):
            path = Path(payload.path)
            try:
                self.budget.check_bytes(path.stat().st_size, "the photo")
            except OSError:
                raise gr.Error("the uploaded photo could not be found on the server (uploads are kept for a "
                               "limited time); upload it again") from None
            except ImageError as exc:
                raise gr.Error(str(exc)) from None
            return str(path)
        url = getattr(payload, "url", None) or ""
        if url.startswith("data:"):
            from gradio.processing_utils import save_base64_to_cache

            encoded = len(url) - url.find(",") - 1
            try:  # checked on the text, before anything is decoded or written
                self.budget.check_bytes(encoded * 3 // 4, "the photo (sent as a data URL)")
            except ImageError as exc:
                raise gr.Error(str(exc)) from None
            try:
                path = save_base64_to_cache(url, self.GRADIO_CACHE)
            except Exception:  # noqa: BLE001 - malformed base64 or header
                raise gr.Error("the photo's data URL could not be decoded") from None
            self.temp_files.add(str(Path(path).resolve()))
            return path
        raise gr.Error("the upload carried no file")


def option_controls() -> list[gr.components.Component]:
    """The page's settings generated from the stages' options (:func:`geodemo.web.policy.web_options`), one
    row per preset section: a number box with the option's range, an on/off/preset-default choice, a
    dropdown of the offered names, or a text box; empty keeps the preset's value. Call inside a layout."""
    controls: list[gr.components.Component] = []
    by_section: dict[str, list] = {}
    for spec in web_options():
        by_section.setdefault(spec.section, []).append(spec)
    for specs in by_section.values():
        with gr.Row():
            for spec in specs:
                common = {"label": spec.label, "info": spec.help, "elem_id": f"opt-{spec.key.replace('.', '-')}"}
                if spec.kind is bool:
                    control = RawRadio([PRESET_DEFAULT, "on", "off"], value=PRESET_DEFAULT, **common)
                elif spec.kind is str and spec.choices is not None:
                    control = RawDropdown(offered_choices(spec), value=PRESET_DEFAULT, allow_custom_value=True, **common)
                elif spec.kind is str:
                    control = gr.Textbox("", placeholder="preset default", max_length=spec.max_len, **common)
                else:
                    control = RawNumber(None, placeholder="preset default", minimum=spec.lo, maximum=spec.hi,
                                        precision=0 if spec.kind is int else None, **common)
                controls.append(control)
    return controls
