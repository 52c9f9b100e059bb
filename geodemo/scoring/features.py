"""Per-candidate evidence features for the fusion rule (pure functions over arrays).

Every candidate coordinate ``c`` of a photo gets five numbers, each a log-score or a logit, so that
a weighted sum is a log-linear model:

``retrieval``    max_j sim_j * exp(-d(c, n_j) / radius): how similar the closest-looking gallery
                 photos near ``c`` are (image-gallery neighbours n_j with cosine sim_j);
``support``      log(1e-3 + sum_j w_j k(d(c, n_j)) / sum_j w_j), k Gaussian of width ``support_km``:
                 DualGeo's cluster support as a smooth share of the neighbours' similarity mass;
``verifier``     exp(logit_scale) * cos(aligner(photo), location_encoder(c)): G3's geo-verification
                 logit from the learned image->GPS aligner (0 without an aligner);
``gps_gallery``  log(1e-4 + sum_g p_g k(d(c, g))): the aligner's posterior over its top-N hits in
                 GeoCLIP's 100K GPS gallery (softmax of their logits), smoothed around ``c``;
``clue``         log of the text-clue prior (0 without a clue).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from geodemo.geo import pairwise_haversine_km

__all__ = ["FEATURES", "Evidence", "candidate_features"]

FEATURES = ("retrieval", "support", "verifier", "gps_gallery", "clue")


@dataclass
class Evidence:
    """What the features of one photo's candidates are computed from."""

    neighbour_coords: np.ndarray  # (K, 2) image-gallery neighbours
    neighbour_similarities: np.ndarray  # (K,) cosine
    candidate_logits: np.ndarray | None = None  # (M,) aligner logits of the candidates, or None
    gallery_coords: np.ndarray | None = None  # (N, 2) top-N GPS-gallery hits of the aligner
    gallery_logits: np.ndarray | None = None  # (N,) their logits
    clue_weights: np.ndarray | None = None  # (M,) clue_prior of the candidates, or None
    extra: dict = field(default_factory=dict)


def candidate_features(
    coords: np.ndarray, ev: Evidence, radius_km: float = 25.0, support_km: float = 50.0
) -> np.ndarray:
    """``(M, len(FEATURES))`` features of the candidate coordinates ``(M, 2)`` (see module doc)."""
    coords = np.asarray(coords, dtype=np.float64).reshape(-1, 2)
    m = len(coords)
    out = np.zeros((m, len(FEATURES)), dtype=np.float64)
    nb = np.asarray(ev.neighbour_coords, dtype=np.float64).reshape(-1, 2)
    sims = np.asarray(ev.neighbour_similarities, dtype=np.float64).reshape(-1)
    if len(nb):
        d = pairwise_haversine_km(coords, nb)  # (M, K)
        out[:, 0] = (sims[None, :] * np.exp(-d / radius_km)).max(1)
        w = np.clip(sims, 1e-6, None)
        share = (w[None, :] * np.exp(-0.5 * (d / support_km) ** 2)).sum(1) / w.sum()
        out[:, 1] = np.log(1e-3 + share)
    else:
        out[:, 1] = np.log(1e-3)
    if ev.candidate_logits is not None:
        out[:, 2] = np.asarray(ev.candidate_logits, dtype=np.float64).reshape(-1)
    if ev.gallery_coords is not None and ev.gallery_logits is not None and len(ev.gallery_coords):
        logits = np.asarray(ev.gallery_logits, dtype=np.float64)
        p = np.exp(logits - logits.max())
        p /= p.sum()
        d = pairwise_haversine_km(coords, np.asarray(ev.gallery_coords, dtype=np.float64))
        out[:, 3] = np.log(1e-4 + (p[None, :] * np.exp(-0.5 * (d / radius_km) ** 2)).sum(1))
    else:
        out[:, 3] = np.log(1e-4)
    if ev.clue_weights is not None:
        out[:, 4] = np.log(np.clip(np.asarray(ev.clue_weights, dtype=np.float64), 1e-6, None))
    return out
