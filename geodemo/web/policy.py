"""What a web request may ask for: the one place the page's and the API's settings are checked.

Every route (the page, ``/locate``, ``/thumbnail``, a direct ``fn_index`` call) hands what the
client sent to :func:`validate_request`, which resolves the request the way the pipeline will run
it (the preset's defaults expanded) and then applies the server's allow-lists to the result:

- presets: the pipeline's and the server's extra ones (``GEODEMO_EXTRA_PRESETS``), by name only;
- LMM backends: ``GEODEMO_WEB_LMM_BACKENDS`` (comma-separated; unset = every registered backend),
  enforced on the backend that will actually run, including a preset's own when the LMM stage is on;
- LMM models: ``GEODEMO_LMM_MODELS`` (none by default); the OpenAI-compatible backend's model comes
  from the server's config only;
- the stages' options (:func:`web_options`, one page control each, in that order): the ranges,
  lengths and names the stages declare (:mod:`geodemo.pipeline.options`), checked by the stages with
  the same words as on the command line; whole numbers must be whole (1.5, ``true`` and NaN are refused);
- free text: :data:`TEXT_LIMITS`, checked before any parsing, and parsed without regular expressions
  that could backtrack (a 100 KB text costs microseconds and is refused in one short line).

Nothing here imports Gradio: :class:`RequestError` is what the app turns into its own error.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

from geodemo import env
from geodemo.errors import GeodemoError, redact_paths
from geodemo.lmm.backends import backend_availability as probe
from geodemo.lmm.backends import list_backends
from geodemo.pipeline import list_presets, load_preset
from geodemo.pipeline.choice import choose_preset
from geodemo.pipeline.options import InvalidOptionError, LocateOptions, Option, declared_options
from geodemo.pipeline.stages.base import value_kind

__all__ = [
    "DEFAULT_CHOICE", "DEFAULT_PRESET", "PRESET_DEFAULT", "RequestError", "SERVER_MODEL_BACKENDS", "TEXT_LIMITS",
    "allowed_backends", "allowed_local_models", "available_backends", "available_presets", "backend_availability",
    "check_text", "offered_choices", "parse_example_key", "web_options", "parse_truth", "registered_backends", "server_presets",
    "unavailable_backends_markdown", "validate_request",
]

logger = logging.getLogger("geodemo.web")

# GEODEMO_PRESET, else the first of GEODEMO_PRESETS (geoclip-plus,offline) whose weights are here or downloadable
DEFAULT_CHOICE = choose_preset()
DEFAULT_PRESET = DEFAULT_CHOICE.preset
FALLBACK_PRESETS = ("offline", "g3", "dualgeo")
PRESET_DEFAULT = "preset default"
FALLBACK_BACKENDS = ("ollama", "openai", "transformers", "gguf")

#: Backends whose model is fixed by the server's config (an API key pays for it): never from the page.
SERVER_MODEL_BACKENDS = frozenset({"openai", "openai-compatible"})

#: Longest text each free-text field may carry, checked before the text is parsed or echoed (the
#: stages' options carry their own: a name's ``max_len``, 40 characters for a number or on/off).
TEXT_LIMITS: dict[str, int] = {"true location": 100, "example": 400, "preset": 200, "gallery id": 300}
_CHOICE_TEXT = 40  # "preset default" / "on" / "off", or a number typed as text


class RequestError(GeodemoError, ValueError):
    """A setting the page or an API client sent that the server does not accept (message for the user)."""

    summary = "the request was refused"


def _env_list(name: str) -> list[str]:
    return env.get_list(name)


def check_text(label: str, value: Any, limit: int | None = None) -> str | None:
    """``value`` as text within ``limit`` (default :data:`TEXT_LIMITS` [label]), None for None; refused
    before any parsing."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise RequestError(f"{label} must be text, got {value_kind(value)}")
    limit = _text_limit(label) if limit is None else limit
    if len(value) > limit:
        raise RequestError(f"{label} is {len(value):,} characters long; at most {limit} are accepted")
    return value


def _text_limit(label: str) -> int:
    """:data:`TEXT_LIMITS` [label], or the limit of the option control so labelled."""
    if label in TEXT_LIMITS:
        return TEXT_LIMITS[label]
    spec = next(o for o in web_options() if o.label == label)
    return spec.max_len if spec.kind is str else _CHOICE_TEXT


# ------------------------------------------------------------------------------------------ presets


def server_presets() -> dict[str, str]:
    """Extra preset files the server offers (``GEODEMO_EXTRA_PRESETS``: JSON paths separated by
    commas), by name (the file's stem): the page sees the name, never the path."""
    return {Path(p).stem: p for p in _env_list("GEODEMO_EXTRA_PRESETS")}


