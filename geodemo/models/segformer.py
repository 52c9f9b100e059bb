"""SegFormer semantic segmentation through transformers (DualGeo's segmentation view).

Default: ``nvidia/segformer-b5-finetuned-ade-640-640`` (150 ADE20K classes, 0 = wall, which
becomes our id 1: ADE20K id = SegFormer id + 1, and 0 stays "other"). Any SegFormer checkpoint
or local folder works: its classes are mapped onto the ADE20K list by name, unknown names -> 0.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

import geodemo  # noqa: F401  (torchvision guard before transformers vision code)
from geodemo.models.loading import from_pretrained, resolve_device, resolve_dtype, transformers_weights
from geodemo.models.segmentation import ADE20K_CLASSES, make_result
from geodemo.result import SegmentationResult

__all__ = ["SegFormerSegmenter", "load_segformer", "ade20k_mapping", "SEGFORMER_B5_CONFIG"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# The real MiT-b5 + all-MLP decoder of nvidia/segformer-b5-finetuned-ade-640-640 (random_init without hub).
SEGFORMER_B5_CONFIG: dict[str, Any] = {
    "depths": [3, 6, 40, 3],
    "hidden_sizes": [64, 128, 320, 512],
    "num_attention_heads": [1, 2, 5, 8],
    "sr_ratios": [8, 4, 2, 1],
    "decoder_hidden_size": 768,
    "num_labels": 150,
}


def _norm(name: str) -> str:
    return name.strip().lower().replace("_", " ")


def ade20k_mapping(id2label: dict[int, str]) -> np.ndarray:
    """Lookup table model id -> ADE20K id (0 = other), matching names (or their first word)."""
    full = {_norm(n): i for i, n in enumerate(ADE20K_CLASSES)}
    first = {}
    for i, n in enumerate(ADE20K_CLASSES):
        first.setdefault(_norm(n).split()[0], i)
    table = np.zeros(max(id2label) + 1 if id2label else 1, dtype=np.uint8)
    for idx, label in id2label.items():
        key = _norm(label.split(",")[0])
        table[int(idx)] = full.get(key, first.get(key.split()[0] if key else "", 0))
    return table


class SegFormerSegmenter:
    """Segmenter over a transformers ``SegformerForSemanticSegmentation``."""

    def __init__(
        self,
        model: Any,
        image_size: int,
        device: str,
        dtype: Any,
        name: str = "segformer-b5-ade",
        mean: tuple[float, ...] = IMAGENET_MEAN,
        std: tuple[float, ...] = IMAGENET_STD,
        overlay_opacity: float = 0.5,
    ) -> None:
        self.name = name
        self.model = model.eval()
        self.image_size = int(image_size)
        self.device = device
        self.dtype = dtype
        self.mean, self.std = tuple(mean), tuple(std)
        self.overlay_opacity = overlay_opacity
        id2label = {int(k): v for k, v in model.config.id2label.items()}
        self.mapping = torch.from_numpy(ade20k_mapping(id2label).astype(np.int64))

    def pixels(self, image: Image.Image) -> torch.Tensor:
        """``(1, 3, S, S)`` resized and ImageNet-normalised input (SegformerImageProcessor's eval path)."""
        im = image.convert("RGB").resize((self.image_size, self.image_size), Image.Resampling.BILINEAR)
        x = torch.from_numpy(np.asarray(im, dtype=np.float32) / 255.0).permute(2, 0, 1)
        x = (x - torch.tensor(self.mean).view(3, 1, 1)) / torch.tensor(self.std).view(3, 1, 1)
        return x[None].to(self.device, self.dtype)

    def label_map(self, image: Image.Image) -> np.ndarray:
        """``(H, W)`` uint8 ADE20K ids at the photo's size (logits upsampled bilinearly, then argmax)."""
        return self.label_maps([image])[0]

    @torch.inference_mode()
    def label_maps(self, images: list[Image.Image], batch_size: int = 8) -> list[np.ndarray]:
        """Label maps of several photos, ``batch_size`` per forward pass."""
        out: list[np.ndarray] = []
        step = max(1, int(batch_size))
        for start in range(0, len(images), step):
            chunk = images[start : start + step]
            logits = self.model(pixel_values=torch.cat([self.pixels(im) for im in chunk])).logits.float()
            for row, image in zip(logits, chunk, strict=True):
                w, h = image.size
                up = torch.nn.functional.interpolate(
                    row[None], size=(h, w), mode="bilinear", align_corners=False
                )
                out.append(self.mapping[up[0].argmax(0).cpu()].numpy().astype(np.uint8))
        return out

    def segment(self, image: Image.Image) -> SegmentationResult:
        """Label map, ADE20K class names, area shares and overlay for one photo."""
        return make_result(self.name, image, self.label_map(image), self.overlay_opacity)


def _processor_cfg(folder: Path | None, default_size: int) -> dict[str, Any]:
    path = folder / "preprocessor_config.json" if folder else None
    if not path or not path.is_file():
        return {"size": default_size}
    raw = json.loads(path.read_text())
    size = raw.get("size", default_size)
    if isinstance(size, dict):
        size = size.get("height", size.get("shortest_edge", default_size))
    return {
        "size": int(size),
        "mean": raw.get("image_mean", IMAGENET_MEAN),
        "std": raw.get("image_std", IMAGENET_STD),
    }


def load_segformer(
    pretrained: str | None = "nvidia/segformer-b5-finetuned-ade-640-640",
    local_dir: str | os.PathLike | None = None,
    random_init: bool = False,
    config: dict[str, Any] | None = None,
    image_size: int = 640,
    device: str = "auto",
    dtype: str = "auto",
    revision: str | None = None,
    seed: int = 0,
    overlay_opacity: float = 0.5,
    name: str = "segformer-b5-ade",
    **_: object,
) -> SegFormerSegmenter:
    """Registry loader for SegFormer (hub id, local folder, or random weights of ``config``, default B5)."""
    dev = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, dev)
    folder = transformers_weights(name, pretrained, local_dir, random_init, saved_by="save_pretrained",
                                  allow_patterns=["*.json", "*.safetensors"], revision=revision)

    from transformers import SegformerConfig, SegformerForSemanticSegmentation

    if folder is None:
        cfg = dict(config or SEGFORMER_B5_CONFIG)
        cfg.setdefault("id2label", {i: ADE20K_CLASSES[i + 1] for i in range(cfg.get("num_labels", 150))})
        cfg.setdefault("label2id", {v: k for k, v in cfg["id2label"].items()})
        torch.manual_seed(seed)
        model = SegformerForSemanticSegmentation(SegformerConfig(**cfg))
    else:
        model = from_pretrained(SegformerForSemanticSegmentation, folder, name, torch_dtype)
    proc = _processor_cfg(folder, image_size)
    return SegFormerSegmenter(
        model.to(device=dev, dtype=torch_dtype),
        image_size=proc["size"],
        device=dev,
        dtype=torch_dtype,
        name=name,
        mean=proc.get("mean", IMAGENET_MEAN),
        std=proc.get("std", IMAGENET_STD),
        overlay_opacity=overlay_opacity,
    )
