"""Presentation of a LocationResult: offline Leaflet maps, tables and the failure explanation.

Nothing here runs a model or recomputes a prediction; it only reads what the pipeline recorded.
"""

from geodemo.viz.basemap import base_map, map_document, map_iframe
from geodemo.viz.explain import ACCURACY_BANDS_KM, ErrorReport, accuracy_bands, error_report, explain_failure
from geodemo.viz.maps import cluster_map, neighbour_map, result_map, thumbnail_data_uri
from geodemo.viz.tables import candidate_rows, lmm_rows, share_rows, timing_text

__all__ = [
    "ACCURACY_BANDS_KM",
    "ErrorReport",
    "accuracy_bands",
    "base_map",
    "candidate_rows",
    "cluster_map",
    "error_report",
    "explain_failure",
    "lmm_rows",
    "map_document",
    "map_iframe",
    "neighbour_map",
    "result_map",
    "share_rows",
    "thumbnail_data_uri",
    "timing_text",
]
