"""Maps on the real folium with Leaflet served from the package: no CDN, and they draw offline."""

from __future__ import annotations

import re
from pathlib import Path

import folium
import pytest

from geodemo.viz.basemap import LEAFLET_DIR, base_map, fit_points, map_document

CHROMIUM = Path("/usr/bin/chromium")


def _doc() -> str:
    m = base_map(tiles=False)
    folium.CircleMarker([48.85, 2.35], radius=6, color="#c00").add_to(m)
    fit_points(m, [(48.85, 2.35), (40.7, -74.0)])
    return map_document(m)


def test_leaflet_is_inlined_from_the_package_and_nothing_is_loaded_from_a_cdn():
    doc = _doc()
    assert (LEAFLET_DIR / "LICENSE").is_file()
    assert "Leaflet 1.9.3" in doc and doc.index("Leaflet 1.9.3") < doc.index("L.map(")
    loads = re.findall(r"<(?:script|link)[^>]+(?:src|href)=\"([^\"]+)", doc)
    assert loads == []  # no script or stylesheet fetched: no jQuery, Bootstrap, icon fonts or CDN Leaflet
    assert "cdn.jsdelivr" not in doc and "sourceMappingURL" not in doc


@pytest.mark.browser
@pytest.mark.skipif(not CHROMIUM.exists(), reason=f"Debian chromium not found at {CHROMIUM} (apt install chromium)")
def test_a_map_draws_in_a_browser_without_network(tmp_path):
    from playwright.sync_api import sync_playwright

    page_file = tmp_path / "map.html"
    page_file.write_text(_doc(), encoding="utf-8")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM))
        page = browser.new_page()
        errors, requests = [], []
        page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
        page.on("request", lambda r: requests.append(r.url))
        page.goto(page_file.as_uri())
        page.wait_for_function("typeof L === 'object'")
        page.wait_for_timeout(500)
        outlines = page.locator(".leaflet-outlines-pane path").count()
        markers = page.locator(".leaflet-overlay-pane path.leaflet-interactive").count()
        browser.close()
    assert errors == [] and [u for u in requests if not u.startswith("file:")] == []
    assert outlines > 100 and markers == 1  # Natural Earth countries and the marker