def available_presets() -> list[str]:
    """Preset names the page may choose: the pipeline's (``geodemo/pipeline/presets/*.json``) and
    the server's extra ones (:func:`server_presets`)."""
    try:

        names = list_presets()
    except Exception:  # noqa: BLE001 - the page must load even when the pipeline does not
        logger.exception("could not list the pipeline presets")
        names = []
    names = names or list(FALLBACK_PRESETS)
    return names + [n for n in server_presets() if n not in names]


def preset_source(name: str) -> str:
    """What :func:`geodemo.pipeline.load_preset` is given for a preset the page named."""
    return server_presets().get(name, name)


def preset_lmm(preset: str) -> tuple[bool, dict[str, Any]]:
    """(whether the preset has an LMM stage, its ``lmm`` section)."""

    cfg = load_preset(preset_source(preset))
    stages = cfg.get("stages")
    has_stage = stages is None or "lmm" in stages
    return has_stage, dict(cfg.get("lmm") or {})


# ------------------------------------------------------------------------------------------ backends


@lru_cache(maxsize=1)
def backend_availability() -> dict[str, str | None]:
    """Registered LMM backends -> None when usable here, else one line on how to enable it (probed once)."""
    try:

        return probe()
    except Exception:  # noqa: BLE001 - the page must load even when probing fails
        logger.exception("could not probe the LMM backends")
        return dict.fromkeys(FALLBACK_BACKENDS)


def registered_backends() -> list[str]:
    """Every registered LMM backend name (aliases included)."""
    try:

        return list(list_backends())
    except Exception:  # noqa: BLE001
        logger.exception("could not list the LMM backends")
        return list(FALLBACK_BACKENDS)


def allowed_backends() -> list[str]:
    """LMM backends a web request may run, reachable or not: the registered ones, narrowed by
    ``GEODEMO_WEB_LMM_BACKENDS`` when it is set."""
    allowed = _env_list("GEODEMO_WEB_LMM_BACKENDS")
    return [n for n in registered_backends() if not allowed or n in allowed]


def available_backends() -> list[str]:
    """LMM backends the page offers ("preset default" first): the reachable ones among the allowed."""
    allowed = set(allowed_backends())
    return [PRESET_DEFAULT, *(name for name, how in backend_availability().items() if how is None and name in allowed)]


def unavailable_backends_markdown() -> str:
    """One line per allowed backend that is not reachable here, saying how to enable it."""
    allowed = set(allowed_backends())
    lines = [f"- **{name}**: not installed: {redact_paths(how)}"
             for name, how in backend_availability().items() if how and name in allowed]
    return "Not available here:\n" + "\n".join(lines) if lines else ""


def allowed_local_models() -> list[str]:
    """LMM models the page may ask for (``GEODEMO_LMM_MODELS``, comma-separated; none by default)."""
    return _env_list("GEODEMO_LMM_MODELS")


# ------------------------------------------------------------------------------------------ values


def _choice(label: str, v: Any, limit: int | None = None) -> str | None:
    """A text choice from the page: None for empty or "preset default"."""
    v = check_text(label, v, limit)
    if v is None:
        return None
    v = v.strip()
    return None if not v or v == PRESET_DEFAULT else v


def web_options() -> list[Option]:
    """The stages' per-call options, in the order of the page's controls and of the API's arguments
    after the preset: ``retrieval.top_k``, ``rerank.eps_km``, ``rerank.min_samples``, ``lmm.enabled``,
    ``lmm.backend``, ``lmm.model``, ``lmm.samples`` with the built-in stages."""
    return declared_options()


def offered_choices(spec: Option) -> list[str]:
    """The values the page offers for a named option ("preset default" first): for the LMM backend the
    reachable allowed ones (:func:`available_backends`), else the stage's own choices."""
    if spec.key == "lmm.backend":
        return available_backends()
    return [PRESET_DEFAULT, *(spec.choices() if spec.choices is not None else [])]


def _web_value(spec: Option, raw: Any) -> Any:
    """What a page control sent, as the stage's option value (None: the preset's), or :class:`RequestError`
    in the stage's own words after the control's label."""
    if spec.kind is str:
        return _choice(spec.label, raw, spec.max_len)
    if spec.kind is bool:
        if isinstance(raw, bool):
            return raw
        mode = (_choice(spec.label, raw, _CHOICE_TEXT) or "").lower()
        if mode not in ("", "on", "off"):
            raise RequestError(f"{spec.label} must be {PRESET_DEFAULT!r}, 'on' or 'off'")
        return {"on": True, "off": False}.get(mode)
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return None
    try:
        return spec.parse(raw)
    except InvalidOptionError as exc:
        raise RequestError(f"{spec.label} {exc.reason}") from None


