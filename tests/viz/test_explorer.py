"""The failure explorer: finding explained runs, reading them back, listing and showing failures.

The evaluation folders are made here by the real harness (``evaluate(..., explain=True)``) from
hand-built pipeline results on real JPEGs; the page test drives the real app in Chromium.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from geodemo.data.dataset import GeoDataset, GeoSample
from geodemo.eval import QueryPhoto, evaluate
from geodemo.eval.attribution import CORRECT, attribute
from geodemo.paths import REPO_ROOT
from geodemo.result import Candidate, Cluster, Clustering, LocationResult, Neighbour
from geodemo.viz.explorer import failure_rows, find_runs, open_run, photo_view, summary_markdown

PARIS = (48.8566, 2.3522)
LONDON = (51.5074, -0.1278)
TOKYO = (35.6762, 139.6503)
OSAKA = (34.6937, 135.5023)
SYDNEY = (-33.8688, 151.2093)


def _result(prediction: tuple[float, float], near_in_main: bool) -> LocationResult:
    """Tokyo/Osaka main cluster, one London neighbour (in the main cluster or noise), predicted ``prediction``."""
    pts = [TOKYO, OSAKA, LONDON, SYDNEY]
    nb = [Neighbour(i, f"gallery-{i}", p[0], p[1], 0.9 - 0.1 * i, place=None) for i, p in enumerate(pts)]
    main = [0, 1, 2] if near_in_main else [0, 1]
    labels = [0 if i in main else -1 for i in range(len(pts))]
    cluster = Cluster(0, main, TOKYO[0], TOKYO[1], 400.0, len(main), 2.0, is_main=True)
    clustering = Clustering(50.0, 2, labels, [cluster], 0, main + [i for i in range(len(pts)) if i not in main])
    return LocationResult(
        lat=prediction[0], lon=prediction[1], place=None, confidence=0.4, uncertainty_km=300.0,
        verifier="support:50km", preset="offline", neighbours=nb, clusters_before=clustering,
        clusters_after=clustering,
        candidates=[Candidate(p[0], p[1], "retrieval", score=0.5 - 0.1 * i) for i, p in enumerate(pts)],
        errors={"verification": "aligner unavailable (MissingResourceError: looked in "
                                "/srv/secret/checkpoints/offline-verifier); fell back"},
        timings={"encode": 0.2, "retrieval": 0.01, "rerank": 0.02, "total": 0.3},
    )


class StoredLocator:
    name = "hand-built"

    def __init__(self, results: dict[str, LocationResult]):
        self.results = results

    def locate_batch(self, batch: list[QueryPhoto]) -> list[LocationResult]:
        return [self.results[q.id] for q in batch]

    def predict(self, batch: list[QueryPhoto]) -> np.ndarray:
        return np.array([[r.lat, r.lon] for r in self.locate_batch(batch)])


RESULTS = {
    "outvoted": _result(TOKYO, near_in_main=False),  # re-ranking, 9,700 km
    "verifier-miss": _result(OSAKA, near_in_main=True),  # verification, 9,600 km
    "far-off": _result(SYDNEY, near_in_main=True),  # verification, 17,000 km
    "good": _result(LONDON, near_in_main=True),  # not a failure
}


def make_run(root: Path, name: str = "hand-built-set/offline") -> Path:
    """An explained evaluation folder under ``root``, written by the real harness."""
    images = root.parent / f"{root.name}-images"
    images.mkdir(parents=True, exist_ok=True)
    samples = []
    for i, photo_id in enumerate(RESULTS):
        path = images / f"{photo_id}.jpg"
        Image.new("RGB", (120, 90), (60 * i % 255, 120, 200 - 40 * i)).save(path)
        samples.append(GeoSample(photo_id, PARIS[0], PARIS[1], path, f"g{i}", {}))
    out = root / name
    evaluate(StoredLocator(RESULTS), GeoDataset("hand-built-set", samples), out, progress=False, explain=True)
    return out


def test_explained_runs_are_found_and_named_relative_to_the_runs_folder(tmp_path: Path):
    root = tmp_path / "runs"
    make_run(root)
    (root / "plain" / "density").mkdir(parents=True)
    (root / "plain" / "density" / "predictions.csv").write_text("id\n")  # not explained: not listed
    assert find_runs(root) == ["hand-built-set/offline"]
    assert find_runs(tmp_path / "nowhere") == []
    with pytest.raises(ValueError, match="not an evaluation under the runs folder"):
        open_run("../../etc", root)
    with pytest.raises(ValueError, match="not an explained evaluation"):
        open_run("plain/density", root)


def test_a_run_lists_its_failures_sorted_with_thumbnails(tmp_path: Path):
    root = tmp_path / "runs"
    make_run(root)
    view = open_run("hand-built-set/offline", root)
    causes = {r["id"]: r["cause"] for r in view.attribution.rows}
    assert causes == {i: attribute(r, PARIS).cause for i, r in RESULTS.items()}
    assert causes["outvoted"] == "re-ranking" and causes["good"] == CORRECT
    rows, ids = failure_rows(view)
    assert ids == ["far-off", "outvoted", "verifier-miss"]  # error, largest first; the good photo is no failure
    assert all(r[0].startswith('<img src="data:image/jpeg;base64,') for r in rows)
    assert [r[2] for r in rows] == sorted((r[2] for r in rows), reverse=True)
    assert failure_rows(view, "re-ranking")[1] == ["outvoted"]
    assert failure_rows(view, sort="id")[1] == sorted(ids)
    text = summary_markdown(view)
    assert "**3** of 4 photos" in text and "< 750 km: 25.0%" in text and str(tmp_path) not in text


def test_a_photo_view_shows_every_stage_with_the_truth_and_no_server_path(tmp_path: Path):
    root = tmp_path / "runs"
    make_run(root)
    v = photo_view(open_run("hand-built-set/offline", root), "outvoted")
    assert "Lost at **re-ranking**" in v.explanation and "48.8566, 2.3522" in v.header
    for html_map in (v.neighbour_map, v.before_map, v.after_map, v.result_map):
        assert "gd-truth" in html_map
    assert "gd-main-centre" in v.after_map and "gd-prediction" in v.result_map
    assert len(v.candidate_rows) == 4 and v.photo is not None and v.photo.size[0] > 0
    assert "aligner unavailable" in v.stage_errors and "/srv/secret" not in v.stage_errors + v.explanation
    assert "MissingResourceError" not in v.stage_errors + v.explanation
    with pytest.raises(ValueError, match="no stored result"):
        photo_view(open_run("hand-built-set/offline", root), "not-a-photo")


def test_a_recorded_source_shows_as_a_source_with_its_win_and_probability(tmp_path: Path):
    """A recorded peer's candidate is drawn in its own colour and named in the table, the map and the
    explanation; the curves evaluate.py saved beside the run are what the explorer shows."""
    from geodemo.result import Candidate
    from geodemo.viz.curves import compare_runs
    from geodemo.viz.maps import candidate_colour

    root = tmp_path / "runs"
    out = make_run(root)
    won = _result(TOKYO, near_in_main=False)
    won.candidates.append(Candidate(TOKYO[0], TOKYO[1], "peer-x", details={"recorded": "peer-x", "p_25km": 0.61,
                                                                              "p_750km": 0.9}))
    won.decision = {"calibration": "offline+peer-x", "source": "peer-x", "p_25km": 0.61, "p_750km": 0.9}
    from geodemo.eval.results import ResultStore

    ResultStore(out).save("outvoted", PARIS, won, group="g0")
    v = photo_view(open_run("hand-built-set/offline", root), "outvoted")
    assert v.candidate_rows[0][0] == "peer-x" and v.candidate_rows[0][-2:] == [0.61, 0.9]
    assert "candidate: peer-x" in v.result_map and candidate_colour("peer-x") in v.result_map
    assert "from peer-x" in v.result_map and "gd-recorded" in v.result_map
    assert "came from **peer-x**" in v.explanation and "P(within 25 km) 0.61" in v.explanation
    assert open_run("hand-built-set/offline", root).curves is None
    compare_runs(out.parent, "hand-built-set")
    assert open_run("hand-built-set/offline", root).curves == out.parent / "curves.png"


# ---- the page, in Chromium ------------------------------------------------------------------

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOT_DIR = REPO_ROOT / ".cache" / "screenshots"


@pytest.fixture(scope="module")
def explorer_runs():
    """A runs folder holding one explained evaluation, made before the app is built."""
    root = Path(tempfile.mkdtemp(prefix="geodemo-runs-")) / "runs"
    make_run(root)
    before = os.environ.get("GEODEMO_RUNS")
    os.environ["GEODEMO_RUNS"] = str(root)
    yield root
    if before is None:
        os.environ.pop("GEODEMO_RUNS", None)
    else:
        os.environ["GEODEMO_RUNS"] = before
    shutil.rmtree(root.parent, ignore_errors=True)


@pytest.mark.browser
@pytest.mark.skipif(not CHROMIUM.exists(), reason=f"Debian chromium not found at {CHROMIUM}")
def test_the_explorer_page_opens_a_run_and_shows_a_failures_maps(explorer_runs, app_url):
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=30_000)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                    args=["--headless", "--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1400, "height": 4000})
        page.goto(app_url.rstrip("/") + "/explorer")
        page.click("#explorer-refresh")
        page.click("#explorer-run input")
        page.get_by_role("option", name="hand-built-set/offline", exact=True).click()

        causes = page.locator("#explorer-causes")
        expect(causes).to_contain_text("re-ranking")
        expect(causes).to_contain_text("verification")
        failures = page.locator("#explorer-failures")
        for photo_id in ("far-off", "outvoted", "verifier-miss"):
            expect(failures.get_by_text(photo_id, exact=True).first).to_be_attached()
        assert failures.get_by_text("good", exact=True).count() == 0  # not a failure: not listed
        expect(failures.locator("img[src^='data:image/jpeg']").first).to_be_attached()

        failures.get_by_text("outvoted", exact=True).locator("visible=true").first.click()  # not the sizing copy
        expect(page.locator("#explorer-explanation")).to_contain_text("Lost at re-ranking")
        expect(page.locator("#explorer-header")).to_contain_text("48.8566, 2.3522")
        neighbours = page.frame_locator("#explorer-neighbour-map iframe")
        expect(neighbours.locator("path.gd-neighbour")).to_have_count(4)
        expect(neighbours.locator("path.gd-truth")).to_have_count(1)
        after = page.frame_locator("#explorer-clusters-after iframe")
        expect(after.locator("path.gd-main-centre")).to_have_count(1)
        expect(after.locator("path.gd-main-member")).to_have_count(2)  # London was left out: noise
        result = page.frame_locator("#explorer-result-map iframe")
        expect(result.locator("path.gd-prediction")).to_have_count(1)
        expect(result.locator("path.gd-truth")).to_have_count(1)
        expect(page.locator("#explorer-candidates")).to_contain_text("retrieval")

        text = page.locator("body").inner_text()
        assert str(explorer_runs) not in text and "/srv/secret" not in text and "Traceback" not in text
        SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOT_DIR / "explorer.png"), full_page=True)
        browser.close()
