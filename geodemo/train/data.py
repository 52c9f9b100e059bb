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
    "PairedViewSource",
    "paired_view_source",
    "views_for",
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
    labelmap_resample: str = "nearest",
) -> FeatureTable:
    """Cached views of named benchmarks (or dataset objects) for the offline analogues (unreadable
    photos dropped).

    Features: ``image`` (N, D) pooled embeddings; with ``tokens``, ``tokens`` (N, T, D) float16 from the
    encoder's ``encode_image_tokens``; with ``segmenter``, ``labelmap`` (N, s, s) uint8 ADE20K ids
    resized to ``labelmap_size`` (``labelmap_resample``: nearest, or bilinear as DualGeo reads its PNGs). All come from :mod:`geodemo.models.features`' disk cache;
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
            small = label_maps_to_tensor([m if m is not None else blank for m in maps], labelmap_size,
                                         resample=labelmap_resample)
            feats["labelmap"] = small.numpy().astype(np.uint8)
        table = FeatureTable(ds.ids(), ds.groups(), ds.coords().astype(np.float32), feats)
        tables.append(table.take(valid))
    return FeatureTable.concat(tables)


def views_for(model: Any) -> dict[str, Any]:
    """The :func:`load_benchmark_views` options a trained model's views need (besides encoder and
    segmenter): DualGeo's model takes label maps resized bilinearly to its ``seg_size``; the token-level
    model takes patch tokens and label maps resized (nearest) to its ``labelmap_size``; G3 takes neither."""
    arch = getattr(model, "architecture", None)
    if arch == "dualgeo":
        return {"dual": True, "tokens": False, "labelmap_size": int(model.seg_size), "labelmap_resample": "bilinear"}
    if arch == "dualgeo-tokens":
        return {"dual": True, "tokens": True, "labelmap_size": int(model.labelmap_size), "labelmap_resample": "nearest"}
    return {"dual": False, "tokens": False, "labelmap_size": 64, "labelmap_resample": "nearest"}


class PairedViewSource:
    """DualGeo's training inputs made from photos, as its ``MP16DualTrainDataset`` makes them.

    The photo and its ADE20K label map get the same random horizontal flip (p 0.5) and the same
    ``RandomResizedCrop`` box (scale 0.8-1, ratio 0.9-1.1), and both are resized to a square (the
    encoder's input size; ``seg_size`` for the label map, bilinear as torchvision resizes DualGeo's
    greyscale PNGs); the photo alone then gets colour jitter (0.5, 0.5, 0.5, 0.1; p 0.8), greyscale
    (p 0.2) and a Gaussian blur of radius 1 (p 0.5). The photo goes through the frozen encoder (its raw
    output, what DualGeo's CLIP projection is), so augmentation happens before any feature is cached.

    :meth:`table` holds the un-augmented views (``image``, ``labelmap``: what evaluation and the
    descriptor see) and a ``row`` per photo; :meth:`encode` gives a batch's augmented views. A step's
    augmentation is a pure function of the seed it is given, so a resumed run sees the same crops.
    """

    def __init__(self, datasets: list, encoder: str, segmenter: str, seg_size: int = 224, progress: bool = True):
        from geodemo.data import load_benchmark
        from geodemo.models.features import cached_label_maps, shared_model

        self.datasets = [load_benchmark(d) if isinstance(d, str) else d for d in datasets]
        self.encoder = shared_model(encoder)
        self.seg_size = int(seg_size)
        self._table = load_benchmark_views(self.datasets, encoder, segmenter, labelmap_size=self.seg_size,
                                           labelmap_resample="bilinear", progress=progress)
        by_id = {}
        for ds in self.datasets:
            maps = cached_label_maps(segmenter, ds, progress=progress)
            by_id.update({s.id: (ds, s, m) for s, m in zip(ds.samples, maps, strict=True)})
        self.items = [by_id[i] for i in self._table.ids]

    def table(self) -> FeatureTable:
        t = self._table
        return FeatureTable(t.ids, t.groups, t.coords, {**t.features, "row": np.arange(len(t), dtype=np.int64)})

    def _pair(self, image, label_map: np.ndarray):
        """One photo and its label map after DualGeo's paired and photo-only augmentations."""
        from PIL import Image, ImageFilter
        from torchvision import transforms as T
        from torchvision.transforms import functional as TF

        size = int(getattr(self.encoder, "image_size", 224))
        seg = Image.fromarray(np.asarray(label_map, dtype=np.uint8))  # greyscale ("L")
        if seg.size != image.size:  # label maps follow the photo's pixels
            seg = seg.resize(image.size, Image.Resampling.NEAREST)
        if torch.rand(1) < 0.5:
            image, seg = TF.hflip(image), TF.hflip(seg)
        i, j, h, w = T.RandomResizedCrop.get_params(image, scale=(0.8, 1.0), ratio=(0.9, 1.1))
        image = TF.resize(TF.crop(image, i, j, h, w), [size, size])
        seg = TF.resize(TF.crop(seg, i, j, h, w), [self.seg_size, self.seg_size])
        if torch.rand(1) < 0.8:
            image = T.ColorJitter(brightness=0.5, contrast=0.5, saturation=0.5, hue=0.1)(image)
        if torch.rand(1) < 0.2:
            image = T.Grayscale(num_output_channels=3)(image)
        if torch.rand(1) < 0.5:
            image = image.filter(ImageFilter.GaussianBlur(radius=1))
        return image, np.asarray(seg, dtype=np.uint8)

    def encode(self, rows, seed: int | None = None) -> dict[str, np.ndarray]:
        """``image`` (the encoder's raw output) and ``labelmap`` (grey levels at ``seg_size``) of ``rows``,
        augmented with ``seed`` (without one: the table's un-augmented views)."""
        from geodemo.models.descriptors import _encoder_outputs

        rows = np.asarray(rows, dtype=np.int64)
        if seed is None:
            return {"image": np.asarray(self._table.features["image"][rows], np.float32),
                    "labelmap": np.asarray(self._table.features["labelmap"][rows])}
        images, maps = [], []
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(seed) % 2**63)
            for r in rows.tolist():
                ds, sample, label_map = self.items[r]
                image, seg = self._pair(ds.open_image(sample).convert("RGB"), label_map)
                images.append(image)
                maps.append(seg)
        feats, _ = _encoder_outputs(self.encoder, images, batch_size=len(images))
        return {"image": np.asarray(feats, np.float32), "labelmap": np.stack(maps)}


_PAIRED: dict[str, PairedViewSource] = {}


def paired_view_source(dcfg: dict[str, Any], progress: bool = True) -> PairedViewSource:
    """The :class:`PairedViewSource` of a ``"paired-views"`` data section (one per process and config)."""
    key = json.dumps({k: dcfg.get(k) for k in ("benchmarks", "csv", "images", "encoder", "segmenter", "seg_size")},
                     sort_keys=True)
    if key not in _PAIRED:
        if dcfg.get("csv"):  # MP16-Pro: CSV + photo folder or tar shards
            from geodemo.data import load_csv

            datasets = [load_csv(dcfg["csv"], images_dir=dcfg.get("images"), meta_columns=[])]
        else:
            datasets = list(dcfg["benchmarks"])
        _PAIRED[key] = PairedViewSource(datasets, dcfg["encoder"], dcfg["segmenter"], int(dcfg.get("seg_size", 224)),
                                        progress=progress)
    return _PAIRED[key]
