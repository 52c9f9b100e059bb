"""Geo-tagged photo sets (benchmark CSVs, training sets in folders or tars, EXIF-tagged folders) and
tables of their features (:class:`FeatureTable`, shard files).

>>> from geodemo.data import load_benchmark
>>> dev = load_benchmark("im2gps3k-dev")          # 978 photos, group = photographer
>>> for sample, image, error in dev.iter_images():  # a broken photo is reported, never fatal
...     ...
"""

from geodemo.data.benchmarks import BENCHMARKS, BenchmarkSpec, list_benchmarks, load_benchmark, load_examples
from geodemo.data.dataset import GeoDataset, GeoSample, SkippedRow
from geodemo.data.feature_table import (
    FeatureTable,
    ShardedArray,
    feature_shards,
    load_feature_shards,
    write_feature_shard,
)
from geodemo.data.folder import load_exif_folder
from geodemo.data.formats import FORMATS, CsvFormat, detect_format, detect_lat_lon_swap, load_csv
from geodemo.data.tarstore import TarImageStore, TarShardStore, build_tar_index

__all__ = [
    "BENCHMARKS",
    "BenchmarkSpec",
    "CsvFormat",
    "FeatureTable",
    "ShardedArray",
    "feature_shards",
    "load_feature_shards",
    "write_feature_shard",
    "FORMATS",
    "GeoDataset",
    "GeoSample",
    "SkippedRow",
    "TarImageStore",
    "TarShardStore",
    "build_tar_index",
    "detect_format",
    "detect_lat_lon_swap",
    "list_benchmarks",
    "load_benchmark",
    "load_csv",
    "load_examples",
    "load_exif_folder",
]
