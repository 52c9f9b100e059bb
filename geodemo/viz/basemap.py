"""Leaflet maps that work offline: inlined Leaflet, Natural Earth outlines, OSM tiles when reachable.

Every map is a self-contained HTML document (``folium``, with Leaflet's JS and CSS inlined from the
copy shipped in ``geodemo/viz/static/leaflet``, no CDN reference) that the app shows in an ``<iframe srcdoc>``. The country outlines from
``assets/ne_110m_countries.geojson`` sit in a pane *under* the OpenStreetMap tiles: online the
tiles cover them, offline the tiles fail and the outlines remain, so the map is readable either way.
"""

from __future__ import annotations

import hashlib
import html
import json
from functools import lru_cache
from pathlib import Path
from typing import Any

import folium
from folium.template import Template

from geodemo.paths import BUNDLE_DIR, MissingResourceError

__all__ = [
    "COUNTRIES_GEOJSON",
    "OSM_TILES",
    "OfflineMap",
    "countries_geojson",
    "base_map",
    "map_document",
    "map_iframe",
    "fit_points",
    "add_legend",
]

COUNTRIES_GEOJSON = BUNDLE_DIR / "ne_110m_countries.geojson"
OSM_TILES = "https://tile.openstreetmap.org/{z}/{x}/{y}.png"
OSM_ATTRIBUTION = "&copy; OpenStreetMap contributors; outlines: Natural Earth"
OCEAN_COLOUR = "#cfe3f0"

LEAFLET_DIR = Path(__file__).with_name("static") / "leaflet"  # Leaflet 1.9.3 (BSD-2-Clause, LICENSE beside it)


@lru_cache(maxsize=1)
def _leaflet_inline() -> str:
    """Leaflet's CSS and JS as inline ``<style>`` and ``<script>`` elements (read once)."""
    js = (LEAFLET_DIR / "leaflet.js").read_text(encoding="utf-8").replace("//# sourceMappingURL=leaflet.js.map", "")
    css = (LEAFLET_DIR / "leaflet.css").read_text(encoding="utf-8")
    return f"<style>{css}</style>\n<script>{js}</script>"


class OfflineMap(folium.Map):
    """A ``folium.Map`` that inlines Leaflet only (no jQuery, Bootstrap or icon fonts, no CDN).

    Markers must therefore be vector markers (``CircleMarker``, ``Circle``, ``PolyLine``) or
    ``DivIcon`` markers, which need no images.
    """

    default_js: list = []
    default_css: list = []

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # first in the header, so Leaflet is defined before any map script runs
        self.get_root().header.add_child(folium.Element(_leaflet_inline()), name="leaflet_inline", index=0)


def countries_geojson(path: Path | None = None) -> dict[str, Any]:
    """The bundled Natural Earth country outlines as a GeoJSON dict (read once)."""
    return _read_geojson(str(path or COUNTRIES_GEOJSON))


@lru_cache(maxsize=2)
def _read_geojson(path: str) -> dict[str, Any]:
    p = Path(path)
    if not p.exists():
        raise MissingResourceError(
            f"country outlines not found at {p}; rebuild them with "
            "`.venv/bin/python scripts/build_assets.py`"
        )
    return json.loads(p.read_text(encoding="utf-8"))


def base_map(
    center: tuple[float, float] = (20.0, 0.0),
    zoom: int = 2,
    *,
    tiles: bool = True,
    outlines: bool = True,
) -> OfflineMap:
    """A world map with OSM tiles (when ``tiles``) above Natural Earth outlines (when ``outlines``)."""
    m = OfflineMap(location=list(center), zoom_start=zoom, tiles=None, world_copy_jump=True, min_zoom=1)
    m.get_root().header.add_child(
        folium.Element(
            f"<style>.leaflet-container{{background:{OCEAN_COLOUR} !important;}}"
            ".gd-legend{position:absolute;bottom:22px;left:8px;z-index:1000;background:#fff;"
            "padding:4px 8px;border-radius:4px;font:12px sans-serif;box-shadow:0 0 4px #888;}"
            ".gd-label{font:bold 12px sans-serif;white-space:nowrap;}</style>"
        )
    )
    if outlines:
        # A pane below the tile pane (z-index 200): the tiles hide the outlines when they load.
        folium.map.CustomPane("outlines", z_index=150, pointer_events=False).add_to(m)
        folium.GeoJson(
            countries_geojson(),
            name="country outlines (Natural Earth)",
            style_function=lambda _feature: {
                "color": "#7a7a7a",
                "weight": 0.7,
                "fillColor": "#f4f1e8",
                "fillOpacity": 1.0,
            },
            pane="outlines",
            control=False,
        ).add_to(m)
    if tiles:
        folium.TileLayer(
            tiles=OSM_TILES,
            attr=OSM_ATTRIBUTION,
            name="OpenStreetMap",
            max_zoom=19,
            control=False,
        ).add_to(m)
    return m


