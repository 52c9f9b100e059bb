"""Model families behind one registry: ``create_model(name)``, ``list_models()``."""

from geodemo.models.base import GeoAligner, ImageEncoder, ModelUnavailableError, Segmenter
from geodemo.models.registry import ModelSpec, create_model, get_spec, list_models, register_model

__all__ = [
    "GeoAligner",
    "ImageEncoder",
    "Segmenter",
    "ModelUnavailableError",
    "ModelSpec",
    "create_model",
    "get_spec",
    "list_models",
    "register_model",
]
