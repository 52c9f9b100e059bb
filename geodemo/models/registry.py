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
from functools import lru_cache
from pathlib import Path
from typing import Any

from geodemo.registry import Registry

__all__ = ["ModelSpec", "MODELS", "list_models", "get_spec", "create_model", "register_model", "shared_model"]

CONFIG_DIR = Path(__file__).with_name("configs")


@dataclass(frozen=True)
class ModelSpec:
    """What a registered name stands for."""

    name: str
    family: str  # image-encoder | segmenter | gps-encoder | geo-model | ...
    loader: str  # "package.module:function"
    config: dict[str, Any] = field(default_factory=dict)
    description: str = ""


def _load_builtin(registry: Registry[ModelSpec]) -> None:
    for path in sorted(CONFIG_DIR.glob("*.json")):
        data = json.loads(path.read_text())
        registry.add(path.stem, ModelSpec(
            name=path.stem,
            family=data["family"],
            loader=data["loader"],
            config=data.get("config", {}),
            description=data.get("description", ""),
        ))


MODELS: Registry[ModelSpec] = Registry("model", _load_builtin)


def register_model(spec: ModelSpec) -> None:
    """Add (or replace) a model under ``spec.name``; the built-in models stay registered."""
    MODELS.add(spec.name, spec)


def list_models(family: str | None = None) -> list[str]:
    """Registered model names, optionally of one family."""
    return [n for n, s in MODELS.items() if family is None or s.family == family]


def get_spec(name: str) -> ModelSpec:
    """The spec of a registered model, or a ``KeyError`` listing the known names."""
    return MODELS.get(name)


def create_model(name: str, **overrides: Any) -> Any:
    """Build the model registered as ``name``; ``overrides`` replace config entries."""
    spec = get_spec(name)
    module_name, func_name = spec.loader.split(":")
    loader = getattr(importlib.import_module(module_name), func_name)
    return loader(**{**spec.config, **overrides})


@lru_cache(maxsize=8)
def _shared_model(name: str, overrides_json: str) -> Any:
    return create_model(name, **json.loads(overrides_json))


def shared_model(name: str, **overrides: Any) -> Any:
    """One model object per (name, overrides) per process, so tests and scripts load weights once."""
    return _shared_model(name, json.dumps(overrides, sort_keys=True, default=str))
