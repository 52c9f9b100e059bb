"""Geographic re-ranking (DualGeo): DBSCAN on the sphere over the retrieved neighbours.

The neighbours' coordinates are clustered with the haversine metric (``eps`` in km). The main
cluster is the largest non-noise cluster (ties: the larger similarity mass); when every point is
noise, all points form the main group. Its centre is the spherical mean of its members, and the
neighbours are re-sorted by great-circle distance to that centre.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from geodemo.geo import EARTH_RADIUS_KM, haversine_km, spherical_mean, validate_coords
from geodemo.result import Cluster, Clustering

__all__ = ["cluster_neighbours", "retrieval_order", "NOISE_LABEL"]

NOISE_LABEL = -1


def _centre(points: np.ndarray, weights: np.ndarray | None) -> np.ndarray:
    try:
        return spherical_mean(points, weights)
    except ValueError:  # points cancel out (e.g. antipodes): fall back to the first member
        return points[0]


def _make_cluster(
    label: int, members: np.ndarray, coords: np.ndarray, sims: np.ndarray, weighted: bool
) -> Cluster:
    pts = coords[members]
    weights = np.clip(sims[members], 1e-6, None) if weighted else None
    centre = _centre(pts, weights)
    radius = float(haversine_km(pts, centre[None, :]).max()) if len(pts) else 0.0
    return Cluster(
        label=int(label),
        members=[int(m) for m in members],
        centre_lat=float(centre[0]),
        centre_lon=float(centre[1]),
        radius_km=radius,
        support=int(len(members)),
        similarity_mass=float(sims[members].sum()),
    )


def cluster_neighbours(
    coords: np.ndarray,
    similarities: np.ndarray,
    eps_km: float = 50.0,
    min_samples: int = 2,
    weighted_centre: bool = False,
) -> Clustering:
    """Cluster ``(K, 2)`` [lat, lon] neighbours with DBSCAN (haversine) and re-rank them.

    Returns the clustering *after* re-ranking: ``order`` sorts neighbour indices by distance
    to the main cluster's centre (ties keep retrieval order). :func:`retrieval_order` gives the
    same clustering in retrieval order (the "before" view). ``weighted_centre`` weights the
    spherical mean by similarity.
    """
    from sklearn.cluster import DBSCAN

    pts = validate_coords(coords, name="neighbour coordinates")
    sims = np.asarray(similarities, dtype=np.float64).reshape(-1)
    if len(sims) != len(pts):
        raise ValueError(f"{len(sims)} similarities for {len(pts)} neighbours")
    if eps_km <= 0 or min_samples < 1:
        raise ValueError(f"eps_km must be > 0 and min_samples >= 1 (got {eps_km}, {min_samples})")
    if len(pts) == 0:
        return Clustering(eps_km, min_samples, [], [], None, [])

    labels = DBSCAN(
        eps=eps_km / EARTH_RADIUS_KM, min_samples=min_samples, metric="haversine", algorithm="ball_tree"
    ).fit_predict(np.deg2rad(pts))
    clusters = [
        _make_cluster(lab, np.flatnonzero(labels == lab), pts, sims, weighted_centre)
        for lab in sorted(set(labels.tolist()) - {NOISE_LABEL})
    ]
    if clusters:
        main = max(clusters, key=lambda c: (c.support, c.similarity_mass, -c.label))
    else:  # all noise: every neighbour forms the main group
        main = _make_cluster(NOISE_LABEL, np.arange(len(pts)), pts, sims, weighted_centre)
        clusters = [main]
    main.is_main = True
    dist = haversine_km(pts, np.array([main.centre_lat, main.centre_lon])[None, :])
    order = np.lexsort((np.arange(len(pts)), dist))
    return Clustering(
        eps_km=float(eps_km),
        min_samples=int(min_samples),
        labels=[int(v) for v in labels],
        clusters=clusters,
        main_label=main.label,
        order=[int(i) for i in order],
    )


def retrieval_order(clustering: Clustering) -> Clustering:
    """The same clusters with neighbours in their original retrieval order (before re-ranking)."""
    return replace(clustering, order=list(range(len(clustering.labels))))
