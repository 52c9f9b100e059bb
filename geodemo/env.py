"""Every ``GEODEMO_*`` environment variable, with its meaning and default, read here and only here.

Code reads a variable through :func:`get`, :func:`get_int`, :func:`get_flag` or :func:`get_list`;
a name not listed in :data:`VARIABLES` is a ``KeyError``, so a new variable is one entry here. The
README's table of variables is :func:`markdown_table` (``tests/test_env.py`` checks they agree).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

__all__ = ["EnvVar", "VARIABLES", "get", "get_int", "get_flag", "get_list", "markdown_table"]


@dataclass(frozen=True)
class EnvVar:
    name: str
    default: str  # in words, as the README shows it
    meaning: str


VARIABLES: dict[str, EnvVar] = {v.name: v for v in [
    # where things are
    EnvVar("GEODEMO_SHARED", "`../shared` beside the checkout",
           "folder of the shared photos (`data/`) and weights (`models/`)"),
    EnvVar("GEODEMO_CHECKPOINTS", "`checkpoints/` in the repository", "folder of trained checkpoints"),
    EnvVar("GEODEMO_CACHE", "`~/.cache/geodemo`", "caches: features, galleries and indexes, LMM answers"),
    EnvVar("GEODEMO_RUNS", "`runs/` in the repository", "explained evaluations the failure explorer lists"),
    # models
    EnvVar("GEODEMO_VLM_MODEL", "`llava-hf/llava-interleave-qwen-0.5b-hf`",
           "image-text-to-text checkpoint of the `transformers` LMM backend"),
    EnvVar("GEODEMO_TFLITE_THREADS", "min(4, cores)", "threads of each TFLite interpreter"),
    EnvVar("GEODEMO_EXTRACT_WORKERS", "0 (in process)", "worker processes decoding photos for feature extraction"),
    # photos
    EnvVar("GEODEMO_MAX_IMAGE_PIXELS", "100000000",
           "largest photo the library decodes, in pixels (decompression-bomb guard)"),
    EnvVar("GEODEMO_WORKING_SIDE", "2048", "long side a photo is reduced to while decoding (0: full size)"),
    # the web app
    EnvVar("GEODEMO_PRESET", "unset", "the preset the app and the CLI use, whatever is reachable"),
    EnvVar("GEODEMO_PRESETS", "`geoclip-plus,offline`",
           "presets tried in order: the first whose weights are local, cached or downloadable answers"),
    EnvVar("GEODEMO_RECORDED_LMM", "none", "`NAME=FILE`: the web app's LMM answers come from this recorded file"),
    EnvVar("GEODEMO_RECORDED_CANDIDATES", "none",
           "`NAME=FILE[;NAME=FILE]`: recorded predictions the web app adds as candidates of source NAME"),
    EnvVar("GEODEMO_UPLOAD_MAX_AGE_S", "1800", "seconds an upload stays in Gradio's cache (0: kept)"),
    EnvVar("GEODEMO_EXTRA_PRESETS", "none", "more preset JSON files the web app offers, comma-separated"),
    EnvVar("GEODEMO_HOST", "Gradio's `GRADIO_SERVER_NAME`, else 127.0.0.1", "address the web app listens on"),
    EnvVar("GEODEMO_PORT", "Gradio's `GRADIO_SERVER_PORT`, else 7860", "port the web app listens on"),
    EnvVar("GEODEMO_WARMUP", "1", "0: serve at once, load the models on the first request"),
    EnvVar("GEODEMO_WEB_LMM_BACKENDS", "all registered", "LMM backends the page offers, comma-separated"),
    EnvVar("GEODEMO_LMM_MODELS", "none (the preset's model)", "LMM models the page may ask for, comma-separated"),
    EnvVar("GEODEMO_MAX_UPLOAD_MB", "40", "largest photo the page or API accepts, in MB"),
    EnvVar("GEODEMO_WEB_MAX_PIXELS", "40000000",
           "largest photo the page or API decodes, in pixels (never above `GEODEMO_MAX_IMAGE_PIXELS`)"),
    # the command line
    EnvVar("GEODEMO_DEBUG", "unset", "set: the command line prints the traceback of an error"),
]}


def get(name: str, default: str | None = None) -> str | None:
    """The variable's value with surrounding blanks removed, or ``default`` when unset or blank."""
    if name not in VARIABLES:
        raise KeyError(f"{name} is not a geodemo environment variable; add it to geodemo.env.VARIABLES "
                       f"(known: {', '.join(VARIABLES)})")
    value = os.environ.get(name, "").strip()
    return value or default


def get_int(name: str, default: int | None) -> int | None:
    """The variable as a whole number (``"4e7"`` is read too), or ``default``; else a ``ValueError``."""
    value = get(name)
    if value is None:
        return default
    try:
        return int(float(value))
    except (ValueError, OverflowError):
        raise ValueError(f"${name} must be a whole number, got {value!r}") from None


def get_flag(name: str, default: bool = False) -> bool:
    """``0``/``false``/``no``/``off`` are false, any other value true, unset is ``default``."""
    value = get(name)
    return default if value is None else value.lower() not in ("0", "false", "no", "off")


def get_list(name: str) -> list[str]:
    """The comma-separated items of the variable (none when unset)."""
    return [item.strip() for item in (get(name) or "").split(",") if item.strip()]


def markdown_table() -> str:
    """The README's table of variables."""
    lines = ["| variable | meaning | default |", "|---|---|---|"]
    lines += [f"| `{v.name}` | {v.meaning} | {v.default} |" for v in VARIABLES.values()]
    return "\n".join(lines)
