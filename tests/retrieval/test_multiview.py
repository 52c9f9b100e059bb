"""Multi-view re-ranking and reciprocal neighbours: the views, the scores, and the pipeline's use."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from PIL import Image, ImageOps

from geodemo.retrieval.multiview import (
    VIEW_NAMES,
    ViewBank,
    multiview_similarities,
    query_views,
    reciprocal_rank,
)


def _unit(rows: list[list[float]]) -> np.ndarray:
    x = np.asarray(rows, dtype=np.float32)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def test_query_views_are_the_whole_mirrored_and_five_crops():
    im = Image.fromarray(np.arange(200 * 100 * 3, dtype=np.uint32).reshape(100, 200, 3).astype(np.uint8))
    views = query_views(im, crop=0.5)
    assert len(views) == len(VIEW_NAMES) == 7
    assert views[0].size == (200, 100) and np.array_equal(np.asarray(views[1]), np.asarray(ImageOps.mirror(im)))
    assert all(v.size == (100, 50) for v in views[2:])
    assert np.array_equal(np.asarray(views[2]), np.asarray(im)[:50, :100])  # top-left
    assert np.array_equal(np.asarray(views[5]), np.asarray(im)[50:, 100:])  # bottom-right
    with pytest.raises(ValueError, match="crop"):
        query_views(im, crop=0.0)


def test_multiview_similarity_is_the_best_view_pair_against_whole_and_mirrored():
    query = _unit([[1, 0, 0], [0, 1, 0]])  # two query views
    gallery = np.zeros((2, 7, 3), dtype=np.float32)
    gallery[0, 0] = _unit([[0.6, 0.8, 0]])[0]  # whole view: best pair is query view 1 (0.8)
    gallery[0, 2] = _unit([[1, 0, 0]])[0]  # a crop of the gallery photo is never compared
    gallery[1, 1] = _unit([[0, 0.28, 0.96]])[0]  # mirrored view only
    np.testing.assert_allclose(multiview_similarities(query, gallery), [0.8, 0.28], atol=1e-6)


def _bank(vectors: list[list[float]], groups: list[str | None]) -> ViewBank:
    emb = np.zeros((len(vectors), 7, len(vectors[0])), dtype=np.float32)
    emb[:, 0] = _unit(vectors)
    return ViewBank("toy", emb, np.ones(len(vectors), bool), groups, [f"p{i}" for i in range(len(vectors))])


def test_reciprocal_rank_counts_what_the_match_prefers_to_the_query():
    bank = _bank([[1, 0, 0], [0.9, 0.43589, 0], [0.8, 0, 0.6], [0, 1, 0]], ["a", "b", "c", "a"])
    keep = bank.keep_mask()
    # photo 0 (group a) has photo 1 at 0.9 and photo 2 at 0.8; photo 3 shares its photographer
    assert reciprocal_rank(bank, 0, 0.95, keep) == 0
    assert reciprocal_rank(bank, 0, 0.85, keep) == 1
    assert reciprocal_rank(bank, 0, 0.5, keep) == 2  # photo 3 (same photographer as 0) never counts
    # what the query excludes (its photographer 'b') is not counted either
    assert reciprocal_rank(bank, 0, 0.5, bank.keep_mask(exclude_groups={"b"})) == 1
    assert reciprocal_rank(bank, 0, 0.5, bank.keep_mask(exclude_ids={"p2"})) == 1


@pytest.mark.shared
def test_mirrored_and_cropped_photos_match_their_original_better_with_views(shared):
    from geodemo.data import load_benchmark
    from geodemo.models.registry import shared_model

    osv = load_benchmark("osv5m-sample")
    enc = shared_model("mobilenet-v1-imagenet")
    photos = [osv.open_image(s) for s in osv.samples[:6]]
    bank = ViewBank.build(enc, [s.image_path for s in osv.samples[:6]], [s.id for s in osv.samples[:6]],
                          [None] * 6, progress=False, use_cache=False)
    assert bank.valid.all() and bank.embeddings.shape == (6, 7, 1024)
    np.testing.assert_allclose(bank.embeddings[:, 0], enc.encode_images(photos), atol=1e-5)
    for i, im in enumerate(photos[:3]):
        w, h = im.size
        for altered in (ImageOps.mirror(im), im.crop((0, 0, int(w * 0.6), int(h * 0.6)))):
            plain = enc.encode_images([altered])[0]
            views = enc.encode_images(query_views(altered))
            raw = bank.embeddings[:, 0] @ plain
            multi = multiview_similarities(views, bank.embeddings)
            assert multi[i] >= raw[i] - 1e-5 and int(np.argmax(multi)) == i
        mirrored = multiview_similarities(enc.encode_images(query_views(ImageOps.mirror(im))), bank.embeddings)
        assert mirrored[i] > 0.99  # its mirrored view is the original


@pytest.mark.shared
def test_offline_pipeline_accepts_a_reciprocal_match_and_records_it(shared, tmp_path):
    from geodemo.data import load_benchmark
    from geodemo.pipeline import GeoLocator, LocateOptions

    osv = load_benchmark("osv5m-sample")
    loc = GeoLocator.from_preset("offline", segmenter=None, clues={"enabled": False},
                                 gallery={"datasets": ["osv5m-sample"], "progress": False})
    target = osv.samples[10]
    path = tmp_path / "mirrored.jpg"
    ImageOps.mirror(osv.open_image(target)).save(path)
    r = loc.locate(path)
    assert r.match is not None and r.match.id == target.id and r.match.accepted
    assert r.neighbours[0].id == target.id and r.neighbours[0].similarity > 0.99
    assert r.verifier == "reciprocal-match(k=3)" and (r.lat, r.lon) == pytest.approx((target.lat, target.lon))
    assert r.to_dict()["match"]["reciprocal_rank"] == r.match.reciprocal_rank
    from geodemo.viz.page import (  # the page says why the match was trusted
        match_markdown,
        prediction_markdown,
    )

    assert f"`{target.id}`" in prediction_markdown(r) and "its place was taken" in match_markdown(r)
    assert "the verifier decided" in match_markdown(replace(r, match=replace(r.match, reciprocal_rank=3)))
    # without the acceptance (k=0) the verifier alone decides, and the match is not recorded
    off = GeoLocator.from_preset("offline", segmenter=None, clues={"enabled": False},
                                 gallery={"datasets": ["osv5m-sample"], "progress": False},
                                 multiview={"reciprocal_k": 0})
    r0 = off.locate(path, LocateOptions())
    assert r0.match is None and not r0.verifier.startswith("reciprocal")
    assert r0.neighbours[0].id == target.id  # the multi-view re-ranking itself still applies
