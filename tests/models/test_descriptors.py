"""Descriptors: what each kind indexes, identity names, checkpoints, any token encoder for DualGeo."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import geodemo  # noqa: F401
from geodemo.models.descriptors import DualGeoTokenDescriptor, load_descriptor
from geodemo.models.registry import ModelSpec, list_models, register_model
from geodemo.paths import MissingResourceError
from tests.tiny_clip import tiny_clip_config

# The real transformers CLIP architecture, tiny, with G3's 768-d projection so G3's heads fit.
TINY_CLIP = tiny_clip_config(projection_dim=768, layers=1, image_size=32)
TINY_SEGFORMER = {"depths": [1, 1, 1, 1], "hidden_sizes": [8, 16, 24, 32], "num_attention_heads": [1, 1, 2, 2],
                  "decoder_hidden_size": 16, "num_labels": 150}


@pytest.fixture(scope="module", autouse=True)
def tiny_models(one_torch_thread):
    list_models()  # the built-in registry first, then the test models beside it
    register_model(ModelSpec("test-tiny-clip", "image-encoder", "geodemo.models.clip:load_hf_clip",
                             {"pretrained": None, "config": TINY_CLIP, "name": "test-tiny-clip", "device": "cpu"}))
    register_model(ModelSpec("test-tiny-segformer", "segmenter", "geodemo.models.segformer:load_segformer",
                             {"pretrained": None, "config": TINY_SEGFORMER, "image_size": 64,
                              "name": "test-tiny-segformer", "device": "cpu"}))


@pytest.fixture(scope="module")
def photos() -> list[Image.Image]:
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 255, (40 + 8 * i, 48, 3), dtype=np.uint8)) for i in range(3)]


G3_RANDOM = {"kind": "g3", "encoder": "test-tiny-clip", "weights": "random"}
DUALGEO_RANDOM = {"kind": "dualgeo-tokens", "encoder": "test-tiny-clip", "segmenter": "test-tiny-segformer",
                  "weights": "random"}  # our token-level model (dualgeo-plus)
FAITHFUL_DUALGEO = {**DUALGEO_RANDOM, "kind": "dualgeo"}


def test_features_kind_is_unit_encoder_rows(photos):
    d = load_descriptor({"kind": "features", "encoder": "test-tiny-clip"})
    out = d.describe(photos)
    assert out.descriptor.shape == (3, 768) and d.dim == 768
    assert np.allclose(np.linalg.norm(out.descriptor, axis=1), 1, atol=1e-5)
    # features are the raw projection; the descriptor is that row normalised
    assert not np.allclose(np.linalg.norm(out.features, axis=1), 1, atol=1e-3)
    assert np.allclose(out.descriptor, out.features / np.linalg.norm(out.features, axis=1, keepdims=True), atol=1e-6)
    assert out.gps is None
    assert d.name.startswith("features:test-tiny-clip@")
    with pytest.raises(NotImplementedError, match="no GPS head"):
        d.embed_locations(np.array([[0.0, 0.0]]))


def test_g3_kind_is_g3s_index_vector(photos):
    d = load_descriptor(G3_RANDOM)
    out = d.describe(photos)
    assert out.descriptor.shape == (3, 3 * 768) and d.dim == 3 * 768
    assert np.allclose(np.linalg.norm(out.descriptor, axis=1), 1, atol=1e-5)  # unit rows: cosine scores
    blocks = np.split(out.descriptor * np.sqrt(3), 3, axis=1)
    for block in blocks:
        assert np.allclose(np.linalg.norm(block, axis=1), 1, atol=1e-5)
    # written out from G3's IndexSearch.py: [unit(p), unit(else_1(p)), unit(else_2(p))], p = raw projection
    p = torch.from_numpy(out.features)
    h = d.heads

    def unit(x):
        return (x / x.norm(p=2, dim=-1, keepdim=True)).numpy()

    with torch.no_grad():
        expected = [unit(p), unit(h.vision_projection_else_1(p)), unit(h.vision_projection_else_2(p))]
    for got, want in zip(blocks, expected, strict=True):
        assert np.abs(got - want).max() < 1e-5
    assert np.abs(out.gps - expected[2]).max() < 1e-5  # verification uses the image->GPS head
    loc = d.embed_locations(np.array([[48.85, 2.35], [-33.9, 151.2]]))
    assert loc.shape == (2, 768) and np.allclose(np.linalg.norm(loc, axis=1), 1, atol=1e-5)


def test_names_follow_the_weights(photos, tmp_path):
    a, b = load_descriptor(G3_RANDOM), load_descriptor(G3_RANDOM)
    assert a.name == b.name  # same seed, same weights, same identity
    assert np.allclose(a.describe(photos[:1]).descriptor, b.describe(photos[:1]).descriptor)
    other = load_descriptor({**G3_RANDOM, "seed": 1})
    assert other.name != a.name
    # a heads folder as checkpoint: its identity is its content
    from geodemo.models.aligners import save_pretrained

    folder = save_pretrained(other.heads, tmp_path / "g3-heads", other.heads.config)
    from_folder = load_descriptor({"kind": "g3", "encoder": "test-tiny-clip", "checkpoint": str(folder),
                                   "weights": "random", "seed": 1})  # the same random encoder
    assert from_folder.name == other.name
    assert np.allclose(from_folder.describe(photos[:1]).gps, other.describe(photos[:1]).gps, atol=1e-6)


def test_missing_checkpoint_and_bad_specs_are_clear():
    with pytest.raises(MissingResourceError, match="needs a 'checkpoint'"):
        load_descriptor({"kind": "g3", "encoder": "test-tiny-clip"})
    with pytest.raises(MissingResourceError, match="not found"):
        load_descriptor({"kind": "g3", "encoder": "test-tiny-clip", "checkpoint": "no-such-g3"})
    with pytest.raises(ValueError, match="unknown descriptor option"):
        load_descriptor({"kind": "features", "encoder": "test-tiny-clip", "encoder_name": "x"})
    with pytest.raises(ValueError, match="unknown descriptor kind"):
        load_descriptor({"kind": "geoclip", "encoder": "test-tiny-clip"})
    with pytest.raises(ValueError, match="needs a 'segmenter'"):
        load_descriptor({"kind": "dualgeo", "encoder": "test-tiny-clip", "weights": "random"})


def test_faithful_dualgeo_kind_is_dualgeos_index_vector(photos):
    """DualGeo's model: [unit enhanced image view, unit CLIP projection] / sqrt 2; gps: its image view's head."""
    d = load_descriptor(FAITHFUL_DUALGEO)
    out = d.describe(photos)
    assert out.descriptor.shape == (3, 2 * 768) and d.dim == 2 * 768
    scaled = out.descriptor * np.sqrt(2)
    assert np.allclose(np.linalg.norm(scaled[:, :768], axis=1), 1, atol=1e-5)
    assert np.allclose(scaled[:, 768:], out.features / np.linalg.norm(out.features, axis=1, keepdims=True), atol=1e-6)
    assert out.gps.shape == (3, 768) and np.allclose(np.linalg.norm(out.gps, axis=1), 1, atol=1e-5)
    single = d.describe(photos[1:2])  # attention within the photo: batch-mates change nothing
    assert np.abs(single.descriptor[0] - out.descriptor[1]).max() < 1e-5
    assert d.name.startswith("dualgeo:test-tiny-clip@")


def test_dualgeo_tokens_kind_is_dualgeos_index_vector(photos):
    d = load_descriptor(DUALGEO_RANDOM)
    out = d.describe(photos)
    assert out.descriptor.shape == (3, d.model.d_model + 768) and d.dim == d.model.d_model + 768
    assert np.allclose(np.linalg.norm(out.descriptor, axis=1), 1, atol=1e-5)
    scaled = out.descriptor * np.sqrt(2)  # DualGeo's concatenation of two unit parts
    view, raw = scaled[:, : d.model.d_model], scaled[:, d.model.d_model :]
    assert np.allclose(np.linalg.norm(view, axis=1), 1, atol=1e-5)
    assert np.allclose(raw, out.features / np.linalg.norm(out.features, axis=1, keepdims=True), atol=1e-6)
    assert out.gps.shape == (3, 512) and np.allclose(np.linalg.norm(out.gps, axis=1), 1, atol=1e-5)
    # a photo's descriptor does not depend on its batch-mates
    single = d.describe(photos[1:2])
    assert np.abs(single.descriptor[0] - out.descriptor[1]).max() < 1e-4
    assert d.name.startswith("dualgeo-tokens:test-tiny-clip@") and "+test-tiny-segformer@" in d.name


class _TokensOnlyEncoder:
    """An encoder with ``encode_images`` and ``encode_image_tokens`` only (MobileNet's interface)."""

    def __init__(self, clip):
        self.clip, self.name, self.embed_dim, self.token_dim = clip, "tokens-only", clip.embed_dim, clip.token_dim

    def encode_images(self, images, batch_size=16, progress=False):
        return self.clip.encode_images(images, batch_size=batch_size)

    def encode_image_tokens(self, images, batch_size=16, progress=False):
        return self.clip.encode_image_tokens(images, batch_size=batch_size)


def test_dualgeo_takes_any_encoder_with_tokens(photos):
    d = load_descriptor(DUALGEO_RANDOM)
    other = DualGeoTokenDescriptor("x", _TokensOnlyEncoder(d.encoder), d.segmenter, d.model, d.encoder.embed_dim)
    a, b = d.describe(photos), other.describe(photos)
    assert np.abs(a.descriptor - b.descriptor).max() < 1e-5  # unit encoder rows: the same after normalising
    assert np.abs(a.gps - b.gps).max() < 1e-5


def test_a_database_of_one_g3_checkpoint_refuses_another(photos, tmp_path):
    from geodemo.data import GeoDataset, GeoSample
    from geodemo.retrieval import DescriptorMismatchError, RetrievalDatabase
    from geodemo.retrieval.builder import PhotoSource, build_database

    samples = []
    for i, im in enumerate(photos):
        im.save(tmp_path / f"p{i}.png")
        samples.append(GeoSample(f"p{i}", 10.0 * i, 20.0 * i, tmp_path / f"p{i}.png"))
    d = load_descriptor(G3_RANDOM)
    build_database(PhotoSource(GeoDataset("tiny", samples)), d, tmp_path / "db", index={"kind": "flat"},
                   progress=False)
    db = RetrievalDatabase.load(tmp_path / "db", descriptor=d.name)
    assert db.dim == 3 * 768 and db.encoder_name == d.name
    hits = db.search(d.describe(photos[:1]).descriptor, k=1, descriptor=d.name)
    assert int(hits[0].indices[0]) == 0 and hits[0].similarities[0] > 0.999
    other = load_descriptor({**G3_RANDOM, "seed": 1})  # same architecture, other weights
    with pytest.raises(DescriptorMismatchError, match="cannot be compared"):
        RetrievalDatabase.load(tmp_path / "db", descriptor=other.name)


def test_dualgeo_database_from_shards_with_side_grids_matches_photos(photos, tmp_path):
    """Shards keep tokens and label maps as ``<shard>.<name>.npy`` beside the ``.npz`` (memory-mapped)."""
    from geodemo.data import GeoDataset, GeoSample
    from geodemo.models.dualgeo import label_maps_to_tensor
    from geodemo.retrieval import RetrievalDatabase
    from geodemo.retrieval.builder import PhotoSource, ShardSource, build_database

    d = load_descriptor(DUALGEO_RANDOM)
    samples = []
    for i, im in enumerate(photos):
        im.save(tmp_path / f"p{i}.png")
        samples.append(GeoSample(f"p{i}", 10.0 * i, 20.0 * i, tmp_path / f"p{i}.png"))
    build_database(PhotoSource(GeoDataset("tiny", samples)), d, tmp_path / "from-photos", index={"kind": "flat"},
                   chunk_size=2, progress=False)
    feats, tokens = d.encoder.encode_image_outputs(photos, tokens=True)
    maps = label_maps_to_tensor([d.segmenter.label_map(im) for im in photos], d.model.labelmap_size).numpy()
    shards = tmp_path / "shards"
    shards.mkdir()
    np.savez(shards / "shard-00000.npz", ids=np.array([s.id for s in samples]), groups=np.array([""] * 3),
             coords=np.array([[s.lat, s.lon] for s in samples], np.float32), feat_image=feats)
    np.save(shards / "shard-00000.tokens.npy", tokens.numpy().astype(np.float16))
    np.save(shards / "shard-00000.labelmap.npy", maps.astype(np.uint8))
    build_database(ShardSource(shards), d, tmp_path / "from-shards", index={"kind": "flat"}, chunk_size=2,
                   progress=False)
    a, b = RetrievalDatabase.load(tmp_path / "from-photos"), RetrievalDatabase.load(tmp_path / "from-shards")
    assert a.descriptor == b.descriptor == d.name and a.meta.ids == b.meta.ids
    va, vb = a.index.reconstruct_n(0, 3), b.index.reconstruct_n(0, 3)
    assert np.abs(va - vb).max() < 2e-3  # float16 tokens in the shards
    assert (va * vb).sum(1).min() > 0.9999
