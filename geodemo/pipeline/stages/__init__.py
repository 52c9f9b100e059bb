"""Registry of pipeline stages, the same idiom as :mod:`geodemo.models.registry`.

A preset lists stage names in order (``"stages": ["load", "encode", "retrieve", ...]``);
``create_stage(name, section)`` builds one from its preset section. Adding a stage is adding a
small module here with a :class:`Stage` subclass registered by :func:`register_stage`.
"""

from __future__ import annotations

from typing import Any

from geodemo.pipeline.stages.base import NoConfig, Stage, config_from_section
from geodemo.registry import Registry

__all__ = ["Stage", "NoConfig", "config_from_section", "register_stage", "list_stages", "get_stage",
           "create_stage", "STAGE_MODULES", "STAGES"]

# modules holding the built-in stages, in data-flow order
STAGE_MODULES = ("load", "segment", "encode", "retrieve", "rerank", "clues", "lmm", "candidates", "verify",
                 "decide")

STAGES: Registry[type[Stage]] = Registry(
    "stage", [f"geodemo.pipeline.stages.{module}" for module in STAGE_MODULES], sort=False)


def register_stage(cls: type[Stage]) -> type[Stage]:
    """Add (or replace) a stage class under ``cls.name``; usable as a class decorator."""
    if not cls.name:
        raise ValueError(f"{cls.__name__} has no stage name")
    return STAGES.add(cls.name, cls)


def list_stages() -> list[str]:
    """Registered stage names, in data-flow order."""
    return STAGES.names()


def get_stage(name: str) -> type[Stage]:
    """The class registered as ``name``, or a ``KeyError`` listing the known names."""
    return STAGES.get(name)


def create_stage(name: str, section: dict[str, Any] | None = None, allowed: set[str] = frozenset()) -> Stage:
    """The stage ``name`` configured by ``section`` (see :meth:`Stage.from_section`)."""
    return get_stage(name).from_section(section, allowed)
