"""A cheap test of whether a photo shows text at all, run before OCR.

Tesseract costs 0.1 to 1 s a photo and few photos show text. Text is a row of letter-sized,
high-contrast blobs of similar height, stroke width and tone. The gate finds the maximally stable
extremal regions (MSER, OpenCV) of the greyscale photo at ``side`` pixels, keeps the letter-shaped
ones (size, aspect, fill, thin strokes, contrast with their box) and counts those with at least two
others beside them on the same line:

    score = text_score(image)      # 0 on sky or a blank wall, tens to hundreds on a sign
    if score >= threshold: run OCR

The threshold (``ClueConfig.gate_threshold``) is chosen by photographer-fold cross-validation on
the dev split, to keep the photos with any word read (``scripts/measure_ocr_gate.py``).
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageOps

from geodemo.errors import ToolUnavailableError

__all__ = ["text_score", "letter_regions", "GateUnavailable", "MIN_LETTER_PX"]

# letter regions: height (pixels, share of the photo height), width / height, filled share of the box
_MIN_HEIGHT, _MAX_HEIGHT_SHARE = 6, 0.25
#: Smallest side (pixels) an image may have and still show a letter: anything thinner holds no text.
MIN_LETTER_PX = _MIN_HEIGHT
_ASPECT = (0.1, 4.0)  # up to a joined word of a cursive script (Arabic)
_FILL = (0.15, 0.85)
_MAX_STROKE = 0.35  # stroke width / letter height
_MIN_CONTRAST = 25.0  # grey levels between the region and the rest of its box


class GateUnavailable(ToolUnavailableError):
    """OpenCV is missing; the message says how to install it."""


def _grey(image: Image.Image, side: int) -> np.ndarray:
    grey = ImageOps.exif_transpose(image).convert("L")
    scale = side / max(grey.size)
    if abs(scale - 1.0) > 0.05:
        size = (max(1, round(grey.width * scale)), max(1, round(grey.height * scale)))
        grey = grey.resize(size, Image.Resampling.BILINEAR)
    return np.asarray(grey)


def letter_regions(image: Image.Image, side: int = 512) -> np.ndarray:
    """``(N, 7)`` float32 rows ``x, y, w, h, stroke width, mean grey, contrast`` of the photo's
    letter-shaped regions, at ``side`` pixels on the long side (nested duplicates dropped)."""
    try:
        import cv2
    except ImportError as exc:  # pragma: no cover - opencv-python-headless is in requirements.txt
        raise GateUnavailable("OpenCV is not installed: pip install opencv-python-headless") from exc
    grey = _grey(image, side)
    if min(grey.shape) < MIN_LETTER_PX:  # no letter fits (and MSER refuses images under 3x3)
        return np.zeros((0, 7), dtype=np.float32)
    regions, boxes = cv2.MSER_create(5, 12, max(13, int(0.02 * grey.size))).detectRegions(grey)
    boxes = np.asarray(boxes, dtype=np.int64).reshape(-1, 4)
    if len(boxes) == 0:
        return np.zeros((0, 7), dtype=np.float32)
    w, h = boxes[:, 2].astype(np.float64), boxes[:, 3].astype(np.float64)
    fill = np.array([len(r) for r in regions]) / (w * h)
    shaped = ((h >= _MIN_HEIGHT) & (h <= _MAX_HEIGHT_SHARE * grey.shape[0]) & (w > _ASPECT[0] * h)
              & (w < _ASPECT[1] * h) & (fill > _FILL[0]) & (fill < _FILL[1]))
    rows, seen = [], set()
    for i in np.flatnonzero(shaped):
        x, y, bw, bh = (int(v) for v in boxes[i])
        if (key := (x // 2, y // 2, bw // 2, bh // 2)) in seen:
            continue
        seen.add(key)
        pts = regions[i]
        mask = np.zeros((bh + 2, bw + 2), dtype=np.uint8)
        mask[pts[:, 1] - y + 1, pts[:, 0] - x + 1] = 1
        stroke = 2.0 * float(cv2.distanceTransform(mask, cv2.DIST_L2, 3).max())
        inside = float(grey[pts[:, 1], pts[:, 0]].mean())
        box = grey[y:y + bh, x:x + bw]
        outside = (float(box.sum()) - inside * len(pts)) / max(1, box.size - len(pts))
        rows.append((x, y, bw, bh, stroke, inside, inside - outside))
    return np.asarray(rows, dtype=np.float32).reshape(-1, 7)


def _in_lines(letters: np.ndarray) -> int:
    """How many letters have two or more neighbours alike in height, stroke and tone on their line."""
    x, y, w, h, stroke, tone, contrast = letters.T
    cy = y + h / 2
    hh = np.maximum(h[:, None], h[None, :])
    gap = np.maximum(x[None, :] - (x + w)[:, None], x[:, None] - (x + w)[None, :])
    strokes = np.maximum(stroke[:, None], stroke[None, :]) / np.maximum(1e-3, np.minimum(stroke[:, None], stroke[None, :]))
    near = ((np.abs(h[:, None] - h[None, :]) < 0.35 * hh) & (np.abs(cy[:, None] - cy[None, :]) < 0.35 * hh)
            & (gap > -0.2 * hh) & (gap < 1.2 * hh) & (np.abs(tone[:, None] - tone[None, :]) < 40)
            & (np.sign(contrast[:, None]) == np.sign(contrast[None, :])) & (strokes < 2.0))
    np.fill_diagonal(near, False)
    return int((near.sum(1) >= 2).sum())


def text_score(image: Image.Image, side: int = 512, max_letters: int = 3000) -> int:
    """How many letter-like regions of ``image`` stand in a line of three or more (0: no text seen)."""
    letters = letter_regions(image, side)
    letters = letters[(letters[:, 4] < _MAX_STROKE * letters[:, 3]) & (np.abs(letters[:, 6]) > _MIN_CONTRAST)]
    if len(letters) > max_letters:  # a texture of thousands of specks: the largest are enough
        letters = letters[np.argsort(-letters[:, 3], kind="stable")[:max_letters]]
    return _in_lines(letters) if len(letters) >= 3 else 0
