"""The per-country accuracy map of an evaluation run: each country shaded by its accuracy.

The table is :func:`geodemo.eval.countries.country_accuracy`'s; the shapes are the bundled Natural
Earth outlines (:func:`geodemo.viz.basemap.countries_geojson`), so the map works offline. A country
without photos stays grey; hovering a country shows its row.
"""

from __future__ import annotations

import copy
from pathlib import Path

import folium
import pandas as pd
from matplotlib import colormaps
from matplotlib.colors import to_hex

from geodemo.eval.countries import run_country_accuracy
from geodemo.eval.metrics import SCALE_NAMES, THRESHOLDS_KM
from geodemo.storage import write_text
from geodemo.viz.basemap import add_legend, base_map, countries_geojson, map_document, map_iframe

__all__ = ["accuracy_colour", "country_accuracy_folium", "country_accuracy_map", "run_country_map_iframe",
           "write_country_map"]

NO_PHOTOS = "#d9d9d9"


def accuracy_colour(share: float) -> str:
    """Red (0) through yellow to green (1)."""
    return to_hex(colormaps["RdYlGn"](min(max(float(share), 0.0), 1.0)))


def country_accuracy_folium(table: pd.DataFrame, key: str = "acc@750",
                            title: str = "accuracy per country") -> folium.Map:
    """The map of ``table``: each of its countries filled by its ``key`` share, the others grey."""
    rows = {r["country"]: r for r in table.to_dict("records")}
    scale = next((f"{SCALE_NAMES[t]} scale, < {t:g} km" for t in THRESHOLDS_KM if key == f"acc@{int(t)}"), key)
    shapes = copy.deepcopy(countries_geojson())
    for feature in shapes["features"]:
        row = rows.get(feature["properties"]["name"])
        feature["properties"].update(
            photos=str(row["photos"]) if row else "0",
            share=f"{100.0 * row[key]:.0f}%" if row else "–",
            same_country=f"{100.0 * row['same_country']:.0f}%" if row else "–",
            median_km=f"{row['median_km']:,.0f}" if row else "–",
            fill=accuracy_colour(row[key]) if row else NO_PHOTOS,
        )
    m = base_map(tiles=False, outlines=False)
    folium.GeoJson(
        shapes,
        name=title,
        style_function=lambda feature: {"color": "#555555", "weight": 0.6, "fillOpacity": 0.85,
                                        "fillColor": feature["properties"]["fill"]},
        tooltip=folium.GeoJsonTooltip(
            fields=["name", "photos", "share", "same_country", "median_km"],
            aliases=["country", "photos", f"accuracy ({scale})", "answered in the country", "median error, km"],
        ),
    ).add_to(m)
    add_legend(m, [(accuracy_colour(v), f"{100 * v:.0f}% {scale}") for v in (1.0, 0.75, 0.5, 0.25, 0.0)]
               + [(NO_PHOTOS, "no photos")])
    return m


def country_accuracy_map(table: pd.DataFrame, key: str = "acc@750", title: str = "accuracy per country") -> str:
    """:func:`country_accuracy_folium` as a self-contained HTML document."""
    return map_document(country_accuracy_folium(table, key=key, title=title))


def run_country_map_iframe(run_dir: str | Path, key: str = "acc@750", height: int = 380) -> str:
    """The map of a run folder as an ``<iframe>`` for the explorer: its ``countries.csv`` when
    ``scripts/evaluate.py`` wrote one, else the table computed from its predictions (nothing is written)."""
    saved = Path(run_dir) / "countries.csv"
    table = pd.read_csv(saved, keep_default_na=False) if saved.is_file() else run_country_accuracy(run_dir)
    return map_iframe(country_accuracy_folium(table, key=key), height=height, title="accuracy per country")


def write_country_map(table: pd.DataFrame, path: str | Path, key: str = "acc@750",
                      title: str = "accuracy per country") -> Path:
    """:func:`country_accuracy_map` written to ``path``."""
    path = Path(path)
    write_text(path, country_accuracy_map(table, key=key, title=title))
    return path
