"""Image/text encoders: tiny open_clip and transformers CLIP of the real architectures (random weights),
the real MobileNet V1 TFLite embedding extractor, and the on-disk feature cache."""

from __future__ import annotations

import collections
import io

import numpy as np
import pytest
import torch
from PIL import Image

import geodemo  # noqa: F401
from geodemo.models import ImageEncoder, create_model
from tests.tiny_clip import tiny_clip_config

OPEN_CLIP_TINY = {"model_name": "ViT-S-32-alt", "random_init": True, "device": "cpu"}  # smallest ViT config
HF_CLIP_TINY = tiny_clip_config()
TEXTS = ["A street view photo taken in Paris, France", "a beach in Brazil", "snowy mountains in Nepal"]


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread(one_torch_thread):
    yield


@pytest.fixture(scope="module")
def photos(shared) -> list[Image.Image]:
    from geodemo.imageio import load_image

    paths = sorted((shared / "data" / "osv5m-sample" / "images").glob("*.jpg"))[:3]
    return [load_image(p) for p in paths]


def _check_encoder(enc, photos, embed_dim: int, tokens: tuple[int, int] | None) -> None:
    assert isinstance(enc, ImageEncoder)
    emb = enc.encode_images(photos, batch_size=2)
    assert emb.shape == (len(photos), embed_dim) and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    # determinism and batch independence
    np.testing.assert_allclose(enc.encode_images(photos[::-1], batch_size=1)[::-1], emb, atol=1e-5)
    assert not np.allclose(emb[0], emb[1], atol=1e-3)  # different photos, different embeddings
    if tokens is not None:
        tok = enc.encode_image_tokens(photos[:2])
        assert isinstance(tok, torch.Tensor) and tuple(tok.shape) == (2, *tokens)
        assert torch.isfinite(tok).all()
        # frozen tokens can feed a trainable layer (no "inference tensor" error in backward)
        head = torch.nn.Linear(tokens[1], 4)
        head(tok).sum().backward()
        assert head.weight.grad is not None
    if enc.has_text_tower:
        txt = enc.encode_texts(TEXTS)
        assert txt.shape == (3, embed_dim) and txt.dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(txt, axis=1), 1.0, atol=1e-5)
        np.testing.assert_allclose(enc.encode_texts(TEXTS[:1]), txt[:1], atol=1e-5)
        assert not np.allclose(txt[0], txt[1], atol=1e-3)


def test_open_clip_tiny_vit(photos, tmp_path):
    from safetensors.torch import save_file

    enc = create_model("clip-vit-l14", **OPEN_CLIP_TINY)
    # ViT-S-32-alt: 256-d joint space, 384-wide vision tower, 224 px / 32 = 7x7 = 49 patch tokens
    assert (enc.embed_dim, enc.token_dim) == (256, 384)
    _check_encoder(enc, photos, 256, (49, 384))
    # the same seed builds the same random model; a weights-file round trip gives the same outputs
    again = create_model("clip-vit-l14", **OPEN_CLIP_TINY)
    np.testing.assert_array_equal(again.encode_images(photos[:1]), enc.encode_images(photos[:1]))
    weights = tmp_path / "tiny.safetensors"
    save_file({k: v.contiguous() for k, v in enc.model.state_dict().items()}, str(weights))
    loaded = create_model("clip-vit-l14", model_name="ViT-S-32-alt", pretrained=str(weights), device="cpu")
    np.testing.assert_allclose(loaded.encode_images(photos), enc.encode_images(photos), atol=1e-6)
    np.testing.assert_allclose(loaded.encode_texts(TEXTS), enc.encode_texts(TEXTS), atol=1e-6)


def test_hf_clip_tiny(photos, tmp_path):
    enc = create_model("hf-clip-vit-l14", random_init=True, config=HF_CLIP_TINY, device="cpu")
    assert (enc.embed_dim, enc.token_dim) == (32, 48)
    _check_encoder(enc, photos, 32, (16, 48))  # 64 px / 16 = 4x4 patches
    # pretrained=None means random weights too; the same seed gives the same model
    again = create_model("hf-clip-vit-l14", pretrained=None, config=HF_CLIP_TINY, device="cpu")
    np.testing.assert_array_equal(again.encode_images(photos), enc.encode_images(photos))
    enc.model.save_pretrained(tmp_path)
    loaded = create_model("hf-clip-vit-l14", local_dir=tmp_path, device="cpu")
    np.testing.assert_allclose(loaded.encode_images(photos), enc.encode_images(photos), atol=1e-6)
    np.testing.assert_allclose(loaded.encode_texts(TEXTS), enc.encode_texts(TEXTS), atol=1e-6)


def test_hf_clip_text_pooling_reads_the_end_token():
    """Padding after the end token must not change a text's embedding (pooling at EOS, masked)."""
    enc = create_model("hf-clip-vit-l14", random_init=True, config=HF_CLIP_TINY, device="cpu")
    short, long_ = enc.encode_texts(["a beach", "a beach in Brazil near Rio de Janeiro at sunset"])
    alone = enc.encode_texts(["a beach"])[0]
    np.testing.assert_allclose(short, alone, atol=1e-5)
    assert not np.allclose(short, long_, atol=1e-3)


