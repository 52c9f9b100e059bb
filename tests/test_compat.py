"""The torchvision guard: the vision libraries import, and the registered nms op gives the right boxes."""

from __future__ import annotations

import importlib

import pytest
import torch

import geodemo  # noqa: F401  (runs the guard)
from geodemo._compat import ensure_torchvision_ops, nms_reference

# Hand-made case: box 1 overlaps box 0 with IoU 81/119 = 0.68; box 2 is apart; box 3 overlaps box 2
# with IoU 25/175 = 0.14. At a 0.5 threshold boxes 0, 2, 3 survive, in score order.
BOXES = torch.tensor(
    [[0.0, 0.0, 10.0, 10.0], [1.0, 1.0, 11.0, 11.0], [20.0, 20.0, 30.0, 30.0], [25.0, 25.0, 35.0, 35.0]]
)
SCORES = torch.tensor([0.9, 0.95, 0.7, 0.6])


def test_guard_reports_a_known_state():
    state = ensure_torchvision_ops()
    assert state in {"native", "fallback", "absent"}
    assert ensure_torchvision_ops() == state  # idempotent


def test_torchvision_imports_and_nms_op_is_right():
    torchvision = importlib.import_module("torchvision")
    assert hasattr(torchvision, "transforms")
    keep = torch.ops.torchvision.nms(BOXES, SCORES, 0.5)
    assert keep.tolist() == [1, 2, 3]  # box 1 (0.95) suppresses box 0; 2 and 3 barely overlap
    assert torch.ops.torchvision.nms(BOXES, SCORES, 0.1).tolist() == [1, 2]  # 0.14 > 0.1 now suppresses 3


def test_reference_nms_matches_op_and_handles_empty():
    assert nms_reference(BOXES, SCORES, 0.5).tolist() == torch.ops.torchvision.nms(BOXES, SCORES, 0.5).tolist()
    empty = nms_reference(torch.zeros((0, 4)), torch.zeros(0), 0.5)
    assert empty.numel() == 0 and empty.dtype == torch.long


@pytest.mark.parametrize("module", ["open_clip", "timm"])
def test_vision_libraries_import(module):
    mod = importlib.import_module(module)
    assert hasattr(mod, "create_model")


def test_open_clip_lists_the_g3_backbone():
    import open_clip

    assert "ViT-L-14" in open_clip.list_models()
    assert ("ViT-L-14", "openai") in open_clip.list_pretrained()


def test_transformers_clip_model_builds():
    from transformers import CLIPConfig, CLIPModel

    tiny = CLIPConfig(
        text_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2},
        vision_config={
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "image_size": 32,
            "patch_size": 16,
        },
        projection_dim=16,
    )
    model = CLIPModel(tiny).eval()
    with torch.no_grad():
        feats = model.get_image_features(pixel_values=torch.rand(2, 3, 32, 32))
    if not isinstance(feats, torch.Tensor):  # some versions return a model output
        feats = feats.pooler_output
    assert feats.shape == (2, 16)
