"""What every segmenter shares: the ADE20K class list, its palette, area shares, overlays, descriptions.

A segmenter (DeepLabV3 TFLite offline, SegFormer through transformers) only produces a label map
in ADE20K ids (0 = other, 1..150); :func:`make_result` turns it into a
:class:`~geodemo.result.SegmentationResult`, so downstream code never cares which model ran.
"""

from __future__ import annotations

import colorsys
from typing import Any

import numpy as np
from PIL import Image

from geodemo.result import SegmentationResult

__all__ = [
    "ADE20K_CLASSES",
    "ADE20K_PALETTE",
    "NUM_CLASSES",
    "class_shares",
    "colorize",
    "render_overlay",
    "make_result",
    "describe_segmentation",
    "resize_label_map",
    "label_map_of",
]

# ADE20K SceneParsing 150 classes in their official order (the names of mmsegmentation's and
# transformers' id2label), preceded by 0 = "other" (unlabelled pixels), so id i here = ADE20K id i.
ADE20K_CLASSES: tuple[str, ...] = (
    "other", "wall", "building", "sky", "floor", "tree", "ceiling", "road", "bed", "windowpane",
    "grass", "cabinet", "sidewalk", "person", "earth", "door", "table", "mountain", "plant",
    "curtain", "chair", "car", "water", "painting", "sofa", "shelf", "house", "sea", "mirror", "rug",
    "field", "armchair", "seat", "fence", "desk", "rock", "wardrobe", "lamp", "bathtub", "railing",
    "cushion", "base", "box", "column", "signboard", "chest of drawers", "counter", "sand", "sink",
    "skyscraper", "fireplace", "refrigerator", "grandstand", "path", "stairs", "runway", "case",
    "pool table", "pillow", "screen door", "stairway", "river", "bridge", "bookcase", "blind",
    "coffee table", "toilet", "flower", "book", "hill", "bench", "countertop", "stove", "palm",
    "kitchen island", "computer", "swivel chair", "boat", "bar", "arcade machine", "hovel", "bus",
    "towel", "light", "truck", "tower", "chandelier", "awning", "streetlight", "booth",
    "television receiver", "airplane", "dirt track", "apparel", "pole", "land", "bannister",
    "escalator", "ottoman", "bottle", "buffet", "poster", "stage", "van", "ship", "fountain",
    "conveyer belt", "canopy", "washer", "plaything", "swimming pool", "stool", "barrel", "basket",
    "waterfall", "tent", "bag", "minibike", "cradle", "oven", "ball", "food", "step", "tank",
    "trade name", "microwave", "pot", "animal", "bicycle", "lake", "dishwasher", "screen", "blanket",
    "sculpture", "hood", "sconce", "vase", "traffic light", "tray", "ashcan", "fan", "pier",
    "crt screen", "plate", "monitor", "bulletin board", "shower", "radiator", "glass", "clock", "flag",
)  # fmt: skip
NUM_CLASSES = len(ADE20K_CLASSES)  # 151

# Colours that read at a glance on a photo; every other class gets a fixed, well-spread hue.
_NAMED_COLOURS: dict[str, tuple[int, int, int]] = {
    "other": (0, 0, 0),
    "sky": (70, 130, 230),
    "road": (128, 64, 128),
    "sidewalk": (244, 35, 232),
    "building": (180, 120, 90),
    "house": (200, 140, 60),
    "wall": (120, 120, 120),
    "tree": (30, 160, 40),
    "grass": (120, 220, 60),
    "plant": (90, 200, 120),
    "water": (0, 90, 200),
    "sea": (0, 60, 160),
    "river": (40, 120, 220),
    "mountain": (140, 100, 60),
    "person": (220, 20, 60),
    "car": (0, 0, 142),
    "signboard": (255, 215, 0),
    "sand": (240, 220, 150),
    "field": (180, 210, 90),
    "earth": (150, 110, 70),
}


