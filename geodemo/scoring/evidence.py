"""Gather a photo's candidates and their evidence from a pipeline result, an aligner and its GPS gallery."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from geodemo.clues import clue_prior
from geodemo.scoring.features import Evidence, candidate_features

__all__ = ["CandidateSet", "aligner_logit_scale", "gather_candidates"]

BASE_SOURCES = ("cluster-centre", "retrieval")


@dataclass
class CandidateSet:
    """One photo's candidates (coords, source of each) and their feature matrix."""

    coords: np.ndarray  # (M, 2)
    sources: list[str]
    features: np.ndarray  # (M, len(FEATURES))


def aligner_logit_scale(aligner: Any) -> float:
    """``exp(logit_scale)`` of an aligner (1.0 when it has none)."""
    scale = getattr(aligner, "logit_scale", None)
    if scale is None:
        return 1.0
    try:
        return float(np.exp(float(scale.detach().cpu())))
    except AttributeError:
        return float(np.exp(float(scale)))


def _field(obj: Any, name: str) -> Any:
    return obj[name] if isinstance(obj, dict) else getattr(obj, name)


def gather_candidates(
    result: Any,
    image_embedding: np.ndarray | None = None,
    aligner: Any | None = None,
    gps_db: Any | None = None,
    clues: Any | None = None,
    *,
    gps_candidates: int = 5,
    gps_top_n: int = 500,
    sources: tuple[str, ...] = BASE_SOURCES,
    embed_locations: Any | None = None,
) -> CandidateSet:
    """Candidates of ``result`` (a LocationResult or its ``to_dict()``) whose source is in ``sources``,
    plus the aligner's top ``gps_candidates`` points of its GPS gallery, with their features.

    Without ``aligner`` the verifier and GPS-gallery features are 0 / floor; without ``clues`` the
    clue feature is 0 (no effect). ``embed_locations`` replaces ``aligner.embed_locations`` (e.g. a
    lookup of precomputed embeddings when many photos share candidates).
    """
    cands = [c for c in _field(result, "candidates") if _field(c, "source") in sources]
    coords = [[float(_field(c, "lat")), float(_field(c, "lon"))] for c in cands]
    srcs = [str(_field(c, "source")) for c in cands]
    nb = _field(result, "neighbours")
    ev = Evidence(
        neighbour_coords=np.array([[_field(n, "lat"), _field(n, "lon")] for n in nb], dtype=np.float64).reshape(-1, 2),
        neighbour_similarities=np.array([_field(n, "similarity") for n in nb], dtype=np.float64),
    )
    photo = None
    if aligner is not None and image_embedding is not None:
        scale = aligner_logit_scale(aligner)
        photo = np.asarray(aligner.embed_image_features(np.asarray(image_embedding, dtype=np.float32)[None, :]))[0]
        if gps_db is not None:
            hit = gps_db.search(photo[None, :].astype(np.float32), k=gps_top_n)[0]
            gcoords = np.asarray(gps_db.meta.coords)[hit.indices]
            ev.gallery_coords, ev.gallery_logits = gcoords, scale * np.asarray(hit.similarities, dtype=np.float64)
            for lat, lon in gcoords[:gps_candidates]:
                coords.append([float(lat), float(lon)])
                srcs.append("gps-gallery")
    xy = np.array(coords, dtype=np.float64).reshape(-1, 2)
    if photo is not None and len(xy):
        embed = embed_locations or aligner.embed_locations
        ev.candidate_logits = aligner_logit_scale(aligner) * (np.asarray(embed(xy)) @ photo)
    if clues is not None and len(xy):
        ev.clue_weights = clue_prior(clues, xy)
    return CandidateSet(xy, srcs, candidate_features(xy, ev))
