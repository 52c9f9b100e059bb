"""Which country a coordinate lies in: the bundled Natural Earth outlines, joined with GeoPandas.

The outlines are ``assets/ne_110m_countries.geojson`` (177 Natural Earth 1:110m admin-0 countries,
public domain; ``scripts/build_assets.py`` writes them). A point is joined to the nearest outline in
the Equal Earth projection (EPSG:8857) within ``max_km``: 0 km inside a country, a few km for a coastal
photo that the simplified outline leaves at sea. Farther points (open sea) get :data:`NO_COUNTRY`.

Countries are named by the outline's ``name`` (Natural Earth's ``iso_a3`` is ``-99`` for France and
Norway). Evaluation uses this for the per-country accuracy table and map
(:mod:`geodemo.eval.countries`). The clue prior keeps its own ISO alpha-2 lookup (nearest GeoNames
city, :func:`geodemo.clues.prior.countries_of`): its language tables are keyed by alpha-2 codes,
which these outlines do not carry.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from geodemo.geo import validate_coords
from geodemo.paths import BUNDLE_DIR, MissingResourceError

if TYPE_CHECKING:
    import geopandas as gpd

__all__ = ["COUNTRIES_FILE", "NO_COUNTRY", "EQUAL_EARTH", "country_outlines", "countries_at"]

COUNTRIES_FILE = BUNDLE_DIR / "ne_110m_countries.geojson"
#: The country of a point farther than ``max_km`` from every outline.
NO_COUNTRY = ""
#: Equal Earth (metres): the projection the nearest-outline distances are measured in.
EQUAL_EARTH = "EPSG:8857"


@lru_cache(maxsize=2)
def _outlines(path: str, crs: str) -> gpd.GeoDataFrame:
    import geopandas as gpd

    if not Path(path).is_file():
        raise MissingResourceError(
            f"country outlines not found at {path}; rebuild them with `python scripts/build_assets.py --only countries`"
        )
    frame = gpd.read_file(path)[["name", "iso_a3", "geometry"]]
    return frame.to_crs(crs)


def country_outlines(path: str | Path | None = None, crs: str = "EPSG:4326") -> gpd.GeoDataFrame:
    """The bundled outlines as a GeoDataFrame (``name``, ``iso_a3``, ``geometry``) in ``crs`` (read once)."""
    return _outlines(str(path or COUNTRIES_FILE), crs)


def countries_at(coords: np.ndarray, max_km: float = 50.0, path: str | Path | None = None) -> list[str]:
    """Country name of each ``(N, 2)`` [lat, lon] coordinate; :data:`NO_COUNTRY` for a NaN row or a
    point farther than ``max_km`` from every outline (``max_km=0``: outside every outline). A point on a shared border gets the first
    outline in file order."""
    import geopandas as gpd

    coords = np.asarray(coords, dtype=np.float64).reshape(-1, 2)
    found = [NO_COUNTRY] * len(coords)
    ok = np.flatnonzero(np.isfinite(coords).all(axis=1))
    if len(ok) == 0:
        return found
    valid = validate_coords(coords[ok])
    points = gpd.GeoDataFrame({"row": ok}, geometry=gpd.points_from_xy(valid[:, 1], valid[:, 0]), crs="EPSG:4326")
    if max_km > 0:
        shapes = country_outlines(path, EQUAL_EARTH)[["name", "geometry"]]
        joined = gpd.sjoin_nearest(points.to_crs(EQUAL_EARTH), shapes, how="left", max_distance=max_km * 1000.0)
    else:  # inside an outline only, in the outlines' own coordinates
        joined = gpd.sjoin(points, country_outlines(path)[["name", "geometry"]], how="left", predicate="intersects")
    joined = joined.sort_values(["row", "index_right"], na_position="last")  # ties: file order
    for row, name in joined.groupby("row", sort=False)["name"].first().items():
        if isinstance(name, str):
            found[int(row)] = name
    return found
