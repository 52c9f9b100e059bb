"""The one configuration reader: named JSON configs kept in a package folder (pipeline presets,
training presets), their keys checked against a schema, and ``section.key=value`` overrides."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

__all__ = ["list_configs", "read_config", "parse_overrides", "apply_overrides", "check_keys", "Schema"]


def list_configs(folder: Path) -> list[str]:
    """Names (file stems) of the JSON configs in ``folder``."""
    return sorted(p.stem for p in folder.glob("*.json"))


def read_config(
    name_or_path: str | Path, folder: Path, *, what: str, name_key: str, error: type[Exception],
    schema: Schema | None = None,
) -> dict[str, Any]:
    """The config ``folder/<name>.json`` (or a ``.json`` path), its name stored under ``name_key``.

    A missing config raises ``error`` naming the file looked for and the known names; with ``schema``,
    a key the schema does not know raises ``ValueError`` (:func:`check_keys`).
    """
    path = Path(name_or_path)
    if path.suffix != ".json":
        path = folder / f"{name_or_path}.json"
    if not path.is_file():
        raise error(f"unknown {what} {str(name_or_path)!r}: no {path}; known: {', '.join(list_configs(folder))}")
    cfg = json.loads(path.read_text())
    if schema is not None:
        check_keys(cfg, schema, what=f"{what} {path.name}")
    cfg.setdefault(name_key, path.stem)
    return cfg


# ----------------------------------------------------------------------------- overrides and keys

Schema = Mapping[str, "Schema | None"]  # section -> its schema; None: any value (checked by its reader)


def parse_overrides(overrides: Iterable[str] | Mapping[str, Any] | None) -> list[tuple[str, Any]]:
    """``["optim.lr=0.01", ...]`` (values are JSON, else text) or ``{"optim.lr": 0.01}`` as
    ``(dotted key, value)`` pairs: the one override syntax of every preset family."""
    if overrides is None:
        return []
    if isinstance(overrides, Mapping):
        return [(str(k), v) for k, v in overrides.items()]
    pairs = []
    for item in overrides:
        key, sep, text = str(item).partition("=")
        if not sep or not key.strip():
            raise ValueError(f"override {item!r} is not section.key=value (e.g. optim.lr=0.001)")
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            value = text
        pairs.append((key.strip(), value))
    return pairs


def _known(schema: Schema, path: list[str]) -> str:
    where = ".".join(path) or "the top level"
    return f"known at {where}: {', '.join(sorted(schema))}"


def check_keys(cfg: Mapping[str, Any], schema: Schema, *, what: str, _path: list[str] | None = None) -> None:
    """Raise ``ValueError`` naming the first key of ``cfg`` that ``schema`` does not know."""
    path = _path or []
    for key, value in cfg.items():
        if key not in schema:
            dotted = ".".join([*path, key])
            raise ValueError(f"unknown setting {dotted!r} in {what}; {_known(schema, path)}")
        sub = schema[key]
        if sub is not None and isinstance(value, Mapping):
            check_keys(value, sub, what=what, _path=[*path, key])


def apply_overrides(cfg: Mapping[str, Any], overrides: Iterable[str] | Mapping[str, Any] | None,
                    schema: Schema | None = None, *, what: str = "config") -> dict[str, Any]:
    """A copy of ``cfg`` with dotted overrides (:func:`parse_overrides`) set; with ``schema``, a key it
    does not know raises ``ValueError`` listing the known ones (``optim.lrr=0.1`` is refused)."""
    out = copy.deepcopy(dict(cfg))
    for dotted, value in parse_overrides(overrides):
        *parents, leaf = dotted.split(".")
        node, sub = out, schema
        for i, key in enumerate([*parents, leaf]):
            if sub is not None:
                if key not in sub:
                    raise ValueError(f"unknown setting {dotted!r} in {what}; {_known(sub, dotted.split('.')[:i])}")
                sub = sub[key]
            if i == len(parents):
                node[key] = copy.deepcopy(value)
            else:
                if not isinstance(node.get(key, {}), dict):
                    raise ValueError(f"override {dotted!r}: {'.'.join(dotted.split('.')[:i + 1])} is not a section")
                node = node.setdefault(key, {})
    return out
