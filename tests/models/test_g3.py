"""G3: loading a state dict laid out as G3's training script saves it, heads as a GeoAligner."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

import geodemo  # noqa: F401
from geodemo.models.aligners import load_aligner, save_pretrained
from geodemo.models.g3 import G3Heads, load_g3_checkpoint


def _tiny_clip_parts() -> dict[str, torch.Tensor]:
    """CLIP towers of the real transformers architecture, tiny, under G3's key names."""
    from transformers import CLIPConfig, CLIPModel

    cfg = CLIPConfig(
        vision_config=dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=1,
                           patch_size=14, image_size=28),
        text_config=dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=1,
                         vocab_size=100, max_position_embeddings=16, bos_token_id=0, eos_token_id=1,
                         pad_token_id=1),
        projection_dim=768,
    )
    torch.manual_seed(0)
    clip = CLIPModel(cfg)
    parts = {f"vision_model.{k}": v for k, v in clip.vision_model.state_dict().items()}
    parts |= {f"text_model.{k}": v for k, v in clip.text_model.state_dict().items()}
    parts["vision_projection.weight"] = clip.visual_projection.weight.detach().clone()
    parts["text_projection.weight"] = clip.text_projection.weight.detach().clone()
    # older transformers saved these buffers; G3's published state dict may carry them
    parts["vision_model.embeddings.position_ids"] = torch.arange(5)[None]
    parts["text_model.embeddings.position_ids"] = torch.arange(16)[None]
    return parts


def _g3_state_dict() -> dict[str, torch.Tensor]:
    """Every G3 head/location key at full size, written out from the issue's list (not from our model)."""
    g = torch.Generator().manual_seed(1)
    sd: dict[str, torch.Tensor] = {}
    for i, sigma in enumerate((1.0, 16.0, 256.0)):
        p = f"location_encoder.LocEnc{i}"
        sd[f"{p}.capsule.0.b"] = torch.randn(256, 2, generator=g) * sigma
        for layer, (o, n) in {1: (1024, 512), 3: (1024, 1024), 5: (1024, 1024)}.items():
            sd[f"{p}.capsule.{layer}.weight"] = torch.randn(o, n, generator=g) * n**-0.5
            sd[f"{p}.capsule.{layer}.bias"] = torch.randn(o, generator=g) * 0.01
        sd[f"{p}.head.0.weight"] = torch.randn(512, 1024, generator=g) * 1024**-0.5
        sd[f"{p}.head.0.bias"] = torch.zeros(512)
    for name, (d_in, d_mid, d_out) in {
        "vision_projection_else_1": (768, 768, 768),
        "vision_projection_else_2": (768, 768, 768),
        "text_projection_else": (768, 768, 768),
        "location_projection_else": (512, 512, 768),
    }.items():
        sd[f"{name}.0.weight"] = torch.randn(d_mid, d_in, generator=g) * d_in**-0.5
        sd[f"{name}.0.bias"] = torch.randn(d_mid, generator=g) * 0.01
        sd[f"{name}.2.weight"] = torch.randn(d_out, d_mid, generator=g) * d_mid**-0.5
        sd[f"{name}.2.bias"] = torch.randn(d_out, generator=g) * 0.01
    for i in (1, 2, 3):
        sd[f"logit_scale{i}"] = torch.tensor(3.99 + i)
    return sd | _tiny_clip_parts()


@pytest.fixture(scope="module")
def g3_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("g3") / "g3.pth"
    state = _g3_state_dict()
    torch.save(state, path)  # what G3's script does: torch.save(model.state_dict(), ...)
    return path, state


def test_loads_g3_state_dict_exactly(g3_file):
    path, state = g3_file
    model = load_g3_checkpoint(path)
    own = model.state_dict()
    for key, value in state.items():
        if key.endswith("position_ids"):
            continue
        assert torch.equal(own[key], value), key
    assert not model.location_encoder.LocEnc0.capsule[0].b.requires_grad  # RFF matrix frozen
    assert model.location_encoder.projection == "mercator"
    assert model.vision_model.config.hidden_size == 64 and model.vision_model.config.num_hidden_layers == 2
    # forward through the towers and heads
    emb = model.encode_pixels(torch.randn(2, 3, 28, 28))  # raw projections, as G3's heads take them
    assert emb.shape == (2, 768) and not torch.allclose(emb.norm(dim=1), torch.ones(2), atol=1e-3)
    out = model(emb, torch.randn(2, 768), torch.tensor([[48.85, 2.35], [-33.9, 151.2]]))
    assert out["logits_image_gps"].shape == (2, 2)
    # logits use the loaded scale: exp(3.99 + 2) on unit vectors bounds |logit|
    assert out["logits_image_gps"].abs().max() <= np.exp(5.99) + 1e-3


def test_refuses_pickled_code(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("unpickled!",))

    path = tmp_path / "evil.pth"
    with open(path, "wb") as f:
        pickle.dump({"x": Evil()}, f)
    with pytest.raises(pickle.UnpicklingError):
        load_g3_checkpoint(path)


def test_wrong_layout_is_named(tmp_path):
    path = tmp_path / "bad.pth"
    torch.save({"vision_projection_else_1.0.weight": torch.zeros(768, 768)}, path)
    with pytest.raises(KeyError, match="not a G3 state dict"):
        load_g3_checkpoint(path)


def test_heads_folder_round_trip_as_aligner(g3_file, tmp_path):
    path, _ = g3_file
    full = load_g3_checkpoint(path)
    heads = G3Heads.from_config(full.config)
    heads.load_state_dict(full.heads_state_dict(), strict=True)
    folder = save_pretrained(heads, tmp_path / "g3-heads", heads.config)
    aligner = load_aligner(folder)
    feats = np.random.default_rng(0).standard_normal((3, 768)).astype(np.float32)
    coords = np.array([[40.7, -74.0], [35.7, 139.7]])
    a, b = aligner.embed_image_features(feats), aligner.embed_locations(coords)
    assert a.shape == (3, 768) and b.shape == (2, 768)
    assert np.allclose(np.linalg.norm(a, axis=1), 1, atol=1e-5)
    with torch.no_grad():
        expect = full.image_embeddings(torch.from_numpy(feats)).numpy()
    assert np.allclose(a, expect, atol=1e-6)
