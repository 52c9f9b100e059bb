"""The offline GeoLocator on real dev photos: complete results, stage order, exclusions, failures."""

from __future__ import annotations

import json
import math
import time

import numpy as np
import pytest

from geodemo.eval import QueryPhoto
from geodemo.paths import REPO_ROOT
from geodemo.pipeline import STAGES, GeoLocator, LocateOptions, list_presets, load_preset

pytestmark = pytest.mark.shared


@pytest.fixture(scope="module")
def dev(shared):
    from geodemo.data import load_benchmark

    return load_benchmark("im2gps3k-dev")


@pytest.fixture(scope="module")
def locator(shared):
    # clues (Tesseract) are exercised by the CLI test; here they would only add seconds per photo
    return GeoLocator.from_preset("offline", clues={"enabled": False}, gallery={"progress": False}).warmup()


def test_presets_are_configs():
    assert {"g3", "dualgeo", "offline"} <= set(list_presets())
    for name in ("g3", "dualgeo", "offline"):
        cfg = load_preset(name)
        assert (cfg.get("encoder") or cfg["descriptor"]["encoder"]) and cfg["stages"]
        assert cfg["gallery"]["index"]["kind"] in ("flat", "hnsw", "ivfpq")
        assert cfg["lmm"]["enabled"] is (name != "offline")
    assert load_preset("offline", rerank={"eps_km": 7})["rerank"] == {**load_preset("offline")["rerank"], "eps_km": 7}
    with pytest.raises(KeyError, match="offline"):
        load_preset("nope")


def test_offline_locate_returns_a_complete_result(locator, dev):
    sample = dev.samples[3]
    result = locator.locate(sample.image_path)
    assert math.isfinite(result.lat) and math.isfinite(result.lon)
    assert result.place and "," in result.place
    assert result.preset == "offline"
    assert 0.0 <= result.confidence <= 1.0 and result.uncertainty_km > 0
    # without exclusions the photo itself is in the gallery and comes first
    assert result.neighbours[0].id == sample.id and result.neighbours[0].similarity > 0.99
    sims = [n.similarity for n in result.neighbours]
    assert len(sims) == 20 and sims == sorted(sims, reverse=True)
    assert result.clusters_before.order == list(range(20))
    assert sorted(result.clusters_after.order) == list(range(20))
    assert result.clusters_after.main is not None
    sources = {c.source for c in result.candidates}
    assert {"retrieval", "cluster-centre"} <= sources
    assert all(c.score is not None and "verifier_score" in c.details for c in result.candidates)
    # the photo itself is its own reciprocal neighbour: the match is accepted over the verifier's pick
    assert result.match is not None and result.match.id == sample.id and result.match.accepted
    assert result.verifier == "reciprocal-match(k=3)"
    assert (result.lat, result.lon) == pytest.approx((sample.lat, sample.lon))
    assert result.segmentation is not None and result.segmentation.shares
    assert set(result.timings) >= {"load", "segment", "encode", "retrieve", "rerank.dbscan", "decide.calibrated"}
    assert result.stages == [s for s in load_preset("offline")["stages"] if s in result.stages]
    data = json.loads(result.to_json())
    assert data["lat"] == result.lat and len(data["neighbours"]) == 20 and "label_map" not in data["segmentation"]


def test_iter_locate_yields_stages_in_pipeline_order(locator, dev):
    stages = [name for name, _ in locator.iter_locate(dev.samples[5].image_path)]
    assert stages == [s for s in STAGES if s in stages] and stages[-1] == "decide.calibrated"
    assert {"load", "segment", "encode", "retrieve", "rerank.multiview", "rerank.dbscan", "candidates.retrieval",
            "verify", "verify.reciprocal"} <= set(stages)
    assert "lmm" not in stages  # off in the offline preset unless LocateOptions({"lmm": {"enabled": True}})