def test_mobilenet_real_embeddings(photos):
    enc = create_model("mobilenet-v1-imagenet")
    assert (enc.name, enc.embed_dim, enc.has_text_tower) == ("mobilenet-v1-imagenet", 1024, False)
    _check_encoder(enc, photos, 1024, (49, 1024))
    # the 7x7 tokens are the feature map the graph average-pools into the embedding
    tokens = enc.encode_image_tokens(photos, batch_size=2)
    pooled = torch.nn.functional.normalize(tokens.mean(1), dim=-1).numpy()
    assert np.all(np.sum(pooled * enc.encode_images(photos), axis=1) > 0.9999)
    assert tokens.min() >= 0 and tokens.max() <= 6.0 + 1e-4  # dequantised ReLU6 activations
    torch.testing.assert_close(enc.encode_image_tokens(photos[::-1], batch_size=1).flip(0), tokens)
    np.testing.assert_array_equal(
        enc.encode_images(photos, batch_size=16), enc.encode_images(photos, batch_size=1)
    )
    with pytest.raises(NotImplementedError, match="no text tower"):
        enc.encode_texts(["x"])
    # JPEG re-encoding keeps the embedding; another street view is further away
    buf = io.BytesIO()
    photos[0].save(buf, format="JPEG", quality=70)
    recoded = enc.encode_images([Image.open(buf)])[0]
    emb = enc.encode_images(photos)
    assert recoded @ emb[0] > 0.95
    assert recoded @ emb[0] > max(recoded @ emb[1], recoded @ emb[2]) + 0.1


def test_mobilenet_same_photographer_same_spot_closer_than_random(shared):
    """Dev split: photo pairs by one AUTHOR within 1 km vs random pairs of dev photos."""
    from geodemo.data import load_benchmark
    from geodemo.extraction.features import image_features
    from geodemo.geo import haversine_km

    dev = load_benchmark("im2gps3k-dev")
    coords, rng = dev.coords(), np.random.default_rng(0)
    by_author = collections.defaultdict(list)
    for i, s in enumerate(dev.samples):
        by_author[s.group].append(i)
    same_spot = []
    for _author, idx in sorted(by_author.items(), key=lambda kv: str(kv[0])):
        pairs = [
            (i, j)
            for a, i in enumerate(idx)
            for j in idx[a + 1 :]
            if haversine_km(coords[i], coords[j]) < 1.0
        ]
        if pairs:  # at most 3 pairs per photographer, so no one photographer dominates
            same_spot += [pairs[k] for k in rng.choice(len(pairs), min(3, len(pairs)), replace=False)]
    randoms = rng.choice(len(dev), 100, replace=False).tolist()
    used = sorted({i for p in same_spot for i in p} | set(randoms))
    sub = dev.subset(ids={dev.samples[i].id for i in used})
    feats = image_features("mobilenet-v1-imagenet", sub, progress=False)
    assert feats.valid.all()
    row = {s.id: k for k, s in enumerate(sub.samples)}

    def cos(i: int, j: int) -> float:
        return float(feats.embeddings[row[dev.samples[i].id]] @ feats.embeddings[row[dev.samples[j].id]])

    same = np.array([cos(i, j) for i, j in same_spot])
    rand = np.array([cos(i, j) for a, i in enumerate(randoms) for j in randoms[a + 1 :]])
    auc = float((same[:, None] > rand[None, :]).mean())
    print(f"{len(same)} same-spot pairs: mean cos {same.mean():.3f}; {len(rand)} random pairs: "
          f"{rand.mean():.3f}; gap {same.mean() - rand.mean():.3f}; P(same > random) {auc:.2f}")  # fmt: skip
    assert len(same) >= 100
    assert same.mean() - rand.mean() > 0.04
    assert auc > 0.6


def test_feature_cache_reuses_disk_and_aligns_rows(shared, tmp_path, monkeypatch):
    from geodemo.data import load_benchmark
    from geodemo.extraction import features

    monkeypatch.setenv("GEODEMO_CACHE", str(tmp_path))
    osv = load_benchmark("osv5m-sample").subset(limit=4)
    first = features.cached_image_embeddings("mobilenet-v1-imagenet", osv, progress=False)
    direct = features.shared_model("mobilenet-v1-imagenet").encode_images([osv.open_image(s) for s in osv])
    np.testing.assert_array_equal(first, direct)
    assert len(list(tmp_path.rglob("*.npz"))) == 1

    def no_model(*args, **kwargs):
        raise AssertionError("the cache should have answered")

    monkeypatch.setattr(features, "shared_model", no_model)
    reversed_set = osv.subset(ids={s.id for s in osv})  # same photos
    reversed_set.samples.reverse()
    again = features.cached_image_embeddings("mobilenet-v1-imagenet", reversed_set, progress=False)
    np.testing.assert_array_equal(again, first[::-1])


def test_feature_cache_reports_unreadable_photos(shared, tmp_path, monkeypatch):
    from geodemo.data import load_csv
    from geodemo.extraction.features import image_features

    monkeypatch.setenv("GEODEMO_CACHE", str(tmp_path / "cache"))
    images = tmp_path / "images"
    images.mkdir()
    real = sorted((shared / "data" / "osv5m-sample" / "images").glob("*.jpg"))[0]
    (images / "good.jpg").write_bytes(real.read_bytes())
    (images / "broken.jpg").write_bytes(real.read_bytes()[:200])  # truncated JPEG
    (tmp_path / "set.csv").write_text("filename,lat,lon\ngood.jpg,48.85,2.35\nbroken.jpg,35.68,139.69\n")
    dataset = load_csv(tmp_path / "set.csv", images_dir=images)
    feats = image_features("mobilenet-v1-imagenet", dataset, progress=False)
    assert feats.valid.tolist() == [True, False]
    assert np.linalg.norm(feats.embeddings[0]) == pytest.approx(1.0, abs=1e-5)
    assert not feats.embeddings[1].any()
