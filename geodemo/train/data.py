"""Training data on frozen features: tables of cached embeddings, photographer splits, shuffled sampling.

Because the image towers are frozen, their outputs are computed once (``scripts/extract_features.py``
or :func:`geodemo.models.features.image_features`) and the heads train on the cache. Splits are by
photographer (``GeoSample.group``; a photo without one is its own group), so held-out accuracy is
leave-photographer-out.

Per-photo grids (DualGeo's float16 patch tokens, label maps) are too large for memory at MP16 scale
(4.1M x 256 x 1024 x 2 bytes = 2 TB): each shard stores them as a ``.npy`` file beside its ``.npz``,
opened with ``np.load(mmap_mode="r")`` and seen as one :class:`ShardedArray`, whose rows are read
only when a batch asks for them. :class:`FeatureBatches` serves the trainer's batches: features kept
on the device when they fit, else gathered by a background thread a bounded number of steps ahead.
"""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from geodemo.data.folds import group_fold

__all__ = [
    "FeatureTable",
    "load_benchmark_features",
    "load_benchmark_views",
    "load_feature_shards",
    "feature_shards",
    "write_feature_shard",
    "group_fold",
    "split_table",
    "EpochSampler",
    "FeatureBatches",
    "ShardedArray",
]


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


def load_benchmark_features(benchmarks: list[str], encoder: str, progress: bool = True) -> FeatureTable:
    """Cached ``encoder`` embeddings of named benchmarks (unreadable photos dropped)."""
    from geodemo.data import load_benchmark
    from geodemo.models.features import image_features

    tables = []
    for name in benchmarks:
        ds = load_benchmark(name)
        fs = image_features(encoder, ds, progress=progress)
        table = FeatureTable(ds.ids(), ds.groups(), ds.coords().astype(np.float32), {"image": fs.embeddings})
        tables.append(table.take(fs.valid))
    return FeatureTable.concat(tables)


def write_feature_shard(path: str | Path, table: FeatureTable) -> Path:
    """One shard: ``ids``, ``groups``, ``coords`` and the per-photo vectors in ``path`` (an ``.npz``);
    every per-photo grid (``ndim >= 3``: tokens, label maps) in ``<stem>.<name>.npy`` beside it, to be
    memory-mapped. The side files are written first and the ``.npz`` last, each atomically, so a shard
    whose ``.npz`` exists is complete (what a resumed extraction checks)."""
    from geodemo.storage import save_npy, save_npz

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


def split_table(
    table: FeatureTable,
    holdout_fraction: float = 0.2,
    num_folds: int = 0,
    fold: int = 0,
    exclude_groups: set[str] | None = None,
    seed: int = 0,
) -> tuple[FeatureTable, FeatureTable]:
    """``(train, held_out)`` split by photographer.

    ``exclude_groups`` (e.g. from ``--exclude-groups-file``) are held out; else with ``num_folds > 0``
    the groups of fold ``fold`` are held out; else a stable ``holdout_fraction`` of the groups.
    """
    keys = table.group_keys()
    if exclude_groups:
        held = np.array([k in exclude_groups for k in keys])
    elif num_folds > 0:
        if not 0 <= fold < num_folds:
            raise ValueError(f"fold {fold} is outside 0..{num_folds - 1}")
        held = np.array([group_fold(k, num_folds, seed) == fold for k in keys])
    elif holdout_fraction > 0:
        buckets = 10_000
        held = np.array([group_fold(k, buckets, seed) < holdout_fraction * buckets for k in keys])
    else:
        held = np.zeros(len(keys), dtype=bool)
    return table.take(~held), table.take(held)


