"""Exactness: our G3 and GeoCLIP image paths against the papers' own equations, on the same inputs.

G3's equations are written out here from its ``utils/G3.py`` and ``IndexSearch.py``
(Applied-Machine-Learning-Lab/G3): the heads take the *raw* CLIP projection, only their outputs are
L2-normalised; the location encoder projects [lat, lon] with pyproj EPSG:4326 -> EPSG:3857, divides by
20037508.3427892, orders it [y, x], and sums three RFF capsules. GeoCLIP's image path is its MLP,
read straight from the wheel's weights file, applied to the raw projection (``ImageEncoder.forward``).
Everything is compared to 1e-5 (max abs difference).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import geodemo  # noqa: F401
from geodemo.models.g3 import G3Heads

TOL = 1e-5


def _mlp(state: dict[str, torch.Tensor], prefix: str, x: torch.Tensor) -> torch.Tensor:
    """``nn.Sequential(Linear, ReLU, Linear)`` of G3/GeoCLIP, from its state-dict entries."""
    h = torch.relu(x @ state[f"{prefix}0.weight"].T + state[f"{prefix}0.bias"])
    return h @ state[f"{prefix}2.weight"].T + state[f"{prefix}2.bias"]


def _unit(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm(p=2, dim=-1, keepdim=True)


def _g3_location_features(state: dict[str, torch.Tensor], coords: np.ndarray) -> torch.Tensor:
    """G3's ``CustomLocationEncoder.forward``: pyproj Mercator, / 20037508.3427892, [y, x], three capsules."""
    from pyproj import Proj, Transformer

    transformer = Transformer.from_proj(Proj("epsg:4326"), Proj("epsg:3857"), always_xy=True)
    x, y = transformer.transform(coords[:, 1], coords[:, 0])
    location = torch.Tensor([[b, a] for a, b in zip(x, y, strict=True)]) / 20037508.3427892
    out = torch.zeros(location.shape[0], 512)
    for i in range(3):
        p = f"location_encoder.LocEnc{i}."
        vp = 2 * np.pi * location @ state[p + "capsule.0.b"].T  # rff GaussianEncoding
        h = torch.cat((torch.cos(vp), torch.sin(vp)), dim=-1)
        for layer in (1, 3, 5):
            h = torch.relu(h @ state[p + f"capsule.{layer}.weight"].T + state[p + f"capsule.{layer}.bias"])
        out += h @ state[p + "head.0.weight"].T + state[p + "head.0.bias"]
    return out


def _g3_case():
    """Random G3 heads (seeded), raw image/text projections and places over the whole Mercator range."""
    torch.manual_seed(0)
    heads = G3Heads(location={"projection": "mercator", "seed": 0}).eval()
    state = {k: v.detach().clone() for k, v in heads.state_dict().items()}
    g = torch.Generator().manual_seed(1)
    image = torch.randn(6, 768, generator=g) * 0.6  # raw projections: norms far from 1, as CLIP's are
    text = torch.randn(6, 768, generator=g) * 0.4
    coords = np.array([[48.8566, 2.3522], [-33.8688, 151.2093], [40.7128, -74.006], [0.0, 0.0],
                       [64.1466, -21.9426], [-54.8019, -68.303]])
    return heads, state, image, text, coords


@pytest.fixture(scope="module")
def g3_case():
    return _g3_case()


def g3_differences(heads, state, image, text, coords) -> dict[str, float]:
    """Max abs difference of each G3 output: ours vs G3's equations."""
    with torch.no_grad():
        ref_img_text = _unit(_mlp(state, "vision_projection_else_1.", image))
        ref_img_gps = _unit(_mlp(state, "vision_projection_else_2.", image))
        ref_text = _unit(_mlp(state, "text_projection_else.", text))
        ref_loc = _unit(_mlp(state, "location_projection_else.", _g3_location_features(state, coords)))
        ref_index = torch.cat([_unit(image), ref_img_text, ref_img_gps], dim=1)  # IndexSearch.py's order
        ref_logits = state["logit_scale2"].exp() * ref_img_gps @ ref_loc.T
        ours_loc = torch.from_numpy(heads.embed_locations(coords))
        out = heads(image, text, torch.from_numpy(coords).float())
        return {
            "image->GPS": (heads.image_embeddings(image) - ref_img_gps).abs().max().item(),
            "image->GPS (numpy API)": np.abs(heads.embed_image_features(image.numpy()) - ref_img_gps.numpy()).max(),
            "image->text": (heads.image_text_embeddings(image) - ref_img_text).abs().max().item(),
            "text": (heads.text_embeddings(text) - ref_text).abs().max().item(),
            "location": (ours_loc - ref_loc).abs().max().item(),
            "index descriptor": (heads.index_descriptor(image) - ref_index).abs().max().item(),
            "image-GPS logits / exp(scale)": ((out["logits_image_gps"] - ref_logits).abs().max()
                                              / state["logit_scale2"].exp()).item(),
        }


def test_g3_matches_g3s_equations(g3_case):
    diffs = g3_differences(*g3_case)
    assert max(diffs.values()) < TOL, diffs


def test_g3_heads_do_not_normalise_their_input(g3_case):
    heads, state, image, _, _ = g3_case
    with torch.no_grad():  # the old behaviour (normalised input) is measurably different
        old = _unit(_mlp(state, "vision_projection_else_2.", _unit(image)))
        assert (heads.image_embeddings(image) - old).abs().max() > 100 * TOL


def geoclip_difference(features: np.ndarray) -> tuple[float, float]:
    """(ours vs GeoCLIP's MLP on the raw projection, the same on unit rows: the old input scale)."""
    from geodemo.models.aligners import load_geoclip_aligner
    from geodemo.models.gps import _geoclip_file

    mlp_state = torch.load(_geoclip_file("weights", "image_encoder_mlp_weights.pth"), map_location="cpu",
                           weights_only=True)
    x = torch.from_numpy(features)
    with torch.no_grad():
        ref = _unit(_mlp(mlp_state, "", x)).numpy()  # GeoCLIP: mlp(get_image_features(x)), then F.normalize
        old = _unit(_mlp(mlp_state, "", _unit(x))).numpy()
    ours = load_geoclip_aligner().embed_image_features(features)
    return float(np.abs(ours - ref).max()), float(np.abs(old - ref).max())


def test_geoclip_image_path_matches_the_wheels_mlp():
    features = (np.random.default_rng(0).standard_normal((8, 768)) * 0.6).astype(np.float32)
    diff, old = geoclip_difference(features)
    assert diff < TOL
    assert old > 100 * TOL  # unit rows (the old input) give other embeddings


if __name__ == "__main__":  # prints the figures quoted in the closing note
    case = _g3_case()
    for key, value in g3_differences(*case).items():
        print(f"G3 {key:32s} max abs diff {value:.3e}")
    diff, old = geoclip_difference((np.random.default_rng(0).standard_normal((8, 768)) * 0.6).astype(np.float32))
    print(f"GeoCLIP image path (raw projection)   max abs diff {diff:.3e}  (unit-row input: {old:.3e})")
