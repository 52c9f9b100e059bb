"""Training presets: JSON files in ``geodemo/train/presets/`` plus ``section.key=value`` overrides."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from geodemo.configs import list_configs, read_config
from geodemo.models.loading import resolve_device  # re-exported: one device rule for library and trainer

__all__ = ["PRESET_DIR", "list_presets", "load_preset", "apply_overrides", "resolve_device"]

PRESET_DIR = Path(__file__).with_name("presets")


def list_presets() -> list[str]:
    """Names of the built-in training presets."""
    return list_configs(PRESET_DIR)


def load_preset(name_or_path: str | Path) -> dict[str, Any]:
    """A preset by name (``"offline-verifier"``) or by path to a JSON file."""
    return read_config(name_or_path, PRESET_DIR, what="training preset", name_key="preset", error=FileNotFoundError)


def _parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def apply_overrides(cfg: dict[str, Any], overrides: list[str] | dict[str, Any] | None) -> dict[str, Any]:
    """A copy of ``cfg`` with ``"optim.lr=0.01"``-style (or ``{"optim.lr": 0.01}``) overrides applied."""
    out = copy.deepcopy(cfg)
    items = overrides.items() if isinstance(overrides, dict) else (
        (o.split("=", 1)[0], _parse_value(o.split("=", 1)[1])) for o in (overrides or []) if "=" in o
    )
    for dotted, value in items:
        *parents, leaf = dotted.split(".")
        node = out
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    return out
