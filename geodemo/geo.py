"""Geodesy shared by every stage: distances, spherical means, projections and validation.

All coordinates are decimal degrees, latitude first: arrays of shape ``(..., 2)`` hold
``[lat, lon]``. Functions take numpy arrays or torch tensors and return the same kind.
"""

from __future__ import annotations

import math
from typing import Any, TypeVar

import numpy as np

from geodemo.errors import InvalidCoordinateError

EARTH_RADIUS_KM = 6371.0088  # IUGG mean Earth radius, the papers' haversine radius
MERCATOR_HALF_WORLD_M = 20037508.3427892  # EPSG:3857 easting of longitude 180 (pi * 6378137)
MERCATOR_MAX_LAT = 85.0511  # EPSG:3857 is cut at this latitude
WEB_MERCATOR_RADIUS_M = 6378137.0

# Equal Earth projection constants (Savric, Patterson & Jenny 2018), as GeoCLIP uses them.
_EE_A1, _EE_A2, _EE_A3, _EE_A4 = 1.340264, -0.081106, 0.000893, 0.003796
_EE_SCALE = 66.50336

Array = TypeVar("Array", np.ndarray, Any)

__all__ = [
    "EARTH_RADIUS_KM",
    "InvalidCoordinateError",
    "validate_coords",
    "wrap_longitude",
    "haversine_km",
    "geodesic_km",
    "pairwise_haversine_km",
    "latlon_to_unit",
    "unit_to_latlon",
    "spherical_mean",
    "mercator_projection",
    "equal_earth_projection",
    "destination_point",
]


def _is_torch(x: Any) -> bool:
    return type(x).__module__.startswith("torch")


def _lib(x: Any):
    if _is_torch(x):
        import torch

        return torch
    return np


def wrap_longitude(lon: Array) -> Array:
    """Wrap longitudes into [-180, 180)."""
    return (lon + 180.0) % 360.0 - 180.0


def validate_coords(coords: Any, *, wrap: bool = True, name: str = "coordinates") -> np.ndarray:
    """Return ``coords`` as a float64 ``(N, 2)`` [lat, lon] array, or raise a clear error.

    Rejects NaN/inf and latitudes outside [-90, 90]; longitudes outside [-180, 180] are
    wrapped when ``wrap`` is true (e.g. 190 -> -170) and rejected otherwise.
    """
    arr = np.asarray(coords, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr.reshape(1, -1)
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise InvalidCoordinateError(f"{name} must have shape (N, 2) as [lat, lon], got {arr.shape}")
    bad = ~np.isfinite(arr).all(axis=1)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise InvalidCoordinateError(f"{name}[{i}] = {arr[i].tolist()} is not a finite number")
    lat_bad = np.abs(arr[:, 0]) > 90.0
    if lat_bad.any():
        i = int(np.flatnonzero(lat_bad)[0])
        raise InvalidCoordinateError(f"{name}[{i}] latitude {arr[i, 0]} is outside [-90, 90]")
    lon_out = np.abs(arr[:, 1]) > 180.0
    if lon_out.any():
        if not wrap:
            i = int(np.flatnonzero(lon_out)[0])
            raise InvalidCoordinateError(f"{name}[{i}] longitude {arr[i, 1]} is outside [-180, 180]")
        arr = arr.copy()
        arr[:, 1] = wrap_longitude(arr[:, 1])
    return arr


def haversine_km(a: Array, b: Array) -> Array:
    """Great-circle distance in km between ``[..., 2]`` [lat, lon] arrays (broadcasting)."""
    xp = _lib(a)
    lat1, lon1 = xp.deg2rad(a[..., 0]), xp.deg2rad(a[..., 1])
    lat2, lon2 = xp.deg2rad(b[..., 0]), xp.deg2rad(b[..., 1])
    h = xp.sin((lat2 - lat1) / 2) ** 2 + xp.cos(lat1) * xp.cos(lat2) * xp.sin((lon2 - lon1) / 2) ** 2
    h = xp.clip(h, 0.0, 1.0)
    return 2 * EARTH_RADIUS_KM * xp.arcsin(xp.sqrt(h))


def pairwise_haversine_km(a: Array, b: Array) -> Array:
    """All-pairs great-circle distances: ``(N, 2)`` x ``(M, 2)`` -> ``(N, M)`` km."""
    return haversine_km(a[:, None, :], b[None, :, :])


def geodesic_km(a: Any, b: Any) -> np.ndarray:
    """Distance on the WGS-84 ellipsoid (geopy, Karney), as G3's evaluation uses it."""
    from geopy.distance import geodesic

    a = np.asarray(a, dtype=np.float64).reshape(-1, 2)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 2)
    if len(a) != len(b):
        a, b = np.broadcast_arrays(a, b)
    return np.array([geodesic(tuple(p), tuple(q)).km for p, q in zip(a, b, strict=True)])


