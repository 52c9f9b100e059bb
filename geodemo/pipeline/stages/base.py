"""What every pipeline stage is: a name, a typed config read from one preset section (the fields a call may
override marked with :func:`option`), ``run(context)``."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from typing import TYPE_CHECKING, Any, ClassVar

from geodemo.errors import GeodemoError

if TYPE_CHECKING:
    from geodemo.pipeline.components import Components
    from geodemo.pipeline.context import LocateContext

__all__ = ["Stage", "NoConfig", "config_from_section", "Option", "option", "config_options", "InvalidOptionError",
           "value_kind"]


class InvalidOptionError(GeodemoError, ValueError):
    """A per-call option a stage refuses; ``option`` is its key (``section.field``), ``reason`` the words
    after its name (the CLI puts the flag before them, the page the control's label)."""

    def __init__(self, option: str, message: str) -> None:
        super().__init__(f"{option} {message}")
        self.option = option
        self.reason = message


@dataclass(frozen=True)
class Option:
    """A config field a call may override: its type, accepted values, CLI flag and page label.

    ``kind``: ``int`` (whole numbers), ``float``, ``bool`` or ``str`` (a name). Numbers must lie in
    ``[lo, hi]``; names are at most ``max_len`` characters and, with ``choices`` (a function, read
    when a value is checked), one of those. Values arrive typed (library) or as text (CLI, page):
    :meth:`parse` takes both and refuses with one :class:`InvalidOptionError` sentence.
    """

    kind: type
    help: str
    label: str  # the page control's label
    flag: str = ""  # the CLI flag without its dashes; "" = the field name with hyphens
    lo: float | None = None
    hi: float | None = None
    max_len: int = 300
    choices: Callable[[], list[str]] | None = None
    section: str = ""  # filled by config_options
    name: str = ""  # the field, filled by config_options

    @property
    def key(self) -> str:
        return f"{self.section}.{self.name}"

    @property
    def cli_flag(self) -> str:
        return "--" + (self.flag or self.name.replace("_", "-"))

    @property
    def range_text(self) -> str:
        kind = "a whole number" if self.kind is int else "a number"
        return f"{kind} from {self.lo:g} to {self.hi:g}"

    def parse(self, value: Any) -> Any:
        """``value`` as this option's type within its range; None stays None (the preset's value)."""
        if value is None:
            return None
        if self.kind is bool:
            return self._flag(value)
        if self.kind is str:
            return self._name(value)
        return self._number(value)

    def _refuse(self, what: str) -> InvalidOptionError:
        return InvalidOptionError(self.key, what)

    def _flag(self, value: Any) -> bool:
        if isinstance(value, bool):
            return value
        raise self._refuse(f"must be true, false or unset, got {value_kind(value)}")

    def _name(self, value: Any) -> str:
        if not isinstance(value, str):
            raise self._refuse(f"must be a name, got {value_kind(value)}")
        name = value.strip()
        if not name or len(name) > self.max_len or "\x00" in name:
            raise self._refuse(f"must be a non-empty name of at most {self.max_len} characters")
        known = self.choices() if self.choices is not None else None
        if known is not None and name not in known:
            raise self._refuse(f"{name[:60]!r} is not one of {', '.join(known)}")
        return name

    def _number(self, value: Any) -> int | float:
        expected = f"must be {self.range_text}"
        if isinstance(value, bool) or not isinstance(value, (int, float, str)) and not _is_numpy_number(value):
            raise self._refuse(f"{expected}, got {value_kind(value)}")
        if isinstance(value, str):
            text = value.strip()
            if len(text) > 40:
                raise self._refuse(f"{expected}, got a {len(text):,}-character text")
            try:
                value = float(text)
            except ValueError:
                raise self._refuse(f"{expected}, got {text[:40]!r}") from None
        x = float(value)
        if not math.isfinite(x) or not self.lo <= x <= self.hi or (self.kind is int and x != int(x)):
            raise self._refuse(f"{expected}, got {x:g}")
        return int(x) if self.kind is int else x


def _is_numpy_number(value: Any) -> bool:
    return type(value).__module__ == "numpy" and hasattr(value, "dtype") and value.dtype.kind in "iuf"


def value_kind(value: Any) -> str:
    """What kind of value a client sent, in words (for refusals that do not echo the value)."""
    return {bool: "true/false", int: "a number", float: "a number", str: "a text", list: "a list",
            dict: "an object"}.get(type(value), "another kind of value")


def option(default: Any, *, kind: type, help: str, label: str, flag: str = "", lo: float | None = None,
           hi: float | None = None, max_len: int = 300, choices: Callable[[], list[str]] | None = None) -> Any:
    """A config field that a call may override (``dataclasses.field`` with an :class:`Option` in its metadata):
    the CLI flag and the page control are generated from it (:mod:`geodemo.pipeline.options`)."""
    if kind in (int, float) and (lo is None or hi is None):
        raise ValueError("a numeric option needs its range (lo, hi)")
    spec = Option(kind=kind, help=help, label=label, flag=flag, lo=lo, hi=hi, max_len=max_len, choices=choices)
    return field(default=default, metadata={"option": spec})


def config_options(config: type, section: str) -> list[Option]:
    """The fields of the dataclass ``config`` a call may override, in field order, with their section."""
    return [replace(f.metadata["option"], section=section, name=f.name)
            for f in fields(config) if "option" in f.metadata]


@dataclass(frozen=True)
class NoConfig:
    """The config of a stage that has no settings."""


def config_from_section(cls: type, section: dict[str, Any] | None, *, what: str, allowed: set[str] = frozenset()):
    """``cls(**section)`` keeping only ``cls``'s fields; a key that neither ``cls`` nor ``allowed``
    knows raises a ``ValueError`` naming it, the section and the known keys."""
    section = dict(section or {})
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(section) - known - set(allowed))
    if unknown:
        raise ValueError(f"unknown setting(s) {unknown} in {what}; known: {sorted(known | set(allowed))}")
    return cls(**{k: v for k, v in section.items() if k in known})


