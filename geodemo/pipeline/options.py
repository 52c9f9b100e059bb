"""Per-call options: ``{section: {field: value}}``, declared and checked by the stages that read them.

A stage marks the fields of its ``Config`` that a call may override with
:func:`geodemo.pipeline.stages.base.option` (type, range, CLI flag, page label, help). Everything
else is generated from those marks: :class:`LocateOptions` checks a call's values with the stage
(:meth:`Stage.check_options`), ``geodemo locate`` gets one flag per option (:func:`add_option_flags`)
and the web page one control per option (:mod:`geodemo.web.policy`). Adding an option is one
``option(...)`` field in one stage's ``Config``, e.g.
``LocateOptions({"retrieval": {"top_k": 8}, "lmm": {"enabled": True}})``.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from geodemo.pipeline.stages import STAGES, Stage
from geodemo.pipeline.stages.base import InvalidOptionError, Option

__all__ = ["LocateOptions", "InvalidOptionError", "Option", "declared_options", "check_options",
           "add_option_flags", "options_from_flags", "flag_of"]


def _stages_by_section() -> dict[str, list[type[Stage]]]:
    out: dict[str, list[type[Stage]]] = {}
    for _, cls in STAGES.items():
        if cls.section:
            out.setdefault(cls.section, []).append(cls)
    return out


def declared_options() -> list[Option]:
    """Every option the registered stages declare, in data-flow order (a section two stages share once)."""
    seen: dict[str, Option] = {}
    for _, cls in STAGES.items():
        for spec in cls.options():
            seen.setdefault(spec.key, spec)
    return list(seen.values())


def check_options(values: Mapping[str, Mapping[str, Any]] | None) -> dict[str, dict[str, Any]]:
    """``{section: {field: value}}`` checked and typed by the stages that read each section (None values
    dropped: the preset's value stays); :class:`InvalidOptionError` names the first value refused."""
    by_section = _stages_by_section()
    out: dict[str, dict[str, Any]] = {}
    for section, fields_ in (values or {}).items():
        stages = [cls for cls in by_section.get(section, []) if cls.options()]
        if not stages:
            known = sorted({o.section for o in declared_options()})
            raise InvalidOptionError(str(section), f"is not a section with per-call options; these are: {', '.join(known)}")
        if not isinstance(fields_, Mapping):
            raise InvalidOptionError(str(section), "must map setting names to values")
        checked: dict[str, Any] = {}
        for name, value in fields_.items():
            owner = next((cls for cls in stages if any(o.name == name for o in cls.options())), stages[0])
            checked.update(owner.check_options({name: value}))
        if checked:
            out[section] = checked
    return out


@dataclass
class LocateOptions:
    """One call's settings: ``values`` (``{section: {field: value}}``, checked by the stages when the
    object is made; what is left out keeps the preset's value) and the gallery photos to leave out."""

    values: dict[str, dict[str, Any]] = field(default_factory=dict)
    exclude_ids: set[str] = field(default_factory=set)
    exclude_groups: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.values = check_options(self.values)
        self.exclude_ids = {str(x) for x in self.exclude_ids}
        self.exclude_groups = {str(x) for x in self.exclude_groups}

    def section(self, name: str) -> dict[str, Any]:
        """The values this call sets in preset section ``name`` ({} when none)."""
        return dict(self.values.get(name) or {})

    def get(self, section: str, name: str, default: Any = None) -> Any:
        """One value this call sets, or ``default``."""
        return self.values.get(section, {}).get(name, default)


# ------------------------------------------------------------------------------------------ the command line


def add_option_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per declared option: ``--top-k N``; a true/false option ``--lmm``/``--no-lmm``. Values stay
    text here and are checked by the stage (:func:`options_from_flags`), as the page's are."""
    for spec in declared_options():
        dest = f"opt:{spec.key}"
        if spec.kind is bool:
            group = parser.add_mutually_exclusive_group()
            group.add_argument(spec.cli_flag, dest=dest, action="store_true", default=None, help=spec.help)
            group.add_argument("--no-" + spec.cli_flag[2:], dest=dest, action="store_false",
                               help=f"the opposite of {spec.cli_flag}")
        else:
            where = f" ({spec.range_text})" if spec.kind in (int, float) else ""
            parser.add_argument(spec.cli_flag, dest=dest, default=None, metavar=spec.name.upper(),
                                help=f"{spec.help}{where}; default: the preset's")


def options_from_flags(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """``{section: {field: value}}`` of the option flags given (unchecked; :class:`LocateOptions` checks)."""
    out: dict[str, dict[str, Any]] = {}
    for spec in declared_options():
        value = getattr(args, f"opt:{spec.key}", None)
        if value is not None:
            out.setdefault(spec.section, {})[spec.name] = value
    return out


def flag_of(key: str) -> str:
    """The CLI flag of option ``section.field`` (the key itself when no stage declares it)."""
    return next((o.cli_flag for o in declared_options() if o.key == key), key)