def latlon_to_unit(coords: Array) -> Array:
    """[lat, lon] degrees -> unit vectors ``(..., 3)`` on the sphere."""
    xp = _lib(coords)
    lat, lon = xp.deg2rad(coords[..., 0]), xp.deg2rad(coords[..., 1])
    return xp.stack([xp.cos(lat) * xp.cos(lon), xp.cos(lat) * xp.sin(lon), xp.sin(lat)], -1)


def unit_to_latlon(vectors: Array) -> Array:
    """Vectors ``(..., 3)`` (any length) -> [lat, lon] degrees."""
    xp = _lib(vectors)
    x, y, z = vectors[..., 0], vectors[..., 1], vectors[..., 2]
    lat = xp.rad2deg(xp.arctan2(z, xp.sqrt(x * x + y * y)))
    lon = xp.rad2deg(xp.arctan2(y, x))
    return xp.stack([lat, lon], -1)


def spherical_mean(coords: Any, weights: Any | None = None) -> np.ndarray:
    """Weighted mean position of [lat, lon] points on the sphere (mean of 3-D unit vectors).

    Correct across the antimeridian and near the poles, unlike an arithmetic mean of degrees.
    Points whose vectors cancel (e.g. two antipodes) have no mean: a ``ValueError`` says so.
    """
    pts = validate_coords(coords, name="points")
    w = np.ones(len(pts)) if weights is None else np.asarray(weights, dtype=np.float64).reshape(-1)
    if len(w) != len(pts):
        raise ValueError(f"{len(w)} weights for {len(pts)} points")
    if len(pts) == 0 or w.sum() <= 0:
        raise ValueError("spherical_mean needs at least one point with positive weight")
    v = (latlon_to_unit(pts) * w[:, None]).sum(0)
    norm = float(np.linalg.norm(v))
    if norm < 1e-9 * w.sum():
        raise ValueError("points cancel out on the sphere (e.g. antipodes): no mean position")
    return unit_to_latlon(v / norm)


def mercator_projection(coords: Array) -> Array:
    """G3's GPS projection: EPSG:3857 metres / 20037508.3427892, returned as ``[y, x]``.

    Latitude is clamped to +-85.0511 (where EPSG:3857 ends), so both outputs lie in about [-1, 1].
    This is the order and scale of G3's ``LocationEncoder`` input (``[[y, x] ...] / 20037508.34``).
    """
    xp = _lib(coords)
    lat = xp.clip(coords[..., 0], -MERCATOR_MAX_LAT, MERCATOR_MAX_LAT)
    lon = coords[..., 1]
    x = WEB_MERCATOR_RADIUS_M * xp.deg2rad(lon)
    y = WEB_MERCATOR_RADIUS_M * xp.log(xp.tan(math.pi / 4 + xp.deg2rad(lat) / 2))
    return xp.stack([y, x], -1) / MERCATOR_HALF_WORLD_M


def equal_earth_projection(coords: Array) -> Array:
    """GeoCLIP's Equal Earth projection of [lat, lon] degrees, scaled as GeoCLIP scales it: ``[x, y]``."""
    xp = _lib(coords)
    lat, lon = xp.deg2rad(coords[..., 0]), xp.deg2rad(coords[..., 1])
    sqrt3 = math.sqrt(3.0)
    theta = xp.arcsin(sqrt3 / 2 * xp.sin(lat))
    denom = 3 * (9 * _EE_A4 * theta**8 + 7 * _EE_A3 * theta**6 + 3 * _EE_A2 * theta**2 + _EE_A1)
    x = 2 * sqrt3 * lon * xp.cos(theta) / denom
    y = _EE_A4 * theta**9 + _EE_A3 * theta**7 + _EE_A2 * theta**3 + _EE_A1 * theta
    return xp.stack([x, y], -1) * _EE_SCALE / 180.0


def destination_point(origin: Any, bearing_deg: Any, distance_km: Any) -> np.ndarray:
    """Point reached from ``origin`` [lat, lon] going ``distance_km`` on a great circle at a bearing."""
    lat1, lon1 = np.deg2rad(np.asarray(origin, dtype=np.float64)[..., 0]), np.deg2rad(
        np.asarray(origin, dtype=np.float64)[..., 1]
    )
    brg = np.deg2rad(np.asarray(bearing_deg, dtype=np.float64))
    d = np.asarray(distance_km, dtype=np.float64) / EARTH_RADIUS_KM
    lat2 = np.arcsin(np.sin(lat1) * np.cos(d) + np.cos(lat1) * np.sin(d) * np.cos(brg))
    lon2 = lon1 + np.arctan2(np.sin(brg) * np.sin(d) * np.cos(lat1), np.cos(d) - np.sin(lat1) * np.sin(lat2))
    return np.stack([np.rad2deg(lat2), wrap_longitude(np.rad2deg(lon2))], -1)
