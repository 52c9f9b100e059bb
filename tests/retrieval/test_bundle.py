"""The embedded default (assets/): within its size limits, intact, loaded without encoding, and the
same gallery as the one built from the shared folder."""

from __future__ import annotations

import hashlib
import json
import sys

import numpy as np
import pytest

from geodemo.paths import REPO_ROOT

ASSETS = REPO_ROOT / "assets"
sys.path.insert(0, str(REPO_ROOT / "scripts"))


def test_bundle_is_within_its_limits_and_matches_its_index():
    import build_assets

    assert build_assets.check_sizes(ASSETS) == []
    index = json.loads((ASSETS / "bundle.json").read_text())
    files = {str(p.relative_to(ASSETS)) for p in build_assets.bundle_files(ASSETS)}
    assert files == set(index["files"])  # nothing stale, nothing unlisted
    for name, info in index["files"].items():
        data = (ASSETS / name).read_bytes()
        assert len(data) == info["bytes"] and hashlib.sha256(data).hexdigest() == info["sha256"], name
    assert index["total_bytes"] <= build_assets.BUNDLE_LIMIT


def test_lookup_order_explicit_then_shared_then_bundle(tmp_path, monkeypatch):
    from geodemo.errors import MissingResourceError
    from geodemo.models.tflite import find_weights
    from geodemo.paths import find_resource

    name = "mobilenet_v1_1.0_224_quant_embedding_extractor.tflite"
    monkeypatch.setenv("GEODEMO_SHARED", str(tmp_path / "no-shared"))
    assert find_weights("m", name, None, "mobilenet-imagenet") == ASSETS / "models" / "mobilenet-imagenet" / name
    shared = tmp_path / "shared" / "models" / "mobilenet-imagenet"
    shared.mkdir(parents=True)
    (shared / name).write_bytes(b"x")
    monkeypatch.setenv("GEODEMO_SHARED", str(tmp_path / "shared"))
    assert find_weights("m", name, None, "mobilenet-imagenet") == shared / name
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / name).write_bytes(b"y")
    assert find_weights("m", name, mine, "mobilenet-imagenet") == mine / name
    with pytest.raises(MissingResourceError):  # an explicit path is final, never replaced by the bundle
        find_resource("models", "mobilenet-imagenet", name, explicit=tmp_path / "typo" / name)


def test_bundled_verifier_loads_and_records_its_training(monkeypatch, tmp_path):
    from geodemo.models.aligners import load_aligner

    monkeypatch.setenv("GEODEMO_CHECKPOINTS", str(tmp_path))  # no trained checkpoint: the bundle answers
    aligner = load_aligner("offline-verifier")
    assert aligner.encoder_name == "mobilenet-v1-imagenet"
    assert aligner.provenance["n_train"] == 1049 and aligner.provenance["held_out_groups"] == []
    views = np.load(ASSETS / "gallery" / "views.npy").astype(np.float32)[:5, 0]
    emb = aligner.embed_image_features(views)
    assert emb.shape == (5, 512) and np.allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-5)


@pytest.mark.shared
def test_bundled_gallery_is_the_gallery_built_from_the_shared_folder(shared):
    from geodemo.data import load_benchmark
    from geodemo.imageio import load_image
    from geodemo.models.registry import shared_model
    from geodemo.pipeline import load_preset
    from geodemo.retrieval.bundle import open_gallery_bundle
    from geodemo.retrieval.galleries import image_gallery
    from geodemo.retrieval.multiview import (
        VIEW_NAMES,
        ViewBank,
        multiview_similarities,
        query_views,
        reciprocal_rank,
    )

    preset = load_preset("offline")
    datasets, encoder_name = preset["gallery"]["datasets"], preset["encoder"]
    bundle = open_gallery_bundle()
    assert bundle is not None and bundle.matches(datasets, encoder_name)
    assert bundle.crop == preset["multiview"]["crop"]
    # what the locator gets loads from the bundle (no photo is read) ...
    loaded = image_gallery(datasets, encoder_name, {"kind": "flat"}, progress=False)
    built = image_gallery(datasets, encoder_name, {"kind": "flat"}, progress=False, use_bundle=False)
    assert loaded.meta.ids == built.meta.ids and np.allclose(loaded.meta.coords, built.meta.coords)
    assert loaded.meta.groups == built.meta.groups and loaded.meta.places == built.meta.places
    encoder = shared_model(encoder_name)
    bank = ViewBank.build(encoder, [None] * len(loaded), loaded.meta.ids, loaded.meta.groups,
                          crop=bundle.crop, progress=False)  # no photo paths: only the bundle can answer
    assert bank.pairwise is not None and bank.ids == loaded.meta.ids

    # ... and gives the same neighbours as the gallery built from the photos
    photos = {s.id: s for name in datasets for s in load_benchmark(name).samples}
    for row in range(0, len(loaded), 75):
        views = encoder.encode_images(query_views(load_image(photos[loaded.meta.ids[row]].image_path), bundle.crop),
                                      batch_size=len(VIEW_NAMES))
        args = dict(k=10, exclude_groups={loaded.meta.groups[row]})
        a = loaded.search(views[:1], **args)[0]
        b = built.search(views[:1], **args)[0]
        assert [loaded.meta.ids[i] for i in a.indices] == [built.meta.ids[i] for i in b.indices]
        assert np.allclose(a.similarities, b.similarities, atol=2e-3)
        assert np.allclose(bank.embeddings[row], views[:2], atol=2e-3)  # whole + mirrored, float16
        # the precomputed reciprocal similarities are those of the photo's seven views
        assert np.allclose(bank.pairwise[row], multiview_similarities(views, bank.embeddings), atol=3e-3)
        top = int(a.indices[0])
        sim = float(multiview_similarities(views, bank.embeddings[[top]])[0])
        keep = bank.keep_mask(set(), {loaded.meta.groups[row]})
        computed = ViewBank("x", _views_of(encoder, photos, loaded, bundle.crop, top, bank), bank.valid,
                            bank.groups, bank.ids)  # no pairwise: reciprocal_rank computes it from the views
        assert abs(reciprocal_rank(bank, top, sim, keep) - reciprocal_rank(computed, top, sim, keep)) <= 1


def _views_of(encoder, photos, db, crop, row, bank) -> np.ndarray:
    """The bank's gallery views with row ``row``'s seven views put back (what a full bank holds there)."""
    from geodemo.imageio import load_image
    from geodemo.retrieval.multiview import GALLERY_VIEWS, VIEW_NAMES, query_views

    full = np.zeros((len(bank), len(VIEW_NAMES), bank.embeddings.shape[2]), dtype=np.float32)
    full[:, list(GALLERY_VIEWS)] = bank.embeddings
    full[row] = encoder.encode_images(query_views(load_image(photos[db.meta.ids[row]].image_path), crop),
                                      batch_size=len(VIEW_NAMES))
    return full
