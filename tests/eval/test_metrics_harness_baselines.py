"""Metrics on hand-computed cases, the resumable harness, the baselines and the evaluate script."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from geodemo.data import GeoDataset, GeoSample
from geodemo.eval import (
    QueryPhoto,
    accuracy_table,
    create_predictor,
    distances_km,
    evaluate,
    geoscore,
    list_predictors,
    markdown_table,
    published_for,
)
from geodemo.eval.baselines import DensityPrior, Gallery, RandomGallery, geoclip_gallery
from geodemo.eval.metrics import MAX_ERROR_KM, accuracy_at
from geodemo.geo import EARTH_RADIUS_KM, destination_point, haversine_km
from geodemo.paths import REPO_ROOT

# ---- metrics ---------------------------------------------------------------------------------


def test_accuracy_is_strictly_below_the_threshold():
    assert accuracy_at(np.array([1.0, 25.0, 200.0]), 1.0) == 0.0
    assert accuracy_at(np.array([0.999, 1.0]), 1.0) == 0.5
    assert math.isnan(accuracy_at(np.array([]), 1.0))


def test_accuracy_table_on_a_hand_computed_case():
    truth = np.tile([[40.0, -3.0]], (8, 1))
    errors = [0.5, 10.0, 100.0, 500.0, 2000.0, 3000.0, 6000.0]
    pred = np.vstack([destination_point(truth[0], 37.0 * i, e) for i, e in enumerate(errors)] + [[np.nan, np.nan]])
    np.testing.assert_allclose(haversine_km(pred[:7], truth[:7]), errors, rtol=1e-9)
    table = accuracy_table(pred, truth)
    assert table["n"] == 8 and table["n_failed"] == 1
    assert [table[k] for k in ("acc@1", "acc@25", "acc@200", "acc@750", "acc@2500")] == [
        1 / 8, 2 / 8, 3 / 8, 4 / 8, 5 / 8
    ]
    assert table["median_km"] == pytest.approx(1250.0)  # between the 4th (500) and 5th (2000) of 8
    half_circumference = math.pi * EARTH_RADIUS_KM  # a photo without an answer costs the worst error
    assert MAX_ERROR_KM == pytest.approx(half_circumference)
    assert table["mean_km"] == pytest.approx((sum(errors) + half_circumference) / 8)
    expected_score = np.mean([5000 * math.exp(-e / 1492.7) for e in errors + [half_circumference]])
    assert table["geoscore"] == pytest.approx(expected_score)


def test_geoscore_and_distance_checks():
    np.testing.assert_allclose(geoscore([0.0, 1492.7]), [5000.0, 5000.0 / math.e])
    with pytest.raises(ValueError, match="2 predictions for 1"):
        distances_km(np.zeros((2, 2)), np.zeros((1, 2)))
    with pytest.raises(ValueError, match="ground truth"):
        distances_km(np.zeros((1, 2)), np.array([[np.nan, 0.0]]))
    geodesic = distances_km([[0.0, 1.0]], [[0.0, 0.0]], method="geodesic")
    assert geodesic[0] == pytest.approx(111.3195, abs=1e-3)


def test_published_rows_and_table():
    g3 = next(r for r in published_for("im2gps3k-dev") if r.method == "G3")
    assert g3.acc == (16.65, 40.94, 55.56, 71.24, 84.68)
    dual = next(r for r in published_for("im2gps3k") if r.method == "DualGeo")
    assert dual.acc == (17.25, 41.47, 55.76, 71.71, 85.05)
    geoclip = next(r for r in published_for("im2gps3k") if r.method == "GeoCLIP")
    assert geoclip.acc == (14.11, 34.47, 50.65, 69.67, 83.82)
    methods = {r.method.split(" ")[0] for r in published_for("im2gps3k")}
    assert methods == {"G3", "DualGeo", "GeoCLIP", "PIGEON", "Img2Loc"}
    assert published_for("osv5m-sample") == []
    ours = {"n": 4, "acc@1": 0.25, "acc@25": 0.5, "acc@200": 0.5, "acc@750": 0.75, "acc@2500": 1.0,
            "median_km": 12.5, "geoscore": 4000.0}
    table = markdown_table({"mine": ours}, benchmark="im2gps3k-dev")
    assert "| **mine** (ours) | 4 | 25.00 | 50.00 | 50.00 | 75.00 | 100.00 | 12.5 | 4,000 |" in table
    assert "| G3, NeurIPS 2024 | paper (im2gps3k) | 16.65 | 40.94 | 55.56 | 71.24 | 84.68 |" in table
    assert "G3" not in markdown_table({"mine": ours}, benchmark="osv5m-sample")


# ---- harness ---------------------------------------------------------------------------------


def _jpeg(path: Path, color) -> None:
    buf = io.BytesIO()
    Image.new("RGB", (32, 24), color).save(buf, format="JPEG")
    path.write_bytes(buf.getvalue())


@pytest.fixture
def tiny_set(tmp_path: Path) -> GeoDataset:
    images = tmp_path / "images"
    images.mkdir()
    samples = []
    for i in range(8):
        path = images / f"p{i}.jpg"
        _jpeg(path, (30 * i, 10, 200))
        samples.append(GeoSample(f"p{i}", 10.0 * i - 30, 20.0 * i - 70, path, f"g{i % 3}", {}))
    (images / "p5.jpg").write_text("broken")  # unreadable: reported, not scored
    return GeoDataset("tiny", samples)


class Recorder:
    """Answers latitude = red value of the first pixel / 10 (so it uses the pixels) and records ids."""

    name = "recorder"

    def __init__(self, fail_on: str | None = None):
        self.seen: list[str] = []
        self.fail_on = fail_on

    def predict(self, batch: list[QueryPhoto]) -> np.ndarray:
        if any(q.id == self.fail_on for q in batch):
            raise RuntimeError(f"cannot place {self.fail_on}")
        self.seen.extend(q.id for q in batch)
        return np.array([[float(np.asarray(q.image)[0, 0, 0]) / 10.0, 0.0] for q in batch])


def test_query_photos_carry_no_ground_truth():
    assert {f.name for f in dataclasses.fields(QueryPhoto)} == {"id", "image", "group"}


def test_harness_writes_csv_summary_table_and_resumes(tiny_set: GeoDataset, tmp_path: Path):
    out = tmp_path / "run"
    first = Recorder()
    report = evaluate(first, tiny_set, out, limit=4, batch_size=3, progress=False)
    assert first.seen == ["p0", "p1", "p2", "p3"]
    assert report.metrics["n"] == 4 and report.n_photos == 4

    second = Recorder(fail_on="p6")
    report = evaluate(second, tiny_set, out, batch_size=3, progress=False)
    assert second.seen == ["p4", "p7"]  # p0-p3 resumed from the CSV, p5 unreadable, p6 failed alone
    assert report.extra["resumed_photos"] == 4 and report.n_unreadable == 1
    assert report.metrics["n"] == 7 and report.metrics["n_failed"] == 1

    with open(report.csv_path, newline="") as fh:
        rows = {r["id"]: r for r in csv.DictReader(fh)}
    assert set(rows) == {f"p{i}" for i in range(8)}
    assert "unreadable image" in rows["p5"]["error"] and rows["p5"]["pred_lat"] == ""
    assert "cannot place p6" in rows["p6"]["error"]
    lat = float(rows["p2"]["pred_lat"])
    err = haversine_km(np.array([lat, 0.0]), np.array([-10.0, -30.0]))
    assert float(rows["p2"]["error_km"]) == pytest.approx(float(err), abs=1e-3)

    summary = json.loads(report.summary_path.read_text())
    assert summary["metrics"]["n"] == 7 and summary["predictor"] == "recorder"
    assert "recorder" in report.table_path.read_text()

    third = Recorder()
    evaluate(third, tiny_set, out, progress=False)
    assert third.seen == []  # everything is already in the CSV
    fresh = Recorder()
    evaluate(fresh, tiny_set, out, progress=False, resume=False)
    assert len(fresh.seen) == 7


# ---- baselines -------------------------------------------------------------------------------


def _gallery() -> Gallery:
    paris = [[48.85, 2.35], [48.9, 2.3], [48.8, 2.4], [49.0, 2.5], [48.7, 2.2]]
    new_york = [[40.7, -74.0], [40.8, -73.9], [40.6, -74.1]]
    coords = paris + new_york + [[35.7, 139.7]]
    groups = ["p", "p", "p", "p", "q"] + ["n", "n", "m"] + ["t"]
    return Gallery("hand", np.array(coords), [f"i{k}" for k in range(9)], groups)


def test_density_prior_answers_the_densest_place_leaving_the_photographer_out():
    prior = DensityPrior(_gallery(), radius_km=200)
    out = prior.predict([QueryPhoto("x", None, None), QueryPhoto("i0", None, "p"), QueryPhoto("i5", None, "n")])
    assert haversine_km(out[0], np.array([48.85, 2.35])) < 50  # Paris: 5 photos within 200 km
    assert haversine_km(out[1], np.array([40.7, -74.0])) < 50  # without photographer p, New York (3 > 1)
    assert haversine_km(out[2], np.array([48.85, 2.35])) < 50
    assert tuple(out[2]) != (40.7, -74.0)


def test_random_gallery_is_seeded_per_photo_and_never_answers_itself():
    gallery = _gallery()
    rnd = RandomGallery(gallery, seed=3)
    queries = [QueryPhoto(f"i{k}", None, g) for k, g in enumerate(gallery.groups)]
    a = rnd.predict(queries)
    assert np.array_equal(a, RandomGallery(gallery, seed=3).predict(queries[::-1])[::-1])  # order-free
    for q, p in zip(queries, a, strict=True):
        banned = gallery.coords[gallery.excluded(q)]
        assert not any(np.allclose(p, b) for b in banned)
    many = RandomGallery(gallery, seed=0).predict([QueryPhoto(f"z{k}", None, None) for k in range(200)])
    assert len({tuple(p) for p in many}) == 9  # every gallery point gets drawn


def test_geoclip_gallery_is_the_100k_training_sample():
    gallery = geoclip_gallery()
    assert len(gallery) == 100_000
    assert np.abs(gallery.coords[:, 0]).max() <= 90


def test_predictor_registry():
    assert {"density-prior", "random-gallery", "geolocator"} <= set(list_predictors())
    with pytest.raises(ValueError, match="unknown predictor 'nope'; known predictors: density-prior"):
        create_predictor("nope")


# ---- the script ------------------------------------------------------------------------------


def test_evaluate_script_end_to_end(shared: Path, tmp_path: Path):
    out = tmp_path / "osv"
    cmd = [sys.executable, str(REPO_ROOT / "scripts" / "evaluate.py"), "--benchmark", "osv5m-sample",
           "--predictor", "random-gallery", "--limit", "10", "--out", str(out), "--no-progress"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=REPO_ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "| **random-gallery** (ours) | 10 |" in done.stdout
    summary = json.loads((out / "summary.json").read_text())
    assert summary["metrics"]["n"] == 10 and summary["benchmark"] == "osv5m-sample"
    with open(out / "predictions.csv", newline="") as fh:
        assert len(list(csv.DictReader(fh))) == 10
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=REPO_ROOT)
    assert again.returncode == 0 and "(10 resumed)" in again.stdout
