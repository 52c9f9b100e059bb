"""What every pipeline stage is: a name, a typed config read from one preset section, ``run(context)``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from geodemo.pipeline.components import Components
    from geodemo.pipeline.context import LocateContext

__all__ = ["Stage", "NoConfig", "config_from_section"]


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