class EpochSampler:
    """Shuffled order of ``n`` rows per epoch, a pure function of (seed, epoch): resuming at any step
    reproduces the order exactly without saving sampler state. G3's and DualGeo's loaders never shuffle.

    The order is drawn once per epoch and kept (``randperm`` of 4.1M rows costs ~0.1 s on one core),
    on ``device`` when given, so a batch's rows are a slice of a tensor already where the data is.
    """

    def __init__(self, n: int, seed: int = 0, shuffle: bool = True, device: str | torch.device = "cpu"):
        self.n, self.seed, self.shuffle, self.device = n, seed, shuffle, torch.device(device)
        self._epoch: int | None = None
        self._order: torch.Tensor | None = None

    def order(self, epoch: int) -> torch.Tensor:
        if self._epoch != epoch or self._order is None or self._order.device != self.device:
            if not self.shuffle:
                order = torch.arange(self.n)
            else:
                gen = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
                order = torch.randperm(self.n, generator=gen)  # drawn on the CPU: the same order on any device
            self._epoch, self._order = epoch, order.to(self.device)
        return self._order

    def batch(self, epoch: int, index: int, batch_size: int, rank: int = 0, world: int = 1) -> torch.Tensor:
        """Rows of global batch ``index`` of ``epoch`` for process ``rank`` of ``world`` (drop-last)."""
        order = self.order(epoch)
        rows = order[index * batch_size : (index + 1) * batch_size]
        return rows[rank::world]

    def batches_per_epoch(self, batch_size: int) -> int:
        return max(self.n // batch_size, 1)


class FeatureBatches:
    """The trainer's batches of cached features, step by step, without waiting on the host.

    In-memory features whose total size is at most ``resident_bytes`` are copied to ``device`` once
    and batches are gathered there (no host work per step). Otherwise (too large, or memory-mapped
    :class:`ShardedArray` shards) a background thread gathers the rows of the next ``prefetch`` steps,
    pins them and starts their copies (on CUDA, on a side stream, overlapping compute); at most
    ``prefetch`` batches wait in memory. Either way a step's rows come from the same
    :class:`EpochSampler`, so the batches -- and a resumed run -- are identical.
    """

    def __init__(self, features: dict[str, np.ndarray | ShardedArray], sampler: EpochSampler, batch_size: int,
                 device: torch.device | str, rank: int = 0, world: int = 1,
                 resident_bytes: float = 4e9, prefetch: int = 2):
        self.device = torch.device(device)
        self.sampler, self.batch_size, self.rank, self.world = sampler, batch_size, rank, world
        self.steps_per_epoch = sampler.batches_per_epoch(batch_size)
        self.prefetch = max(1, int(prefetch))
        in_memory = all(not isinstance(v, ShardedArray) for v in features.values())
        total = sum(int(np.prod(np.shape(v))) * np.dtype(v.dtype).itemsize for v in features.values())
        self.resident = in_memory and (self.device.type == "cpu" or total <= resident_bytes)
        if self.resident:
            self.features = {k: torch.as_tensor(np.ascontiguousarray(v)).to(self.device) for k, v in features.items()}
            sampler.device = self.device
        else:
            self.features = features
            sampler.device = torch.device("cpu")

    def rows(self, step: int) -> torch.Tensor:
        epoch, index = divmod(step, self.steps_per_epoch)
        return self.sampler.batch(epoch, index, self.batch_size, self.rank, self.world)

    def gather(self, step: int) -> dict[str, torch.Tensor]:
        """The batch of ``step`` on the device (synchronously)."""
        rows = self.rows(step)
        if self.resident:
            return {k: v[rows] for k, v in self.features.items()}
        return {k: v.to(self.device) for k, v in self._host_batch(rows).items()}

    def _host_batch(self, rows: torch.Tensor) -> dict[str, torch.Tensor]:
        index = rows.numpy()
        out = {k: torch.from_numpy(np.ascontiguousarray(v[index])) for k, v in self.features.items()}
        if self.device.type == "cuda":
            out = {k: v.pin_memory() for k, v in out.items()}
        return out

    def iterate(self, start: int, end: int) -> Iterator[dict[str, torch.Tensor]]:
        """Batches of steps ``start .. end - 1`` in order."""
        if self.resident:
            for step in range(start, end):
                yield self.gather(step)
            return
        yield from self._prefetched(start, end)

    def _prefetched(self, start: int, end: int) -> Iterator[dict[str, torch.Tensor]]:
        cuda = self.device.type == "cuda"
        stream = torch.cuda.Stream(self.device) if cuda else None
        ready: queue.Queue = queue.Queue(maxsize=self.prefetch)
        stop = threading.Event()

        def work() -> None:
            try:
                for step in range(start, end):
                    if stop.is_set():
                        return
                    batch = self._host_batch(self.rows(step))
                    event = None
                    if cuda:
                        with torch.cuda.stream(stream):
                            batch = {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}
                            event = torch.cuda.Event()
                            event.record(stream)
                    ready.put((batch, event))
            except BaseException as exc:  # noqa: BLE001 - handed to the consumer, which re-raises it
                ready.put((exc, None))

        thread = threading.Thread(target=work, name="feature-prefetch", daemon=True)
        thread.start()
        try:
            for _ in range(start, end):
                batch, event = ready.get()
                if isinstance(batch, BaseException):
                    raise batch
                if event is not None:
                    current = torch.cuda.current_stream(self.device)
                    current.wait_event(event)
                    for v in batch.values():
                        v.record_stream(current)
                yield batch
        finally:
            stop.set()
            while thread.is_alive():  # unblock a producer waiting on a full queue
                try:
                    ready.get_nowait()
                except queue.Empty:
                    thread.join(timeout=0.05)


class ImageSource:
    """Photos read and encoded on the fly by a frozen registered encoder, with seeded augmentations.

    For augmented training (the cache above is faster when no augmentation is wanted). The rows of
    :meth:`table` carry a ``row`` feature that :meth:`encode` maps back to photos. Augmentation is a
    pure function of the seed it is given, so resumed runs see the same crops.
    """

    def __init__(self, datasets: list, encoder: str, augment: dict | None = None):
        from geodemo.models.features import shared_model

        self.items = [(ds, s) for ds in datasets for s in ds.samples]
        self.encoder_name = encoder
        self.encoder = shared_model(encoder)
        self.augment = {"scale": (0.5, 1.0), "flip": 0.5, **(augment or {})}
        self.failures = 0

    def table(self) -> FeatureTable:
        return FeatureTable(
            [s.id for _, s in self.items],
            [s.group for _, s in self.items],
            np.array([[s.lat, s.lon] for _, s in self.items], dtype=np.float32).reshape(-1, 2),
            {"row": np.arange(len(self.items), dtype=np.int64)},
        )

    def _augment(self, image, rng: np.random.Generator):
        from PIL import Image

        w, h = image.size
        lo, hi = self.augment["scale"]
        area = w * h * rng.uniform(lo, hi)
        ratio = np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3)))
        cw, ch = min(w, int(round((area * ratio) ** 0.5))), min(h, int(round((area / ratio) ** 0.5)))
        x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
        image = image.crop((x, y, x + cw, y + ch))
        if rng.uniform() < self.augment["flip"]:
            image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        return image

    def encode(self, rows, seed: int | None = None) -> np.ndarray:
        """``(len(rows), D)`` embeddings; augmented when ``seed`` is given; zero rows for unreadable photos."""
        from PIL import Image

        rng = np.random.default_rng(seed) if seed is not None else None
        images, ok = [], []
        for r in np.asarray(rows).tolist():
            ds, sample = self.items[r]
            try:
                image = ds.open_image(sample)
                ok.append(True)
            except (OSError, ValueError):
                self.failures += 1
                image, _ = Image.new("RGB", (224, 224)), ok.append(False)
            images.append(self._augment(image, rng) if rng is not None else image)
        emb = np.asarray(self.encoder.encode_images(images), dtype=np.float32)
        emb[~np.array(ok, dtype=bool)] = 0.0
        return emb


