"""On-disk cache of LMM answers: one small JSON file per (photo, prompt, backend, server, model, sampling, sample).

Keys are the sha256 of a canonical JSON of everything that produced the answer, so a change of
prompt wording, server (a backend's ``endpoint``: its base URL or host, never a credential), model,
temperature, seed or sample index is a different entry. Only answers are
cached, never failures. Files are written atomically (``geodemo.storage``), so concurrent runs never
read half a file; an unreadable entry is reported once, deleted and asked again.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from geodemo.paths import cache_dir
from geodemo.storage import read_json, write_json

__all__ = ["image_hash", "answer_key", "AnswerCache"]


def image_hash(image: Image.Image) -> str:
    """sha256 of the decoded pixels (mode, size and bytes), independent of the file it came from."""
    digest = hashlib.sha256()
    digest.update(f"{image.mode}:{image.size[0]}x{image.size[1]}:".encode())
    digest.update(np.asarray(image).tobytes())
    return digest.hexdigest()


def answer_key(**fields: Any) -> str:
    """sha256 of the canonical JSON of ``fields``."""
    blob = json.dumps(fields, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


class AnswerCache:
    """Answers stored as ``<root>/<key[:2]>/<key>.json`` (root: ``cache_dir("lmm", "answers")``)."""

    def __init__(self, root: str | Path | None = None) -> None:
        self.root = Path(root) if root is not None else cache_dir("lmm", "answers")

    def _path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.json"

    def get(self, key: str) -> dict[str, Any] | None:
        """The stored entry (``{"answer", "latency_s", "fields"}``), or None."""
        return read_json(self._path(key), "LMM answer cache entry", validate=_check_entry)

    def put(self, key: str, answer: str, latency_s: float, fields: dict[str, Any]) -> None:
        """Store one answer with what produced it (written to a temp file, then renamed)."""
        entry = {"answer": answer, "latency_s": float(latency_s), "fields": fields}
        write_json(self._path(key), entry, ensure_ascii=False, default=str)


def _check_entry(entry: Any) -> None:
    if not (isinstance(entry, dict) and isinstance(entry.get("answer"), str)):
        raise ValueError("not an answer entry")
    float(entry.get("latency_s", 0.0))
