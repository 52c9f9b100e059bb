"""Feature extraction at model speed: parallel decoding, batched device preprocessing, sharded output.

>>> from geodemo.data import load_benchmark
>>> from geodemo.extraction import extract_to_shards
>>> from geodemo.models import create_model
>>> report = extract_to_shards(load_benchmark("im2gps3k-dev"), create_model("mobilenet-v1-imagenet"),
...                            "features/dev-mobilenet", workers=2)

``scripts/extract_features.py`` is the command line; ``scripts/bench_extract.py`` measures it
against the encoder alone. Names load lazily, as in ``geodemo``. The encoders' preprocessing
(``PixelRecipe``) lives with the encoders, in :mod:`geodemo.models.pixels`.
"""

from __future__ import annotations

import importlib
from typing import Any

_PUBLIC = {
    "EncodedBatch": "geodemo.extraction.run",
    "ExtractionReport": "geodemo.extraction.run",
    "encode_photos": "geodemo.extraction.run",
    "extract_to_shards": "geodemo.extraction.run",
    "PhotoBatch": "geodemo.extraction.loader",
    "photo_batches": "geodemo.extraction.loader",
}

__all__ = sorted(_PUBLIC)


def __getattr__(name: str) -> Any:
    if name in _PUBLIC:
        return getattr(importlib.import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'geodemo.extraction' has no attribute {name!r}")