def option_values(values: Sequence[Any] | Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """``{section: {field: value}}`` from the page's controls: their values in :func:`web_options` order,
    or a mapping ``{"section.field": value}`` (what is left out keeps the preset's value)."""
    specs = web_options()
    if isinstance(values, Mapping):
        unknown = sorted(set(values) - {o.key for o in specs})
        if unknown:
            raise RequestError(f"unknown setting(s) {', '.join(unknown)[:200]}")
        raw = [values.get(o.key) for o in specs]
    else:
        raw = list(values)
        if len(raw) != len(specs):
            raise RequestError(f"expected {len(specs)} settings after the preset, got {len(raw)}")
    out: dict[str, dict[str, Any]] = {}
    for spec, value in zip(specs, raw, strict=True):
        parsed = _web_value(spec, value)
        if parsed is not None:
            out.setdefault(spec.section, {})[spec.name] = parsed
    return out


def _number(text: str) -> float | None:
    """A plain decimal number (``-12.5``), or None: no exponent, no sign but one leading minus."""
    body = text[1:] if text.startswith("-") else text
    whole, _, frac = body.partition(".")
    if not whole.isdigit() or not whole.isascii() or ("." in body and not (frac.isdigit() and frac.isascii())):
        return None
    return float(text)


def parse_truth(text: Any) -> tuple[float, float] | None:
    """``"48.85, 2.35"`` (also ``"(48.85; 2.35)"`` or ``"48.85 2.35"``) -> (48.85, 2.35); empty -> None;
    anything else -> :class:`RequestError` that does not repeat the text.

    The length is checked first (:data:`TEXT_LIMITS`); the parse is a few string splits, linear in the text.
    """
    text = check_text("true location", text)
    if text is None or not text.strip():
        return None
    body = text.strip()
    if body.startswith("(") and body.endswith(")"):
        body = body[1:-1]
    parts = body.replace(";", ",").split(",")
    if len(parts) == 1:
        parts = body.split()
    values = [_number(p.strip()) for p in parts] if len(parts) == 2 else []
    if len(values) != 2 or None in values:
        raise RequestError("the true location must be 'lat, lon' in decimal degrees, e.g. 48.8584, 2.2945")
    lat, lon = values
    if not (-90 <= lat <= 90 and -180 <= lon <= 180):
        raise RequestError("the true location is out of range (lat within ±90, lon within ±180)")
    return lat, lon


def parse_example_key(key: Any) -> tuple[set[str], set[str]]:
    """``"<benchmark>|<id>|<group>"`` -> ({id}, {group}) to leave the example's own photos out."""
    key = check_text("example", key)
    if not key or "|" not in key:
        return set(), set()
    _bench, sample_id, group = (key.split("|") + ["", ""])[:3]
    return ({sample_id} if sample_id else set()), ({group} if group else set())


# ------------------------------------------------------------------------------------------ the request


def validate_request(
    preset: Any,
    values: Sequence[Any] | Mapping[str, Any] = (),
    exclude_ids: set[str] | None = None,
    exclude_groups: set[str] | None = None,
) -> tuple[str, LocateOptions]:
    """``(preset, LocateOptions)`` from what a client sent (the preset and the option controls' values, see
    :func:`option_values`), or :class:`RequestError` saying what is refused.

    The request is resolved as the pipeline will run it (the preset's LMM stage, backend and model
    filled in where the client left them to the preset) and the allow-lists are applied to that.
    """
    preset_name = _choice("preset", preset) or DEFAULT_PRESET
    presets = available_presets()
    if preset_name not in presets:
        raise RequestError(f"unknown preset {preset_name[:60]!r}; choose one of {', '.join(presets)}")
    options = option_values(values)
    asked = options.get("lmm", {})
    backend, model = asked.get("backend"), asked.get("model")
    allowed = allowed_backends()  # reachable or not: the LMM stage says "not installed"
    if backend is not None and backend not in allowed:
        raise RequestError(f"the LMM backend {backend[:60]!r} is not offered here; choose one of "
                           f"{', '.join(allowed) or 'none'} (server setting GEODEMO_WEB_LMM_BACKENDS)")
    has_stage, lmm = preset_lmm(preset_name)
    runs_lmm = has_stage and asked.get("enabled", bool(lmm.get("enabled")))
    effective = backend or lmm.get("backend")
    if runs_lmm and effective is not None and effective not in allowed:
        raise RequestError(f"preset {preset_name!r} asks the LMM backend {effective!r}, which this server does "
                           f"not offer; set the LMM stage off or choose one of {', '.join(allowed) or 'none'}")
    if model is not None:
        if effective in SERVER_MODEL_BACKENDS:
            raise RequestError("the OpenAI-compatible backend's model is set on the server (OPENAI_MODEL or the "
                               "preset), not by the page; leave the LMM model empty")
        if model not in allowed_local_models():
            raise RequestError(
                "the page may not choose this LMM model; the server allows "
                f"{', '.join(allowed_local_models()) or 'only the preset default'} (env GEODEMO_LMM_MODELS)")
    try:
        checked = LocateOptions(options, exclude_ids=set(exclude_ids or ()), exclude_groups=set(exclude_groups or ()))
    except InvalidOptionError as exc:
        label = next((o.label for o in web_options() if o.key == exc.option), exc.option)
        raise RequestError(f"{label} {exc.reason}") from None
    return preset_name, checked
