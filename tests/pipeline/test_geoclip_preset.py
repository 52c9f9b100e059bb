"""The ``geoclip`` preset answers exactly as ``geoclip.GeoCLIP.predict(image, top_k)`` does.

The real CLIP ViT-L/14 architecture (transformers, built locally with random weights: nothing is
downloaded) is the backbone of both: the wheel's ``GeoCLIP`` gets it through its
``CLIPModel.from_pretrained`` / ``AutoProcessor.from_pretrained`` calls, and our preset loads it through
its registry config. The image MLP, location encoder, logit scale and 100K GPS gallery are the wheel's
trained files in both. Top-5 coordinates must be equal and probabilities agree to 1e-5.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import geodemo  # noqa: F401  (torchvision guard before geoclip and transformers)
from geodemo.paths import REPO_ROOT
from geodemo.pipeline import GeoLocator, load_preset
from geodemo.pipeline.presets import with_random_weights

PHOTO = REPO_ROOT / "assets" / "examples" / "101220879_0a1be45b79_33_24311489@N00.jpg"


class _ProjectionOnly(nn.Module):
    """A CLIPModel whose ``get_image_features`` returns the projection tensor, as transformers 4 (what
    geoclip 1.2.0 was written for) did; transformers 5 returns a ModelOutput holding it."""

    def __init__(self, clip: nn.Module):
        super().__init__()
        self.clip = clip

    def get_image_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.clip.get_image_features(pixel_values=pixel_values).pooler_output


@pytest.fixture(scope="module")
def preset_locator():
    config = with_random_weights(load_preset("geoclip"))
    return GeoLocator(config)


@pytest.fixture(scope="module")
def wheel_geoclip(preset_locator, monkeypatch_module):
    """The wheel's GeoCLIP with the preset's own backbone and processor (the same objects)."""
    import geoclip.model.image_encoder as image_encoder
    from geoclip import GeoCLIP

    backbone = preset_locator.components.descriptor.encoder
    asked: list[str] = []

    def clip_from_pretrained(name, *a, **k):
        asked.append(name)
        return _ProjectionOnly(backbone.model)

    def processor_from_pretrained(name, *a, **k):
        asked.append(name)
        return backbone.image_processor

    monkeypatch_module.setattr(image_encoder.CLIPModel, "from_pretrained", clip_from_pretrained)
    monkeypatch_module.setattr(image_encoder.AutoProcessor, "from_pretrained", processor_from_pretrained)
    model = GeoCLIP(from_pretrained=True).eval()
    assert asked == ["openai/clip-vit-large-patch14"] * 2  # the repo our geoclip-vit-l14 config names
    return model


@pytest.fixture(scope="module")
def monkeypatch_module():
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()


def test_preset_backbone_is_geoclips():
    from geodemo.models.registry import get_spec

    cfg = get_spec(load_preset("geoclip")["descriptor"]["encoder"]).config
    assert cfg["pretrained"] == "openai/clip-vit-large-patch14" and cfg["preprocess"] == "transformers"


@pytest.mark.slow  # two CLIP ViT-L/14 towers on CPU: 20 to 40 s
def test_top5_equals_geoclip_predict(preset_locator, wheel_geoclip):
    gps, prob = wheel_geoclip.predict(str(PHOTO), top_k=5)
    result = preset_locator.locate(PHOTO)
    assert result.stages == ["load", "encode", "candidates.geoclip", "decide.top_score"]
    ours = [c for c in result.candidates if c.source == "geoclip"]
    assert len(ours) == 5
    np.testing.assert_array_equal(np.array([[c.lat, c.lon] for c in ours], np.float32), gps.numpy())
    np.testing.assert_allclose([c.details["probability"] for c in ours], prob.numpy(), rtol=0, atol=1e-5)
    # the random backbone still gives a non-uniform softmax: the comparison is not between constants
    assert prob[0] > 2 / 100_000
    assert (result.lat, result.lon) == pytest.approx((float(gps[0, 0]), float(gps[0, 1])))
    assert result.verifier == "geoclip-top1" and not result.errors


def test_geoclip_plus_runs_every_stage_with_geoclips_candidates(preset_locator):
    """geoclip-plus: the same backbone and GeoCLIP top 5, verified and decided by our stages."""
    config = with_random_weights(load_preset("geoclip-plus"))
    locator = GeoLocator(config, descriptor=preset_locator.components.descriptor)
    result = locator.locate(PHOTO)
    assert result.stages[:2] == ["load", "encode"] and result.stages[-1] == "decide.calibrated"
    assert "candidates.geoclip" in result.stages and "verify" in result.stages
    assert sum(c.source == "geoclip" for c in result.candidates) == 5
    assert result.verifier.startswith("aligner:geoclip")  # GeoCLIP's GPS space decided, not the fallback
    assert np.isfinite(result.lat) and np.isfinite(result.lon)
