"""Named JSON configs kept in a package folder (pipeline presets, training presets)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

__all__ = ["list_configs", "read_config"]


def list_configs(folder: Path) -> list[str]:
    """Names (file stems) of the JSON configs in ``folder``."""
    return sorted(p.stem for p in folder.glob("*.json"))


def read_config(
    name_or_path: str | Path, folder: Path, *, what: str, name_key: str, error: type[Exception]
) -> dict[str, Any]:
    """The config ``folder/<name>.json`` (or a ``.json`` path), its name stored under ``name_key``.

    A missing config raises ``error`` naming the file looked for and the known names.
    """
    path = Path(name_or_path)
    if path.suffix != ".json":
        path = folder / f"{name_or_path}.json"
    if not path.is_file():
        raise error(f"unknown {what} {str(name_or_path)!r}: no {path}; known: {', '.join(list_configs(folder))}")
    cfg = json.loads(path.read_text())
    cfg.setdefault(name_key, path.stem)
    return cfg
