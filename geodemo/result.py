"""Dataclasses that cross module boundaries: what each stage hands to the next and to the app.

The pipeline fills a :class:`LocationResult`; the app, the CLI and the benchmark only read it
(``to_dict()`` gives plain JSON types). Coordinates are decimal degrees, latitude first.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, fields, is_dataclass
from types import UnionType
from typing import Any, Union, get_args, get_origin, get_type_hints

import numpy as np

__all__ = [
    "Neighbour",
    "Cluster",
    "Clustering",
    "Candidate",
    "SegmentationResult",
    "LMMRecord",
    "ClueReport",
    "RetrievalMatch",
    "LocationResult",
    "to_jsonable",
]


def to_jsonable(value: Any) -> Any:
    """Convert dataclasses, numpy values and containers into JSON types (images are dropped)."""
    if is_dataclass(value) and not isinstance(value, type):
        out = {}
        for f in fields(value):
            if f.metadata.get("json") is False:
                continue
            out[f.name] = to_jsonable(getattr(value, f.name))
        return out
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


class _JsonMixin:
    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict (images and label maps left out)."""
        return to_jsonable(self)


@dataclass
class Neighbour(_JsonMixin):
    """One retrieved gallery entry (an image, a GPS point or a place text)."""

    rank: int
    id: str
    lat: float
    lon: float
    similarity: float
    source: str = "image-gallery"  # image-gallery | gps-gallery | text-gallery
    place: str | None = None
    image_path: str | None = None


@dataclass
class Cluster(_JsonMixin):
    """A DBSCAN cluster of neighbours; ``members`` index into the neighbour list."""

    label: int
    members: list[int]
    centre_lat: float
    centre_lon: float
    radius_km: float
    support: int
    similarity_mass: float
    is_main: bool = False


@dataclass
class Clustering(_JsonMixin):
    """Neighbours clustered on the sphere, and the order they are re-ranked into.

    ``labels[i]`` is neighbour i's cluster (-1 = noise); ``order`` lists neighbour indices
    best first (retrieval order before re-ranking, distance to the main centre after).
    """

    eps_km: float
    min_samples: int
    labels: list[int]
    clusters: list[Cluster]
    main_label: int | None
    order: list[int]

    @property
    def main(self) -> Cluster | None:
        return next((c for c in self.clusters if c.is_main), None)


@dataclass
class Candidate(_JsonMixin):
    """A coordinate proposed by some stage, with the verifier's score once verified."""

    lat: float
    lon: float
    source: str  # e.g. retrieval, cluster-centre, gps-gallery, lmm:zero-shot, lmm:rag-10
    score: float | None = None
    retrieval_similarity: float | None = None
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class SegmentationResult(_JsonMixin):
    """Semantic segmentation mapped to the ADE20K class list (0 = other, 1..150 ADE20K)."""

    model: str
    class_names: list[str]  # index = class id, 151 entries
    shares: dict[str, float]  # class name -> share of pixels, largest first, shares > 0 only
    label_map: np.ndarray | None = field(default=None, metadata={"json": False})  # (H, W) int
    overlay: Any = field(default=None, metadata={"json": False})  # PIL.Image blended on the photo


@dataclass
class LMMRecord(_JsonMixin):
    """One answer of the multimodal model: its prompt, raw text and what we made of it."""

    prompt_kind: str  # zero-shot | rag-5 | rag-10 | rag-15 | dualgeo-cluster
    prompt: str
    sample: int
    raw_answer: str | None
    lat: float | None = None
    lon: float | None = None
    rejection: str | None = None  # why no coordinate was kept (None when parsed)
    error: str | None = None  # backend failure (time-out, no server ...)
    not_installed: bool = False  # the failure says the backend or its model is absent (not a time-out)
    latency_s: float = 0.0
    backend: str = ""
    model: str = ""
    cached: bool = False

    @property
    def accepted(self) -> bool:
        return self.lat is not None and self.lon is not None


