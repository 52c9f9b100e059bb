"""Attribution of failures to stages: every cause on hand-built results, one cause per photo, whole runs.

Distances are real great-circle distances between real cities; the truth is Paris. Near points
(< 750 km): London (344 km), Brussels (264 km). Far ones: Tokyo, Sydney, New York.
"""

from __future__ import annotations

import csv
import math
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from geodemo.data.dataset import GeoDataset, GeoSample
from geodemo.eval import QueryPhoto, evaluate
from geodemo.eval.attribution import (
    CAUSES,
    CORRECT,
    FAILURE_KM,
    attribute,
    attribute_run,
    cause_table_markdown,
    read_attribution,
)
from geodemo.eval.results import ResultStore
from geodemo.geo import haversine_km
from geodemo.paths import REPO_ROOT
from geodemo.result import Candidate, Cluster, Clustering, LMMRecord, LocationResult, Neighbour

PARIS = (48.8566, 2.3522)
LONDON = (51.5074, -0.1278)
BRUSSELS = (50.8503, 4.3517)
TOKYO = (35.6762, 139.6503)
OSAKA = (34.6937, 135.5023)
SYDNEY = (-33.8688, 151.2093)
NEW_YORK = (40.7128, -74.0060)


def _clustering(points: list[tuple[float, float]], main: list[int]) -> Clustering:
    """One main cluster of the ``main`` neighbour indices (centre = their first point), the rest noise."""
    labels = [0 if i in main else -1 for i in range(len(points))]
    centre = points[main[0]] if main else points[0]
    cluster = Cluster(0, list(main), centre[0], centre[1], 50.0, len(main), float(len(main)), is_main=True)
    order = list(main) + [i for i in range(len(points)) if i not in main]
    return Clustering(50.0, 2, labels, [cluster], 0, order)


def make_result(
    prediction: tuple[float, float] | None,
    neighbours: list[tuple[float, float]] = (),
    main: list[int] | None = None,
    candidates: list[tuple[tuple[float, float], str]] | None = None,
    lmm: list[tuple[float, float] | str] | None = None,
    errors: dict[str, str] | None = None,
) -> LocationResult:
    """A result as the pipeline records it. ``candidates`` default to every neighbour (as the offline
    preset hands them on); ``lmm`` items are a coordinate (parsed), "rejected" or "error"."""
    nb = [Neighbour(i, f"n{i}", p[0], p[1], 0.9 - 0.01 * i) for i, p in enumerate(neighbours)]
    cands = [Candidate(p[0], p[1], "retrieval") for p in neighbours] if candidates is None else [
        Candidate(p[0], p[1], source) for p, source in candidates]
    records = []
    for k, item in enumerate(lmm or []):
        if item == "rejected":
            records.append(LMMRecord("zero-shot", "where?", k, "somewhere nice", rejection="no coordinate found"))
        elif item == "error":
            records.append(LMMRecord("zero-shot", "where?", k, None, error="the model server did not answer"))
        else:
            records.append(LMMRecord("rag-5", "where?", k, f"{item[0]}, {item[1]}", item[0], item[1]))
            cands.append(Candidate(item[0], item[1], "lmm:rag-5"))
    clustering = _clustering(list(neighbours), main if main is not None else list(range(len(neighbours)))) \
        if neighbours else None
    lat, lon = prediction if prediction is not None else (math.nan, math.nan)
    return LocationResult(
        lat=lat, lon=lon, place=None, confidence=0.5, uncertainty_km=100.0, verifier="support:50km",
        preset="test", candidates=cands, neighbours=nb, clusters_before=clustering, clusters_after=clustering,
        lmm_records=records, errors=dict(errors or {}), timings={"retrieval": 0.01, "total": 0.02},
    )


def km(a: tuple[float, float], b: tuple[float, float]) -> float:
    return float(haversine_km(np.array(a), np.array(b)))


