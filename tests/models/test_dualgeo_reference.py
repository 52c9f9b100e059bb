"""``dualgeo`` is DualGeo's own model: a checkpoint saved from a transcription of ``DualView_seg.py``
(tests/dualgeo_reference.py) loads with strict=True, and in eval mode our forward equals DualGeo's at
batch size 1, while a photo's embedding never depends on its batch-mates (the one departure)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.nn import functional as F

import geodemo  # noqa: F401
from geodemo.models.dualgeo import DualGeoModel, load_dualgeo_checkpoint, segmentation_view
from tests.dualgeo_reference import DualViewReference

TINY_VISION = {"hidden_size": 128, "intermediate_size": 128, "num_attention_heads": 2,  # 64-dim heads, as CLIP "num_hidden_layers": 2,
               "image_size": 32, "patch_size": 16}
TOWERS = ("vision_model_rgb.", "vision_projection_rgb.")
COORDS = torch.tensor([[48.85, 2.35], [35.68, 139.65], [-33.87, 151.21], [40.71, -74.0]])


@pytest.fixture(scope="module")
def reference() -> DualViewReference:
    from transformers import CLIPConfig, CLIPModel

    torch.manual_seed(0)
    clip = CLIPModel(CLIPConfig(vision_config=TINY_VISION, projection_dim=768,
                                text_config={"hidden_size": 32, "intermediate_size": 64, "num_attention_heads": 2,
                                             "num_hidden_layers": 1}))
    ref = DualViewReference(clip)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():  # trained-looking BatchNorm statistics and scales, so eval mode is not the identity
        for m in ref.semantic_encoder.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.1, generator=g)
                m.running_var.uniform_(0.5, 1.5, generator=g)
        ref.logit_scale_rgb.fill_(3.5)
        ref.logit_scale_seg.fill_(4.2)
    return ref.eval()


@pytest.fixture(scope="module")
def inputs() -> tuple[torch.Tensor, torch.Tensor]:
    """Four photos' pixels and their label maps as DualGeo reads its PNGs (grey levels / 255, 224 px)."""
    g = torch.Generator().manual_seed(2)
    pixels = torch.randn(4, 3, 32, 32, generator=g)
    label_maps = torch.randint(0, 151, (4, 224, 224), generator=g)
    return pixels, segmentation_view(label_maps)


@pytest.fixture(scope="module")
def ours(reference, tmp_path_factory):
    """Our model loaded from a checkpoint laid out as DualGeo_train.py saves it."""
    path = tmp_path_factory.mktemp("dualgeo") / "dvseg_9_.pth"
    torch.save({"epoch": 9, "model_state_dict": reference.state_dict(),
                "optimizer_state_dict": {"state": {}, "param_groups": [{"lr": 4e-5, "params": [0, 1]}]}}, path)
    return load_dualgeo_checkpoint(path)


def test_dualgeo_state_dict_loads_strictly_with_the_same_names_and_shapes(reference, ours):
    ref_sd, our_sd = reference.state_dict(), ours.state_dict()
    assert {k: tuple(v.shape) for k, v in ref_sd.items()} == {k: tuple(v.shape) for k, v in our_sd.items()}
    assert all(torch.equal(ref_sd[k], our_sd[k]) for k in ref_sd)
    heads = ours.trainable_part()  # the trainable part alone, as training and the descriptor use it
    assert isinstance(heads, DualGeoModel)
    assert set(heads.state_dict()) == {k for k in ref_sd if not k.startswith(TOWERS)}
    assert "semantic_encoder.resnet.fc.weight" in heads.state_dict()  # ResNet-18, fc kept as DualGeo keeps it


def test_batch_of_one_equals_dualgeos_forward(reference, ours, inputs):
    pixels, seg = inputs
    for i in range(2):
        pix, s = pixels[i : i + 1], seg[i : i + 1]
        with torch.no_grad():
            ref = reference(pix, s, COORDS[i : i + 1, 1], COORDS[i : i + 1, 0])
            out = ours(ours.encode_pixels(pix), s)
        assert (out["enhanced_rgb"] - ref["rgb_image_embeds"]).abs().max() < 1e-5
        assert (out["enhanced_seg"] - ref["seg_image_embeds"]).abs().max() < 1e-5
        loc = ours.location_embeddings(COORDS[i : i + 1])
        logit_rgb = ours.logit_scale_rgb.exp() * out["image"] @ loc.T
        logit_seg = ours.logit_scale_seg.exp() * out["segmentation"] @ loc.T
        assert (logit_rgb - ref["logits_per_rgb_with_gps"]).abs().max() < 1e-4  # scale e^3.5 = 33
        assert (logit_seg - ref["logits_per_seg_with_gps"]).abs().max() < 1e-4
        with torch.no_grad():
            ref_index = reference.index_vector(pix, s) / math.sqrt(2)  # ours: unit rows
            rgb = ours.encode_pixels(pix)
            index = F.normalize(torch.cat([F.normalize(out["enhanced_rgb"], dim=-1), F.normalize(rgb, dim=-1)], 1), dim=-1)
        assert (index - ref_index).abs().max() < 1e-5


def test_location_head_equals_dualgeos(reference, ours):
    with torch.no_grad():
        want = F.normalize(reference.location_projection_else(reference.location_encoder(COORDS)), dim=-1)
    assert (ours.location_embeddings(COORDS) - want).abs().max() < 1e-5


def test_a_photos_embedding_does_not_depend_on_its_batch_mates(reference, ours, inputs):
    pixels, seg = inputs
    with torch.no_grad():
        rgb = ours.encode_pixels(pixels)
        batch = ours(rgb, seg)
        alone = [ours(rgb[i : i + 1], seg[i : i + 1]) for i in range(len(pixels))]
        shuffled = ours(rgb.flip(0), seg.flip(0))
        for key in ("enhanced_rgb", "image", "segmentation"):
            stacked = torch.cat([a[key] for a in alone])
            assert (batch[key] - stacked).abs().max() < 1e-5
            assert (shuffled[key].flip(0) - stacked).abs().max() < 1e-5
        # DualGeo's own fusion mixes the batch: the same photo gets another embedding beside others
        ref_batch, _ = reference.extract_enhanced_features(pixels, seg)
        ref_alone = torch.cat([reference.extract_enhanced_features(pixels[i : i + 1], seg[i : i + 1])[0]
                               for i in range(len(pixels))])
    assert (ref_batch - ref_alone).abs().max() > 1e-3


def test_objective_is_dualgeos_loss_with_attention_per_photo(reference, ours, inputs):
    """On a batch of four, DualGeo's loss (its attention run photo by photo, the one departure) equals ours."""
    from geodemo.train.objectives import DualGeoObjective

    pixels, seg = inputs
    fusion = reference.cross_attn_fusion
    original = fusion.forward

    def per_photo(rgb, s):
        parts = [original(rgb[i : i + 1], s[i : i + 1]) for i in range(len(rgb))]
        return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])

    fusion.forward = per_photo
    try:
        with torch.no_grad():
            ref = reference(pixels, seg, COORDS[:, 1], COORDS[:, 0])
    finally:
        fusion.forward = original
    heads = ours.trainable_part()
    with torch.no_grad():
        batch = {"image": ours.encode_pixels(pixels), "labelmap": seg, "coords": COORDS}
        loss, parts = DualGeoObjective(heads).eval()(batch)
    assert abs(loss.item() - ref["loss"].item()) < 1e-5
    assert np.isfinite(parts["loss_seg_gps"].item())