@dataclass
class ClueReport(_JsonMixin):
    """Text clues read in the photo and the country prior they imply."""

    text: str = ""
    scripts: list[str] = field(default_factory=list)
    language: str | None = None
    language_confidence: float = 0.0
    countries: dict[str, float] = field(default_factory=dict)  # ISO alpha-2 -> prior weight
    summary: str = ""  # e.g. "reads Cyrillic text, language: Russian"
    floor: float = 1.0  # prior weight of every country not in ``countries`` (1.0 = no clue)
    skipped: str | None = None  # why no OCR ran (tesseract missing, disabled ...), None when it ran
    gate_score: float | None = None  # the text gate's score (geodemo.clues.gate); None: no gate ran
    gated_out: bool = False  # the gate saw no text, so OCR did not run (the report is empty)


@dataclass
class RetrievalMatch(_JsonMixin):
    """The re-ranked top-1 gallery photo and whether it is a reciprocal neighbour of the query
    (``reciprocal_rank < k``: the query would be among that photo's own k nearest gallery photos)."""

    neighbour: int  # index into LocationResult.neighbours
    id: str
    similarity: float  # the query's multi-view similarity to it
    reciprocal_rank: int
    k: int

    @property
    def accepted(self) -> bool:
        return self.reciprocal_rank < self.k


@dataclass
class LocationResult(_JsonMixin):
    """Everything ``GeoLocator.locate`` found for one photo, stage by stage."""

    lat: float
    lon: float
    place: str | None
    confidence: float
    uncertainty_km: float
    verifier: str  # which verifier chose the final point
    preset: str
    candidates: list[Candidate] = field(default_factory=list)
    neighbours: list[Neighbour] = field(default_factory=list)
    clusters_before: Clustering | None = None
    clusters_after: Clustering | None = None
    segmentation: SegmentationResult | None = None
    lmm_records: list[LMMRecord] = field(default_factory=list)
    clues: ClueReport | None = None
    timings: dict[str, float] = field(default_factory=dict)  # stage -> seconds
    errors: dict[str, str] = field(default_factory=dict)  # stage -> plain words on a failed stage
    exif_gps: tuple[float, float] | None = None
    match: RetrievalMatch | None = None  # multi-view re-ranking's top-1 and its reciprocity
    error_details: dict[str, str] = field(default_factory=dict)  # stage -> technical detail of the failure
    unavailable: dict[str, str] = field(default_factory=dict)  # stage -> how to add a missing optional resource
    stages: list[str] = field(default_factory=list)  # the stages the preset ran, in order
    decision: dict[str, Any] = field(default_factory=dict)  # how the answer was chosen (decide.calibrated)

    def to_json(self, **kwargs: Any) -> str:
        return json.dumps(self.to_dict(), **kwargs)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LocationResult:
        """The inverse of :meth:`to_dict` (``None`` floats read back as NaN; unknown keys ignored),
        so a stored result can be shown and attributed again without running any model."""
        return _from_dict(cls, data)


def _from_dict(cls: type, data: dict[str, Any]) -> Any:
    """Build dataclass ``cls`` from its ``to_dict`` form, reading each field by its type hint."""
    hints = get_type_hints(cls)
    kwargs = {f.name: _read(hints[f.name], data[f.name]) for f in fields(cls)
              if f.name in data and f.metadata.get("json") is not False}
    return cls(**kwargs)


def _read(hint: Any, value: Any) -> Any:
    """One JSON value read back as ``hint``: nested dataclasses, lists of them, tuples, NaN floats."""
    if value is None:
        return math.nan if hint is float else None  # to_jsonable wrote NaN as None
    origin, args = get_origin(hint), get_args(hint)
    if origin in (Union, UnionType):
        inner = [a for a in args if a is not type(None)]
        return _read(inner[0], value) if len(inner) == 1 else value
    if origin is list and args:
        return [_read(args[0], v) for v in value]
    if origin is tuple:
        return tuple(value)
    if is_dataclass(hint) and isinstance(value, dict):
        return _from_dict(hint, value)
    return value
