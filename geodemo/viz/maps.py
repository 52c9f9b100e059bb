"""The app's maps, drawn from a finished or partial :class:`~geodemo.result.LocationResult`.

Presentation only: every function reads the result (neighbours, clusterings, candidates, LMM
records, final point) and never recomputes a prediction. Each returns a ``folium`` map;
:func:`geodemo.viz.basemap.map_iframe` turns it into HTML for the page. Marker CSS classes
(``gd-neighbour``, ``gd-centre``, ``gd-candidate``, ``gd-prediction``, ``gd-truth``) let tests and
users find each kind of point in the page.
"""

from __future__ import annotations

import base64
import html
import io
import math
from functools import lru_cache
from pathlib import Path

import folium
from folium.template import Template
from PIL import Image

from geodemo.result import Clustering, LocationResult, Neighbour
from geodemo.viz.basemap import add_legend, base_map, fit_points, map_iframe

__all__ = [
    "CLUSTER_COLOURS",
    "NOISE_COLOUR",
    "cluster_colour",
    "candidate_colour",
    "thumbnail_data_uri",
    "neighbour_map",
    "cluster_map",
    "result_map",
    "MAP_PANELS",
    "map_panel",
]

CLUSTER_COLOURS = (
    "#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b",
    "#e377c2", "#17becf", "#bcbd22", "#7f7f7f", "#393b79",
)  # fmt: skip
NOISE_COLOUR = "#9e9e9e"
PREDICTION_COLOUR = "#d62728"
TRUTH_COLOUR = "#00a651"
_SOURCE_COLOURS = {
    "retrieval": "#1f77b4",
    "cluster-centre": "#ff7f0e",
    "gps-gallery": "#17becf",
    "text-gallery": "#8c564b",
    "lmm": "#9467bd",
}
THUMBNAIL_PX = 128


def cluster_colour(label: int) -> str:
    """Colour of DBSCAN cluster ``label`` (grey for noise, -1)."""
    return NOISE_COLOUR if label < 0 else CLUSTER_COLOURS[label % len(CLUSTER_COLOURS)]


_OTHER_SOURCE_COLOURS = ("#e6550d", "#31a354", "#636363", "#de2d26", "#3182bd", "#756bb1", "#fd8d3c")


def candidate_colour(source: str) -> str:
    """Colour of a source: the pipeline's own kinds and a live LMM ("lmm:<kind>") have fixed colours;
    any other source (a recorded LMM or geolocator, by name) a stable colour of its own."""
    fixed = _SOURCE_COLOURS.get(source.split(":", 1)[0])
    if fixed is not None:
        return fixed
    return _OTHER_SOURCE_COLOURS[sum(source.encode()) % len(_OTHER_SOURCE_COLOURS)]


def _source_label(cand) -> str:
    """The source a candidate is shown under: a recorded LMM's answers under the recorded model's name."""
    if cand.source.startswith("lmm:") and cand.details.get("model") and cand.source == "lmm:recorded":
        return str(cand.details["model"])
    return cand.source


def _probabilities(details: dict) -> str:
    parts = [f"P(<{k[2:-2]} km) {v:.2f}" for k, v in details.items() if k.startswith("p_") and k.endswith("km")]
    return ", ".join(parts)


@lru_cache(maxsize=512)
def _thumbnail_bytes(path: str, mtime: float, size: int) -> bytes | None:
    try:
        with Image.open(path) as im:
            im = im.convert("RGB")
            im.thumbnail((size, size))
            buf = io.BytesIO()
            im.save(buf, format="JPEG", quality=70)
            return buf.getvalue()
    except (OSError, ValueError):
        return None


def thumbnail_data_uri(path: str | Path | None, size: int = THUMBNAIL_PX) -> str | None:
    """A small base64 JPEG ``data:`` URI of a gallery image, or None when it cannot be read."""
    if not path:
        return None
    p = Path(path)
    try:
        mtime = p.stat().st_mtime
    except OSError:
        return None
    data = _thumbnail_bytes(str(p), mtime, size)
    if data is None:
        return None
    return "data:image/jpeg;base64," + base64.b64encode(data).decode("ascii")


