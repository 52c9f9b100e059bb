"""Model registry, open_clip style: a name maps to a small JSON config and a loader.

Each ``configs/<name>.json`` holds ``{"family": ..., "loader": "module:function", "config": {...},
"description": ...}``. ``create_model(name)`` imports the loader lazily and calls it with the config
(plus overrides), so the pipeline, the trainer and the app ask for ``"mobilenet-v1-imagenet"`` and
never import a backend. Adding a model is adding a JSON file.
"""

from __future__ import annotations

import importlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["ModelSpec", "list_models", "get_spec", "create_model", "register_model"]

CONFIG_DIR = Path(__file__).with_name("configs")


@dataclass(frozen=True)
class ModelSpec:
    """What a registered name stands for."""

    name: str
    family: str  # image-encoder | segmenter | gps-encoder | geo-model | ...
    loader: str  # "package.module:function"
    config: dict[str, Any] = field(default_factory=dict)
    description: str = ""


_REGISTRY: dict[str, ModelSpec] = {}


def register_model(spec: ModelSpec) -> None:
    """Add (or replace) a model under ``spec.name``."""
    _REGISTRY[spec.name] = spec


def _load_builtin() -> None:
    if _REGISTRY:
        return
    for path in sorted(CONFIG_DIR.glob("*.json")):
        data = json.loads(path.read_text())
        register_model(
            ModelSpec(
                name=path.stem,
                family=data["family"],
                loader=data["loader"],
                config=data.get("config", {}),
                description=data.get("description", ""),
            )
        )


def list_models(family: str | None = None) -> list[str]:
    """Registered model names, optionally of one family."""
    _load_builtin()
    return sorted(n for n, s in _REGISTRY.items() if family is None or s.family == family)


def get_spec(name: str) -> ModelSpec:
    """The spec of a registered model, or a ``KeyError`` listing the known names."""
    _load_builtin()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown model {name!r}; known models: {', '.join(list_models())}") from None


def create_model(name: str, **overrides: Any) -> Any:
    """Build the model registered as ``name``; ``overrides`` replace config entries."""
    spec = get_spec(name)
    module_name, func_name = spec.loader.split(":")
    loader = getattr(importlib.import_module(module_name), func_name)
    return loader(**{**spec.config, **overrides})
