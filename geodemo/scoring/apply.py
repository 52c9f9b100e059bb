"""Score a pipeline's candidates with the fusion rule (what ``GeoLocator`` calls when a preset has
a ``"fusion"`` section, e.g. ``{"weights": "offline"}``)."""

from __future__ import annotations

from typing import Any

import numpy as np

from geodemo.clues import clue_prior
from geodemo.scoring.evidence import aligner_logit_scale
from geodemo.scoring.features import FEATURES, Evidence, candidate_features
from geodemo.scoring.fusion import load_weights

__all__ = ["fused_scores"]


def fused_scores(
    coords: np.ndarray,
    neighbour_coords: np.ndarray,
    neighbour_similarities: np.ndarray,
    image_embedding: np.ndarray,
    aligner: Any,
    gps_db: Any | None,
    clues: Any | None,
    cfg: dict[str, Any],
) -> tuple[np.ndarray, np.ndarray]:
    """``(scores (M,), features (M, F))`` of candidate ``coords`` under the weights named in ``cfg``.

    ``cfg``: ``weights`` (name or JSON path), ``gps_top_n`` (GPS-gallery hits forming the posterior,
    default 500), ``radius_km`` / ``support_km`` / ``wide_km`` (feature widths, 25 / 50 / 750).
    """
    weights = load_weights(cfg["weights"])
    coords = np.asarray(coords, dtype=np.float64).reshape(-1, 2)
    ev = Evidence(np.asarray(neighbour_coords, dtype=np.float64).reshape(-1, 2),
                  np.asarray(neighbour_similarities, dtype=np.float64).reshape(-1))
    scale = aligner_logit_scale(aligner)
    photo = np.asarray(aligner.embed_image_features(np.asarray(image_embedding, dtype=np.float32)[None, :]))[0]
    ev.candidate_logits = scale * (np.asarray(aligner.embed_locations(coords)) @ photo)
    if gps_db is not None:
        hit = gps_db.search(photo[None, :].astype(np.float32), k=int(cfg.get("gps_top_n", 500)))[0]
        ev.gallery_coords = np.asarray(gps_db.meta.coords)[hit.indices]
        ev.gallery_logits = scale * np.asarray(hit.similarities, dtype=np.float64)
    if clues is not None:
        ev.clue_weights = clue_prior(clues, coords)
    x = candidate_features(coords, ev, float(cfg.get("radius_km", 25.0)), float(cfg.get("support_km", 50.0)),
                           float(cfg.get("wide_km", 750.0)))
    return weights.score(x, FEATURES), x
