"""Fusion of evidence: the log-linear rule, its grouped cross-validated fit, and its weights file."""

from __future__ import annotations

import numpy as np
import pytest

from geodemo.geo import haversine_km
from geodemo.paths import MissingResourceError
from geodemo.scoring import (
    FEATURES,
    Evidence,
    FusionWeights,
    candidate_features,
    cross_entropy,
    cross_validated_choices,
    fit_fusion,
    gather_candidates,
    group_folds,
    load_weights,
)


def test_group_folds_match_the_trainers_folds():
    from geodemo.data.folds import group_fold

    groups = ["a@N00", "b@N01", None, "a@N00", "c@N02"]
    ids = ["1", "2", "3", "4", "5"]
    folds = group_folds(groups, ids, 5)
    expected = [group_fold(g if g else f"id:{i}", 5) for g, i in zip(groups, ids, strict=True)]
    assert folds.tolist() == expected
    assert folds[0] == folds[3]  # one photographer, one fold


def test_fit_finds_the_informative_feature():
    rng = np.random.default_rng(0)
    xs, ds = [], []
    for _ in range(150):
        d = rng.uniform(0, 5000, size=12)
        informative = -d / 1000 + rng.normal(0, 0.5, size=12)
        noise = rng.normal(0, 1, size=12)
        xs.append(np.stack([informative, noise], 1))
        ds.append(d)
    w = fit_fusion(xs, ds, ["good", "noise"], tau_km=50.0)
    assert w.weights[0] > 0.5
    assert abs(w.weights[1]) < 0.25 * w.weights[0]
    names = ["good", "noise"]
    assert cross_entropy(w, xs, ds, names, tau_km=50.0) < cross_entropy(None, xs, ds, names, tau_km=50.0)
    # a feature constrained non-negative cannot take the informative feature's negative sign
    flipped = fit_fusion([-x for x in xs], ds, names, tau_km=50.0, nonnegative=("good",))
    assert flipped.weights[0] == 0.0


def test_weights_round_trip_and_missing_file(tmp_path):
    w = FusionWeights(["retrieval", "verifier"], [1.5, 0.25], {"photos": 3})
    path = w.save(tmp_path / "w.json")
    back = load_weights(path)
    assert back == w
    # scoring by name: a column the weights do not know gets weight 0
    x = np.array([[1.0, 2.0, 3.0]])
    assert back.score(x, ["verifier", "clue", "retrieval"])[0] == pytest.approx(0.25 * 1 + 1.5 * 3)
    with pytest.raises(MissingResourceError, match="no-such-weights"):
        load_weights("no-such-weights")


def test_features_without_aligner_or_clue_are_neutral():
    ev = Evidence(np.array([[48.85, 2.35], [48.86, 2.34], [40.7, -74.0]]), np.array([0.9, 0.8, 0.5]))
    x = candidate_features(np.array([[48.85, 2.35], [40.7, -74.0], [-33.9, 151.2]]), ev)
    assert x.shape == (3, len(FEATURES))
    col = {n: i for i, n in enumerate(FEATURES)}
    assert np.all(x[:, col["verifier"]] == 0) and np.all(x[:, col["clue"]] == 0)
    assert x[0, col["retrieval"]] == pytest.approx(0.9)  # a neighbour right there
    assert x[0, col["support"]] > x[1, col["support"]] > x[2, col["support"]]  # Paris > NYC > Sydney


@pytest.fixture(scope="module")
def dev_candidates(shared):
    """Real retrieval + DBSCAN candidates of 150 dev photos, leave-one-photographer-out."""
    from geodemo.data import load_benchmark
    from geodemo.eval import QueryPhoto
    from geodemo.extraction.features import cached_image_embeddings
    from geodemo.pipeline import GeoLocator

    dev = load_benchmark("im2gps3k-dev")
    emb = cached_image_embeddings("mobilenet-v1-imagenet", dev, progress=False)
    locator = GeoLocator.from_preset(
        "offline", segmenter=None, clues={"enabled": False}, gps_gallery={"enabled": False},
        verifier={"order": ["support"], "aligner": None}, lmm={"enabled": False},
        gallery={"progress": False},
    )
    idx = np.arange(0, len(dev), 6)[:150]
    rows = []
    for i in idx:
        s = dev.samples[i]
        r = locator.locate_query(QueryPhoto(s.id, s.image_path, s.group), embedding=emb[i])
        assert all(n.id != s.id for n in r.neighbours)  # its own photo is never a candidate
        cs = gather_candidates(r)
        rows.append((s, cs, haversine_km(cs.coords, np.array([[s.lat, s.lon]]))))
    return rows


def test_cross_validated_fit_on_real_dev_candidates(dev_candidates):
    names = ["retrieval", "support"]
    cols = [FEATURES.index(n) for n in names]
    xs = [cs.features[:, cols] for _, cs, _ in dev_candidates]
    ds = [d for _, _, d in dev_candidates]
    folds = group_folds([s.group for s, _, _ in dev_candidates], [s.id for s, _, _ in dev_candidates], 5)
    choice, fitted = cross_validated_choices(xs, ds, folds, names, tau_km=50.0)
    assert len(fitted) == len(np.unique(folds)) >= 3
    # every fold learns that looking like the photo counts: a positive retrieval weight
    assert all(w.weights[0] > 0 for w in fitted)
    # held-out photographers: the fitted rule puts more probability near the truth than chance does
    held_loss, chance = [], []
    for w in fitted:
        k = w.meta["held_out_fold"]
        test = [i for i in range(len(xs)) if folds[i] == k]
        held_loss.append(cross_entropy(w, [xs[i] for i in test], [ds[i] for i in test], names, tau_km=50.0))
        chance.append(cross_entropy(None, [xs[i] for i in test], [ds[i] for i in test], names, tau_km=50.0))
    assert np.mean(held_loss) < np.mean(chance) - 0.02
    assert all(0 <= c < len(x) for c, x in zip(choice, xs, strict=True))
