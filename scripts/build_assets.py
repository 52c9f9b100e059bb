"""Build the app's bundled map assets (run again to rebuild them).

``assets/ne_110m_countries.geojson``: Natural Earth 1:110m country outlines (public domain),
taken from the copy that ships inside the installed ``pyogrio`` wheel
(``pyogrio/tests/fixtures/naturalearth_lowres``, itself copied from GeoPandas), simplified and
with coordinates rounded so the file stays well under 1 MB. The web app draws it under the
OpenStreetMap tiles, so its maps stay readable when the tiles cannot load (offline).

Usage: ``.venv/bin/python scripts/build_assets.py [--tolerance 0.05] [--out assets/...]``
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO_ROOT / "assets" / "ne_110m_countries.geojson"


def natural_earth_source() -> Path:
    """Path of the Natural Earth low-resolution shapefile bundled with pyogrio."""
    import pyogrio

    path = Path(pyogrio.__file__).parent / "tests" / "fixtures" / "naturalearth_lowres" / "naturalearth_lowres.shp"
    if not path.exists():
        raise FileNotFoundError(
            f"Natural Earth shapefile not found at {path}; install pyogrio (pip install pyogrio) "
            "or point --source at a Natural Earth admin-0 countries file"
        )
    return path


def _round_coords(obj, ndigits: int):
    if isinstance(obj, (list, tuple)):
        if obj and isinstance(obj[0], (int, float)):
            return [round(float(v), ndigits) for v in obj]
        return [_round_coords(v, ndigits) for v in obj]
    return obj


def build_countries(source: Path, out: Path, tolerance: float = 0.05, ndigits: int = 2) -> dict:
    """Simplify the countries to ``tolerance`` degrees, keep name and ISO code, write GeoJSON."""
    import geopandas as gpd

    frame = gpd.read_file(source).to_crs(4326)
    frame["geometry"] = frame.geometry.simplify(tolerance, preserve_topology=True)
    features = []
    for row in frame.itertuples():
        geom = row.geometry.__geo_interface__
        features.append(
            {
                "type": "Feature",
                "properties": {"name": row.name, "iso_a3": row.iso_a3},
                "geometry": {"type": geom["type"], "coordinates": _round_coords(geom["coordinates"], ndigits)},
            }
        )
    collection = {
        "type": "FeatureCollection",
        "name": "ne_110m_countries",
        "source": "Natural Earth 1:110m admin-0 countries (public domain), via pyogrio's test fixture",
        "features": features,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(collection, separators=(",", ":")), encoding="utf-8")
    return collection


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=None, help="Natural Earth countries file")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--tolerance", type=float, default=0.05, help="simplification, degrees")
    args = parser.parse_args()
    collection = build_countries(args.source or natural_earth_source(), args.out, args.tolerance)
    size_kb = args.out.stat().st_size / 1024
    print(f"wrote {len(collection['features'])} countries to {args.out} ({size_kb:.0f} KiB)")


if __name__ == "__main__":
    main()