class Stage:
    """One step of :class:`~geodemo.pipeline.GeoLocator`: reads and writes a :class:`LocateContext`.

    Subclasses set ``name`` (the registry key a preset lists), ``section`` (the preset section
    holding their settings, or None), ``Config`` (a dataclass of those settings) and ``papers``
    (the papers whose method has this stage: "g3", "dualgeo"). ``run`` never raises for an
    optional resource: it records the failure with :func:`geodemo.pipeline.failures.record_failure`.
    """

    name: ClassVar[str] = ""
    section: ClassVar[str | None] = None
    Config: ClassVar[type] = NoConfig
    papers: ClassVar[frozenset[str]] = frozenset()
    description: ClassVar[str] = ""

    def __init__(self, config: Any = None):
        self.config = config if config is not None else self.Config()

    @classmethod
    def from_section(cls, section: dict[str, Any] | None, allowed: set[str] = frozenset()) -> Stage:
        """The stage configured by its preset section (keys other stages or components read: ``allowed``)."""
        return cls(config_from_section(cls.Config, section, what=f"section {cls.section!r} of stage {cls.name!r}",
                                       allowed=allowed))

    @classmethod
    def options(cls) -> list[Option]:
        """The settings of this stage a call may override (fields of ``Config`` marked with :func:`option`)."""
        return config_options(cls.Config, cls.section) if cls.section else []

    @classmethod
    def check_options(cls, values: Mapping[str, Any]) -> dict[str, Any]:
        """``{field: value}`` of this stage's section checked and typed (None dropped), or
        :class:`InvalidOptionError` for a field a call may not set or a value out of its range."""
        known = {o.name: o for o in cls.options()}
        out = {}
        for name, value in values.items():
            spec = known.get(name)
            if spec is None:
                raise InvalidOptionError(f"{cls.section}.{name}", "cannot be set per call; these can: "
                                         + (", ".join(sorted(known)) or "none"))
            parsed = spec.parse(value)
            if parsed is not None:
                out[name] = parsed
        return out

    def call_config(self, ctx: LocateContext) -> Any:
        """This stage's config for one call: the preset's, with the call's options for its section."""
        values = ctx.options.section(self.section) if self.section else {}
        known = {o.name for o in self.options()}
        mine = {k: v for k, v in values.items() if k in known}
        return replace(self.config, **mine) if mine else self.config

    def skip(self, ctx: LocateContext) -> bool:
        """True when this call does not need the stage (it is then neither run nor reported)."""
        return False

    def run(self, ctx: LocateContext) -> None:  # pragma: no cover - every stage overrides it
        raise NotImplementedError

    def prepare(self, components: Components) -> None:
        """Load what this stage needs whatever the photo (models, galleries, imports), so that its
        first ``run`` does not pay for it: called by :meth:`GeoLocator.warmup`, and beside the
        earlier stages of a locator's first call. Thread-safe; a failure is left for ``run`` to
        meet and record. The default loads nothing."""

    def background(self, ctx: LocateContext) -> Callable[[], Any] | None:
        """This stage's work on the decoded photo alone (``ctx.image`` and the stage's config), as a
        thread-safe callable the locator may start as soon as the photo is loaded, beside the stages
        listed before this one; ``run`` then takes its value with ``ctx.background_value``. None
        (the default): the stage does all its work in ``run``."""
        return None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config!r})"