class _FitWhenVisible(folium.MacroElement):
    """Fit the map to bounds once its frame has a size (a hidden iframe has none at load time)."""

    _template = Template(
        """
        {% macro script(this, kwargs) %}
        (function () {
            var map = {{ this._parent.get_name() }};
            var bounds = {{ this.bounds|tojson }};
            function fit() {
                var box = map.getContainer();  // getSize() is cached: read the live layout
                if (box.clientWidth > 0 && box.clientHeight > 0) {
                    map.invalidateSize();
                    map.fitBounds(bounds, {maxZoom: {{ this.max_zoom }}, animate: false});
                    return true;
                }
                return false;
            }
            if (!fit()) {
                var timer = setInterval(function () { if (fit()) { clearInterval(timer); } }, 200);
            }
            window.addEventListener("resize", function () { map.invalidateSize(); });
        })();
        {% endmacro %}
        """
    )

    def __init__(self, bounds: list[list[float]], max_zoom: int = 8):
        super().__init__()
        self._name = "FitWhenVisible"
        self.bounds = bounds
        self.max_zoom = int(max_zoom)


def fit_points(m: folium.Map, points: list[tuple[float, float]], pad_deg: float = 2.0, max_zoom: int = 8) -> None:
    """Zoom the map to show all ``points`` (lat, lon) with some margin; no-op when empty.

    The fit waits until the map's frame is visible, so maps rendered into hidden or
    not-yet-laid-out iframes still end up framed correctly.
    """
    if not points:
        return
    lats = [p[0] for p in points]
    lons = [p[1] for p in points]
    south, north = max(min(lats) - pad_deg, -85.0), min(max(lats) + pad_deg, 85.0)
    west, east = max(min(lons) - pad_deg, -180.0), min(max(lons) + pad_deg, 180.0)
    _FitWhenVisible([[south, west], [north, east]], max_zoom).add_to(m)


def add_legend(m: folium.Map, items: list[tuple[str, str]]) -> None:
    """A small fixed legend: ``items`` are (colour, label) pairs."""
    if not items:
        return
    rows = "".join(
        f'<div><span style="display:inline-block;width:10px;height:10px;border-radius:50%;'
        f'background:{html.escape(colour)};margin-right:4px"></span>{html.escape(label)}</div>'
        for colour, label in items
    )
    m.get_root().html.add_child(folium.Element(f'<div class="gd-legend">{rows}</div>'))


def map_document(m: folium.Map) -> str:
    """The full, self-contained HTML page of a map."""
    return m.get_root().render()


def map_iframe(m: folium.Map, height: int = 420, title: str = "map", elem_class: str = "gd-map") -> str:
    """The map as an ``<iframe srcdoc=...>`` snippet for ``gr.HTML`` (scripts run inside the frame)."""
    doc = html.escape(map_document(m), quote=True)
    # Gradio patches a changed gr.HTML in place, attribute by attribute, unless an element's tag
    # changes; a srcdoc swapped on a live iframe can keep showing the previous map. Wrapping the frame
    # in a custom element whose tag is keyed by the content makes every new map a new element.
    tag = f"gd-map-{hashlib.sha1(doc.encode()).hexdigest()[:12]}"
    return (
        f'<{tag} style="display:block">'
        f'<iframe class="{html.escape(elem_class)}" title="{html.escape(title)}" srcdoc="{doc}" '
        f'style="width:100%;height:{int(height)}px;border:0;border-radius:6px" '
        'sandbox="allow-scripts allow-popups" loading="eager"></iframe>'
        f"</{tag}>"
    )
