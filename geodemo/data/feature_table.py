"""Tables of per-photo features shared by extraction, training and evaluation, and their shard files.

A :class:`FeatureTable` holds ids, photographer groups, [lat, lon] and named feature arrays.
Per-photo grids (DualGeo's float16 patch tokens, label maps) are too large for memory at MP16 scale
(4.1M x 256 x 1024 x 2 bytes = 2 TB): each shard stores them as a ``.npy`` file beside its ``.npz``,
opened with ``np.load(mmap_mode="r")`` and seen as one :class:`ShardedArray`, whose rows are read
only when a batch asks for them. ``scripts/extract_features.py`` writes the shards.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from geodemo.storage import save_npy, save_npz

__all__ = ["FeatureTable", "ShardedArray", "feature_shards", "load_feature_shards", "write_feature_shard"]


class ShardedArray:
    """Rows of several memory-mapped ``.npy`` shards seen as one read-only array, lazily.

    ``take(index)`` is lazy (a new view over the same files); ``array[index]`` reads just those rows
    into memory. Nothing else loads data, so a 2 TB token table costs only its row index in RAM.
    """

    def __init__(self, parts: list[np.ndarray], rows: np.ndarray | None = None):
        if not parts:
            raise ValueError("a ShardedArray needs at least one shard")
        self.parts = parts
        self.offsets = np.cumsum([0] + [len(p) for p in parts])
        self.rows = np.arange(self.offsets[-1], dtype=np.int64) if rows is None else np.asarray(rows, np.int64)

    @classmethod
    def open(cls, paths: list[Path]) -> ShardedArray:
        return cls([np.load(p, mmap_mode="r", allow_pickle=False) for p in paths])

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self.rows), *self.parts[0].shape[1:])

    @property
    def dtype(self) -> np.dtype:
        return self.parts[0].dtype

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape)) * self.dtype.itemsize

    def take(self, index: np.ndarray) -> ShardedArray:
        """The rows at ``index`` (ints or a boolean mask), still on disk."""
        return ShardedArray(self.parts, self.rows[np.asarray(index)])

    def __getitem__(self, index: Any) -> np.ndarray:
        rows = self.rows[index]
        scalar = np.ndim(rows) == 0
        rows = np.atleast_1d(rows)
        out = np.empty((len(rows), *self.parts[0].shape[1:]), dtype=self.dtype)
        shard = np.searchsorted(self.offsets, rows, side="right") - 1
        for s in np.unique(shard):
            sel = np.flatnonzero(shard == s)
            local = rows[sel] - self.offsets[s]
            order = np.argsort(local, kind="stable")  # ascending reads are kinder to the disk
            out[sel[order]] = self.parts[s][local[order]]
        return out[0] if scalar else out

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        out = self[np.arange(len(self))]
        return out if dtype is None else out.astype(dtype)

    @staticmethod
    def concat(arrays: list[ShardedArray]) -> ShardedArray:
        parts, rows, base = [], [], 0
        for a in arrays:
            parts += a.parts
            rows.append(a.rows + base)
            base += int(a.offsets[-1])
        return ShardedArray(parts, np.concatenate(rows))


def _take_rows(values: np.ndarray | ShardedArray, index: np.ndarray) -> np.ndarray | ShardedArray:
    return values.take(index) if isinstance(values, ShardedArray) else values[index]


def _concat_rows(arrays: list[np.ndarray | ShardedArray]) -> np.ndarray | ShardedArray:
    if any(isinstance(a, ShardedArray) for a in arrays):
        if not all(isinstance(a, ShardedArray) for a in arrays):
            raise TypeError("cannot concatenate memory-mapped and in-memory rows of one feature")
        return ShardedArray.concat(arrays)
    return np.concatenate(arrays)


@dataclass
class FeatureTable:
    """Rows of one training set: ids, photographer groups, [lat, lon] and named feature arrays."""

    ids: list[str]
    groups: list[str | None]
    coords: np.ndarray  # (N, 2) float32 [lat, lon]
    features: dict[str, np.ndarray | ShardedArray] = field(default_factory=dict)  # "image": (N, D), "tokens"...

    def __len__(self) -> int:
        return len(self.ids)

    def group_keys(self) -> list[str]:
        """The photographer of each row, or ``id:<id>`` where there is none."""
        return [g if g else f"id:{i}" for i, g in zip(self.ids, self.groups, strict=True)]

    def take(self, index: np.ndarray) -> FeatureTable:
        """Rows at ``index`` (an int array or a boolean mask)."""
        index = np.flatnonzero(index) if np.asarray(index).dtype == bool else np.asarray(index)
        return FeatureTable(
            [self.ids[i] for i in index],
            [self.groups[i] for i in index],
            self.coords[index],
            {k: _take_rows(v, index) for k, v in self.features.items()},
        )

    @staticmethod
    def concat(tables: list[FeatureTable]) -> FeatureTable:
        keys = set.intersection(*(set(t.features) for t in tables))
        return FeatureTable(
            [i for t in tables for i in t.ids],
            [g for t in tables for g in t.groups],
            np.concatenate([t.coords for t in tables]),
            {k: _concat_rows([t.features[k] for t in tables]) for k in keys},
        )


def write_feature_shard(path: str | Path, table: FeatureTable) -> Path:
    """One shard: ``ids``, ``groups``, ``coords`` and the per-photo vectors in ``path`` (an ``.npz``);
    every per-photo grid (``ndim >= 3``: tokens, label maps) in ``<stem>.<name>.npy`` beside it, to be
    memory-mapped. The side files are written first and the ``.npz`` last, each atomically, so a shard
    whose ``.npz`` exists is complete (what a resumed extraction checks)."""
    path = Path(path)
    vectors = {}
    for name, values in table.features.items():
        if np.ndim(values) >= 3:
            save_npy(path.with_name(f"{path.stem}.{name}.npy"), values)
        else:
            vectors[f"feat_{name}"] = values
    groups = np.array([g or "" for g in table.groups])
    return save_npz(path, ids=np.array(table.ids), groups=groups, coords=table.coords.astype(np.float32), **vectors)


def feature_shards(folder: str | Path) -> list[Path]:
    """The complete shards (``shard-NNNNN.npz``) of a feature folder, in order."""
    return sorted(Path(folder).glob("shard-[0-9]*.npz"))


def load_feature_shards(folder: str | Path) -> FeatureTable:
    """All shards of a feature folder written by ``scripts/extract_features.py``: vectors in memory,
    per-photo grids (tokens, label maps) memory-mapped as :class:`ShardedArray` (never loaded whole)."""
    folder = Path(folder)
    shards = feature_shards(folder)
    if not shards:
        raise FileNotFoundError(
            f"no feature shards (shard-*.npz) in {folder}; run `python scripts/extract_features.py "
            f"--out {folder} ...` first"
        )
    tables = []
    for path in shards:
        with np.load(path, allow_pickle=False) as data:
            feats: dict[str, np.ndarray | ShardedArray] = {
                k[5:]: data[k] for k in data.files if k.startswith("feat_")
            }
            groups = [str(g) or None for g in data["groups"]]
            ids, coords = [str(i) for i in data["ids"]], data["coords"]
        for side in sorted(folder.glob(f"{path.stem}.*.npy")):
            feats[side.name[len(path.stem) + 1 : -4]] = ShardedArray.open([side])
        tables.append(FeatureTable(ids, groups, coords, feats))
    meta = folder / "meta.json"
    if meta.is_file():
        json.loads(meta.read_text())  # validates that the folder's description is readable
    return FeatureTable.concat(tables)
