"""geodemo: worldwide photo geo-localization, G3 and DualGeo reproduced and explained.

>>> import geodemo
>>> locator = geodemo.GeoLocator.from_preset("offline")
>>> result = locator.locate("photo.jpg")
>>> result.lat, result.lon, result.place

The public names below load lazily, so ``import geodemo`` stays light; it only installs the
torchvision guard (see ``geodemo._compat``) before any vision library is imported.
"""

from __future__ import annotations

import importlib
from typing import Any

from geodemo._compat import ensure_torchvision_ops

ensure_torchvision_ops()

__version__ = "0.1.0"

_PUBLIC = {
    "GeoLocator": "geodemo.pipeline",
    "LocateOptions": "geodemo.pipeline",
    "list_presets": "geodemo.pipeline",
    "LocationResult": "geodemo.result",
    "create_model": "geodemo.models",
    "list_models": "geodemo.models",
    "load_benchmark": "geodemo.data",
    "load_csv": "geodemo.data",
    "load_image": "geodemo.imageio",
    "evaluate": "geodemo.eval",
    "accuracy_table": "geodemo.eval",
}

__all__ = ["__version__", *_PUBLIC]


def __getattr__(name: str) -> Any:
    if name in _PUBLIC:
        return getattr(importlib.import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'geodemo' has no attribute {name!r}")