def load_benchmark_views(
    benchmarks: list,
    encoder: str,
    segmenter: str | None = None,
    tokens: bool = False,
    labelmap_size: int = 64,
    progress: bool = True,
    cached_labelmaps_only: bool = False,
) -> FeatureTable:
    """Cached views of named benchmarks (or dataset objects) for the offline analogues (unreadable
    photos dropped).

    Features: ``image`` (N, D) pooled embeddings; with ``tokens``, ``tokens`` (N, T, D) float16 from the
    encoder's ``encode_image_tokens``; with ``segmenter``, ``labelmap`` (N, s, s) uint8 ADE20K ids
    resized (nearest) to ``labelmap_size``. All come from :mod:`geodemo.models.features`' disk cache;
    ``cached_labelmaps_only`` keeps only the photos whose label maps are cached (segments nothing).
    """
    from geodemo.data import load_benchmark
    from geodemo.models.dualgeo import label_maps_to_tensor
    from geodemo.models.features import cached_image_tokens, cached_label_maps, image_features

    tables = []
    for name in benchmarks:
        ds = load_benchmark(name) if isinstance(name, str) else name
        fs = image_features(encoder, ds, progress=progress)
        feats: dict[str, np.ndarray] = {"image": fs.embeddings}
        valid = fs.valid.copy()
        if tokens:
            feats["tokens"], ok = cached_image_tokens(encoder, ds, progress=progress)
            valid &= ok
        if segmenter:
            maps = cached_label_maps(segmenter, ds, progress=progress, cached_only=cached_labelmaps_only)
            valid &= np.array([m is not None for m in maps])
            blank = np.zeros((labelmap_size, labelmap_size), dtype=np.uint8)
            small = label_maps_to_tensor([m if m is not None else blank for m in maps], labelmap_size)
            feats["labelmap"] = small.numpy().astype(np.uint8)
        table = FeatureTable(ds.ids(), ds.groups(), ds.coords().astype(np.float32), feats)
        tables.append(table.take(valid))
    return FeatureTable.concat(tables)
