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

``support_wide`` and ``gps_wide`` are the same two kernels at ``wide_km`` (default 750 km): with a
weak image encoder the evidence is regional, not local, and the fit picks the scale that carries it
(as G3's location encoder mixes several RFF scales).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from geodemo.geo import pairwise_haversine_km

__all__ = ["FEATURES", "Evidence", "candidate_features"]

FEATURES = ("retrieval", "support", "support_wide", "verifier", "gps_gallery", "gps_wide", "clue")


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
    coords: np.ndarray, ev: Evidence, radius_km: float = 25.0, support_km: float = 50.0, wide_km: float = 750.0
) -> np.ndarray:
    """``(M, len(FEATURES))`` features of the candidate coordinates ``(M, 2)`` (see module doc)."""
    coords = np.asarray(coords, dtype=np.float64).reshape(-1, 2)
    m = len(coords)
    col = {name: i for i, name in enumerate(FEATURES)}
    out = np.zeros((m, len(FEATURES)), dtype=np.float64)
    nb = np.asarray(ev.neighbour_coords, dtype=np.float64).reshape(-1, 2)
    sims = np.asarray(ev.neighbour_similarities, dtype=np.float64).reshape(-1)
    out[:, col["support"]] = out[:, col["support_wide"]] = np.log(1e-3)
    if len(nb):
        d = pairwise_haversine_km(coords, nb)  # (M, K)
        out[:, col["retrieval"]] = (sims[None, :] * np.exp(-d / radius_km)).max(1)
        w = np.clip(sims, 1e-6, None)
        for name, width in (("support", support_km), ("support_wide", wide_km)):
            share = (w[None, :] * np.exp(-0.5 * (d / width) ** 2)).sum(1) / w.sum()
            out[:, col[name]] = np.log(1e-3 + share)
    if ev.candidate_logits is not None:
        out[:, col["verifier"]] = np.asarray(ev.candidate_logits, dtype=np.float64).reshape(-1)
    out[:, col["gps_gallery"]] = out[:, col["gps_wide"]] = np.log(1e-4)
    if ev.gallery_coords is not None and ev.gallery_logits is not None and len(ev.gallery_coords):
        logits = np.asarray(ev.gallery_logits, dtype=np.float64)
        p = np.exp(logits - logits.max())
        p /= p.sum()
        d = pairwise_haversine_km(coords, np.asarray(ev.gallery_coords, dtype=np.float64))
        for name, width in (("gps_gallery", radius_km), ("gps_wide", wide_km)):
            out[:, col[name]] = np.log(1e-4 + (p[None, :] * np.exp(-0.5 * (d / width) ** 2)).sum(1))
    if ev.clue_weights is not None:
        out[:, col["clue"]] = np.log(np.clip(np.asarray(ev.clue_weights, dtype=np.float64), 1e-6, None))
    return out
