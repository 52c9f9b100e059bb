"""The GPS gallery: built from an int8 copy of the aligner, searched exactly by re-scoring a shortlist."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("geoclip")


@pytest.fixture(scope="module")
def verifier():
    from geodemo.models.aligners import load_aligner

    return load_aligner("offline-verifier")  # GeoCLIP's location encoder (frozen) + a trained image head


@pytest.fixture(scope="module")
def queries(verifier) -> np.ndarray:
    """GPS-space embeddings of 40 real photos of the embedded gallery (MobileNet features)."""
    from geodemo.retrieval.bundle import open_gallery_bundle

    features = open_gallery_bundle().view_bank().embeddings[::26, 0][:40]  # the whole photo's view
    return verifier.embed_image_features(features).astype(np.float32)


def test_int8_copy_is_close_to_the_float_model_and_none_for_other_objects(verifier):
    from geodemo.models.quantize import int8_copy

    coords = np.array([[48.8566, 2.3522], [-33.87, 151.21], [35.68, 139.69], [-1.29, 36.82], [64.15, -21.94]])
    approx = int8_copy(verifier)
    assert approx is not None and approx is not verifier
    exact = verifier.embed_locations(coords)
    close = approx.embed_locations(coords)
    assert 0 < np.abs(close - exact).max() < 0.05  # quantised: close, not equal
    np.testing.assert_array_equal(verifier.embed_locations(coords), exact)  # the original is untouched
    assert int8_copy(object()) is None


def test_refined_search_returns_the_exact_top_5_with_exact_similarities(verifier, queries):
    from geodemo.models.gps import geoclip_gps_gallery
    from geodemo.retrieval.galleries import gps_gallery

    coords, exact_embeddings = geoclip_gps_gallery(progress=False)  # float32, GeoCLIP's own encoder
    gallery = gps_gallery(verifier, progress=False)
    np.testing.assert_allclose(gallery.meta.coords, coords, atol=1e-5)
    exact = queries @ exact_embeddings.T
    hits = gallery.search(queries, k=5)
    approx_hits = gallery.approximate.search(queries, k=5)
    worst_approx = 0.0
    for q, (hit, approx) in enumerate(zip(hits, approx_hits, strict=True)):
        best = np.argsort(-exact[q], kind="stable")[:5]
        # duplicate gallery points tie: compare places and scores, not row numbers
        np.testing.assert_allclose(coords[hit.indices], coords[best], atol=1e-6)
        np.testing.assert_allclose(hit.similarities, exact[q, best], atol=1e-5)
        worst_approx = max(worst_approx, float(np.abs(approx.similarities - exact[q, approx.indices]).max()))
    assert worst_approx > 1e-4  # the index alone is only approximate: the re-scoring is what makes it exact
    neighbours = gallery.neighbours(hits[0].indices, hits[0].similarities)
    assert [n.source for n in neighbours] == ["gps-gallery"] * 5
    assert neighbours[0].similarity == pytest.approx(float(hits[0].similarities[0]))


def test_a_shortlist_must_hold_a_row(verifier):
    from geodemo.retrieval.refined import RefinedGallery

    with pytest.raises(ValueError, match="shortlist"):
        RefinedGallery(None, verifier.embed_locations, shortlist=0)


def test_the_gallery_cache_follows_every_weight_on_the_gps_path():
    """G3's GPS embedding passes a projection head after the location encoder: retraining the head
    alone must not reuse a gallery built with the old one."""
    import torch

    from geodemo.models.g3 import G3Heads
    from geodemo.retrieval.galleries import _aligner_fingerprint

    heads = G3Heads(clip_dim=64, location={"hidden_dim": 32, "embed_dim": 16, "rff_dim": 8}, text_head=False)
    before = _aligner_fingerprint(heads)
    assert _aligner_fingerprint(heads) == before  # stable
    with torch.no_grad():
        heads.location_projection_else[0].weight.add_(0.01)
    assert _aligner_fingerprint(heads) != before
