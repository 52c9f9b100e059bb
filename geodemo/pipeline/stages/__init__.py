"""Registry of pipeline stages, the same idiom as :mod:`geodemo.models.registry`.

A preset lists stage names in order (``"stages": ["load", "encode", "retrieve", ...]``);
``create_stage(name, section)`` builds one from its preset section. Adding a stage is adding a
small module here with a :class:`Stage` subclass registered by :func:`register_stage`.
"""

from __future__ import annotations

import importlib
from typing import Any

from geodemo.pipeline.stages.base import NoConfig, Stage, config_from_section

__all__ = ["Stage", "NoConfig", "config_from_section", "register_stage", "list_stages", "get_stage",
           "create_stage", "STAGE_MODULES"]

# modules holding the built-in stages, in data-flow order
STAGE_MODULES = ("load", "segment", "encode", "retrieve", "rerank", "clues", "lmm", "candidates", "verify",
                 "decide")

_REGISTRY: dict[str, type[Stage]] = {}
_LOADED = False


def register_stage(cls: type[Stage]) -> type[Stage]:
    """Add (or replace) a stage class under ``cls.name``; usable as a class decorator."""
    if not cls.name:
        raise ValueError(f"{cls.__name__} has no stage name")
    _REGISTRY[cls.name] = cls
    return cls


def _load_builtin() -> None:
    global _LOADED
    if _LOADED:
        return
    for module in STAGE_MODULES:
        importlib.import_module(f"geodemo.pipeline.stages.{module}")
    _LOADED = True


def list_stages() -> list[str]:
    """Registered stage names, in data-flow order."""
    _load_builtin()
    return list(_REGISTRY)


def get_stage(name: str) -> type[Stage]:
    """The class registered as ``name``, or a ``KeyError`` listing the known names."""
    _load_builtin()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown stage {name!r}; known stages: {', '.join(_REGISTRY)}") from None


def create_stage(name: str, section: dict[str, Any] | None = None, allowed: set[str] = frozenset()) -> Stage:
    """The stage ``name`` configured by ``section`` (see :meth:`Stage.from_section`)."""
    return get_stage(name).from_section(section, allowed)
