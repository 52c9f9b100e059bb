"""Training presets: JSON files in ``geodemo/train/presets/`` plus ``section.key=value`` overrides."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

__all__ = ["PRESET_DIR", "list_presets", "load_preset", "apply_overrides", "resolve_device"]

PRESET_DIR = Path(__file__).with_name("presets")


def list_presets() -> list[str]:
    """Names of the built-in training presets."""
    return sorted(p.stem for p in PRESET_DIR.glob("*.json"))


def load_preset(name_or_path: str | Path) -> dict[str, Any]:
    """A preset by name (``"offline-verifier"``) or by path to a JSON file."""
    path = Path(name_or_path)
    if not path.suffix == ".json":
        path = PRESET_DIR / f"{name_or_path}.json"
    if not path.is_file():
        raise FileNotFoundError(
            f"training preset {str(name_or_path)!r} not found at {path}; known presets: {', '.join(list_presets())}"
        )
    cfg = json.loads(path.read_text())
    cfg.setdefault("preset", path.stem)
    return cfg


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


def resolve_device(device: str = "auto") -> str:
    """``"auto"`` -> ``"cuda"`` if available, then ``"mps"``, then ``"cpu"``; other values unchanged."""
    if device != "auto":
        return device
    import torch

    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return "cpu"
