"""Geo-tagged photo sets: benchmark CSVs, training sets (folders or tars) and EXIF-tagged folders.

>>> from geodemo.data import load_benchmark
>>> dev = load_benchmark("im2gps3k-dev")          # 978 photos, group = photographer
>>> for sample, image, error in dev.iter_images():  # a broken photo is reported, never fatal
...     ...
"""

from geodemo.data.benchmarks import BENCHMARKS, BenchmarkSpec, list_benchmarks, load_benchmark, load_examples
from geodemo.data.dataset import GeoDataset, GeoSample, SkippedRow
from geodemo.data.folder import load_exif_folder
from geodemo.data.formats import FORMATS, CsvFormat, detect_format, detect_lat_lon_swap, load_csv
from geodemo.data.tarstore import TarImageStore, build_tar_index

__all__ = [
    "BENCHMARKS",
    "BenchmarkSpec",
    "CsvFormat",
    "FORMATS",
    "GeoDataset",
    "GeoSample",
    "SkippedRow",
    "TarImageStore",
    "build_tar_index",
    "detect_format",
    "detect_lat_lon_swap",
    "list_benchmarks",
    "load_benchmark",
    "load_csv",
    "load_examples",
    "load_exif_folder",
]
