"""Feature extraction at model speed: parallel decoding, batched device preprocessing, sharded output.

>>> from geodemo.data import load_benchmark
>>> from geodemo.extraction import extract_to_shards
>>> from geodemo.models import create_model
>>> report = extract_to_shards(load_benchmark("im2gps3k-dev"), create_model("mobilenet-v1-imagenet"),
...                            "features/dev-mobilenet", workers=2)

``scripts/extract_features.py`` is the command line; ``scripts/bench_extract.py`` measures it
against the encoder alone.
"""

from geodemo.extraction.loader import PhotoBatch, photo_batches
from geodemo.extraction.pixels import PixelRecipe, device_pixels, recipe_of, worker_pixels
from geodemo.extraction.run import EncodedBatch, ExtractionReport, encode_photos, extract_to_shards

__all__ = [
    "EncodedBatch",
    "ExtractionReport",
    "PhotoBatch",
    "PixelRecipe",
    "device_pixels",
    "encode_photos",
    "extract_to_shards",
    "photo_batches",
    "recipe_of",
    "worker_pixels",
]
