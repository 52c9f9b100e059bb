"""Build a saved :class:`RetrievalDatabase` of a preset's descriptor from photos or feature shards.

>>> from geodemo.data import load_benchmark
>>> from geodemo.models.descriptors import load_descriptor
>>> from geodemo.retrieval.builder import build_database, PhotoSource
>>> d = load_descriptor({"kind": "features", "encoder": "mobilenet-v1-imagenet"})
>>> report = build_database(PhotoSource(load_benchmark("im2gps3k-dev")), d, "galleries/dev-mobilenet")

Rows are described ``chunk_size`` at a time; each finished chunk is written atomically to
``<out>/.partial/``, so a killed build resumes at the first missing chunk without duplicating a row.
The partial folder records the descriptor, the source and the chunk size: resuming with any of them
changed is refused (``overwrite=True`` starts again). Unreadable photos are reported and skipped.
When every chunk is done the index (kind from :class:`IndexConfig`) is built, saved with the
descriptor's name, and the partial folder removed. A preset uses the result with ``gallery.path``.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from geodemo.data.dataset import GeoDataset, SkippedRow
from geodemo.errors import GeodemoError
from geodemo.models.g3 import g3_inputs
from geodemo.retrieval.database import GalleryMeta, IndexConfig, RetrievalDatabase
from geodemo.retrieval.geocode import reverse_geocode_many
from geodemo.storage import load_npz, read_json, save_npz, write_json

__all__ = ["PhotoSource", "ShardSource", "BuildReport", "BuildMismatchError", "build_database",
           "descriptor_spec"]

PARTIAL_DIR = ".partial"
STATE_FILE = "build.json"


class BuildMismatchError(GeodemoError, ValueError):
    """An interrupted build in the output folder was made with another descriptor, source or chunking."""


@dataclass
class _Chunk:
    """What one chunk contributes: its kept rows' descriptors and metadata, and the rows it skipped."""

    descriptor: np.ndarray
    meta: GalleryMeta
    skipped: list[SkippedRow] = field(default_factory=list)


