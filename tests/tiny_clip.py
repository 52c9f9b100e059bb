"""A tiny configuration of transformers' real CLIP architecture (random weights) for tests that need one."""

from __future__ import annotations

from typing import Any

__all__ = ["tiny_clip_config"]


def tiny_clip_config(projection_dim: int = 32, layers: int = 2, image_size: int = 64) -> dict[str, Any]:
    """CLIP with 32-wide text and 48-wide vision towers of ``layers`` layers, 16-pixel patches and a
    ``projection_dim`` output (768 where G3's heads must fit); CLIP's own vocabulary and special tokens."""
    return {
        "projection_dim": projection_dim,
        "text_config": {"hidden_size": 32, "intermediate_size": 64, "num_attention_heads": 2,
                        "num_hidden_layers": layers, "max_position_embeddings": 77, "vocab_size": 49408,
                        "bos_token_id": 49406, "eos_token_id": 49407, "pad_token_id": 1},
        "vision_config": {"hidden_size": 48, "intermediate_size": 64, "num_attention_heads": 2,
                          "num_hidden_layers": layers, "image_size": image_size, "patch_size": 16},
    }
