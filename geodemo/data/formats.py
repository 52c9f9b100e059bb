"""Readers for the public CSV formats of geo-localization benchmarks and training sets.

Each format is a small :class:`CsvFormat` entry (which columns hold the id, the coordinates,
the photographer, and how the image file is named); adding a format is adding an entry.
``load_csv`` detects the format from the header, checks the coordinate columns against their
value ranges (some public copies label ``LON,LAT`` columns that hold lat, lon) and reports rows
it cannot use instead of failing.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote_plus

import numpy as np
import pandas as pd

from geodemo.data.dataset import GeoDataset, GeoSample, SkippedRow
from geodemo.data.tarstore import open_tar_store

__all__ = [
    "CsvFormat",
    "FORMATS",
    "detect_format",
    "detect_lat_lon_swap",
    "load_csv",
]

log = logging.getLogger(__name__)

# YFCC100M metadata column order (Thomee et al. 2016), as in the raw yfcc4k.txt / G3's numbered copy.
YFCC_NUMBERED = {"name": 1, "owner": 3, "title": 8, "description": 9, "tags": 10, "lon": 12, "lat": 13}


@dataclass(frozen=True)
class CsvFormat:
    """How one public CSV layout maps onto :class:`GeoSample` fields."""

    name: str
    required: tuple[str, ...]  # columns whose presence identifies the format
    id_col: str
    lat_col: str
    lon_col: str
    group_col: str | None = None
    image_name: Callable[[str], str] = str  # id -> file name inside the images folder / tar
    text_cols: tuple[str, ...] = ()  # URL-encoded ('+' for space) text columns, decoded into meta
    description: str = ""


def _jpg(sample_id: str) -> str:
    return f"{sample_id}.jpg"


FORMATS: dict[str, CsvFormat] = {
    f.name: f
    for f in [
        CsvFormat(
            "mp16pro",
            ("IMG_ID", "LAT", "LON", "city", "country", "country_code", "continent"),
            "IMG_ID",
            "LAT",
            "LON",
            description="MP16-Pro (G3): IMG_ID,LAT,LON,neighbourhood,city,county,state,region,country,country_code,continent",
        ),
        CsvFormat(
            "im2gps",
            ("IMG_ID", "LAT", "LON"),
            "IMG_ID",
            "LAT",
            "LON",
            group_col="AUTHOR",
            description="IM2GPS / IM2GPS3k / G3's YFCC4k copy: IMG_ID,AUTHOR,LAT,LON,S3_Label,...",
        ),
        CsvFormat(
            "osv5m",
            ("id", "latitude", "longitude"),
            "id",
            "latitude",
            "longitude",
            image_name=_jpg,
            description="OpenStreetView-5M: id,latitude,longitude,...; image images/{id}.jpg",
        ),
        CsvFormat(
            "yfcc-flickr",
            ("name", "lat", "lon"),
            "name",
            "lat",
            "lon",
            group_col="OwnerNSID",
            text_cols=("Title", "Description", "Tags", "Camera"),
            description="YFCC4k with Flickr metadata: ...,Title,Description,Tags,...,lon,lat,...",
        ),
        CsvFormat(
            "yfcc-numbered",
            ("1", "12", "13"),
            "1",
            "13",
            "12",
            group_col="3",
            text_cols=("8", "9", "10"),
            description="YFCC100M column order with numbered or no header (raw yfcc4k.txt): 12 = lon, 13 = lat",
        ),
    ]
}

_GENERIC_LAT = ("lat", "latitude", "gps_lat", "y")
_GENERIC_LON = ("lon", "lng", "long", "longitude", "gps_lon", "x")
_GENERIC_ID = ("img_id", "image_id", "photo_id", "id", "image", "filename", "file", "path", "name")
_GENERIC_GROUP = ("author", "owner", "user", "user_id", "photographer", "group", "sequence")


def _generic_format(columns: list[str]) -> CsvFormat | None:
    lower = {c.lower(): c for c in columns}

    def pick(options: tuple[str, ...]) -> str | None:
        return next((lower[o] for o in options if o in lower), None)

    lat, lon, sid = pick(_GENERIC_LAT), pick(_GENERIC_LON), pick(_GENERIC_ID)
    if not (lat and lon and sid):
        return None
    return CsvFormat("generic", (sid, lat, lon), sid, lat, lon, group_col=pick(_GENERIC_GROUP))


def detect_format(columns: list[str]) -> CsvFormat:
    """The first registered format whose required columns are all present, else a generic guess."""
    present = set(columns)
    for fmt in FORMATS.values():
        if set(fmt.required) <= present:
            return fmt
    generic = _generic_format(columns)
    if generic is None:
        raise ValueError(
            f"unrecognised CSV columns {columns[:12]}; supported formats: "
            + "; ".join(f.description for f in FORMATS.values())
            + "; or any CSV with an id/image column and lat/lon columns"
        )
    return generic


def detect_lat_lon_swap(lat: np.ndarray, lon: np.ndarray) -> bool:
    """True when the values labelled latitude are really longitudes, judged row by row.

    A row with |lat| > 90 and |lon| <= 90 only makes sense swapped; one with |lon| > 90 and
    |lat| <= 90 only makes sense as labelled. The labels are swapped when the first kind of row
    outnumbers the second (rows impossible either way are ignored). Where every value stays
    inside [-90, 90] the header cannot be checked and is trusted.
    """
    a, b = np.abs(np.asarray(lat, float)), np.abs(np.asarray(lon, float))
    ok = np.isfinite(a) & np.isfinite(b)
    a, b = a[ok], b[ok]
    only_swapped = int(np.sum((a > 90.0) & (b <= 90.0)))
    only_labelled = int(np.sum((b > 90.0) & (a <= 90.0)))
    return only_swapped > only_labelled


def _sniff(path: Path) -> tuple[str, bool]:
    """(delimiter, has_header) of a text table."""
    with open(path, newline="", encoding="utf-8", errors="replace") as fh:
        first = fh.readline()
    delimiter = "\t" if first.count("\t") > first.count(",") else ","
    fields = next(csv.reader([first], delimiter=delimiter), [])
    numbers = 0
    for value in fields:
        try:
            float(value)
            numbers += 1
        except ValueError:
            pass
    all_indices = bool(fields) and all(v.strip() == str(i) for i, v in enumerate(fields))
    # A header row holds names; a data row of the YFCC layout holds several numbers (ids, lat, lon...).
    has_header = all_indices or numbers < max(2, len(fields) // 4)
    return delimiter, has_header


def _read_table(path: Path) -> tuple[pd.DataFrame, bool]:
    delimiter, has_header = _sniff(path)
    df = pd.read_csv(
        path,
        sep=delimiter,
        header=0 if has_header else None,
        dtype=str,
        keep_default_na=False,
        on_bad_lines="warn",
        engine="c",
    )
    df.columns = [str(c).strip() for c in df.columns]
    return df, has_header


def _resolve_images(path: Path, images: str | Path | None) -> Path | None:
    if images is not None:
        return Path(images)
    guess = path.parent / "images"
    return guess if guess.exists() else None


def load_csv(
    path: str | Path,
    images_dir: str | Path | None = None,
    format: str = "auto",
    name: str | None = None,
    meta_columns: str | list[str] = "all",
) -> GeoDataset:
    """Read a benchmark/training CSV in any supported format into a :class:`GeoDataset`.

    ``images_dir`` is the photo folder, a ``.tar`` of the photos or a folder of ``.tar`` shards (default: ``images/`` beside the
    CSV when it exists; none for metadata-only sets). ``format`` names an entry of :data:`FORMATS`
    or ``"auto"``. Rows with missing or impossible coordinates, empty or repeated ids are listed in
    ``dataset.skipped``. ``meta_columns`` ("all" or a list) limits what is kept in ``sample.meta``:
    pass ``[]`` or a few names for multi-million-row training sets such as MP16-Pro.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"benchmark CSV not found: {path}")
    df, has_header = _read_table(path)
    if format == "auto":
        fmt = detect_format(list(df.columns))
    elif format in FORMATS:
        fmt = FORMATS[format]
        missing = [c for c in fmt.required if c not in df.columns]
        if missing:
            raise ValueError(f"{path} lacks columns {missing} required by format {format!r}")
    else:
        raise ValueError(f"unknown CSV format {format!r}; choose one of {sorted(FORMATS)} or 'auto'")

    lat = pd.to_numeric(df[fmt.lat_col], errors="coerce").to_numpy(np.float64)
    lon = pd.to_numeric(df[fmt.lon_col], errors="coerce").to_numpy(np.float64)
    swapped = detect_lat_lon_swap(lat, lon)
    if swapped:
        log.warning(
            "%s: column %r holds longitudes and %r latitudes (values beyond +-90); swapping them",
            path.name,
            fmt.lat_col,
            fmt.lon_col,
        )
        lat, lon = lon, lat

    images = _resolve_images(path, images_dir)
    tar_store = open_tar_store(images) if images is not None else None
    folder = images if images is not None and tar_store is None else None

    ids = df[fmt.id_col].astype(str).str.strip()
    group_col = fmt.group_col if fmt.group_col and fmt.group_col in df.columns else None
    groups = df[group_col].astype(str).str.strip().tolist() if group_col else [""] * len(df)
    used = {fmt.id_col, fmt.lat_col, fmt.lon_col, *([group_col] if group_col else [])}
    if meta_columns == "all":
        meta_cols = [c for c in df.columns if c not in used]
    else:
        meta_cols = [c for c in meta_columns if c in df.columns and c not in used]
    for col in fmt.text_cols:
        if col in meta_cols:
            df[col] = df[col].map(unquote_plus)

    # Validity is decided for all rows at once; the Python loop below only builds kept samples.
    finite = np.isfinite(lat) & np.isfinite(lon)
    with np.errstate(invalid="ignore"):
        in_range = finite & (np.abs(lat) <= 90) & (np.abs(lon) <= 180)
    named = (ids != "").to_numpy()
    duplicate = np.zeros(len(df), dtype=bool)
    valid = named & in_range
    duplicate[valid] = ids[valid].duplicated(keep="first").to_numpy()  # first *usable* row wins
    keep = valid & ~duplicate
    skipped: list[SkippedRow] = []
    first_row = 2 if has_header else 1
    for i in np.flatnonzero(~keep):
        where = f"row {i + first_row}" + (f" ({ids.iat[i]})" if named[i] else "")
        if not named[i]:
            reason = "empty id"
        elif not finite[i]:
            reason = "missing or non-numeric coordinates"
        elif not in_range[i]:
            reason = f"coordinates out of range: {lat[i]}, {lon[i]}"
        else:
            reason = "duplicate id"
        skipped.append(SkippedRow(where, reason))

    rows = np.flatnonzero(keep)
    id_list = ids.to_numpy()[rows].tolist()
    meta_values = [df[c].to_numpy()[rows].tolist() for c in meta_cols]
    lat_kept, lon_kept = lat[rows].tolist(), lon[rows].tolist()
    samples: list[GeoSample] = []
    for j, (i, sample_id) in enumerate(zip(rows.tolist(), id_list, strict=True)):
        meta = {c: values[j] for c, values in zip(meta_cols, meta_values, strict=True)}
        file_name = fmt.image_name(sample_id)
        if tar_store is not None:
            meta["tar_member"] = file_name
        image_path = folder / file_name if folder is not None else None
        samples.append(GeoSample(sample_id, lat_kept[j], lon_kept[j], image_path, groups[i] or None, meta))

    if skipped:
        log.warning("%s: skipped %d of %d rows (see dataset.skipped)", path.name, len(skipped), len(df))
    return GeoDataset(
        name or path.stem,
        samples,
        tar_store=tar_store,
        skipped=skipped,
        source=str(path),
        format=fmt.name,
        lat_lon_swapped=swapped,
    )
