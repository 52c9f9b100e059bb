"""The real offline segmenter: DeepLabV3 + MobileNetV2 trained on ADE20K (TFLite, shared folder).

Input 513x513 RGB in [-1, 1]; output 151 logits per pixel whose ids already follow ADE20K
(0 = others). The photo is resized to fit 513 on its long side and padded with 0 (the mean),
as DeepLab's own evaluation does; the label map of the valid area is resized back to the photo.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image

from geodemo.models.segmentation import make_result, resize_label_map
from geodemo.models.tflite import TFLiteModel, find_weights
from geodemo.result import SegmentationResult

__all__ = ["DeepLabSegmenter", "load_deeplab_ade"]

SHARED_SUBDIR = "deeplabv3-mnv2-ade20k"


class DeepLabSegmenter:
    """Segmenter over the DeepLabV3-MobileNetV2 ADE20K TFLite model."""

    def __init__(
        self,
        path: Path,
        name: str = "deeplab-mnv2-ade",
        num_threads: int | None = None,
        overlay_opacity: float = 0.5,
    ) -> None:
        self.name = name
        self.model = TFLiteModel(path, num_threads=num_threads)
        self.input_size = self.model.input_shape[1]
        self.overlay_opacity = overlay_opacity

    def label_map(self, image: Image.Image) -> np.ndarray:
        """``(H, W)`` uint8 ADE20K ids at the photo's size."""
        image = image.convert("RGB")
        w, h = image.size
        s = self.input_size
        scale = s / max(w, h)
        rw, rh = max(1, round(w * scale)), max(1, round(h * scale))
        resized = np.asarray(image.resize((rw, rh), Image.Resampling.BILINEAR), dtype=np.float32)
        x = np.zeros((1, s, s, 3), dtype=np.float32)  # 0 = mean pixel after scaling
        x[0, :rh, :rw] = resized / 127.5 - 1.0
        labels = self.model.run_argmax(x, rh, rw).astype(np.uint8)  # logits [0, :rh, :rw], read in place
        return resize_label_map(labels, (w, h))

    def label_maps(self, images: list[Image.Image], batch_size: int = 1) -> list[np.ndarray]:
        """Label maps of several photos (the TFLite graph has a fixed batch of 1: one call each)."""
        return [self.label_map(image) for image in images]

    def segment(self, image: Image.Image) -> SegmentationResult:
        """Label map, ADE20K class names, area shares and overlay for one photo."""
        return make_result(self.name, image, self.label_map(image), self.overlay_opacity)


def load_deeplab_ade(
    filename: str = "deeplabv3_mnv2_ade20k.tflite",
    local_dir: str | os.PathLike | None = None,
    num_threads: int | None = None,
    overlay_opacity: float = 0.5,
    device: str = "cpu",
    **_: object,
) -> DeepLabSegmenter:
    """Registry loader for ``deeplab-mnv2-ade`` (TFLite runs on the CPU whatever ``device`` says)."""
    path = find_weights("deeplab-mnv2-ade", filename, local_dir, SHARED_SUBDIR)
    return DeepLabSegmenter(path, num_threads=num_threads, overlay_opacity=overlay_opacity)