def test_the_fixture_cities_are_where_the_cases_need_them():
    assert km(PARIS, LONDON) < FAILURE_KM and km(PARIS, BRUSSELS) < FAILURE_KM
    assert min(km(PARIS, p) for p in (TOKYO, OSAKA, SYDNEY, NEW_YORK)) > 5000


# One hand-built photo per cause (and a second route to some), each with the cause it must get.
CASES = {
    "near prediction": (make_result(LONDON, [LONDON, TOKYO]), CORRECT),
    "no result recorded": (None, "stage error"),
    "no final point": (make_result(None, errors={"retrieval": "the gallery could not be read"}), "stage error"),
    "LMM backend failed": (make_result(TOKYO, [LONDON, BRUSSELS, TOKYO], main=[0, 1], lmm=["error", "error"]),
                           "stage error"),
    "nothing near": (make_result(TOKYO, [TOKYO, OSAKA, SYDNEY], candidates=[(TOKYO, "retrieval"),
                                                                             (NEW_YORK, "gps-gallery")]), "retrieval"),
    "near neighbour outvoted": (make_result(TOKYO, [TOKYO, OSAKA, LONDON], main=[0, 1]), "re-ranking"),
    "LMM unparsed": (make_result(TOKYO, [LONDON, BRUSSELS, TOKYO], main=[0, 1], lmm=["rejected", "rejected"]),
                     "unparsed"),
    "LMM far": (make_result(TOKYO, [LONDON, BRUSSELS, TOKYO], main=[0, 1], lmm=[SYDNEY, "rejected"]), "lmm"),
    "candidate list cut": (make_result(TOKYO, [LONDON, BRUSSELS, TOKYO], main=[0, 1],
                                       candidates=[(TOKYO, "retrieval"), (OSAKA, "cluster-centre")]), "candidates"),
    "verifier chose far": (make_result(TOKYO, [LONDON, BRUSSELS, TOKYO, OSAKA], main=[0, 1]), "verification"),
    "LMM recovered what retrieval missed": (make_result(TOKYO, [TOKYO, OSAKA], lmm=[BRUSSELS]), "verification"),
    "GPS gallery recovered what clustering dropped": (
        make_result(TOKYO, [TOKYO, OSAKA, LONDON], main=[0, 1],
                    candidates=[(TOKYO, "retrieval"), (BRUSSELS, "gps-gallery")]), "verification"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_each_hand_built_failure_gets_its_cause(name: str):
    result, expected = CASES[name]
    a = attribute(result, PARIS)
    assert a.cause == expected, (name, a.detail)
    assert a.detail and a.threshold_km == FAILURE_KM
    assert a.failed is (expected != CORRECT)


def test_every_cause_is_reachable():
    assert {expected for _, expected in CASES.values()} == set(CAUSES)


def test_the_oracle_and_the_details_carry_the_distances():
    a = attribute(CASES["verifier chose far"][0], PARIS)
    assert a.best_candidate_km == pytest.approx(km(PARIS, BRUSSELS), rel=1e-6)
    assert a.best_candidate_source == "retrieval" and a.best_neighbour_rank == 2
    assert a.error_km == pytest.approx(km(PARIS, TOKYO), rel=1e-6)
    assert f"{km(PARIS, BRUSSELS):,.0f} km" in a.detail
    failed = attribute(CASES["no final point"][0], PARIS)
    assert failed.stage == "retrieval" and math.isinf(failed.error_km) and math.isnan(failed.best_candidate_km)
    rerank = attribute(CASES["near neighbour outvoted"][0], PARIS)
    assert "rank 3" in rerank.detail and "main cluster (2 photos" in rerank.detail


def test_the_threshold_is_configurable():
    result = make_result(LONDON, [LONDON, TOKYO])
    assert attribute(result, PARIS).cause == CORRECT
    tight = attribute(result, PARIS, threshold_km=100.0)  # London is 344 km away: a failure now
    assert tight.cause == "retrieval" and tight.threshold_km == 100.0 and "100 km" in tight.detail


def test_no_photo_is_left_without_exactly_one_cause():
    rng = random.Random(7)
    places = [PARIS, LONDON, BRUSSELS, TOKYO, OSAKA, SYDNEY, NEW_YORK, (0.0, 0.0), (-89.0, 179.0)]
    seen = set()
    for _ in range(600):
        nb = [rng.choice(places) for _ in range(rng.randint(0, 6))]
        main = sorted(rng.sample(range(len(nb)), rng.randint(0, len(nb)))) if nb else []
        lmm = [rng.choice([*places, "rejected", "error"]) for _ in range(rng.randint(0, 3))]
        cands = None if rng.random() < 0.5 else [(rng.choice(places), rng.choice(["retrieval", "gps-gallery",
                                                                                     "cluster-centre"]))]
        pred = None if rng.random() < 0.05 else rng.choice(places)
        errors = {"lmm": "failed"} if rng.random() < 0.1 else {}
        result = make_result(pred, nb, main=main, candidates=cands, lmm=lmm, errors=errors)
        a = attribute(result, PARIS)
        assert a.cause in CAUSES
        assert (a.cause == CORRECT) is (pred is not None and km(pred, PARIS) < FAILURE_KM)
        seen.add(a.cause)
    assert seen == set(CAUSES)


# ---- whole runs: stored results, attribution.csv, the cause table ---------------------------


class HandBuiltLocator:
    """A pipeline stand-in whose results are the hand-built ones above (by photo id)."""

    name = "hand-built"

    def __init__(self, results: dict[str, LocationResult | None]):
        self.results = results
        self.calls: list[str] = []

    def locate_batch(self, batch: list[QueryPhoto]) -> list[LocationResult]:
        out = []
        self.calls.extend(q.id for q in batch)
        for q in batch:
            if self.results[q.id] is None:
                raise RuntimeError("the encoder crashed")
            out.append(self.results[q.id])
        return out

    def predict(self, batch: list[QueryPhoto]) -> np.ndarray:
        return np.array([[r.lat, r.lon] for r in self.locate_batch(batch)])


def _dataset(tmp_path: Path, ids: list[str]) -> GeoDataset:
    images = tmp_path / "images"
    images.mkdir()
    samples = []
    for i, photo_id in enumerate(ids):
        path = images / f"{i}.jpg"
        Image.new("RGB", (40, 30), (20 * i % 255, 90, 160)).save(path)
        samples.append(GeoSample(photo_id, PARIS[0], PARIS[1], path, f"g{i}", {}))
    return GeoDataset("hand-built", samples)


def test_an_explained_run_stores_results_writes_attribution_and_resumes(tmp_path: Path):
    ids = {name.replace(" ", "_") if i % 2 else f"photo {i}/{name}": CASES[name][0] for i, name in enumerate(CASES)}
    dataset = _dataset(tmp_path, list(ids))
    out = tmp_path / "run"
    report = evaluate(HandBuiltLocator(ids), dataset, out, batch_size=4, progress=False, explain=True)
    assert report.metrics["n"] == len(ids)

    store = ResultStore(out)
    for photo_id, result in ids.items():
        stored = store.load(photo_id)
        assert stored is not None and stored.truth == PARIS and stored.thumbnail is not None
        assert (stored.result is None) is (result is None)
        if result is not None:
            assert stored.result.to_dict() == result.to_dict()
    assert not list(store.dir.glob("*.tmp"))  # written atomically: no temporary file left

    run = attribute_run(out)
    expected = {photo_id: attribute(result, PARIS).cause for photo_id, result in ids.items()}
    assert {r["id"]: r["cause"] for r in run.rows} == expected
    with open(out / "attribution.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["id"] for r in rows] == list(ids)
    assert {"error_km", "cause", "best_candidate_km", "time_retrieval_s", "time_total_s"} <= set(rows[0])
    assert read_attribution(out).counts == run.counts
    table = cause_table_markdown(run)
    assert f"| **all photos** | {len(ids)} |" in table and "| re-ranking | 1 |" in table

    # Resuming: nothing is located again; a photo whose result file is gone is.
    store.json_path(next(iter(ids))).unlink()
    again = HandBuiltLocator(ids)
    evaluate(again, dataset, out, progress=False, explain=True)
    assert again.calls == [next(iter(ids))] and store.has(next(iter(ids)))
    # ... and so is a photo whose result file was left damaged (a full disk, a copy cut short)
    second = list(ids)[1]
    store.json_path(second).write_text(store.json_path(second).read_text()[:40])
    again = HandBuiltLocator(ids)
    evaluate(again, dataset, out, progress=False, explain=True)
    assert again.calls == [second] and store.load(second) is not None


def test_explaining_needs_a_predictor_that_keeps_its_results(tmp_path: Path):
    class PointsOnly:
        name = "points-only"

        def predict(self, batch):
            return np.zeros((len(batch), 2))

    with pytest.raises(ValueError, match="cannot be explained"):
        evaluate(PointsOnly(), _dataset(tmp_path, ["a"]), tmp_path / "run", progress=False, explain=True)


@pytest.mark.slow  # the offline pipeline over the OSV sample: about 20 s
@pytest.mark.shared
def test_evaluate_explain_on_the_osv_sample(shared: Path, tmp_path: Path):
    out = tmp_path / "osv"
    cmd = [sys.executable, str(REPO_ROOT / "scripts" / "evaluate.py"), "--benchmark", "osv5m-sample",
           "--predictor", "geolocator", "--preset", "offline", "--limit", "6", "--explain", "--out", str(out),
           "--no-progress"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=REPO_ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "| **geolocator:offline** (ours) | 6 |" in done.stdout  # the accuracy table
    assert "Where accuracy is lost" in done.stdout and "| **all photos** | 6 |" in done.stdout
    with open(out / "attribution.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 6 and all(r["cause"] in CAUSES for r in rows)
    with open(out / "predictions.csv", newline="") as fh:
        errors = {r["id"]: float(r["error_km"]) for r in csv.DictReader(fh)}
    for r in rows:  # the attribution's error is the harness's error, and the cause agrees with it
        assert float(r["error_km"]) == pytest.approx(errors[r["id"]], abs=0.01)
        assert (r["cause"] == CORRECT) is (errors[r["id"]] < FAILURE_KM)
        assert float(r["time_total_s"]) > 0
    assert len(list((out / "results").glob("*.json"))) == 6

    rerun = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=REPO_ROOT)
    assert rerun.returncode == 0 and "(6 resumed)" in rerun.stdout and "| **all photos** | 6 |" in rerun.stdout

    density = subprocess.run([*cmd[:4], "--predictor", "density-prior", "--explain", "--limit", "3", "--out", str(tmp_path / "d"),
                              "--no-progress"], capture_output=True, text=True, timeout=600, cwd=REPO_ROOT)
    assert density.returncode == 2 and "cannot be explained" in density.stderr and "Traceback" not in density.stderr


# ---- the single-photo explanation uses the same words ----------------------------------------


def test_the_page_explanation_opens_with_the_cause_of_the_table():
    from geodemo.viz import error_report

    for name in ("near neighbour outvoted", "LMM far", "verifier chose far", "nothing near"):
        result, expected = CASES[name]
        report = error_report(result, PARIS)
        assert report.attribution == attribute(result, PARIS)
        assert report.explanation[0] == f"Lost at **{expected}** (failures from 750 km on): {report.attribution.detail}"
    between = make_result(BRUSSELS, [BRUSSELS])  # 264 km: explained (>= 200 km) but not a failure
    report = error_report(between, PARIS)
    assert report.attribution.cause == CORRECT
    assert report.explanation[0].startswith("Not a failure at the benchmark's 750 km threshold")
