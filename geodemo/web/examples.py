"""The page's example photos, and shared benchmark photos recognised by their file name.

A dropped IM2GPS3k/OSV-5M photo is scored against its ground truth with its own photographer left
out of the gallery, as the evaluation does (:func:`recognise_benchmark_photo`).
"""

from __future__ import annotations

import logging
from dataclasses import replace
from functools import lru_cache
from pathlib import Path
from typing import Any

from geodemo.data import load_benchmark, load_examples
from geodemo.errors import describe

__all__ = ["RECOGNISED_SETS", "benchmark_samples", "example_rows", "example_samples", "recognise_benchmark_photo"]

logger = logging.getLogger("geodemo.web")

RECOGNISED_SETS = ("im2gps3k-dev", "osv5m-sample")  # shared benchmarks whose photos are recognised by name


@lru_cache(maxsize=1)
def example_samples() -> list[Any]:
    """The embedded default's example photos (``assets/examples``), ids as in their gallery; [] without."""
    try:
        dataset = load_examples()
    except Exception as exc:  # noqa: BLE001 - no examples: the app still runs
        logger.info("no bundled examples: %s", exc)
        return []
    return [replace(s, id=s.meta.get("gallery_id") or s.id) for s in dataset.samples if s.image_path is not None]


@lru_cache(maxsize=1)
def benchmark_samples() -> dict[str, list[Any]]:
    """Photos recognised by file name: the bundled examples and, with a shared folder, its benchmarks."""
    out: dict[str, list[Any]] = {}
    for s in example_samples():
        out.setdefault(s.meta.get("dataset") or "examples", []).append(s)
    for name in RECOGNISED_SETS:
        try:
            dataset = load_benchmark(name)
        except Exception as exc:  # noqa: BLE001 - no shared folder: the bundled examples only
            logger.info("no %s photos to recognise: %s", name, describe(exc)[0])
            continue
        out.setdefault(name, []).extend(
            s for s in dataset.samples if s.image_path is not None and Path(s.image_path).is_file())
    return out


def example_rows() -> list[list[str]]:
    """The bundled example photos: [path, "lat, lon", key]."""
    return [[str(s.image_path), f"{s.lat:.5f}, {s.lon:.5f}", f"{s.meta.get('dataset', '')}|{s.id}|{s.group or ''}"]
            for s in example_samples()]


@lru_cache(maxsize=1)
def _benchmark_by_file_name() -> dict[str, tuple[str, Any]]:
    index: dict[str, tuple[str, Any]] = {}
    for name, samples in benchmark_samples().items():
        for s in samples:
            index.setdefault(Path(s.image_path).name, (name, s))
    return index


def recognise_benchmark_photo(path: str) -> tuple[str, Any] | None:
    """(benchmark, sample) when an upload carries a shared benchmark photo's file name, else None.

    Lets a dropped IM2GPS3k/OSV-5M photo be scored against its ground truth with its own
    photographer left out of the gallery, as the evaluation does.
    """
    return _benchmark_by_file_name().get(Path(path).name)
