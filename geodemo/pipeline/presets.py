"""Pipeline presets: JSON configs in ``geodemo/pipeline/presets/`` (or any JSON file path).

A preset names every component (encoder, segmenter, gallery, index kind, verifier, LMM, clues) and
every hyper-parameter; the :class:`~geodemo.pipeline.GeoLocator` has no preset-specific code.
Overrides are the one syntax of every preset family (:func:`geodemo.configs.parse_overrides`),
``load_preset("offline", ["rerank.eps_km=25"])``, or sections deep-merged:
``load_preset("offline", rerank={"eps_km": 25})``. Unknown keys are refused when the stages are
built from their sections.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from geodemo.configs import apply_overrides, list_configs, read_config
from geodemo.data.recorded import recorded_from_env

__all__ = ["PRESET_DIR", "list_presets", "load_preset", "deep_merge", "with_random_weights", "recorded_for"]

PRESET_DIR = Path(__file__).with_name("presets")


def list_presets() -> list[str]:
    """Names of the built-in presets."""
    return list_configs(PRESET_DIR)


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """``base`` updated by ``override``, recursing into nested dicts (inputs are not modified)."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def load_preset(name_or_path: str | Path, overrides: Iterable[str] | Mapping[str, Any] | None = None,
                **sections: Any) -> dict[str, Any]:
    """The preset called ``name_or_path`` (built-in name or JSON file), with ``sections`` merged in,
    then the ``section.key=value`` ``overrides`` set."""
    cfg = read_config(name_or_path, PRESET_DIR, what="preset", name_key="name", error=KeyError)
    return apply_overrides(deep_merge(cfg, sections), overrides, what=f"preset {cfg['name']!r}")


def with_random_weights(cfg: dict[str, Any], seed: int = 0) -> dict[str, Any]:
    """``cfg`` with untrained models of the real architectures (tests, timing on a machine without the
    weights): ``"weights": "random"`` for the preset's hub models and its descriptor, whose
    checkpoint is then not read. Models that are real only (TFLite) and packaged weights (the
    geoclip wheel's heads) stay as they are."""
    out = deep_merge(cfg, {"weights": "random", "seed": int(seed)})
    if isinstance(out.get("descriptor"), dict):
        out["descriptor"] = {**{k: v for k, v in out["descriptor"].items() if k != "checkpoint"},
                             "weights": "random", "seed": int(seed)}
    return out


def recorded_for(preset: str) -> dict[str, dict[str, dict[str, str]]]:
    """``from_preset`` overrides that give ``preset`` the recorded sources the server's environment names
    (:func:`~geodemo.data.recorded.recorded_from_env`), for the roles its stages can use; {} when there are
    none."""
    section = recorded_from_env()
    if not section:
        return {}
    stages = set(load_preset(preset).get("stages") or [])
    usable = {role: files for role, files in section.items()
              if (role == "lmm" and "lmm" in stages) or (role == "candidates" and "candidates.recorded" in stages)}
    return {"recorded": usable} if usable else {}
