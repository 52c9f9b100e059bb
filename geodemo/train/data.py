"""Training data on frozen features: photographer splits, shuffled sampling, batches, photo sources.

Because the image towers are frozen, their outputs are computed once (``scripts/extract_features.py``
or :func:`geodemo.extraction.features.image_features`) into a :class:`~geodemo.data.FeatureTable`
and the heads train on it. Splits are by photographer (``GeoSample.group``; a photo without one is
its own group), so held-out accuracy is leave-photographer-out. :class:`FeatureBatches` serves the
trainer's batches: features kept on the device when they fit, else gathered by a background thread a
bounded number of steps ahead (memory-mapped :class:`~geodemo.data.ShardedArray` rows included).
"""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageFilter

from geodemo.data import load_benchmark, load_csv
from geodemo.data.feature_table import FeatureTable, ShardedArray
from geodemo.data.folds import group_fold
from geodemo.extraction.features import cached_label_maps, load_benchmark_views
from geodemo.models.descriptors import _encoder_outputs
from geodemo.models.registry import shared_model

__all__ = [
    "split_table",
    "EpochSampler",
    "FeatureBatches",
    "PairedViewSource",
    "paired_view_source",
]


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
            datasets = [load_csv(dcfg["csv"], images_dir=dcfg.get("images"), meta_columns=[])]
        else:
            datasets = list(dcfg["benchmarks"])
        _PAIRED[key] = PairedViewSource(datasets, dcfg["encoder"], dcfg["segmenter"], int(dcfg.get("seg_size", 224)),
                                        progress=progress)
    return _PAIRED[key]
