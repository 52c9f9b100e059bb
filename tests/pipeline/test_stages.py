"""Stage logic with injected fakes (no weights, no hub): registry, configs, faithful stage lists,
G3's and DualGeo's rules, failures, confidence and uncertainty."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pytest
from PIL import Image

from geodemo.geo import haversine_km
from geodemo.lmm import LMMConfig, LMMStage
from geodemo.pipeline import (
    GeoLocator,
    LocateOptions,
    build_stages,
    decision,
    list_presets,
    load_preset,
    record_failure,
)
from geodemo.pipeline.stages import create_stage, get_stage, list_stages
from geodemo.result import LocationResult
from geodemo.retrieval.database import GalleryMeta, IndexConfig, RetrievalDatabase

# What each paper's method does, written from the papers and their code (G3: IndexSearch.py,
# llm_predict.py, aggregate_llm_predictions.py; DualGeo: IndexSearch_DualGeo.py,
# rerank_geo_cluster.py, lmms.py), independent of the stage classes' own tags.
PAPER_STAGES = {
    "g3": ["load", "encode", "retrieve", "lmm", "candidates.lmm", "candidates.retrieval", "verify.gps_head",
           "decide.verified"],
    "dualgeo": ["load", "segment", "encode", "retrieve", "rerank.dbscan", "lmm", "decide.lmm_answer"],
}

DIM, GPS_DIM = 8, 6


# ---------------------------------------------------------------------------------------------- fakes
def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _photo(seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, (32, 48, 3), dtype=np.uint8))


def _vector(image: Image.Image) -> np.ndarray:
    """A deterministic unit vector per photo (its mean colour per image quarter, centred)."""
    a = np.asarray(image.convert("RGB").resize((4, 2)), dtype=np.float32).reshape(-1, 3).mean(1)
    return _unit(a - a.mean() + 1e-3)


class FakeEncoder:
    name, embed_dim, has_text_tower = "fake-encoder", DIM, False

    def __init__(self):
        self.calls = 0

    def encode_images(self, images, batch_size=16, progress=False):
        from geodemo.imageio import load_image

        self.calls += 1
        return np.stack([_vector(load_image(im)) for im in images])


@dataclass
class FakeOutput:
    descriptor: np.ndarray
    features: np.ndarray | None
    gps: np.ndarray | None


class FakeDescriptor:
    """A descriptor with a GPS head: the photo's GPS embedding points at ``home``; locations embed by
    their unit 3-D position, so the candidate nearest ``home`` scores highest."""

    name, dim = "fake-descriptor:abc123", DIM

    def __init__(self, home=(48.85, 2.35)):
        self.home = home

    def _loc(self, coords):
        lat, lon = np.deg2rad(np.asarray(coords, dtype=np.float64).reshape(-1, 2)).T
        xyz = np.stack([np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat)], 1)
        return np.concatenate([xyz, np.zeros((len(xyz), GPS_DIM - 3))], 1).astype(np.float32)

    def describe(self, images):
        vec = np.stack([_vector(im) for im in images])
        gps = np.repeat(self._loc([self.home]), len(images), 0)
        return FakeOutput(vec, vec.copy(), gps)

    def embed_locations(self, coords):
        return self._loc(coords)


class ScriptedBackend:
    """An LMM backend that answers from a script (the HTTP end to end test uses a real Ollama server)."""

    name, model, sees_image, completion = "scripted", "scripted-1", True, False

    def __init__(self, answers):
        self.answers, self.prompts = list(answers), []

    def generate(self, image, prompt, n=1, temperature=0.7, seed=None):
        self.prompts.append(prompt)
        return [self.answers[(len(self.prompts) - 1 + i) % len(self.answers)] for i in range(n)]


def _lmm(answers, prompts, samples=1):
    backend = ScriptedBackend(answers)
    return LMMStage(LMMConfig(backend="scripted", prompts=prompts, samples=samples, cache=False), backend=backend), backend


def _gallery(name: str, coords, vectors=None, seed=0) -> RetrievalDatabase:
    coords = np.asarray(coords, dtype=np.float64)
    rng = np.random.default_rng(seed)
    vectors = _unit(rng.normal(size=(len(coords), DIM))) if vectors is None else _unit(vectors)
    meta = GalleryMeta([f"p{i}" for i in range(len(coords))], coords, groups=[f"g{i % 3}" for i in range(len(coords))])
    return RetrievalDatabase.build(vectors, meta, name, IndexConfig("flat"), progress=False)


def _preset(name: str, **overrides):
    return load_preset(name, gallery={"progress": False}, **overrides)


# ---------------------------------------------------------------------------------------------- registry and configs
def test_every_preset_builds_and_names_registered_stages():
    known = set(list_stages())
    for name in list_presets():
        stages = build_stages(load_preset(name))
        assert [s.name for s in stages] == load_preset(name)["stages"]
        assert {s.name for s in stages} <= known


def test_unknown_stage_section_key_or_stray_section_is_a_clear_error():
    with pytest.raises(KeyError, match="unknown stage 'rerank.magic'.*retrieve"):
        get_stage("rerank.magic")
    with pytest.raises(ValueError, match=r"unknown setting\(s\) \['eps'\].*eps_km"):
        build_stages(load_preset("dualgeo", rerank={"eps": 10}))
    with pytest.raises(ValueError, match=r"section\(s\) \['multiview'\] are read by none"):
        build_stages(load_preset("g3", multiview={"crop": 0.5}))
    with pytest.raises(ValueError, match="unknown LMM prompt kind"):
        build_stages(load_preset("g3", lmm={"prompts": ["rag-x"]}))
    with pytest.raises(ValueError, match="unknown verifier kind"):
        create_stage("verify", {"order": ["oracle"]})
    assert create_stage("retrieve", {"top_k": 3}).config.top_k == 3


@pytest.mark.parametrize("paper", sorted(PAPER_STAGES))
def test_faithful_presets_run_exactly_their_papers_stages(paper):
    cfg = load_preset(paper)
    assert cfg["paper"] == paper
    extra = [s for s in cfg["stages"] if s not in PAPER_STAGES[paper]]
    assert not extra, f"the {paper} preset runs stages its paper lacks: {extra}"
    assert cfg["stages"] == PAPER_STAGES[paper]  # and in the paper's order
    # the improvements live in presets of their own, built on the faithful list
    plus = load_preset(f"{paper}-plus")
    # the -plus presets decide with the calibrated multi-source decision instead of the paper's rule
    assert plus["based_on"] == paper and set(PAPER_STAGES[paper]) - {"decide.lmm_answer", "decide.verified"} <= set(
        plus["stages"]) and plus["stages"][-1] == "decide.calibrated"


def test_faithful_preset_settings_are_the_papers():
    g3, dg = load_preset("g3"), load_preset("dualgeo")
    assert g3["descriptor"]["kind"] == "g3" and g3["descriptor"]["encoder"] == "clip-vit-l14"
    assert g3["lmm"]["prompts"] == ["zero-shot", "rag-5", "rag-10", "rag-15"]
    assert g3["retrieval"]["k_dissimilar"] >= 15 and "gps_gallery" not in g3 and "verifier" not in g3
    assert dg["descriptor"]["kind"] == "dualgeo" and dg["descriptor"]["segmenter"] == dg["segmenter"]
    assert dg["rerank"] == {"eps_km": 50.0, "min_samples": 2, "weighted_centre": False}
    assert dg["lmm"]["neighbours"] == "reranked" and dg["retrieval"]["k_dissimilar"] > 0


# ---------------------------------------------------------------------------------------------- G3 with fakes
def _g3_locator(answers, gallery_coords, **overrides):
    cfg = _preset("g3", **overrides)
    descriptor = FakeDescriptor(home=(48.85, 2.35))
    db = _gallery(descriptor.name, gallery_coords)
    lmm, backend = _lmm(answers, cfg["lmm"]["prompts"], samples=2)
    return GeoLocator(cfg, descriptor=descriptor, gallery=db, lmm=lmm), backend


def test_g3_candidates_are_the_lmm_answers_and_the_retrieval_top1_verified_by_its_gps_head():
    coords = [[35.68, 139.69], [40.71, -74.0], [-33.87, 151.2], [51.5, -0.12], [55.75, 37.6]] * 4
    answers = ['{"latitude": 48.86, "longitude": 2.34}', '{"latitude": 41.9, "longitude": 12.5}', "no idea"]
    loc, backend = _g3_locator(answers, coords)
    r = loc.locate(_photo(1))
    assert r.stages == PAPER_STAGES["g3"]
    sources = [c.source for c in r.candidates]
    assert sources.count("retrieval") == 1 and all(s == "retrieval" or s.startswith("lmm:") for s in sources)
    assert len(backend.prompts) == 4  # zero-shot + RAG 5/10/15, two samples each
    assert "least similar" in backend.prompts[1] and "most similar" in backend.prompts[1]
    # the GPS head points at Paris: the LMM's Paris answer wins over Rome and every retrieved photo
    assert (r.lat, r.lon) == (48.86, 2.34) and r.verifier == "gps-head:fake-descriptor:abc123"
    best = max(r.candidates, key=lambda c: c.score)
    assert (best.lat, best.lon) == (48.86, 2.34)
    assert 0.0 <= r.confidence <= 1.0 and r.uncertainty_km >= 1.0 and r.place


def test_g3_without_any_lmm_answer_keeps_the_retrieval_top1():
    coords = [[35.68, 139.69], [40.71, -74.0], [-33.87, 151.2]] * 5
    loc, _ = _g3_locator(["I cannot tell."], coords)
    r = loc.locate(_photo(2))
    top = r.neighbours[0]
    assert [c.source for c in r.candidates] == ["retrieval"] and (r.lat, r.lon) == (top.lat, top.lon)
    assert all(rec.rejection for rec in r.lmm_records)


# ---------------------------------------------------------------------------------------------- DualGeo with fakes
def _dualgeo_locator(answers, coords, vectors=None):
    cfg = _preset("dualgeo")
    descriptor = FakeDescriptor()
    db = _gallery(descriptor.name, coords, vectors)
    lmm, backend = _lmm(answers, cfg["lmm"]["prompts"])
    return GeoLocator(cfg, descriptor=descriptor, gallery=db, lmm=lmm, segmenter=None), backend


def _antimeridian_gallery(photo):
    """12 photos around the antimeridian near Fiji (lon +-179.9) most similar to ``photo``, 8 scattered."""
    q = _vector(photo)
    rng = np.random.default_rng(5)
    near = [[-17.0 + 0.05 * i, (179.95 if i % 2 else -179.95)] for i in range(12)]
    far = [[10.0 * i - 40, 30.0 * i - 100] for i in range(8)]
    vectors = np.concatenate([q + 0.05 * rng.normal(size=(12, DIM)), rng.normal(size=(8, DIM))])
    return near + far, vectors


def test_dualgeo_final_answer_is_the_lmm_answer_and_its_prompt_cites_reranked_and_dissimilar():
    photo = _photo(3)
    coords, vectors = _antimeridian_gallery(photo)
    loc, backend = _dualgeo_locator(['{"latitude": -18.1, "longitude": 178.4}'], coords, vectors)
    r = loc.locate(photo)
    assert r.stages == ["load", "encode", "retrieve", "rerank.dbscan", "lmm", "decide.lmm_answer"]  # no segmenter
    assert (r.lat, r.lon) == (-18.1, 178.4) and r.verifier == "lmm-answer:rag-15"
    assert r.candidates == []  # DualGeo verifies nothing: the LMM decides
    prompt = backend.prompts[0]
    reranked = [r.neighbours[i] for i in r.clusters_after.order]
    assert f"({reranked[0].lat:.4f}, {reranked[0].lon:.4f})" in prompt.split("least similar")[0]
    assert "least similar" in prompt  # the dissimilar coordinates are cited too


def test_dualgeo_without_a_parsed_answer_falls_back_to_the_spherical_main_cluster_centre():
    photo = _photo(4)
    coords, vectors = _antimeridian_gallery(photo)
    loc, _ = _dualgeo_locator(["Somewhere in the Pacific, I think."], coords, vectors)
    r = loc.locate(photo)
    main = r.clusters_after.main
    assert main.support == 12 and r.verifier.startswith("cluster-centre")
    # the spherical mean stays at the antimeridian; a lat/lon arithmetic mean would say lon ~ 0 (Africa)
    assert abs(abs(r.lon) - 180.0) < 0.2 and (r.lat, r.lon) == (main.centre_lat, main.centre_lon)
    assert haversine_km(np.array([[r.lat, r.lon]]), np.array([[-16.7, 180.0]]))[0] < 50
    assert "decide.lmm_answer" in r.errors and (r.lat, r.lon) != (0.0, 0.0)


def test_stage_order_of_iter_locate_and_timings_follow_the_preset():
    coords = [[35.68, 139.69], [40.71, -74.0], [-33.87, 151.2]] * 5
    loc, _ = _g3_locator(['{"latitude": 1.0, "longitude": 2.0}'], coords)
    seen = [name for name, _ in loc.iter_locate(_photo(6), LocateOptions({"lmm": {"enabled": False}}))]
    assert seen == [s for s in PAPER_STAGES["g3"] if s not in ("lmm",)]
    r = loc.locate(_photo(6), LocateOptions({"retrieval": {"top_k": 4}}))
    assert len(r.neighbours) == 4 and list(r.timings)[-1] == "total"
    assert set(r.timings) == set(r.stages) | {"total"}


# ---------------------------------------------------------------------------------------------- failures
def test_record_failure_keeps_plain_words_details_and_how_to_add():
    from geodemo.paths import MissingResourceError

    r = LocationResult(math.nan, math.nan, None, 0.0, math.nan, "none", "x")
    record_failure(r, "segment", MissingResourceError("weights for x not found at /srv/secret/models/x; set GEODEMO_SHARED"))
    # not installed is not a failure: listed under unavailable only, in plain words
    assert "segment" not in r.errors
    assert "/srv/secret" not in r.unavailable["segment"] and "MissingResourceError" not in r.unavailable["segment"]
    assert "not found" in r.unavailable["segment"] and "/srv/secret" in r.error_details["segment"]
    assert "MissingResourceError" in r.error_details["segment"] and "GEODEMO_SHARED" in r.unavailable["segment"]
    record_failure(r, "verify", ValueError("bad scores"))
    assert "verify" not in r.unavailable and r.errors["verify"] == "bad scores"
    assert set(r.to_dict()) >= {"errors", "error_details", "unavailable"}


def test_failing_optional_components_are_recorded_and_the_locator_goes_on():
    coords = [[35.68, 139.69], [40.71, -74.0], [-33.87, 151.2]] * 5
    cfg = _preset("dualgeo-plus", verifier={"aligner": "no-such-aligner"})
    descriptor = FakeDescriptor()
    lmm, _ = _lmm(["no answer"], ["rag-15"])
    loc = GeoLocator(cfg, descriptor=descriptor, gallery=_gallery(descriptor.name, coords), lmm=lmm, segmenter=None)
    r = loc.locate(_photo(7))
    assert "no-such-aligner" in r.unavailable["candidates.gps_gallery"] and "candidates.gps_gallery" not in r.errors
    # verification fell back to retrieval support, which scored every candidate, and a decision was made
    assert all(c.details.get("verifier_score") is not None for c in r.candidates) and math.isfinite(r.lat)
    assert r.decision.get("source")


# ---------------------------------------------------------------------------------------------- decision
def test_confidence_is_a_logistic_calibration_fitted_by_photographer_folds():
    # the shipped calibration says what it is and where it came from
    cal = decision.load_calibration("offline")
    assert cal.radius_km == 25.0 and cal.features == list(decision.FEATURES)
    assert cal.provenance["split"] == "im2gps3k-dev" and cal.provenance["fit"]["folds"] == 5
    # its map: P = sigmoid(intercept + coef . x)
    x = np.array([0.5, 1.0, 1.0])
    z = cal.intercept + float(np.dot(cal.coef, x))
    assert decision.confidence(x, cal) == pytest.approx(1 / (1 + math.exp(-z)))
    # fitting: on synthetic photos where support decides the hit, the fit finds it and is calibrated
    rng = np.random.default_rng(0)
    n = 600
    support = rng.uniform(0, 1, n)
    X = np.stack([support, np.clip(support + rng.uniform(0, 0.3, n), 0, 1), rng.integers(0, 2, n)], 1)
    p_true = 1 / (1 + np.exp(-(-3 + 5 * support)))
    hit = rng.uniform(0, 1, n) < p_true
    folds = np.arange(n) % 5
    fitted, report = decision.fit_calibration(X, hit, folds, provenance={"split": "synthetic"})
    assert fitted.coef[0] > 1 and report["cv_log_loss"] < report["base_rate_log_loss"]
    assert report["C"] in (0.01, 0.1, 1.0, 10.0, 100.0) and fitted.provenance["split"] == "synthetic"
    strong = decision.confidence(np.array([0.9, 1.0, 0]), fitted)
    weak = decision.confidence(np.array([0.1, 0.2, 0]), fitted)
    assert weak < 0.3 < 0.7 < strong


def test_confidence_features_and_uncertainty_follow_their_definitions():
    nb = np.array([[48.85, 2.35]] * 8 + [[40.7, -74.0]] * 2)
    sims = np.array([0.5] * 8 + [1.0] * 2)
    x = decision.confidence_features((48.86, 2.34), nb, sims, True)
    assert x == pytest.approx([4.0 / 6.0, 4.0 / 6.0, 1.0])  # similarity mass within 25 / 200 km
    assert decision.confidence_features((math.nan, 0.0), nb, sims, True) == pytest.approx([0, 0, 0])
    cands = np.array([[0.0, 0.0], [0.0, 1.0], [0.0, 2.0], [0.0, 3.0]])
    u = decision.uncertainty_km((0.0, 0.0), cands, np.array([4.0, 3.0, 2.0, 1.0]), 0, nb, top=3)
    assert u == pytest.approx(float(np.median(haversine_km(cands[1:3], np.array([[0.0, 0.0]])))))
    assert decision.uncertainty_km((0.0, 0.0), cands[:1], np.array([1.0]), 0, nb[:0], top=3, fallback_km=50) == 50
    # without verifier scores (DualGeo's rule) the radius comes from the re-ranked neighbours
    assert decision.uncertainty_km((48.85, 2.35), cands, None, None, nb, top=5) == 1.0


class FakeAligner:
    """GeoAligner over the fake features: every photo maps to the GPS-space direction of Tokyo."""

    name, encoder_name = "fake-aligner", "clip-vit-l14"

    def __init__(self):
        self.calls = 0

    def embed_image_features(self, features):
        self.calls += 1
        return np.repeat(FakeDescriptor()._loc([[35.68, 139.69]]), len(features), 0)

    def embed_locations(self, coords):
        return FakeDescriptor()._loc(coords)


def test_g3_plus_adds_gps_gallery_candidates_in_the_aligners_space_and_keeps_g3s_verifier():
    coords = [[35.68, 139.69], [40.71, -74.0], [-33.87, 151.2]] * 5
    cfg = _preset("g3-plus", clues={"enabled": False})
    descriptor, aligner = FakeDescriptor(home=(48.85, 2.35)), FakeAligner()
    gps_points = np.array([[35.7, 139.7], [34.7, 135.5], [-1.3, 36.8], [64.1, -21.9]])
    gps_db = RetrievalDatabase.build(aligner.embed_locations(gps_points),
                                     GalleryMeta([f"gps-{i}" for i in range(4)], gps_points),
                                     "gps:fake-aligner", IndexConfig("flat"), progress=False)
    lmm, _ = _lmm(['{"latitude": 48.9, "longitude": 2.3}'], cfg["lmm"]["prompts"])
    loc = GeoLocator(cfg, descriptor=descriptor, gallery=_gallery(descriptor.name, coords), lmm=lmm,
                     aligner=aligner, gps_gallery=gps_db)
    r = loc.locate(_photo(8))
    gps = [c for c in r.candidates if c.source == "gps-gallery"]
    assert [(c.lat, c.lon) for c in gps][:2] == [(35.7, 139.7), (34.7, 135.5)]  # nearest to Tokyo first
    assert len([c for c in r.candidates if c.source == "retrieval"]) == 15 and aligner.calls == 1
    # G3's own head still scores every candidate (it points at Paris): the LMM's Paris answer scores highest
    top = max(r.candidates, key=lambda c: c.score)
    assert (top.lat, top.lon) == (48.9, 2.3) and top.source.startswith("lmm:")
    # ... but g3-plus decides with the multi-source decision: with no model fitted for g3-plus + this LMM, the
    # agreement default compares no raw scores across sources; nothing else agrees with the LMM's Paris, so the
    # preset's own best-scored candidate answers
    assert r.decision["calibration"] is None and r.decision["rule"].startswith("agreement")
    own = max((c for c in r.candidates if not c.source.startswith("lmm:")), key=lambda c: c.score)
    assert (r.lat, r.lon) == (own.lat, own.lon) and r.verifier.startswith("default:agreement")


class FakeSegmenter:
    name = "fake-segmenter"

    def __init__(self):
        self.calls = 0

    def segment(self, image):
        from geodemo.models.segmentation import make_result

        self.calls += 1
        return make_result(self.name, image, np.full(image.size[::-1], 3, dtype=np.uint8), 0.5)

    def label_maps(self, images):
        return [self.segment(im).label_map for im in images]


class FakeDualDescriptor(FakeDescriptor):
    """Dual-view: tokens from the encoder, label maps from its own segmenter (DualGeo's interface)."""

    def __init__(self):
        super().__init__()
        self.segmenter, self.encoder, self.batch_size, self.seen_maps = FakeSegmenter(), self, 4, []

    def encode_image_outputs(self, images, batch_size=16, tokens=False):
        vec = np.stack([_vector(im) for im in images])
        return vec, (np.repeat(vec[:, None, :], 3, 1) if tokens else None)

    def describe(self, images):
        feats, tokens = self.encode_image_outputs(images, tokens=True)
        return self.describe_features(feats, tokens, self.segmenter.label_maps(images))

    def describe_features(self, features, tokens=None, label_maps=None):
        self.seen_maps.append([np.asarray(m) for m in label_maps])
        return FakeOutput(np.asarray(features), np.asarray(features), self._loc([self.home] * len(features)))


def test_dualgeo_segments_each_photo_once_for_the_page_and_the_descriptor():
    photo = _photo(9)
    coords, vectors = _antimeridian_gallery(photo)
    cfg = _preset("dualgeo")
    d = FakeDualDescriptor()
    lmm, _ = _lmm(['{"latitude": -18.1, "longitude": 178.4}'], cfg["lmm"]["prompts"])
    # the preset's segmenter is the descriptor's own (same registered name): one model, one pass
    loc = GeoLocator(cfg, descriptor=d, gallery=_gallery(d.name, coords, vectors), lmm=lmm)
    r = loc.locate(photo)
    assert "segment" in r.stages and r.segmentation is not None and d.segmenter.calls == 1
    assert len(d.seen_maps) == 1 and np.array_equal(d.seen_maps[0][0], r.segmentation.label_map)
    # without the page (batch prediction, no LMM) the descriptor segments by itself
    before = d.segmenter.calls
    loc.locate_query(type("Q", (), {"id": "q", "group": None, "image": photo})(), LocateOptions({"lmm": {"enabled": False}}))
    assert d.segmenter.calls == before + 1
