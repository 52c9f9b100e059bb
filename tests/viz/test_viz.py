"""Presentation helpers: failure explanation, accuracy bands, offline maps and tables.

Results are built by hand here (the browser and API tests run the real pipeline); expected
distances come from well-known city-to-city distances, not from the code under test.
"""

from __future__ import annotations

import json
import re

import pytest
from PIL import Image

from geodemo.result import (
    Candidate,
    ClueReport,
    Cluster,
    Clustering,
    LMMRecord,
    LocationResult,
    Neighbour,
    SegmentationResult,
)
from geodemo.viz import (
    accuracy_bands,
    cluster_map,
    error_report,
    lmm_rows,
    map_document,
    map_iframe,
    neighbour_map,
    result_map,
    share_rows,
)
from geodemo.viz.basemap import COUNTRIES_GEOJSON, countries_geojson
from geodemo.viz.explain import ACCURACY_BANDS_KM

PARIS = (48.8566, 2.3522)
ROME = (41.9028, 12.4964)
NEW_YORK = (40.7128, -74.0060)


def _clustering(labels: list[int], centre: tuple[float, float], main: bool = True) -> Clustering:
    members = [i for i, lab in enumerate(labels) if lab == 0]
    cluster = Cluster(label=0, members=members, centre_lat=centre[0], centre_lon=centre[1], radius_km=8.0,
                      support=len(members), similarity_mass=float(len(members)), is_main=main)
    return Clustering(eps_km=50.0, min_samples=2, labels=labels, clusters=[cluster],
                      main_label=0 if main else None, order=list(range(len(labels))))


def paris_result(image_path: str | None = None) -> LocationResult:
    """A result that says Paris: 5 Paris neighbours, one New York outlier, an LMM answer in Rome."""
    neighbours = [
        Neighbour(rank=i, id=f"paris-{i}", lat=PARIS[0] + 0.01 * i, lon=PARIS[1], similarity=0.9 - 0.01 * i,
                  place="Paris, Ile-de-France, France", image_path=image_path)
        for i in range(5)
    ]
    neighbours.append(Neighbour(rank=5, id="nyc", lat=NEW_YORK[0], lon=NEW_YORK[1], similarity=0.5,
                                place="New York, New York, United States"))
    clustering = _clustering([0, 0, 0, 0, 0, -1], PARIS)
    return LocationResult(
        lat=PARIS[0], lon=PARIS[1], place="Paris, France", confidence=0.7, uncertainty_km=25.0,
        verifier="test", preset="offline", neighbours=neighbours,
        clusters_before=clustering, clusters_after=clustering,
        candidates=[
            Candidate(lat=PARIS[0], lon=PARIS[1], source="cluster-centre", score=0.55),
            Candidate(lat=ROME[0], lon=ROME[1], source="lmm:rag-5", score=0.41),
        ],
        lmm_records=[
            LMMRecord(prompt_kind="rag-5", prompt="...", sample=0, raw_answer='{"lat": 41.9, "lon": 12.5}',
                      lat=ROME[0], lon=ROME[1]),
            LMMRecord(prompt_kind="zero-shot", prompt="...", sample=0, raw_answer="Somewhere in Europe",
                      rejection="no coordinate in the answer"),
        ],
    )


# --- accuracy bands and error ------------------------------------------------------------------


def test_accuracy_bands_are_strict():
    assert ACCURACY_BANDS_KM == (1.0, 25.0, 200.0, 750.0, 2500.0)
    assert accuracy_bands(25.0) == {1.0: False, 25.0: False, 200.0: True, 750.0: True, 2500.0: True}
    assert accuracy_bands(0.2) == dict.fromkeys(ACCURACY_BANDS_KM, True)
    assert not any(accuracy_bands(2500.0).values())


def test_error_report_paris_vs_rome_explains_the_failure():
    report = error_report(paris_result(), ROME)
    # Paris-Rome great-circle distance is about 1,105 km.
    assert 1095 < report.error_km < 1115
    assert report.bands == {1.0: False, 25.0: False, 200.0: False, 750.0: False, 2500.0: True}
    assert report.level == "continent"
    assert "within 2500 km" in report.error_line and "not within 1 km, 25 km, 200 km, 750 km" in report.error_line
    text = report.text
    assert "5 nearest neighbours were all in France" in text
    assert "main cluster (5 photos) was 1,1" in text
    assert "lmm:rag-5" in text and "lost verification" in text
    assert "LMM's answers were closer" in text
    assert "did not contain the truth" in text  # 25 km radius vs 1,100 km error


