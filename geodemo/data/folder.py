"""Any folder of photos whose ground truth is the GPS position the camera wrote into EXIF."""

from __future__ import annotations

from pathlib import Path

from tqdm.auto import tqdm

from geodemo.data.dataset import GeoDataset, GeoSample, SkippedRow
from geodemo.imageio import read_exif_gps

__all__ = ["IMAGE_EXTENSIONS", "load_exif_folder"]

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".tif", ".tiff", ".webp", ".heic", ".bmp"})


def load_exif_folder(
    folder: str | Path, name: str | None = None, recursive: bool = True, progress: bool = False
) -> GeoDataset:
    """A :class:`GeoDataset` of the photos under ``folder`` that carry EXIF GPS.

    Photos without a usable GPS block are listed in ``dataset.skipped``; the parent folder name
    is used as ``group`` (one folder per photographer or trip is the common layout).
    """
    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"photo folder not found: {root}")
    pattern = "**/*" if recursive else "*"
    files = sorted(p for p in root.glob(pattern) if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
    samples: list[GeoSample] = []
    skipped: list[SkippedRow] = []
    for path in tqdm(files, desc=f"reading EXIF in {root.name}", unit="photo", disable=not progress):
        rel = path.relative_to(root).as_posix()
        gps = read_exif_gps(path)
        if gps is None:
            skipped.append(SkippedRow(rel, "no EXIF GPS position (or not a readable image)"))
            continue
        group = path.parent.relative_to(root).as_posix() if path.parent != root else None
        samples.append(GeoSample(rel, gps[0], gps[1], path, group, {"gps_source": "exif"}))
    return GeoDataset(name or root.name, samples, skipped=skipped, source=str(root), format="exif-folder")
