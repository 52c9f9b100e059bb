"""The geo-localization pipeline: ``GeoLocator.from_preset(name).locate(photo) -> LocationResult``.

A preset is a list of stages (:mod:`geodemo.pipeline.stages`) with their settings;
:mod:`geodemo.pipeline.decision` defines the reported ``confidence`` and ``uncertainty_km``.
"""

from geodemo.pipeline.failures import record_failure
from geodemo.pipeline.locator import GeoLocator, LocateOptions, build_stages
from geodemo.pipeline.presets import list_presets, load_preset
from geodemo.pipeline.stages import list_stages

__all__ = ["GeoLocator", "LocateOptions", "STAGES", "build_stages", "list_presets", "list_stages", "load_preset",
           "record_failure"]


def __getattr__(name: str):
    if name == "STAGES":  # every registered stage name, in data-flow order
        return tuple(list_stages())
    raise AttributeError(f"module 'geodemo.pipeline' has no attribute {name!r}")