def test_small_error_has_no_explanation():
    report = error_report(paris_result(), (PARIS[0] + 0.05, PARIS[1]))  # about 5.6 km north
    assert 5.0 < report.error_km < 6.2
    assert report.level == "city"
    assert report.explanation == []


def test_explanation_reports_failed_stage_rejected_lmm_and_clues():
    result = paris_result()
    result.lmm_records = [
        LMMRecord(prompt_kind="zero-shot", prompt="...", sample=0, raw_answer="I cannot tell",
                  rejection="no coordinate in the answer"),
        LMMRecord(prompt_kind="rag-5", prompt="...", sample=0, raw_answer=None, error="connection refused"),
    ]
    result.candidates = []
    result.errors = {"segmentation": "weights not found"}
    result.clues = ClueReport(text="Roma", summary="reads Latin text, language: Italian")
    text = error_report(result, ROME).text
    assert "None of the LMM's 2 answers gave a usable coordinate" in text
    assert "no coordinate in the answer (1)" in text and "backend errors (1)" in text
    assert "The segmentation stage failed (weights not found)" in text
    assert "language: Italian" in text


def test_explanation_names_a_closer_losing_cluster_and_scattered_neighbours():
    result = paris_result()
    # Two clusters: the main one in Paris, a smaller one at Rome.
    result.neighbours[3].lat, result.neighbours[3].lon = ROME
    result.neighbours[4].lat, result.neighbours[4].lon = ROME[0] + 0.01, ROME[1]
    result.neighbours[3].place = result.neighbours[4].place = "Rome, Lazio, Italy"
    paris = Cluster(label=0, members=[0, 1, 2], centre_lat=PARIS[0], centre_lon=PARIS[1], radius_km=3.0,
                    support=3, similarity_mass=2.6, is_main=True)
    rome = Cluster(label=1, members=[3, 4], centre_lat=ROME[0], centre_lon=ROME[1], radius_km=1.0,
                   support=2, similarity_mass=1.7)
    result.clusters_after = Clustering(eps_km=50.0, min_samples=2, labels=[0, 0, 0, 1, 1, -1],
                                       clusters=[paris, rome], main_label=0, order=[0, 1, 2, 3, 4, 5])
    text = error_report(result, ROME).text
    assert "spread over France (3), Italy (2)" in text
    assert "2 of the 6 neighbours were within 200 km of the truth (the first at rank 4)" in text
    assert "smaller cluster of 2 photos" in text
    no_cluster = paris_result()
    no_cluster.clusters_after = Clustering(eps_km=50.0, min_samples=2, labels=[-1] * 6, clusters=[],
                                           main_label=None, order=list(range(6)))
    assert "DBSCAN found no cluster" in error_report(no_cluster, ROME).text


def test_place_of_names_the_truth_and_the_main_cluster():
    names = {ROME: "Rome, Italy", PARIS: "Paris, France"}

    def place_of(lat: float, lon: float) -> str | None:
        return names.get((lat, lon))

    text = error_report(paris_result(), ROME, place_of=place_of).text
    assert "true location (in Rome, Italy)" in text
    assert "The main cluster (5 photos in Paris, France) was 1,1" in text


# --- maps ---------------------------------------------------------------------------------------


def _external_refs(doc: str) -> set[str]:
    return set(re.findall(r"<(?:script|link|img)[^>]+(?:src|href)=[\"']?(https?://[^\"' >]+)", doc))


