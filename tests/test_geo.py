"""Geodesy against known figures and properties (hypothesis), numpy and torch alike."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import geodemo  # noqa: F401  (torchvision guard before geoclip)
from geodemo.geo import (
    EARTH_RADIUS_KM,
    InvalidCoordinateError,
    destination_point,
    equal_earth_projection,
    geodesic_km,
    haversine_km,
    mercator_projection,
    pairwise_haversine_km,
    spherical_mean,
    validate_coords,
    wrap_longitude,
)

PARIS = (48.8566, 2.3522)
LONDON = (51.5074, -0.1278)
HALF_CIRCUMFERENCE = math.pi * EARTH_RADIUS_KM
ONE_DEGREE_KM = 2 * math.pi * EARTH_RADIUS_KM / 360  # 111.195 km

lats = st.floats(-90, 90, allow_nan=False)
lons = st.floats(-180, 180, allow_nan=False)
points = st.tuples(lats, lons)


def d(a, b) -> float:
    return float(haversine_km(np.array(a, dtype=float), np.array(b, dtype=float)))


# ---- known figures ---------------------------------------------------------------------------


def test_paris_london():
    assert d(PARIS, LONDON) == pytest.approx(343.5, abs=0.6)


@pytest.mark.parametrize(
    "a, b",
    [((0, 0), (0, 180)), ((45, 30), (-45, -150)), ((90, 0), (-90, 0)), ((-33.9, 18.4), (33.9, -161.6))],
)
def test_antipodes_are_half_the_circumference(a, b):
    assert d(a, b) == pytest.approx(HALF_CIRCUMFERENCE, rel=1e-9)
    assert HALF_CIRCUMFERENCE == pytest.approx(20015.1, abs=0.1)


def test_antimeridian_pairs_are_close():
    assert d((0, 179.5), (0, -179.5)) == pytest.approx(ONE_DEGREE_KM, rel=1e-9)
    assert ONE_DEGREE_KM == pytest.approx(111.195, abs=1e-3)
    assert d((60, 179.9), (60, -179.9)) < 12  # 0.2 deg of longitude at 60N ~ 11.1 km
    assert d((-16.5, 179.0), (-16.5, -179.0)) < 214


def test_poles():
    assert d((90, 0), (90, 123)) == pytest.approx(0, abs=1e-9)  # longitude is meaningless at a pole
    assert d((-90, -45), (-90, 170)) == pytest.approx(0, abs=1e-9)
    assert d((89, 0), (89, 180)) == pytest.approx(2 * ONE_DEGREE_KM, rel=1e-9)  # over the pole
    assert d((90, 0), (0, 77)) == pytest.approx(90 * ONE_DEGREE_KM, rel=1e-9)


def test_torch_matches_numpy_and_broadcasts():
    a = np.array([PARIS, (0, 179.5), (89, 0)])
    b = np.array([LONDON, (0, -179.5), (89, 180)])
    expected = haversine_km(a, b)
    got = haversine_km(torch.tensor(a), torch.tensor(b))
    assert isinstance(got, torch.Tensor)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-12)
    pairwise = pairwise_haversine_km(a, b)
    assert pairwise.shape == (3, 3)
    np.testing.assert_allclose(np.diag(pairwise), expected)


def test_geodesic_uses_the_wgs84_ellipsoid():
    # One degree of longitude on the equator of WGS-84: a * pi / 180 = 111.3195 km.
    assert geodesic_km((0, 0), (0, 1))[0] == pytest.approx(111.3195, abs=1e-3)
    # Paris-London on the ellipsoid stays within 0.5 % of the sphere.
    assert geodesic_km(PARIS, LONDON)[0] == pytest.approx(d(PARIS, LONDON), rel=5e-3)


# ---- properties ------------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(points, points)
def test_symmetry_and_range(a, b):
    ab, ba = d(a, b), d(b, a)
    assert ab == pytest.approx(ba, abs=1e-9)
    assert 0.0 <= ab <= HALF_CIRCUMFERENCE + 1e-6
    assert d(a, a) == pytest.approx(0.0, abs=1e-6)


@settings(max_examples=200, deadline=None)
@given(points, points, points)
def test_triangle_inequality(a, b, c):
    assert d(a, c) <= d(a, b) + d(b, c) + 1e-6


@settings(max_examples=200, deadline=None)
@given(st.floats(-89, 89), lons)
def test_mean_of_points_mirrored_across_the_equator_lies_on_it(lat, lon):
    mean = spherical_mean([[lat, lon], [-lat, lon]])
    assert mean[0] == pytest.approx(0.0, abs=1e-9)
    assert d(mean, (0.0, lon)) < 1e-6


@settings(max_examples=200, deadline=None)
@given(st.floats(-80, 80), lons, st.floats(0.1, 60))
def test_mean_of_points_mirrored_in_longitude_keeps_the_longitude(lat, lon, delta):
    mean = spherical_mean([[lat, wrap_longitude(lon - delta)], [lat, wrap_longitude(lon + delta)]])
    assert d((0.0, float(mean[1])), (0.0, lon)) < 1e-6  # same meridian, also across the antimeridian
    assert abs(mean[0]) >= abs(lat) - 1e-9  # the great-circle midpoint bulges toward the pole


def test_mean_across_the_antimeridian_and_near_the_pole():
    mean = spherical_mean([[10, 179], [10, -179]])
    assert abs(abs(mean[1]) - 180) < 1e-9  # arithmetic mean would say longitude 0
    polar = spherical_mean([[89, 0], [89, 90], [89, 180], [89, -90]])
    assert polar[0] == pytest.approx(90, abs=1e-9)
    with pytest.raises(ValueError, match="cancel"):
        spherical_mean([[0, 0], [0, 180]])


@settings(max_examples=100, deadline=None)
@given(points, st.lists(st.tuples(st.floats(0, 360), st.floats(0, 3000)), min_size=1, max_size=8))
def test_mean_stays_inside_a_cap_holding_the_points(centre, offsets):
    # Points within 3000 km of a centre (a convex spherical cap): their mean is in the cap too.
    pts = np.array([destination_point(np.array(centre), b, r) for b, r in offsets])
    mean = spherical_mean(pts)
    assert d(mean, centre) <= 3000 + 1e-6
    assert max(d(mean, p) for p in pts) <= max(d(p, q) for p in pts for q in pts) + 1e-6


# ---- validation ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad, message",
    [([[float("nan"), 0]], "not a finite"), ([[91, 0]], "latitude"), ([[0, float("inf")]], "not a finite"),
     ([1, 2, 3], "shape")],
)
def test_validation_rejects_with_a_clear_message(bad, message):
    with pytest.raises(InvalidCoordinateError, match=message):
        validate_coords(bad)


def test_validation_wraps_longitudes_or_refuses():
    np.testing.assert_allclose(validate_coords([[10, 190], [-5, -181]]), [[10, -170], [-5, 179]])
    with pytest.raises(InvalidCoordinateError, match="longitude"):
        validate_coords([[10, 190]], wrap=False)
    assert isinstance(InvalidCoordinateError("x"), ValueError)


@settings(max_examples=200, deadline=None)
@given(st.floats(-1e4, 1e4, allow_nan=False))
def test_wrap_longitude_range_and_identity(lon):
    w = float(wrap_longitude(lon))
    assert -180 <= w < 180
    assert d((0, lon), (0, w)) < 1e-6


# ---- projections -----------------------------------------------------------------------------


def test_mercator_matches_epsg_3857():
    # EPSG:3857 metres: x = R * lon, y = R * ln(tan(pi/4 + lat/2)), R = 6378137, scaled by 20037508.3427892.
    half = 20037508.3427892
    cases = {
        (0.0, 0.0): (0.0, 0.0),
        (0.0, 180.0): (0.0, half),
        (45.0, 90.0): (5621521.486192066, half / 2),
    }
    for (lat, lon), (y_m, x_m) in cases.items():
        y, x = mercator_projection(np.array([lat, lon]))
        assert y == pytest.approx(y_m / half, abs=2e-7)
        assert x == pytest.approx(x_m / half, abs=2e-7)


def test_mercator_matches_pyproj_epsg_3857():
    pyproj = pytest.importorskip("pyproj")
    to_3857 = pyproj.Transformer.from_crs("EPSG:4326", "EPSG:3857", always_xy=True)
    rng = np.random.default_rng(1)
    pts = np.column_stack([rng.uniform(-85, 85, 300), rng.uniform(-180, 180, 300)])
    x_m, y_m = to_3857.transform(pts[:, 1], pts[:, 0])
    got = mercator_projection(pts)
    half = 20037508.3427892
    np.testing.assert_allclose(got[:, 0], np.asarray(y_m) / half, atol=1e-9)
    np.testing.assert_allclose(got[:, 1], np.asarray(x_m) / half, atol=1e-9)


def test_mercator_clamps_the_poles_and_works_in_torch():
    top = mercator_projection(np.array([[85.0511, 0], [89.9, 0], [90, 0]]))
    np.testing.assert_allclose(top[:, 0], top[0, 0])
    assert top[0, 0] == pytest.approx(1.0, abs=1e-5)
    t = mercator_projection(torch.tensor([[45.0, 90.0]], dtype=torch.float64))
    np.testing.assert_allclose(t.numpy(), mercator_projection(np.array([[45.0, 90.0]])))


def test_equal_earth_matches_geoclip():
    from geoclip.model.location_encoder import equal_earth_projection as geoclip_equal_earth

    rng = np.random.default_rng(0)
    pts = np.column_stack([rng.uniform(-90, 90, 500), rng.uniform(-180, 180, 500)])
    pts = np.vstack([pts, [[0, 0], [90, 180], [-90, -180], [51.5, -0.13]]])
    theirs = geoclip_equal_earth(torch.tensor(pts, dtype=torch.float32)).numpy()
    ours_np = equal_earth_projection(pts)
    ours_t = equal_earth_projection(torch.tensor(pts, dtype=torch.float32)).numpy()
    np.testing.assert_allclose(ours_np, theirs, atol=1e-5)
    np.testing.assert_allclose(ours_t, theirs, atol=1e-6)
