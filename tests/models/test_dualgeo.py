"""Our token-level dual-view model (dualgeo-plus): shapes, normalisation, determinism, per-photo fusion, save/load."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import geodemo  # noqa: F401
from geodemo.models.dualgeo import label_maps_to_tensor
from geodemo.models.dualgeo_tokens import DualGeoTokenModel as DualGeoModel

TINY = dict(token_dim=48, d_model=32, heads=4, layers=2, class_dim=8, seg_widths=(16, 32), labelmap_size=32,
            location={"hidden_dim": 32, "embed_dim": 24, "rff_dim": 8, "seed": 0})


def _inputs(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randn(n, 17, 48, generator=g)
    labels = torch.randint(0, 151, (n, 32, 32), generator=g)
    return tokens, labels


@pytest.fixture()
def model() -> DualGeoModel:
    torch.manual_seed(0)
    return DualGeoModel(**TINY)


def test_shapes_and_unit_norm(model):
    out = model(*_inputs(3))
    for key in ("image", "segmentation", "fused"):
        assert out[key].shape == (3, 24)
        assert torch.allclose(out[key].norm(dim=1), torch.ones(3), atol=1e-5)
    assert model.location_embeddings(torch.tensor([[1.0, 2.0]])).shape == (1, 24)


@pytest.mark.parametrize("mode", ["eval", "train"])
def test_embedding_does_not_depend_on_batch_mates(model, mode):
    getattr(model, mode)()
    tokens, labels = _inputs(6)
    alone = model(tokens[:1], labels[:1])["fused"]
    with_mates = model(tokens, labels)["fused"][:1]
    other_mates = model(torch.cat([tokens[:1], _inputs(4, seed=9)[0]]),
                        torch.cat([labels[:1], _inputs(4, seed=9)[1]]))["fused"][:1]
    assert torch.allclose(alone, with_mates, atol=1e-5)
    assert torch.allclose(alone, other_mates, atol=1e-5)


def test_both_views_matter(model):
    model.eval()
    tokens, labels = _inputs(2)
    base = model(tokens, labels)
    changed_seg = model(tokens, torch.zeros_like(labels))
    # the segmentation view reaches the image embedding through cross-attention
    assert not torch.allclose(base["image"], changed_seg["image"], atol=1e-4)
    assert not torch.allclose(base["segmentation"], changed_seg["segmentation"], atol=1e-4)


def test_deterministic_and_round_trip(model, tmp_path):
    model.eval()
    tokens, labels = _inputs(2)
    a, b = model.embed(tokens, labels), model.embed(tokens, labels)
    assert np.array_equal(a, b)
    loaded = DualGeoModel.from_pretrained(model.save_pretrained(tmp_path / "dualgeo"))
    assert np.array_equal(loaded.embed(tokens, labels), a)
    assert loaded.config == model.config


def test_label_maps_any_size():
    maps = [np.full((300, 200), 3, np.uint8), np.arange(40 * 50).reshape(40, 50) % 151]
    t = label_maps_to_tensor(maps, size=32)
    assert t.shape == (2, 32, 32) and t.dtype == torch.long
    assert (t[0] == 3).all() and int(t[1].max()) <= 150
