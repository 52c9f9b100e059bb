"""Predictors by name: ``create_predictor("density-prior", dataset)``; adding one is registering a factory.

A factory receives the evaluated dataset (for leave-one-photographer-out galleries) and keyword
options from the command line, and returns a :class:`geodemo.eval.harness.Predictor`.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from geodemo.data.dataset import GeoDataset
from geodemo.data.formats import load_csv
from geodemo.data.recorded import parse_source_spec, read_recorded
from geodemo.eval.baselines import DensityPrior, Gallery, RandomGallery, geoclip_gallery
from geodemo.eval.harness import Predictor, QueryPhoto
from geodemo.pipeline import GeoLocator
from geodemo.registry import Registry

__all__ = ["register_predictor", "create_predictor", "list_predictors", "load_gallery"]

PredictorFactory = Callable[..., Predictor]
PREDICTORS: Registry[PredictorFactory] = Registry("predictor")  # the built-ins are registered below


def register_predictor(name: str) -> Callable[[PredictorFactory], PredictorFactory]:
    """Decorator adding a factory ``(dataset, **options) -> Predictor`` under ``name``."""
    return PREDICTORS.register(name)


def list_predictors() -> list[str]:
    return PREDICTORS.names()


def create_predictor(name: str, dataset: GeoDataset | None = None, **options: Any) -> Predictor:
    """Build the predictor registered as ``name`` (a ``KeyError``, also a ``ValueError``, lists the known names)."""
    return PREDICTORS.get(name)(dataset, **options)


def load_gallery(spec: str, dataset: GeoDataset | None):
    """``"self"`` (the evaluated set, held out per photographer), ``"geoclip-100k"``, or a CSV path."""
    if spec == "self":
        if dataset is None:
            raise ValueError("gallery 'self' needs the evaluated dataset")
        return Gallery.from_dataset(dataset)
    if spec == "geoclip-100k":
        return geoclip_gallery()
    path = Path(spec)
    if path.is_file():
        return Gallery.from_dataset(load_csv(path))
    raise ValueError(f"unknown gallery {spec!r}: use 'self', 'geoclip-100k' or the path of a benchmark CSV")


@register_predictor("density-prior")
def _density_prior(dataset: GeoDataset | None, gallery: str = "self", radius_km: float = 200.0, **_: Any):
    return DensityPrior(load_gallery(gallery, dataset), radius_km=radius_km)


@register_predictor("random-gallery")
def _random_gallery(dataset: GeoDataset | None, gallery: str = "self", seed: int = 0, **_: Any):
    return RandomGallery(load_gallery(gallery, dataset), seed=seed)


class RecordedPredictor:
    """Another system's recorded predictions as a predictor: each photo's recorded answer, NaN when the file
    has none (a failure row, or no row) — it is scored on exactly the photos it is given."""

    def __init__(self, recorded: Any):
        self.recorded = recorded
        self.name = f"recorded:{recorded.name}"

    def predict(self, batch: list[QueryPhoto]) -> np.ndarray:
        out = np.full((len(batch), 2), np.nan)
        for i, q in enumerate(batch):
            point = self.recorded.answer(q.id)
            if point is not None:
                out[i] = (point.lat, point.lon)
        return out


@register_predictor("recorded")
def _recorded(dataset: GeoDataset | None, predictions: str | None = None, format: str = "auto", **_: Any):
    if not predictions:
        raise ValueError("predictor 'recorded' needs --predictions NAME=FILE")
    name, path = parse_source_spec(predictions)
    return RecordedPredictor(read_recorded(path, name=name, format=format))


class GeoLocatorPredictor:
    """Adapter giving a :class:`geodemo.pipeline.GeoLocator` the harness's ``name`` + ``predict``."""

    def __init__(self, locator: Any, preset: str):
        self.locator = locator
        self.name = f"geolocator:{preset}"

    def predict(self, batch: list[QueryPhoto]) -> np.ndarray:
        return np.asarray(self.locator.predict(batch), dtype=np.float64).reshape(-1, 2)

    def locate_batch(self, batch: list[QueryPhoto]) -> list[Any]:
        """Each photo's full :class:`~geodemo.result.LocationResult` (``evaluate(..., explain=True)``)."""
        return self.locator.locate_batch(batch)


@register_predictor("geolocator")
def _geolocator(dataset: GeoDataset | None, preset: str = "offline", progress: bool = True, **overrides: Any):
    overrides = {k: v for k, v in overrides.items() if k not in ("gallery", "radius_km", "seed") and v}
    # loaded now: a preset that cannot load (missing checkpoint, gallery) stops the run before its first photo
    locator = GeoLocator.from_preset(preset, gallery={"progress": bool(progress)}, **overrides).warmup()
    leak = training_overlap(locator.aligner, dataset)
    if leak:
        warnings.warn(leak, stacklevel=2)
    return GeoLocatorPredictor(locator, preset)


def training_overlap(aligner: Any, dataset: GeoDataset | None) -> str | None:
    """A warning when ``aligner`` was trained on photographers of ``dataset`` (optimistic figures)."""
    info = getattr(aligner, "provenance", None) or {}
    if dataset is None or not info:
        return None
    trained_on = set(info.get("datasets") or [])
    if dataset.name not in trained_on:
        return None
    held_out = set(info.get("held_out_groups") or [])
    seen = sorted({s.group for s in dataset.samples if s.group and s.group not in held_out})
    if not seen:
        return None
    return (
        f"the verifier {getattr(aligner, 'name', '?')!r} was trained on photos of {len(seen)} photographers of "
        f"{dataset.name!r}: figures on this set are optimistic. For honest figures use scripts/ablate.py "
        f"(cross-fitted fold verifiers) or a verifier trained without this set."
    )