def test_maps_are_offline_and_mark_every_point(tmp_path):
    photo = tmp_path / "gallery.jpg"
    Image.new("RGB", (640, 480), (120, 160, 200)).save(photo)
    result = paris_result(image_path=str(photo))
    n_map = map_document(neighbour_map(result, ROME))
    assert _external_refs(n_map) == set()  # no CDN script, stylesheet or image
    assert "L.map(" in n_map and "leaflet" in n_map.lower()
    assert n_map.count('"className": "gd-neighbour"') == len(result.neighbours)
    assert n_map.count("data:image/jpeg;base64,") == 5  # thumbnails only where the gallery has images
    assert "New York, New York, United States" in n_map  # place text for the image-less neighbour
    assert '"className": "gd-truth"' in n_map
    assert "tile.openstreetmap.org" in n_map  # tiles when online ...
    assert '"Cote d\'Ivoire"' in n_map or "Ivoire" in n_map  # ... and Natural Earth outlines always

    before = map_document(cluster_map(result, result.clusters_before, title="before"))
    assert before.count('"className": "gd-centre gd-main-centre"') == 1
    assert before.count('"className": "gd-neighbour gd-main-member"') == 5

    final = map_document(result_map(result, ROME))
    assert final.count('"className": "gd-prediction"') == 1
    assert final.count('"className": "gd-uncertainty"') == 1
    assert final.count('"className": "gd-candidate gd-lmm"') == 1
    assert '"className": "gd-error-line"' in final
    assert "radius\": 25000.0" in final  # uncertainty circle in metres
    partial = map_document(result_map(result, None, show_prediction=False))
    assert '"className": "gd-prediction"' not in partial and '"className": "gd-truth"' not in partial


def test_map_iframe_escapes_the_document():
    snippet = map_iframe(result_map(paris_result()), height=300, title="final")
    assert "<iframe" in snippet and 'srcdoc="' in snippet and "height:300px" in snippet
    assert "<script" not in snippet  # escaped inside the attribute
    assert "&lt;script" in snippet


def test_a_changed_map_is_a_new_element():
    """Gradio patches same-tag HTML in place; a new map must come in an element with another tag."""
    tag = re.compile(r"^<(gd-map-[0-9a-f]+)[ >]")
    final = map_iframe(result_map(paris_result()), height=300, title="final")
    partial = map_iframe(result_map(paris_result(), show_prediction=False), height=300, title="final")
    assert tag.match(final).group(1) != tag.match(partial).group(1)
    assert final.endswith(f"</{tag.match(final).group(1)}>")


def _unnamed(snippet: str) -> str:
    """A map snippet without folium's random element ids (and the content-keyed tag they change)."""
    return re.sub(r"gd-map-[0-9a-f]{12}|[0-9a-f]{32}", "", snippet)


def test_the_page_and_the_explorer_draw_their_maps_with_one_panel_builder():
    """The web page's renderer and the failure explorer show the same panel of the same result identically."""
    from geodemo.viz.maps import MAP_PANELS, map_panel
    from geodemo.viz.page import MAP_HEIGHT, PageRenderer

    result = paris_result()
    page = PageRenderer(Image.new("RGB", (8, 8)), ROME, 0.5).render(result, final=True)
    for panel, name in (("neighbours", "neighbour_map"), ("before", "before_map"), ("after", "after_map"),
                        ("result", "result_map")):
        assert _unnamed(page[name]) == _unnamed(map_panel(panel, result, ROME, MAP_HEIGHT))
        title, css = MAP_PANELS[panel]
        assert f'class="{css}" title="{title}"' in page[name]


def test_country_outlines_asset_is_small_and_complete():
    assert COUNTRIES_GEOJSON.stat().st_size < 1_000_000
    data = countries_geojson()
    names = {f["properties"]["name"] for f in data["features"]}
    assert len(names) > 170 and {"France", "Brazil", "Japan", "Australia"} <= names
    json.dumps(data)  # plain JSON types


# --- tables -------------------------------------------------------------------------------------


def test_lmm_and_share_rows():
    rows = lmm_rows(paris_result())
    assert rows[0][:2] == ["rag-5", 0] and rows[0][3] == "41.9028, 12.4964"
    assert rows[1][3] == "rejected: no coordinate in the answer"
    seg = SegmentationResult(model="deeplab", class_names=["other", "sky"], shares={"sky": 0.61, "road": 0.2})
    assert share_rows(seg) == [["sky", 61.0], ["road", 20.0]]
    assert share_rows(None) == []


@pytest.mark.parametrize("error_km,level", [(0.5, "street"), (10, "city"), (150, "region"),
                                            (700, "country"), (2000, "continent"), (9000, "beyond continent")])
def test_levels(error_km, level):
    from geodemo.viz.explain import ErrorReport

    assert ErrorReport(error_km=error_km, truth=(0, 0), bands=accuracy_bands(error_km)).level == level
