"""GPS encoder: equivalence with the real geoclip package, projections, gallery cache, aligners."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import geodemo  # noqa: F401  (torchvision guard before geoclip)
from geodemo.geo import haversine_km
from geodemo.models.aligners import MLPGeoAligner, load_aligner, read_pretrained, save_pretrained
from geodemo.models.gps import LocationEncoder, load_geoclip_location_encoder
from geodemo.paths import MissingResourceError


@pytest.fixture(scope="module")
def geoclip_encoder():
    return load_geoclip_location_encoder()


def _coords(n: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    pts = torch.stack([torch.rand(n, generator=g) * 180 - 90, torch.rand(n, generator=g) * 360 - 180], 1)
    edges = torch.tensor([[90.0, 180.0], [-90.0, -180.0], [0.0, 0.0], [40.7128, -74.006], [-33.87, 151.21]])
    return torch.cat([pts, edges])


def test_matches_geoclip_package(geoclip_encoder):
    from geoclip import LocationEncoder as GeoCLIPLocationEncoder

    reference = GeoCLIPLocationEncoder().eval()
    coords = _coords(300)
    with torch.no_grad():
        expected = reference(coords)
        ours = geoclip_encoder(coords)
    scale = expected.abs().max().item()
    assert scale > 1e-3  # real, non-trivial outputs
    assert torch.allclose(ours, expected, atol=1e-5 * scale, rtol=1e-5)
    unit = geoclip_encoder.encode(coords.numpy())
    assert np.allclose(unit, torch.nn.functional.normalize(expected, dim=1).numpy(), atol=1e-5)


def test_geoclip_embeddings_are_geographic(geoclip_encoder):
    # Paris is closer to London than to Sydney in GeoCLIP's embedding space.
    emb = geoclip_encoder.encode([[48.8566, 2.3522], [51.5072, -0.1276], [-33.8688, 151.2093]])
    assert emb[0] @ emb[1] > emb[0] @ emb[2] + 0.1
    assert np.allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)


@pytest.mark.parametrize("projection", ["mercator", "equal_earth"])
def test_fresh_encoder_shapes_and_seed(projection):
    a = LocationEncoder(projection=projection, hidden_dim=64, embed_dim=32, rff_dim=16, seed=3)
    b = LocationEncoder(projection=projection, hidden_dim=64, embed_dim=32, rff_dim=16, seed=3)
    coords = _coords(20).numpy()
    ea, eb = a.encode(coords), b.encode(coords)
    assert ea.shape == (25, 32) and ea.dtype == np.float32
    assert np.array_equal(ea, eb)
    assert [round(m.sigma) for m in a.children()] == [1, 16, 256]
    assert not a.LocEnc0.capsule[0].b.requires_grad
    assert a.project(torch.tensor([[0.0, 180.0]])).abs().max() <= 1.0 + 1e-6


def test_unknown_projection_is_named():
    with pytest.raises(ValueError, match="unknown projection 'utm'"):
        LocationEncoder(projection="utm")


def test_geoclip_aligner_loads_wheel_weights():
    aligner = load_aligner("geoclip")
    assert aligner.encoder_name == "clip-vit-l14" and abs(aligner.logit_scale.item() - 3.681) < 1e-3
    feats = np.random.default_rng(0).standard_normal((3, 768)).astype(np.float32)
    emb = aligner.embed_image_features(feats)
    assert emb.shape == (3, 512) and np.allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-5)
    with pytest.raises(ValueError, match="768"):
        aligner.embed_image_features(np.zeros((1, 1024), np.float32))


def test_checkpoint_round_trip_and_missing(tmp_path):
    model = MLPGeoAligner("tiny", "mobilenet-v1-imagenet", (16, 8, 8),
                          location={"hidden_dim": 16, "embed_dim": 8, "rff_dim": 4, "seed": 1})
    folder = save_pretrained(model, tmp_path / "ckpt", model.config)
    cfg, state = read_pretrained(folder)
    assert cfg["architecture"] == "mlp-aligner" and "location_encoder.LocEnc2.capsule.0.b" in state
    loaded = load_aligner(folder)
    feats = np.random.default_rng(1).standard_normal((4, 16)).astype(np.float32)
    coords = np.array([[10.0, 20.0], [-45.0, 170.0]])
    assert np.array_equal(loaded.embed_image_features(feats), model.eval().embed_image_features(feats))
    assert np.array_equal(loaded.embed_locations(coords), model.embed_locations(coords))
    with pytest.raises(MissingResourceError, match="no aligner checkpoint 'no-such-model'.*under checkpoints/"):
        load_aligner("no-such-model")  # no training preset makes it: no made-up train command
    with pytest.raises(MissingResourceError, match=r"`python scripts/train.py --preset offline-verifier`"):
        load_aligner("/no/such/folder/offline-verifier")


def test_gps_gallery_cached_and_consistent(geoclip_encoder):
    from geodemo.models.gps import geoclip_gps_gallery

    coords, emb = geoclip_gps_gallery(progress=False)
    assert coords.shape == (100_000, 2) and emb.shape == (100_000, 512) and emb.dtype == np.float32
    rows = np.random.default_rng(0).choice(len(coords), 50, replace=False)
    assert np.allclose(emb[rows], geoclip_encoder.encode(coords[rows]), atol=1e-5)
    again_coords, again = geoclip_gps_gallery(progress=False)  # second call reads the cache
    assert np.array_equal(again[rows], emb[rows])
    # the gallery's nearest neighbour in embedding space of a gallery point lies near it
    nearest = np.argsort(-(emb[rows[:5]] @ emb.T), axis=1)[:, 1]
    assert np.median(haversine_km(coords[rows[:5]], coords[nearest])) < 500
