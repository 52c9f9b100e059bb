"""DBSCAN re-ranking on hand-made point sets with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from geodemo.geo import haversine_km
from geodemo.retrieval.rerank import cluster_neighbours, retrieval_order

PARIS = (48.8566, 2.3522)
TOKYO = (35.6762, 139.6503)


def _around(centre, offsets_km, rng):
    """Points a few km around ``centre`` (about 111 km per degree of latitude)."""
    lat, lon = centre
    out = []
    for d in offsets_km:
        ang = rng.uniform(0, 2 * np.pi)
        out.append((lat + d / 111.0 * np.sin(ang), lon + d / (111.0 * np.cos(np.deg2rad(lat))) * np.cos(ang)))
    return out


def test_two_clusters_largest_is_main_and_order_follows_distance():
    rng = np.random.default_rng(0)
    paris = _around(PARIS, [1, 3, 5, 8], rng)
    tokyo = _around(TOKYO, [2, 4, 6], rng)
    lone = [(-33.87, 151.21)]  # Sydney, noise
    # retrieval order interleaves the places; Tokyo holds the top-1
    coords = np.array([tokyo[0], paris[0], lone[0], paris[1], tokyo[1], paris[2], tokyo[2], paris[3]])
    sims = np.linspace(0.9, 0.5, len(coords))
    c = cluster_neighbours(coords, sims, eps_km=50, min_samples=2)
    assert c.labels[2] == -1
    assert len(c.clusters) == 2
    main = c.main
    assert main is not None and main.support == 4
    assert sorted(main.members) == [1, 3, 5, 7]
    assert haversine_km(np.array([main.centre_lat, main.centre_lon]), np.array(PARIS)) < 10
    assert sorted(c.order[:4]) == [1, 3, 5, 7]  # Paris members first
    assert c.order[-1] == 2  # Sydney is farthest from Paris
    assert main.radius_km < 15
    assert main.similarity_mass == pytest.approx(sims[[1, 3, 5, 7]].sum())
    before = retrieval_order(c)
    assert before.order == list(range(len(coords))) and before.labels == c.labels


def test_tie_in_support_goes_to_larger_similarity_mass():
    rng = np.random.default_rng(1)
    a = _around(PARIS, [1, 2], rng)
    b = _around(TOKYO, [1, 2], rng)
    coords = np.array([a[0], b[0], a[1], b[1]])
    sims = np.array([0.5, 0.9, 0.4, 0.8])
    c = cluster_neighbours(coords, sims)
    assert sorted(c.main.members) == [1, 3]


def test_all_noise_uses_every_point():
    coords = np.array([PARIS, TOKYO, (40.71, -74.0), (-33.87, 151.21)])
    c = cluster_neighbours(coords, np.ones(4), eps_km=50, min_samples=2)
    assert c.labels == [-1, -1, -1, -1]
    assert c.main.members == [0, 1, 2, 3] and c.main.support == 4
    assert sorted(c.order) == [0, 1, 2, 3]


def test_cluster_straddling_antimeridian_has_centre_near_180():
    coords = np.array([(-17.0, 179.8), (-17.1, -179.9), (-16.9, 179.95), (-17.05, -179.7), (10.0, 0.0)])
    c = cluster_neighbours(coords, np.ones(5), eps_km=60, min_samples=2)
    main = c.main
    assert sorted(main.members) == [0, 1, 2, 3]  # DBSCAN joins them across the antimeridian
    assert abs(abs(main.centre_lon) - 180.0) < 0.5  # an arithmetic mean would give ~0
    assert abs(main.centre_lat + 17.0) < 0.2
    assert c.order[-1] == 4


def test_eps_controls_merging():
    rng = np.random.default_rng(2)
    coords = np.array(_around(PARIS, [0, 30], rng) + _around((PARIS[0] + 0.9, PARIS[1]), [0], rng))
    # about 100 km between the third point and the others
    tight = cluster_neighbours(coords, np.ones(3), eps_km=50)
    loose = cluster_neighbours(coords, np.ones(3), eps_km=200)
    assert tight.main.support == 2 and loose.main.support == 3


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="similarities"):
        cluster_neighbours(np.zeros((3, 2)), np.ones(2))
    with pytest.raises(ValueError, match="latitude"):
        cluster_neighbours(np.array([[95.0, 0.0]]), np.ones(1))
    assert cluster_neighbours(np.zeros((0, 2)), np.zeros(0)).main is None
