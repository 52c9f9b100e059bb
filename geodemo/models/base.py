"""The interfaces every model family implements, so the pipeline never imports a backend."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np
from PIL import Image

from geodemo.errors import ModelUnavailableError
from geodemo.result import SegmentationResult

__all__ = ["ImageEncoder", "Segmenter", "GeoAligner", "ModelUnavailableError"]


@runtime_checkable
class ImageEncoder(Protocol):
    """Maps photos (and, where the model has a text tower, texts) to L2-normalised embeddings."""

    name: str
    embed_dim: int
    has_text_tower: bool

    def encode_images(
        self, images: list[Image.Image], batch_size: int = 16, progress: bool = False
    ) -> np.ndarray:
        """``(N, embed_dim)`` float32, each row of unit length."""
        ...

    def encode_texts(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        """``(N, embed_dim)`` float32 unit rows; raises ``NotImplementedError`` without a text tower."""
        ...


@runtime_checkable
class Segmenter(Protocol):
    """Semantic segmentation onto the ADE20K class list (0 = other, 1..150)."""

    name: str

    def segment(self, image: Image.Image) -> SegmentationResult:
        ...


@runtime_checkable
class GeoAligner(Protocol):
    """Image features and GPS coordinates embedded in one space (G3/GeoCLIP geo-alignment).

    ``encoder_name`` names the registered :class:`ImageEncoder` whose embeddings it takes.
    Verification scores a candidate by the cosine of the two embeddings.
    """

    name: str
    encoder_name: str

    def embed_image_features(self, features: np.ndarray) -> np.ndarray:
        """``(N, D_image)`` encoder embeddings -> ``(N, D_gps)`` unit rows."""
        ...

    def embed_locations(self, coords: np.ndarray) -> np.ndarray:
        """``(M, 2)`` [lat, lon] degrees -> ``(M, D_gps)`` unit rows."""
        ...
