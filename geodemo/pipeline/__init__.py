"""The geo-localization pipeline: ``GeoLocator.from_preset(name).locate(photo) -> LocationResult``."""

from geodemo.pipeline.locator import STAGES, GeoLocator, LocateOptions
from geodemo.pipeline.presets import list_presets, load_preset

__all__ = ["GeoLocator", "LocateOptions", "STAGES", "list_presets", "load_preset"]