class PhotoSource:
    """Photos of a :class:`~geodemo.data.GeoDataset` (CSV + folder or tar, EXIF folder, benchmark)."""

    def __init__(self, dataset: GeoDataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    @property
    def fingerprint(self) -> str:
        h = hashlib.sha1(self.dataset.name.encode())
        for s in self.dataset.samples:
            h.update(f"{s.id}|{s.image_path or s.meta.get('tar_member')}|{s.lat:.6f}|{s.lon:.6f}\n".encode())
        return h.hexdigest()[:12]

    def chunk(self, start: int, stop: int, descriptor: Any) -> _Chunk:
        part = GeoDataset(self.dataset.name, self.dataset.samples[start:stop], tar_store=self.dataset.tar_store)
        kept, images, skipped = [], [], []
        vectors = [np.zeros((0, descriptor.dim), np.float32)]
        for sample, image, error in part.iter_images(progress=False):
            if image is None:
                skipped.append(SkippedRow(sample.id, error or "unreadable"))
                continue
            kept.append(sample)
            images.append(image)
            if len(images) >= descriptor.batch_size:  # decoded photos are held one batch at a time
                vectors.append(descriptor.describe(images).descriptor)
                images = []
        if images:
            vectors.append(descriptor.describe(images).descriptor)
        coords = np.array([[s.lat, s.lon] for s in kept], dtype=np.float64).reshape(-1, 2)
        meta = GalleryMeta(
            ids=[s.id for s in kept], coords=coords,
            places=[p.text for p in reverse_geocode_many(coords)] if len(kept) else [],
            image_paths=[str(s.image_path) if s.image_path else None for s in kept],
            groups=[s.group for s in kept],
        )
        return _Chunk(np.concatenate(vectors), meta, skipped)


class ShardSource:
    """Feature shards written by ``scripts/extract_features.py`` (``shard-*.npz`` + ``meta.json``).

    ``feat_projection`` (CLIP's projection before normalisation), else ``feat_image``, is the
    encoder's raw output that :meth:`Descriptor.describe_features` takes; the dualgeo descriptor also needs ``tokens`` and ``labelmap``, in the ``.npz`` or as
    ``<shard>.<name>.npy`` beside it (memory-mapped, read a chunk at a time).
    """

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.shards = sorted(p for p in self.folder.glob("shard-*.npz") if not p.name.endswith(".tmp.npz"))
        if not self.shards:
            raise FileNotFoundError(f"no feature shards (shard-*.npz) in {self.folder}; write them with "
                                    f"`python scripts/extract_features.py --out {self.folder} ...`")
        meta_path = self.folder / "meta.json"
        self.meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
        self._sizes = []
        for path in self.shards:
            with np.load(path, allow_pickle=False) as data:
                self._sizes.append(len(data["ids"]))
        self._offsets = np.concatenate([[0], np.cumsum(self._sizes)]).astype(int)

    def __len__(self) -> int:
        return int(self._offsets[-1])

    @property
    def fingerprint(self) -> str:
        h = hashlib.sha1(json.dumps(self.meta, sort_keys=True).encode())
        for path, n in zip(self.shards, self._sizes, strict=True):
            h.update(f"{path.name}|{n}|{path.stat().st_size}\n".encode())
        return h.hexdigest()[:12]

    def check(self, descriptor: Any) -> None:
        """Refuse shards of another encoder than the descriptor's."""
        encoder = self.meta.get("encoder")
        if encoder and encoder != descriptor.encoder.name:
            raise ValueError(f"the shards in {self.folder} hold {encoder!r} features but the descriptor "
                             f"takes {descriptor.encoder.name!r} features")

    def _rows(self, start: int, stop: int) -> Iterator[tuple[dict[str, np.ndarray], int, int]]:
        first = int(np.searchsorted(self._offsets, start, side="right") - 1)
        for i in range(first, len(self.shards)):
            lo, hi = self._offsets[i], self._offsets[i + 1]
            if lo >= stop:
                break
            a, b = max(start, lo) - lo, min(stop, hi) - lo
            with np.load(self.shards[i], allow_pickle=False) as data:
                cols = {k: data[k][a:b] for k in data.files}
            stem = self.shards[i].stem
            for side in sorted(self.folder.glob(f"{stem}.*.npy")):  # per-photo grids beside the shard
                cols[f"feat_{side.name[len(stem) + 1 : -4]}"] = np.load(side, mmap_mode="r")[a:b]
            yield cols, a, b

    def chunk(self, start: int, stop: int, descriptor: Any) -> _Chunk:
        parts = list(self._rows(start, stop))
        cols = {k: np.concatenate([p[k] for p, _, _ in parts]) for k in parts[0][0]}
        features = cols.get("feat_projection", cols["feat_image"])  # the encoder's raw output (CLIP: projection)
        if descriptor.kind == "g3":  # refuses CLIP shards that hold unit rows only
            features = g3_inputs({k[5:]: v for k, v in cols.items() if k in ("feat_image", "feat_projection")},
                                 descriptor.heads.text_head)["image"]
        out = descriptor.describe_features(features, cols.get("feat_tokens"), cols.get("feat_labelmap"))
        coords = cols["coords"].astype(np.float64)
        meta = GalleryMeta(ids=[str(i) for i in cols["ids"]], coords=coords,
                           places=[p.text for p in reverse_geocode_many(coords)] if len(coords) else [],
                           groups=[str(g) or None for g in cols["groups"]])
        return _Chunk(out.descriptor, meta)


@dataclass
class BuildReport:
    """What :func:`build_database` did."""

    path: Path
    rows: int
    skipped: list[SkippedRow]
    descriptor: str
    index_kind: str
    seconds: float
    resumed_rows: int = 0  # rows described by an earlier, interrupted run

    def summary(self) -> str:
        lines = [f"{self.rows} rows indexed ({self.index_kind}) in {self.seconds:.1f} s"
                 + (f", {self.resumed_rows} of them from an interrupted run" if self.resumed_rows else "")
                 + f"; {len(self.skipped)} skipped", f"descriptor {self.descriptor}", f"saved to {self.path}"]
        lines += [f"  skipped {s.where}: {s.reason}" for s in self.skipped[:20]]
        if len(self.skipped) > 20:
            lines.append(f"  ... and {len(self.skipped) - 20} more")
        return "\n".join(lines)


def descriptor_spec(preset: dict[str, Any]) -> dict[str, Any]:
    """A preset's ``"descriptor"`` section; presets without one retrieve with their encoder's embedding."""
    if preset.get("descriptor"):
        return dict(preset["descriptor"])
    return {"kind": "features", "encoder": preset["encoder"]}


# ---------------------------------------------------------------------------------------- chunks on disk


def _save_chunk(path: Path, chunk: _Chunk) -> None:
    def text(values: list[str | None]) -> np.ndarray:
        return np.array(["" if v is None else str(v) for v in values], dtype=str)

    m = chunk.meta
    save_npz(path, descriptor=np.asarray(chunk.descriptor, np.float32),  # a chunk file exists whole or not at all
             ids=text(m.ids), coords=m.coords, places=text(m.places), image_paths=text(m.image_paths),
             groups=text(m.groups), has_place=np.array([v is not None for v in m.places]),
             has_path=np.array([v is not None for v in m.image_paths]),
             has_group=np.array([v is not None for v in m.groups]),
             skipped_where=text([s.where for s in chunk.skipped]),
             skipped_reason=text([s.reason for s in chunk.skipped]))


_CHUNK_ARRAYS = ("descriptor", "ids", "coords", "places", "image_paths", "groups", "has_place", "has_path",
                 "has_group", "skipped_where", "skipped_reason")


def _load_chunk(path: Path, vectors: bool = True) -> _Chunk | None:
    """A saved chunk (None when missing or unreadable: then reported once and deleted, to be described
    again); without ``vectors`` its descriptor array is dropped (metadata pass)."""
    d = load_npz(path, "database build chunk", required=_CHUNK_ARRAYS)
    if d is None:
        return None

    def col(name: str, mask: str) -> list[str | None]:
        return [str(v) if keep else None for v, keep in zip(d[name], d[mask], strict=True)]

    meta = GalleryMeta(ids=[str(i) for i in d["ids"]], coords=d["coords"], places=col("places", "has_place"),
                       image_paths=col("image_paths", "has_path"), groups=col("groups", "has_group"))
    skipped = [SkippedRow(str(w), str(r)) for w, r in zip(d["skipped_where"], d["skipped_reason"], strict=True)]
    return _Chunk(d["descriptor"] if vectors else np.zeros((0, 0), np.float32), meta, skipped)


def _check_state(obj: Any) -> None:
    if not isinstance(obj, dict):
        raise TypeError("not a build state")


def _prepare(work: Path, state: dict[str, Any], overwrite: bool) -> None:
    state_path = work / STATE_FILE
    old = None if overwrite else read_json(state_path, "interrupted build's state", validate=_check_state)
    if old is not None:  # an unreadable state file is deleted: the build starts again
        if old != state:
            changed = sorted(k for k in state if old.get(k) != state[k])
            raise BuildMismatchError(
                f"{work.parent} holds an interrupted build with another {', '.join(changed)}; resume it with "
                "the same preset and source, or start again with --overwrite"
            )
        return
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    write_json(state_path, state, indent=2)


def build_database(source: PhotoSource | ShardSource, descriptor: Any, out: str | Path,
                   index: IndexConfig | dict | None = None, chunk_size: int = 256, progress: bool = True,
                   overwrite: bool = False) -> BuildReport:
    """Describe every row of ``source`` with ``descriptor`` and save the database in ``out``.

    Resumes an interrupted build of the same descriptor and source; ``overwrite`` discards an
    interrupted build or a finished database in ``out``.
    """
    started = time.perf_counter()
    out = Path(out)
    cfg = index if isinstance(index, IndexConfig) else IndexConfig.from_dict(index)
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be positive, got {chunk_size}")
    if (out / "config.json").is_file() and not overwrite:
        raise FileExistsError(f"{out} already holds a retrieval database; choose another folder or pass --overwrite")
    if len(source) == 0:
        raise ValueError("nothing to index: the source has no rows")
    if isinstance(source, ShardSource):
        source.check(descriptor)
    work = out / PARTIAL_DIR
    state = {"descriptor": descriptor.name, "source": source.fingerprint, "rows": len(source),
             "chunk_size": int(chunk_size)}
    _prepare(work, state, overwrite)

    n_chunks = (len(source) + chunk_size - 1) // chunk_size
    paths = [work / f"chunk-{i:06d}.npz" for i in range(n_chunks)]

    def rows_of(i: int) -> int:
        return min(chunk_size, len(source) - i * chunk_size)

    # chunks of an interrupted run, metadata only (vectors are streamed into the index below); an
    # unreadable one is reported, deleted and described again
    chunks: list[_Chunk | None] = [_load_chunk(p, vectors=False) if p.is_file() else None for p in paths]
    done_rows = sum(rows_of(i) for i, c in enumerate(chunks) if c is not None)
    bar = tqdm(total=len(source), initial=done_rows, desc=f"describing ({descriptor.kind})", unit="photo",
               disable=not progress)
    for i, chunk in enumerate(chunks):
        if chunk is not None:
            continue
        start = i * chunk_size
        chunk = source.chunk(start, start + rows_of(i), descriptor)
        for s in chunk.skipped if progress else []:  # reported as they happen; the report lists them all
            bar.write(f"skipped {s.where}: {s.reason}")
        _save_chunk(paths[i], chunk)
        bar.update(rows_of(i))
        chunks[i] = _Chunk(np.zeros((0, 0), np.float32), chunk.meta, chunk.skipped)
    bar.close()

    meta = GalleryMeta.concat([c.meta for c in chunks])
    skipped = [s for c in chunks for s in c.skipped]
    if len(meta) == 0:
        raise ValueError(f"no row of the source could be described ({len(skipped)} skipped)")
    # a "features" database keeps its encoder's name, so plain encoder queries (and older presets) fit
    encoder_name = descriptor.encoder.name if descriptor.kind == "features" else descriptor.name

    def chunk_vectors(path: Path) -> np.ndarray:
        chunk = _load_chunk(path)
        if chunk is None:
            raise GeodemoError(f"a chunk of the build in {work} became unreadable while indexing; run it again")
        return chunk.descriptor

    vectors = (chunk_vectors(p) for p, c in zip(paths, chunks, strict=True) if len(c.meta))
    db = RetrievalDatabase.build(vectors, meta, encoder_name, cfg, progress=progress, descriptor=descriptor.name)
    if overwrite:
        for name in ("config.json", "index.faiss", "meta.parquet"):
            (out / name).unlink(missing_ok=True)
    db.save(out)  # config.json is written last: a folder without it is not a database
    shutil.rmtree(work)
    return BuildReport(out, len(meta), skipped, descriptor.name, cfg.kind, time.perf_counter() - started,
                       resumed_rows=done_rows)
