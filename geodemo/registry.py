"""One registry helper for everything geodemo looks up by name (models, stages, LMM backends,
predictors, benchmarks, index kinds).

A :class:`Registry` maps names to objects. Its built-ins are registered by a loader run once, before
the first lookup, whatever was registered before it: a name registered by a user replaces a
built-in, and never hides the others. An unknown name raises :class:`UnknownNameError`, a
``KeyError`` (and, for older callers, a ``ValueError``) whose message lists the known names.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Iterator
from typing import Generic, TypeVar

__all__ = ["Registry", "UnknownNameError"]

T = TypeVar("T")


class UnknownNameError(KeyError, ValueError):
    """A name nothing is registered under; the message lists the registered names."""

    def __str__(self) -> str:  # KeyError would quote the whole message
        return str(self.args[0]) if self.args else ""


class Registry(Generic[T]):
    """Named objects of one kind (``"model"``, ``"stage"``, ...), built-ins always present.

    ``builtins`` is either a callable that registers the built-ins, or the names of modules whose
    import registers them (decorators at module level). It runs once, on the first lookup or
    registration; a registration made while it runs (a built-in module being imported) never
    replaces one made by the user before.
    """

    def __init__(self, kind: str, builtins: Callable[[Registry[T]], None] | Iterable[str] = (),
                 *, sort: bool = True):
        self.kind = kind
        self._builtins = builtins if callable(builtins) else tuple(builtins)
        self._items: dict[str, T] = {}
        self._user: set[str] = set()  # names registered from outside the built-in loader
        self._state = "new"  # new -> loading -> loaded
        self._sort = sort

    # ------------------------------------------------------------------ registering
    def _ensure_builtins(self) -> None:
        if self._state != "new":
            return
        self._state = "loading"
        try:
            if callable(self._builtins):
                self._builtins(self)
            else:
                for module in self._builtins:
                    importlib.import_module(module)
        except BaseException:
            self._state = "new"
            raise
        self._state = "loaded"

    def add(self, name: str, obj: T) -> T:
        """Register ``obj`` under ``name`` (a user's registration replaces a built-in of that name)."""
        if not isinstance(name, str) or not name:
            raise ValueError(f"a {self.kind} needs a non-empty name, got {name!r}")
        if self._state == "loading":
            if name in self._user:  # the user's replacement wins over the built-in
                return obj
        else:
            self._ensure_builtins()
            self._user.add(name)
        self._items[name] = obj
        return obj

    def register(self, *names: str) -> Callable[[T], T]:
        """Decorator registering its target under ``names`` (the first is the main one)."""
        if not names:
            raise ValueError(f"register a {self.kind} under at least one name")

        def wrap(obj: T) -> T:
            for name in names:
                self.add(name, obj)
            return obj

        return wrap

    def remove(self, name: str) -> None:
        """Forget ``name`` (nothing happens when it is not registered)."""
        self._ensure_builtins()
        self._items.pop(name, None)
        self._user.discard(name)

    # ------------------------------------------------------------------ looking up
    def get(self, name: str) -> T:
        """The object registered as ``name``, or :class:`UnknownNameError` listing the known names."""
        self._ensure_builtins()
        try:
            return self._items[name]
        except (KeyError, TypeError):
            known = ", ".join(self.names()) or "none"
            raise UnknownNameError(f"unknown {self.kind} {name!r}; known {self.kind}s: {known}") from None

    def names(self) -> list[str]:
        """Registered names: sorted, or for a registry made with ``sort=False`` in the order of its built-in
        modules (whichever a process happened to import first), then the others as registered."""
        self._ensure_builtins()
        if self._sort:
            return sorted(self._items)
        modules = () if callable(self._builtins) else self._builtins

        def position(name: str) -> int:
            module = getattr(self._items[name], "__module__", None)
            return modules.index(module) if module in modules else len(modules)
        return sorted(self._items, key=position)  # stable: registration order within a module

    def items(self) -> list[tuple[str, T]]:
        return [(n, self._items[n]) for n in self.names()]

    def __contains__(self, name: object) -> bool:
        self._ensure_builtins()
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        self._ensure_builtins()
        return len(self._items)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {len(self._items)} registered)"