def _finite(*values: float) -> bool:
    return all(v is not None and math.isfinite(v) for v in values)


def _fmt_coord(lat: float, lon: float) -> str:
    return f"{lat:.4f}, {lon:.4f}"


class HtmlPopup(folium.MacroElement):
    """A Leaflet pop-up with raw HTML content (folium's ``Popup`` needs jQuery, which we do not inline)."""

    _template = Template(
        """
        {% macro script(this, kwargs) %}
        {{ this._parent.get_name() }}.bindPopup({{ this.html|tojson }}, {maxWidth: {{ this.max_width }}});
        {% endmacro %}
        """
    )

    def __init__(self, html_text: str, max_width: int = 300):
        super().__init__()
        self._name = "HtmlPopup"
        self.html = html_text
        self.max_width = int(max_width)


def _neighbour_popup(n: Neighbour, label: int | None, thumbnails: bool) -> HtmlPopup:
    parts = []
    uri = thumbnail_data_uri(n.image_path) if thumbnails else None
    if uri:
        parts.append(f'<img src="{uri}" style="max-width:{THUMBNAIL_PX}px;display:block;margin-bottom:4px">')
    title = html.escape(n.place) if n.place else html.escape(n.id)
    parts.append(f"<b>#{n.rank + 1 if n.rank >= 0 else '?'}</b> {title}")
    parts.append(f"<br>{_fmt_coord(n.lat, n.lon)} &middot; sim {n.similarity:.3f}")
    parts.append(f"<br><small>{html.escape(n.source)} &middot; {html.escape(n.id)}</small>")
    if label is not None:
        parts.append(f"<br>cluster: {'noise' if label < 0 else label}")
    return HtmlPopup("".join(parts), max_width=THUMBNAIL_PX + 40)


def _add_marker_label(m: folium.Map, lat: float, lon: float, text: str, css_class: str, colour: str) -> None:
    folium.Marker(
        [lat, lon],
        icon=folium.DivIcon(
            html=f'<div class="gd-label" style="color:{colour}">{html.escape(text)}</div>',
            icon_size=(140, 16),
            icon_anchor=(-12, 8),
            class_name=css_class,
        ),
    ).add_to(m)


def _add_truth(m: folium.Map, truth: tuple[float, float] | None, points: list) -> None:
    if truth is None:
        return
    folium.CircleMarker(
        list(truth), radius=9, color="#ffffff", weight=2, fill=True, fill_color=TRUTH_COLOUR,
        fill_opacity=1.0, class_name="gd-truth", tooltip=f"true location {_fmt_coord(*truth)}",
    ).add_to(m)
    _add_marker_label(m, truth[0], truth[1], "truth", "gd-truth-label", TRUTH_COLOUR)
    points.append(tuple(truth))


def neighbour_map(
    result: LocationResult,
    truth: tuple[float, float] | None = None,
    *,
    thumbnails: bool = True,
    tiles: bool = True,
) -> folium.Map:
    """Retrieved neighbours, coloured by their cluster before re-ranking, with image pop-ups."""
    m = base_map(tiles=tiles)
    labels = result.clusters_before.labels if result.clusters_before else None
    points: list[tuple[float, float]] = []
    for i, n in enumerate(result.neighbours):
        label = labels[i] if labels is not None and i < len(labels) else None
        colour = cluster_colour(label) if label is not None else CLUSTER_COLOURS[0]
        marker = folium.CircleMarker(
            [n.lat, n.lon], radius=6, color="#333333", weight=1, fill=True, fill_color=colour,
            fill_opacity=0.85, class_name="gd-neighbour",
            tooltip=f"#{n.rank + 1} {n.place or n.id} (sim {n.similarity:.3f})",
        ).add_to(m)
        _neighbour_popup(n, label, thumbnails).add_to(marker)
        points.append((n.lat, n.lon))
    _add_truth(m, truth, points)
    fit_points(m, points)
    legend = []
    if result.clusters_before:
        for c in sorted(result.clusters_before.clusters, key=lambda c: c.label)[:6]:
            legend.append((cluster_colour(c.label), f"cluster {c.label} ({c.support})"))
        legend.append((NOISE_COLOUR, "noise"))
    if truth is not None:
        legend.append((TRUTH_COLOUR, "true location"))
    add_legend(m, legend)
    return m


