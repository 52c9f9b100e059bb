"""Geo-verification (G3): score candidate coordinates against the photo, pick the best.

Three verifiers, tried in the order a preset lists them:

* ``aligner``  cosine between the photo's GPS-space embedding and each candidate's location
  embedding (a :class:`~geodemo.models.base.GeoAligner`, e.g. GeoCLIP or a trained checkpoint);
* ``text``     cosine between the image embedding and the embedding of each candidate's
  reverse-geocoded place prompt (encoders with a text tower);
* ``support``  similarity mass of the retrieved neighbours within ``radius_km`` of each candidate,
  as a share of all the neighbours' mass (needs no model at all).

The :class:`Verification` says which verifier ran. What the reported ``confidence`` of an answer
means is defined once, in :mod:`geodemo.pipeline.decision`, not by the verifiers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from geodemo.geo import pairwise_haversine_km, validate_coords
from geodemo.retrieval.geocode import PLACE_TEMPLATE, place_prompt, reverse_geocode_many

__all__ = [
    "VerifyInput",
    "Verification",
    "Verifier",
    "AlignerVerifier",
    "TextVerifier",
    "SupportVerifier",
]


@dataclass
class VerifyInput:
    """What verifiers may look at for one photo."""

    image_embedding: np.ndarray  # (D,) unit, encoder space
    neighbour_coords: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))
    neighbour_similarities: np.ndarray = field(default_factory=lambda: np.zeros(0))
    gps_embedding: np.ndarray | None = None  # (D_gps,) when an aligner already embedded the photo


@dataclass
class Verification:
    """Scores of every candidate (higher is better) and the verifier that produced them."""

    verifier: str
    scores: np.ndarray  # (M,)
    best: int  # index of the best candidate


class Verifier(Protocol):
    name: str

    def score(self, coords: np.ndarray, inp: VerifyInput) -> np.ndarray: ...


def _verify(verifier: Verifier, coords: np.ndarray, inp: VerifyInput) -> Verification:
    pts = validate_coords(coords, name="candidate coordinates")
    if len(pts) == 0:
        raise ValueError("no candidates to verify")
    scores = np.asarray(verifier.score(pts, inp), dtype=np.float64).reshape(-1)
    best = int(np.argmax(scores))  # first of ties = earliest candidate
    return Verification(verifier.name, scores, best)


class _Base:
    name = "base"

    def verify(self, coords: np.ndarray, inp: VerifyInput) -> Verification:
        """Score ``(M, 2)`` candidates and pick the best."""
        return _verify(self, coords, inp)


class AlignerVerifier(_Base):
    """G3's geo-verification with a GeoAligner: cos(image -> GPS space, location embedding)."""

    def __init__(self, aligner: Any, label: str | None = None):
        self.aligner = aligner
        self.name = f"aligner:{label or getattr(aligner, 'name', type(aligner).__name__)}"

    def photo_embedding(self, image_embedding: np.ndarray) -> np.ndarray:
        return np.asarray(self.aligner.embed_image_features(np.asarray(image_embedding)[None, :]))[0]

    def score(self, coords: np.ndarray, inp: VerifyInput) -> np.ndarray:
        photo = inp.gps_embedding if inp.gps_embedding is not None else self.photo_embedding(inp.image_embedding)
        return np.asarray(self.aligner.embed_locations(coords)) @ photo


class TextVerifier(_Base):
    """Image-text similarity of each candidate's reverse-geocoded place prompt (G3's template)."""

    def __init__(self, encoder: Any, template: str = PLACE_TEMPLATE, min_population: int = 0):
        if not getattr(encoder, "has_text_tower", False):
            raise ValueError(f"encoder {getattr(encoder, 'name', encoder)!r} has no text tower")
        self.encoder, self.template, self.min_population = encoder, template, min_population
        self.name = f"text:{encoder.name}"

    def score(self, coords: np.ndarray, inp: VerifyInput) -> np.ndarray:
        prompts = [place_prompt(p, self.template) for p in reverse_geocode_many(coords, self.min_population)]
        return np.asarray(self.encoder.encode_texts(prompts)) @ np.asarray(inp.image_embedding)


class SupportVerifier(_Base):
    """Share of the neighbours' similarity mass within ``radius_km`` of each candidate."""

    def __init__(self, radius_km: float = 50.0):
        if radius_km <= 0:
            raise ValueError(f"radius_km must be > 0, got {radius_km}")
        self.radius_km = float(radius_km)
        self.name = f"support:{self.radius_km:g}km"

    def score(self, coords: np.ndarray, inp: VerifyInput) -> np.ndarray:
        nb = np.asarray(inp.neighbour_coords, dtype=np.float64).reshape(-1, 2)
        if len(nb) == 0:
            return np.zeros(len(coords))
        w = np.clip(np.asarray(inp.neighbour_similarities, dtype=np.float64), 0.0, None)
        if w.sum() <= 0:
            w = np.ones(len(nb))
        near = pairwise_haversine_km(coords, nb) <= self.radius_km
        return (near * w[None, :]).sum(1) / w.sum()
