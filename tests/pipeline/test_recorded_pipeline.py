"""Recorded sources run through the real offline pipeline (the embedded default: no shared folder needed):
recorded LMM answers, recorded candidates of another geolocator, and the decision that names its source."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from geodemo.geo import haversine_km
from geodemo.paths import REPO_ROOT
from geodemo.pipeline import GeoLocator

EXAMPLES = REPO_ROOT / "assets" / "examples"


def _examples() -> list[dict]:
    with open(EXAMPLES / "examples.csv", newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A recorded LMM that is right on the first example and absent for the second, and a peer whose
    prediction for the first example is 2000 km off."""
    rows = _examples()
    folder = tmp_path_factory.mktemp("recorded")
    lmm = folder / "strong-vlm.csv"
    first, second = rows[0], rows[1]
    lmm.write_text("IMG_ID,LAT_pred,LON_pred,location,success,model_name\n"
                   f"{first['image']},{first['lat']},{first['lon']},right there,True,strong-vlm\n"
                   f"{second['image']},0.0,0.0,,False,strong-vlm\n")
    peer = folder / "peer.jsonl"
    peer.write_text(json.dumps({"id": first["image"], "lat": float(first["lat"]) + 18.0, "lon": float(first["lon"])})
                    + "\n")
    return {"lmm": lmm, "peer": peer, "first": first, "second": second}


@pytest.fixture(scope="module")
def locator(files):
    return GeoLocator.from_preset("offline", recorded={"lmm": {"strong-vlm": str(files["lmm"])},
                                                      "candidates": {"peer": str(files["peer"])}})


def test_recorded_answers_and_candidates_join_as_named_sources(locator, files):
    first = files["first"]
    r = locator.locate(str(EXAMPLES / first["image"]))
    recorded = [x for x in r.lmm_records if x.backend == "recorded"]
    assert len(recorded) == 1 and recorded[0].prompt == "recorded: strong-vlm" and recorded[0].model == "strong-vlm"
    sources = {c.source for c in r.candidates}
    assert "peer" in sources and "lmm:recorded" in sources
    lmm_c = next(c for c in r.candidates if c.source == "lmm:recorded")
    assert lmm_c.details["model"] == "strong-vlm"
    assert r.decision["source"] in {"strong-vlm", "peer", "retrieval", "cluster-centre", "gps-gallery"}
    assert r.decision.get("calibration") or r.decision.get("rule")
    assert "offline+peer+strong-vlm" in r.verifier


def test_a_photo_the_file_lacks_has_no_lmm_answer_said_plainly(locator, files):
    second = files["second"]
    r = locator.locate(str(EXAMPLES / second["image"]))
    assert not [x for x in r.lmm_records if x.accepted]
    assert "strong-vlm has no answer for this photo" in r.errors["lmm"]
    assert "success=False" in r.errors["lmm"]
    assert "candidates.recorded" in r.errors  # the peer has no row for it either
    assert np.isfinite(r.lat) and (r.lat, r.lon) != (0.0, 0.0)


def test_bytes_have_no_file_name_to_look_answers_up_by(locator, files):
    data = (EXAMPLES / files["first"]["image"]).read_bytes()
    r = locator.locate(data)
    assert "no file name" in r.errors["lmm"]


def test_a_preset_without_the_recorded_stage_refuses_recorded_candidates(files):
    with pytest.raises(ValueError, match="candidates.recorded"):
        GeoLocator.from_preset("g3-offline", recorded={"candidates": {"peer": str(files["peer"])}})


def test_a_recorded_file_that_cannot_be_read_fails_before_any_photo(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("foo,bar\n1,2\n")
    with pytest.raises(ValueError, match="no recorded-predictions format"):
        GeoLocator.from_preset("offline", recorded={"candidates": {"x": str(bad)}})


def test_the_cli_takes_recorded_sources_and_says_which_source_decided(files):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    first = files["first"]
    out = subprocess.run([sys.executable, "-m", "geodemo", "locate", str(EXAMPLES / first["image"]),
                          "--recorded-lmm", f"strong-vlm={files['lmm']}", "--json"],
                         cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert any(c["source"] == "lmm:recorded" for c in result["candidates"])
    assert result["decision"]["source"]
    bad = subprocess.run([sys.executable, "-m", "geodemo", "locate", str(EXAMPLES / first["image"]),
                          "--recorded-candidates", "peer=/nonexistent/peer.csv"],
                         cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert bad.returncode == 2 and "not found" in bad.stderr and "Traceback" not in bad.stderr


def test_with_the_shipped_gemini_model_a_right_answer_wins(files):
    """The decision model shipped for offline+gemini-2.0-flash trusts a recorded answer under that name."""
    from geodemo.pipeline import decision

    if decision.load_decision("offline+gemini-2.0-flash") is None:
        pytest.skip("no decision model fitted for offline+gemini-2.0-flash")
    first = files["first"]
    from geodemo.eval import QueryPhoto

    loc = GeoLocator.from_preset("offline", recorded={"lmm": {"gemini-2.0-flash": str(files["lmm"])}})
    # the photo and its photographer out of the gallery, as for a new user's photo
    r = loc.locate_query(QueryPhoto(first["image"], str(EXAMPLES / first["image"]), first["photographer"]))
    assert r.decision["calibration"] == "offline+gemini-2.0-flash"
    truth = np.array([[float(first["lat"]), float(first["lon"])]])
    assert r.decision["source"] == "gemini-2.0-flash"
    assert haversine_km(np.array([[r.lat, r.lon]]), truth)[0] < 1.0
    assert 0.0 < r.confidence < 1.0
