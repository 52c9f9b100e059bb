"""The embedded default gallery (``assets/gallery``): the offline preset's photo gallery, precomputed.

It holds the IM2GPS3k dev photos + the OSV-5M sample embedded by MobileNet V1, as the offline
preset builds them, so a fresh clone answers its first photo without encoding any gallery photo:

* ``manifest.json`` - datasets, encoder, multi-view crop, row count, file checksums;
* ``meta.csv`` - one row per photo: id, lat, lon, place, photographer (group), dataset, file name;
* ``views.npy`` - ``(N, len(GALLERY_VIEWS), D)`` float16: each photo whole (the gallery embedding)
  and mirrored, what multi-view matching compares a query with;
* ``pairwise.npy`` - ``(N, N)`` float16 gallery-to-gallery multi-view similarities, what the
  reciprocal-neighbour test reads (:meth:`geodemo.retrieval.multiview.ViewBank.compact`).

Thumbnails (<= 160 px) live in ``assets/thumbnails/<dataset>/``; a neighbour's ``image_path`` is
the full-size photo when the shared folder has it, else its thumbnail. :func:`open_gallery_bundle`
returns None when the bundle is absent, and galleries fall back to encoding the photos.
Rebuild with ``scripts/build_assets.py``.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property, lru_cache
from pathlib import Path

import numpy as np

from geodemo.data.benchmarks import BENCHMARKS
from geodemo.paths import bundle_path, shared_path
from geodemo.retrieval import multiview  # multiview imports this module: looked up when called
from geodemo.retrieval.database import GalleryMeta, IndexConfig, RetrievalDatabase
from geodemo.storage import atomic_open, save_npy, sha256_file, write_text

__all__ = ["GalleryBundle", "open_gallery_bundle", "save_gallery_bundle", "thumbnail_path", "GALLERY_DIR"]

GALLERY_DIR = bundle_path("gallery")
THUMBNAILS_DIR = bundle_path("thumbnails")
META_COLUMNS = ("id", "lat", "lon", "place", "group", "dataset", "file")


def thumbnail_path(dataset: str, file: str, root: Path = THUMBNAILS_DIR) -> Path:
    """Where the bundle keeps the thumbnail of ``dataset``'s photo ``file`` (always a .jpg)."""
    return root / dataset / (Path(file).stem + ".jpg")


@dataclass(frozen=True)
class GalleryBundle:
    """A saved default gallery; loads its database and view bank without any encoder."""

    folder: Path
    datasets: tuple[str, ...]
    encoder_name: str
    crop: float
    size: int

    def matches(self, datasets: Sequence[object], encoder_name: str) -> bool:
        """Whether a gallery of ``datasets`` (names) embedded by ``encoder_name`` is this one."""
        return encoder_name == self.encoder_name and tuple(str(d) for d in datasets) == self.datasets \
            and all(isinstance(d, str) for d in datasets)

    def _rows(self) -> list[dict[str, str]]:
        with open(self.folder / "meta.csv", newline="", encoding="utf-8") as f:
            return list(csv.DictReader(f))

    def meta(self) -> GalleryMeta:
        """Rows of the gallery; ``image_paths`` are full-size shared photos where present, else thumbnails."""
        rows = self._rows()
        paths: list[str | None] = []
        for r in rows:
            spec = BENCHMARKS.get(r["dataset"]) if r["dataset"] in BENCHMARKS else None
            full = shared_path(*spec.images.split("/"), r["file"]) if spec and spec.images else None
            thumb = thumbnail_path(r["dataset"], r["file"])
            paths.append(str(full) if full is not None and full.is_file() else
                         str(thumb) if thumb.is_file() else None)
        return GalleryMeta(
            ids=[r["id"] for r in rows],
            coords=np.array([[float(r["lat"]), float(r["lon"])] for r in rows], dtype=np.float64).reshape(-1, 2),
            places=[r["place"] or None for r in rows],
            image_paths=paths,
            groups=[r["group"] or None for r in rows],
        )

    @cached_property
    def _views(self) -> np.ndarray:
        """The stored views as float32, read once (the database and the view bank both start from them)."""
        return np.load(self.folder / "views.npy").astype(np.float32)

    def database(self, index: IndexConfig | dict | None = None) -> RetrievalDatabase:
        """The gallery as a :class:`RetrievalDatabase` (its index built from the stored embeddings)."""
        cfg = index if isinstance(index, IndexConfig) else IndexConfig.from_dict(index)
        return RetrievalDatabase.build(self._views[:, 0], self.meta(), self.encoder_name, cfg, progress=False)

    def view_bank(self) -> multiview.ViewBank:
        """The compact multi-view bank (gallery views + reciprocal similarities)."""
        rows = self._rows()
        return multiview.ViewBank(self.encoder_name, self._views, np.ones(len(rows), dtype=bool),
                        [r["group"] or None for r in rows], [r["id"] for r in rows],
                        np.load(self.folder / "pairwise.npy").astype(np.float32))


@lru_cache(maxsize=4)
def open_gallery_bundle(folder: Path = GALLERY_DIR) -> GalleryBundle | None:
    """The bundle in ``folder``, or None when there is none (or it is incomplete)."""
    try:
        info = json.loads((Path(folder) / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not all((Path(folder) / name).is_file() for name in ("meta.csv", "views.npy", "pairwise.npy")):
        return None
    return GalleryBundle(Path(folder), tuple(info["datasets"]), info["encoder"], float(info["crop"]), int(info["size"]))


def save_gallery_bundle(
    folder: Path, db: RetrievalDatabase, bank: multiview.ViewBank, datasets: Sequence[str], crop: float,
    files: Sequence[str], dataset_of_row: Sequence[str], provenance: dict | None = None,
) -> dict:
    """Write the bundle files for ``db`` (rows aligned with ``bank``); returns the manifest."""
    if list(bank.ids) != list(db.meta.ids) or not bool(np.all(bank.valid)):
        raise ValueError("the view bank must hold every gallery photo, in the gallery's order")
    compact = bank.compact()
    folder.mkdir(parents=True, exist_ok=True)

    save_npy(folder / "views.npy", compact.embeddings.astype(np.float16))
    save_npy(folder / "pairwise.npy", compact.pairwise.astype(np.float16))
    with atomic_open(folder / "meta.csv", "w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(META_COLUMNS)
        m = db.meta
        for i, pid in enumerate(m.ids):
            writer.writerow([pid, repr(float(m.coords[i, 0])), repr(float(m.coords[i, 1])), m.places[i] or "",
                             m.groups[i] or "", dataset_of_row[i], files[i]])
    manifest = {
        "datasets": list(datasets),
        "encoder": db.encoder_name,
        "crop": float(crop),
        "size": len(db),
        "views": "whole, mirrored (geodemo.retrieval.multiview.GALLERY_VIEWS), float16",
        "files": {p.name: sha256_file(p) for p in sorted(folder.iterdir()) if p.name != "manifest.json"},
        **({"provenance": provenance} if provenance else {}),
    }
    write_text(folder / "manifest.json", json.dumps(manifest, indent=2, sort_keys=True) + "\n")  # last: marks it whole
    open_gallery_bundle.cache_clear()
    return manifest