def cluster_map(
    result: LocationResult,
    clustering: Clustering | None,
    *,
    title: str,
    truth: tuple[float, float] | None = None,
    tiles: bool = True,
) -> folium.Map:
    """One clustering of the neighbours: members coloured by cluster, main cluster and centre marked.

    Tooltips give each neighbour's rank in ``clustering.order`` (retrieval order before
    re-ranking, distance to the main centre after).
    """
    m = base_map(tiles=tiles)
    points: list[tuple[float, float]] = []
    if clustering is None:
        add_legend(m, [(NOISE_COLOUR, f"{title}: not computed")])
        return m
    rank_of = {idx: r for r, idx in enumerate(clustering.order)}
    main_label = clustering.main_label
    for i, n in enumerate(result.neighbours):
        label = clustering.labels[i] if i < len(clustering.labels) else -1
        is_main = main_label is not None and label == main_label
        rank = rank_of.get(i)
        folium.CircleMarker(
            [n.lat, n.lon], radius=8 if is_main else 5,
            color="#000000" if is_main else "#555555", weight=2 if is_main else 1,
            fill=True, fill_color=cluster_colour(label), fill_opacity=0.9 if is_main else 0.6,
            class_name="gd-neighbour gd-main-member" if is_main else "gd-neighbour",
            tooltip=(f"{title} rank {rank + 1 if rank is not None else '-'}: "
                     f"{n.place or n.id} (cluster {'noise' if label < 0 else label})"),
        ).add_to(m)
        points.append((n.lat, n.lon))
    for c in clustering.clusters:
        colour = cluster_colour(c.label)
        folium.Circle(
            [c.centre_lat, c.centre_lon], radius=max(c.radius_km, 1.0) * 1000.0, color=colour,
            weight=2 if c.is_main else 1, fill=True, fill_opacity=0.08,
            dash_array=None if c.is_main else "4 4", class_name="gd-cluster-extent",
        ).add_to(m)
        folium.CircleMarker(
            [c.centre_lat, c.centre_lon], radius=10 if c.is_main else 6, color="#000000",
            weight=3 if c.is_main else 1, fill=True, fill_color=colour, fill_opacity=1.0,
            class_name="gd-centre gd-main-centre" if c.is_main else "gd-centre",
            tooltip=(f"{'MAIN ' if c.is_main else ''}cluster {c.label}: {c.support} photos, "
                     f"centre {_fmt_coord(c.centre_lat, c.centre_lon)}, radius {c.radius_km:.0f} km"),
        ).add_to(m)
        if c.is_main:
            _add_marker_label(m, c.centre_lat, c.centre_lon, "main cluster", "gd-main-label", "#000000")
    _add_truth(m, truth, points)
    fit_points(m, points)
    legend = [(cluster_colour(c.label), f"{'main ' if c.is_main else ''}cluster {c.label} ({c.support})")
              for c in sorted(clustering.clusters, key=lambda c: (not c.is_main, c.label))[:6]]
    legend.append((NOISE_COLOUR, f"noise; eps {clustering.eps_km:g} km, min {clustering.min_samples}"))
    add_legend(m, legend)
    return m


