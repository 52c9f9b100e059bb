"""Named benchmark sets under the shared folder: ``load_benchmark("im2gps3k-dev")``.

A benchmark is a registry entry (CSV path, image folder, format) relative to
:func:`geodemo.paths.shared_dir`; adding one is ``BENCHMARKS.add(name, BenchmarkSpec(...))``.
"""

from __future__ import annotations

from dataclasses import dataclass

from geodemo.data.dataset import GeoDataset
from geodemo.data.formats import load_csv
from geodemo.paths import MissingResourceError, bundle_path, shared_path
from geodemo.registry import Registry

__all__ = ["BenchmarkSpec", "BENCHMARKS", "list_benchmarks", "load_benchmark", "load_examples"]


@dataclass(frozen=True)
class BenchmarkSpec:
    """Where a named set lives inside the shared folder and how to read it."""

    name: str
    csv: str  # relative to the shared folder
    images: str | None  # image folder (or tar) relative to the shared folder; None = metadata only
    format: str
    rows: int  # rows the published set has, checked by the tests
    description: str


def _builtin(registry: Registry[BenchmarkSpec]) -> None:
    for spec in [
        BenchmarkSpec(
            "im2gps3k-dev",
            "data/im2gps3k-dev/im2gps3k_dev.csv",
            "data/im2gps3k-dev/images",
            "im2gps",
            978,
            "IM2GPS3k development split (split by photographer); tune and debug here only",
        ),
        BenchmarkSpec(
            "osv5m-sample",
            "data/osv5m-sample/osv5m_sample.csv",
            "data/osv5m-sample/images",
            "osv5m",
            71,
            "71 OpenStreetView-5M street views",
        ),
        BenchmarkSpec(
            "yfcc4k-meta",
            "data/benchmark-meta/yfcc4k_flickr_meta.csv",
            None,
            "yfcc-flickr",
            4536,
            "YFCC4k ground truth with Flickr title/tags (no images)",
        ),
        BenchmarkSpec(
            "im2gps-meta",
            "data/benchmark-meta/im2gps_places365.csv",
            None,
            "im2gps",
            237,
            "IM2GPS ground truth (no images); its LON,LAT header is swapped and detected",
        ),
    ]:
        registry.add(spec.name, spec)


BENCHMARKS: Registry[BenchmarkSpec] = Registry("benchmark", _builtin, sort=False)


def list_benchmarks() -> list[str]:
    """Names accepted by :func:`load_benchmark`."""
    return BENCHMARKS.names()


def load_benchmark(name: str) -> GeoDataset:
    """Load a named set from the shared folder (:class:`MissingResourceError` says where it looked)."""
    spec = BENCHMARKS.get(name)  # a KeyError (also a ValueError) lists the known names
    csv_path = shared_path(*spec.csv.split("/"))
    if not csv_path.is_file():
        raise MissingResourceError(
            f"benchmark {name!r}: {csv_path} not found; set GEODEMO_SHARED to the folder holding "
            "data/ (default: ../shared beside the checkout)"
        )
    images = None
    if spec.images is not None:
        images = shared_path(*spec.images.split("/"))
        if not images.exists():
            raise MissingResourceError(f"benchmark {name!r}: image folder {images} not found")
    return load_csv(csv_path, images_dir=images, format=spec.format, name=name)


def load_examples() -> GeoDataset:
    """The embedded default's example photos (``assets/examples``, about ten, with their true location).

    They need no shared folder. ``sample.meta`` holds the ``dataset`` each comes from and its
    ``gallery_id`` there (the default gallery holds them: leave that id and the photographer out
    to score one fairly).
    """
    folder = bundle_path("examples")
    return load_csv(folder / "examples.csv", images_dir=folder, name="examples")