def test_leave_one_photographer_out(locator, dev):
    group_of = {s.id: s.group for s in dev.samples}
    # photographers with several photos in the dev split make the exclusion matter
    counts: dict[str, int] = {}
    for s in dev.samples:
        counts[s.group] = counts.get(s.group, 0) + 1
    picked = [s for s in dev.samples if counts[s.group] > 1][:4]
    assert picked, "the dev split has photographers with several photos"
    queries = [QueryPhoto(s.id, dev.open_image(s), s.group) for s in picked]
    for q in queries:
        r = locator.locate_query(q)
        assert all(n.id != q.id for n in r.neighbours)
        assert all(group_of.get(n.id) != q.group for n in r.neighbours)
        assert len(r.neighbours) == 20
    t0 = time.perf_counter()
    pred = locator.predict(queries)
    per_photo = (time.perf_counter() - t0) / len(queries)
    assert pred.shape == (len(queries), 2) and np.isfinite(pred).all()
    assert per_photo < 5.0  # predict skips display-only stages
    same = [locator.locate_query(q).lat for q in queries]
    np.testing.assert_allclose(pred[:, 0], same)  # predict == locate_query, one photo at a time


def test_options_override_preset(locator, dev):
    path = dev.samples[7].image_path
    r = locator.locate(path, LocateOptions({"retrieval": {"top_k": 6}, "rerank": {"eps_km": 5.0, "min_samples": 3}}))
    assert len(r.neighbours) == 6
    assert r.clusters_after.eps_km == 5.0 and r.clusters_after.min_samples == 3
    ex = locator.locate(path, LocateOptions(exclude_groups={dev.samples[7].group}))
    assert all(n.id != dev.samples[7].id for n in ex.neighbours)


def test_failing_optional_stages_are_recorded_and_the_rest_runs(shared, dev):
    loc = GeoLocator.from_preset(
        "offline", segmenter="no-such-segmenter", clues={"enabled": False}, gallery={"progress": False},
        lmm={"backend": "no-such-backend", "timeout_s": 2},
    )
    r = loc.locate(dev.samples[0].image_path, LocateOptions({"lmm": {"enabled": True}}))
    assert "no-such-segmenter" in r.errors["segment"] and "segment" in r.error_details
    assert "lmm" in r.errors
    assert all(rec.error for rec in r.lmm_records)  # no answer from a backend that does not exist
    assert math.isfinite(r.lat) and r.candidates and r.verifier != "none"


def test_unavailable_encoder_fails_fast_with_a_clear_message(shared, dev):
    from geodemo.models.base import ModelUnavailableError

    t0 = time.perf_counter()
    with pytest.raises((ModelUnavailableError, FileNotFoundError)) as info:
        GeoLocator.from_preset("g3").locate(dev.samples[0].image_path)
    assert time.perf_counter() - t0 < 30
    assert "clip" in str(info.value).lower()


def test_offline_answers_are_the_ones_the_locator_gave_before_the_stages_refactor(shared, dev):
    """``tests/data/offline_reference.json`` holds the answers of the ``offline`` preset on 12 dev photos
    (photo and photographer left out), recorded by running the locator of commit 01ef5dd - before it
    became a list of stages - from a scratch copy of that commit (see the file's ``recorded_with``).
    Six rows turn the reciprocal-match acceptance off so that the verifier chain and the clue prior
    decide. The refactored pipeline must give the same coordinates, bit for bit."""

    # Recorded with no trained offline verifier (01ef5dd shipped none; the embedded default now does)
    # and before the OCR gate existed: both are turned off here, everything else is the preset's.
    then = {"verifier": {"aligner": None}, "clues": {"gate": False}}
    ref = json.loads((REPO_ROOT / "tests" / "data" / "offline_reference.json").read_text())
    assert ref["commit"].startswith("01ef5dd") and len(ref["rows"]) == 18
    by_index = {i: s for i, s in enumerate(dev.samples)}
    locators: dict[str, GeoLocator] = {}
    for row in ref["rows"]:
        overrides = {k: {**then.get(k, {}), **v} if isinstance(v, dict) else v
                     for k, v in {**then, **row.get("overrides", {})}.items()}
        key = json.dumps(overrides, sort_keys=True)
        if key not in locators:
            locators[key] = GeoLocator.from_preset("offline", gallery={"progress": False}, **overrides)
        s = by_index[row["index"]]
        assert s.id == row["id"]
        r = locators[key].locate_query(QueryPhoto(s.id, s.image_path, s.group), display=True)
        assert (r.lat, r.lon) == (row["lat"], row["lon"]), row
        assert r.verifier == row["verifier"]
