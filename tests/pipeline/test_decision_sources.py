"""The multi-source decision: calibrated per source set, follows the source that is right, and never
applies a calibration to its own photographers' rows."""

from __future__ import annotations

import numpy as np
import pytest

from geodemo.geo import haversine_km
from geodemo.pipeline import decision
from geodemo.result import Candidate


def _random_points(rng: np.random.Generator, n: int) -> np.ndarray:
    z = rng.uniform(-1, 1, n)
    return np.column_stack([np.degrees(np.arcsin(z)), rng.uniform(-180, 180, n)])


def _offset(rng: np.random.Generator, point: np.ndarray, km: float) -> np.ndarray:
    lat = point[0] + rng.normal(0, km / 111.0)
    lon = point[1] + rng.normal(0, km / (111.0 * max(np.cos(np.radians(point[0])), 0.2)))
    return np.array([np.clip(lat, -89.9, 89.9), (lon + 180) % 360 - 180])


def _synthetic(n: int = 600, seed: int = 0):
    """Photos where source "good" is right (within ~5 km) 90% of the time and "random" never is,
    beside three random retrieval candidates; 60 photographers."""
    rng = np.random.default_rng(seed)
    truth = _random_points(rng, n)
    evidences, right = [], []
    for i in range(n):
        good_right = rng.random() < 0.9
        good = _offset(rng, truth[i], 5.0) if good_right else _random_points(rng, 1)[0]
        cands = [Candidate(*map(float, p), "retrieval", score=float(rng.normal()), details={"id": f"n{k}"})
                 for k, p in enumerate(_random_points(rng, 3))]
        order = [Candidate(*map(float, good), "good", details={"rank": 0}),
                 Candidate(*map(float, _random_points(rng, 1)[0]), "random", details={"rank": 0})]
        if rng.random() < 0.5:
            order.reverse()
        cands += order
        right.append(good_right)
        nb = _random_points(rng, 5)
        evidences.append(decision.Evidence(cands, nb, rng.uniform(0.2, 0.9, 5), np.zeros((0, 2)), None,
                                           decision.rule_choice(cands, None)))
    groups = [f"p{i % 60}" for i in range(n)]
    ids = [f"photo{i}" for i in range(n)]
    return evidences, truth, groups, ids, np.array(right)


def _ece(p: np.ndarray, hit: np.ndarray, bins: int = 10) -> float:
    idx = np.minimum((p * bins).astype(int), bins - 1)
    return float(sum(abs(p[idx == b].mean() - hit[idx == b].mean()) * (idx == b).mean()
                     for b in range(bins) if (idx == b).any()))


@pytest.fixture(scope="module")
def synthetic_cv():
    evidences, truth, groups, ids, right = _synthetic()
    sources = decision.source_vocabulary(evidences, ["good", "random"])
    cv = decision.cross_validated_decisions(evidences, truth, groups, ids, sources, num_folds=5)
    return evidences, truth, groups, cv


def test_the_decision_follows_the_source_that_is_right_and_its_confidence_is_calibrated(synthetic_cv):
    evidences, truth, _, cv = synthetic_cv
    chosen = [decision.source_of(ev.candidates[j]) for ev, j in zip(evidences, cv["choice"], strict=True)]
    assert np.mean([s == "good" for s in chosen]) >= 0.85
    coords = np.array([[ev.candidates[j].lat, ev.candidates[j].lon] for ev, j in zip(evidences, cv["choice"], strict=True)])
    hit25 = np.array([haversine_km(c[None, :], t[None, :])[0] < 25.0 for c, t in zip(coords, truth, strict=True)])
    assert hit25.mean() > 0.8
    assert _ece(cv["p"][:, 0], hit25) < 0.05


def test_no_photographer_rows_are_in_the_calibration_applied_to_them(synthetic_cv):
    _, _, groups, cv = synthetic_cv
    for i, g in enumerate(groups):
        assert g not in cv["training_groups"][int(cv["fold"][i])]
    assert len(cv["training_groups"]) == 5


def test_a_fitted_model_round_trips_through_json_and_ranks_by_probability(tmp_path):
    evidences, truth, groups, ids, _ = _synthetic(200, seed=1)
    sources = decision.source_vocabulary(evidences, ["good", "random"])
    model, report = decision.fit_decision(evidences, truth, groups, ids, sources, "test+good+random", num_folds=3)
    assert report["family"] in decision.FAMILIES and set(report["cv_log_loss"]) >= {f"{f}|0.3" for f in decision.FAMILIES}
    path = model.save(tmp_path / "m.json")
    back = decision.load_decision(str(path))
    x = decision.candidate_features(evidences[0], sources)
    np.testing.assert_allclose(back.probabilities(x), model.probabilities(x))
    # the source that is right 90% of the time gets the higher P(<25 km), photo after photo
    p_good, p_random = [], []
    for ev in evidences:
        p = back.probabilities(decision.candidate_features(ev, sources))[:, 0]
        by = {decision.source_of(c): v for c, v in zip(ev.candidates, p, strict=True)}
        p_good.append(by["good"])
        p_random.append(by["random"])
    assert np.mean(np.array(p_good) > np.array(p_random)) > 0.95 and 0.7 < np.mean(p_good) < 1.0


def test_without_a_fitted_model_the_default_rule_never_compares_raw_scores():
    """A source whose raw scores dwarf the others' does not win by them: agreement between sources does."""
    truth = np.array([48.85, 2.35])
    own = Candidate(48.9, 2.3, "retrieval", score=0.1, details={"id": "a"})
    loud = Candidate(-33.9, 151.2, "loud", score=1e6)
    agrees = Candidate(48.8, 2.4, "quiet", score=-5.0)
    ev = decision.Evidence([own, loud, agrees], np.zeros((0, 2)), np.zeros(0), np.zeros((0, 2)), None,
                           decision.rule_choice([own, loud, agrees], None))
    assert ev.rule == 1  # today's rule: the raw argmax
    best = decision.default_choice(ev, set(decision.BASE_SOURCES))
    assert best in (0, 2) and haversine_km(np.array([[ev.candidates[best].lat, ev.candidates[best].lon]]),
                                           truth[None, :])[0] < 25


def test_a_killed_collection_resumes_where_it_stopped(tmp_path, monkeypatch):
    """``--resume``: photos already stored are kept as they are, a line cut off midway is dropped, and only
    the missing photos are located (the embedded examples, the real offline pipeline)."""
    from geodemo.data import load_examples
    from geodemo.eval.decision_table import collect, read_records
    from geodemo.pipeline import GeoLocator

    photos = load_examples().subset(3)
    out = tmp_path / "results.jsonl"
    collect(photos, "offline", {}, out, limit=2, cross_fit="none", progress=False)
    first = out.read_text().splitlines()
    assert len(first) == 2
    with out.open("a") as fh:  # the run was killed while writing the third photo
        fh.write(first[0][: len(first[0]) // 2])

    located: list[str] = []
    real = GeoLocator.locate_query

    def counting(self, query, *args, **kwargs):
        located.append(query.id)
        return real(self, query, *args, **kwargs)

    monkeypatch.setattr(GeoLocator, "locate_query", counting)
    records = collect(photos, "offline", {}, out, cross_fit="none", progress=False, resume=True)
    assert located == [photos[2].id]
    lines = out.read_text().splitlines()
    assert lines[:2] == first and len(lines) == 3
    assert [r["id"] for r in records] == [r["id"] for r in read_records(out)] == [p.id for p in photos]