def result_map(
    result: LocationResult,
    truth: tuple[float, float] | None = None,
    *,
    show_prediction: bool = True,
    tiles: bool = True,
) -> folium.Map:
    """Candidates (coloured by source), the final point with its uncertainty circle, and the truth.

    ``show_prediction=False`` draws the candidates only (a partial result, before verification).
    """
    m = base_map(tiles=tiles)
    points: list[tuple[float, float]] = []
    for cand in result.candidates:
        score = "-" if cand.score is None else f"{cand.score:.3f}"
        label = _source_label(cand)
        probs = _probabilities(cand.details)
        kind = ("gd-candidate gd-lmm" if cand.source.startswith("lmm") else "gd-candidate") + (
            " gd-recorded" if cand.details.get("recorded") or cand.source == "lmm:recorded" else "")
        folium.CircleMarker(
            [cand.lat, cand.lon], radius=6, color="#333333", weight=1, fill=True,
            fill_color=candidate_colour(label), fill_opacity=0.85, class_name=kind,
            tooltip=f"{label}: {_fmt_coord(cand.lat, cand.lon)}, verifier score {score}" + (f", {probs}" if probs else ""),
        ).add_to(m)
        points.append((cand.lat, cand.lon))
    has_point = show_prediction and _finite(result.lat, result.lon)
    if has_point:
        folium.Circle(
            [result.lat, result.lon], radius=max(result.uncertainty_km, 1.0) * 1000.0,
            color=PREDICTION_COLOUR, weight=2, fill=True, fill_opacity=0.1, class_name="gd-uncertainty",
            tooltip=f"uncertainty {result.uncertainty_km:,.0f} km",
        ).add_to(m)
        folium.CircleMarker(
            [result.lat, result.lon], radius=10, color="#ffffff", weight=3, fill=True,
            fill_color=PREDICTION_COLOUR, fill_opacity=1.0, class_name="gd-prediction",
            tooltip=(f"prediction {_fmt_coord(result.lat, result.lon)} {result.place or ''} "
                     f"(confidence {result.confidence:.2f}"
                     + (f", from {result.decision['source']}" if result.decision.get("source") else "") + ")"),
        ).add_to(m)
        _add_marker_label(m, result.lat, result.lon, "prediction", "gd-prediction-label", PREDICTION_COLOUR)
        points.append((result.lat, result.lon))
    if truth is not None and has_point:
        folium.PolyLine([[result.lat, result.lon], list(truth)], color="#333333", weight=2,
                        dash_array="6 6", class_name="gd-error-line").add_to(m)
    _add_truth(m, truth, points)
    fit_points(m, points)
    sources = sorted({_source_label(c).split(":", 1)[0] for c in result.candidates})
    legend = [(candidate_colour(s), f"candidate: {s}") for s in sources]
    if has_point:
        won = result.decision.get("source")
        legend.append((PREDICTION_COLOUR, f"prediction (from {won})" if won else "prediction"))
    if truth is not None:
        legend.append((TRUTH_COLOUR, "true location"))
    add_legend(m, legend)
    return m


#: The map panels of a result, as the page and the failure explorer show them: (title, CSS class).
MAP_PANELS: dict[str, tuple[str, str]] = {
    "neighbours": ("neighbours", "gd-map gd-neighbours"),
    "before": ("clusters before re-ranking", "gd-map gd-clusters-before"),
    "after": ("clusters after re-ranking", "gd-map gd-clusters-after"),
    "result": ("prediction", "gd-map gd-result"),
}


def map_panel(panel: str, result: LocationResult, truth: tuple[float, float] | None, height: int,
              *, show_prediction: bool = True) -> str:
    """One of :data:`MAP_PANELS` as HTML (``<iframe srcdoc>``) for ``gr.HTML``: the retrieved neighbours,
    the clusters before or after re-ranking, or the candidates and the final point; the truth marked
    when known. The one builder of the page's and the failure explorer's maps."""
    title, css = MAP_PANELS[panel]
    if panel == "neighbours":
        m = neighbour_map(result, truth)
    elif panel in ("before", "after"):
        clustering = result.clusters_before if panel == "before" else result.clusters_after
        m = cluster_map(result, clustering, title=f"{panel} re-ranking", truth=truth)
    else:
        m = result_map(result, truth, show_prediction=show_prediction)
    return map_iframe(m, height, title, css)