def _build_palette() -> np.ndarray:
    """A fixed ``(151, 3)`` uint8 palette: named colours, else golden-ratio hues (no randomness)."""
    palette = np.zeros((NUM_CLASSES, 3), dtype=np.uint8)
    golden = 0.618033988749895
    for idx, name in enumerate(ADE20K_CLASSES):
        if name in _NAMED_COLOURS:
            palette[idx] = _NAMED_COLOURS[name]
            continue
        hue = (idx * golden) % 1.0
        sat = 0.55 + 0.35 * ((idx * 7) % 3) / 2
        val = 0.65 + 0.3 * ((idx * 5) % 2)
        palette[idx] = [round(255 * c) for c in colorsys.hsv_to_rgb(hue, sat, val)]
    palette.setflags(write=False)
    return palette


ADE20K_PALETTE: np.ndarray = _build_palette()


def label_map_of(segmenter: Any, image: Image.Image) -> np.ndarray:
    """A segmenter's ADE20K label map of one photo (its ``label_map`` shortcut when it has one: no overlay)."""
    fast = getattr(segmenter, "label_map", None)
    return np.asarray(fast(image) if callable(fast) else segmenter.segment(image).label_map)


def resize_label_map(label_map: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of an ``(H, W)`` label map to PIL ``size`` = (width, height)."""
    if (label_map.shape[1], label_map.shape[0]) == tuple(size):
        return label_map
    img = Image.fromarray(label_map.astype(np.uint8), mode="L")
    return np.asarray(img.resize(size, Image.Resampling.NEAREST), dtype=label_map.dtype)


def class_shares(
    label_map: np.ndarray, class_names: tuple[str, ...] | list[str] = ADE20K_CLASSES
) -> dict[str, float]:
    """Share of pixels per class name, largest first, only classes present."""
    counts = np.bincount(label_map.ravel().astype(np.int64), minlength=len(class_names))
    total = counts.sum()
    if total == 0:
        return {}
    order = np.argsort(-counts, kind="stable")
    return {class_names[i]: float(counts[i] / total) for i in order if counts[i] > 0}


def colorize(label_map: np.ndarray) -> Image.Image:
    """The label map painted with :data:`ADE20K_PALETTE` as an RGB image."""
    ids = np.clip(label_map, 0, NUM_CLASSES - 1).astype(np.int64)
    return Image.fromarray(ADE20K_PALETTE[ids], mode="RGB")


def render_overlay(image: Image.Image, label_map: np.ndarray, opacity: float = 0.5) -> Image.Image:
    """The photo with the coloured label map blended on top (``opacity`` 0 = photo, 1 = labels)."""
    if not 0.0 <= opacity <= 1.0:
        raise ValueError(f"opacity must be within [0, 1], got {opacity}")
    photo = image.convert("RGB")
    labels = resize_label_map(np.asarray(label_map), photo.size)
    return Image.blend(photo, colorize(labels), float(opacity))


def make_result(
    model: str, image: Image.Image, label_map: np.ndarray, opacity: float = 0.5
) -> SegmentationResult:
    """Wrap an ADE20K label map at the photo's size into a :class:`SegmentationResult`."""
    label_map = resize_label_map(np.asarray(label_map), image.size)
    return SegmentationResult(
        model=model,
        class_names=list(ADE20K_CLASSES),
        shares=class_shares(label_map),
        label_map=label_map,
        overlay=render_overlay(image, label_map, opacity),
    )


def describe_segmentation(result: SegmentationResult, top: int = 5, min_share: float = 0.01) -> str:
    """Plain-text summary of the largest named classes, e.g. ``"sky 31%, building 22%, road 15%"``."""
    named = [(n, s) for n, s in result.shares.items() if n != ADE20K_CLASSES[0] and s >= min_share]
    return ", ".join(f"{name} {share * 100:.0f}%" for name, share in named[:top])
