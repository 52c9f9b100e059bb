"""Retrieval: FAISS galleries, DBSCAN geographic re-ranking, reverse geocoding and verification."""

from geodemo.retrieval.database import (
    DescriptorMismatchError,
    EncoderMismatchError,
    GalleryMeta,
    IndexConfig,
    RetrievalDatabase,
    SearchResult,
)
from geodemo.retrieval.geocode import Place, place_prompt, reverse_geocode, reverse_geocode_many
from geodemo.retrieval.rerank import cluster_neighbours, retrieval_order

__all__ = [
    "DescriptorMismatchError",
    "EncoderMismatchError",
    "GalleryMeta",
    "IndexConfig",
    "RetrievalDatabase",
    "SearchResult",
    "Place",
    "place_prompt",
    "reverse_geocode",
    "reverse_geocode_many",
    "cluster_neighbours",
    "retrieval_order",
]
