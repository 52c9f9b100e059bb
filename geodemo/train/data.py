"""Training data on frozen features: tables of cached embeddings, photographer splits, shuffled sampling.

Because the image towers are frozen, their outputs are computed once (``scripts/extract_features.py``
or :func:`geodemo.models.features.image_features`) and the heads train on the cache. Splits are by
photographer (``GeoSample.group``; a photo without one is its own group), so held-out accuracy is
leave-photographer-out.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from geodemo.data.folds import group_fold

__all__ = [
    "FeatureTable",
    "load_benchmark_features",
    "load_benchmark_views",
    "load_feature_shards",
    "write_feature_shard",
    "group_fold",
    "split_table",
    "EpochSampler",
]


@dataclass
class FeatureTable:
    """Rows of one training set: ids, photographer groups, [lat, lon] and named feature arrays."""

    ids: list[str]
    groups: list[str | None]
    coords: np.ndarray  # (N, 2) float32 [lat, lon]
    features: dict[str, np.ndarray] = field(default_factory=dict)  # "image": (N, D), "text", "tokens", ...

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
            {k: v[index] for k, v in self.features.items()},
        )

    @staticmethod
    def concat(tables: list[FeatureTable]) -> FeatureTable:
        keys = set.intersection(*(set(t.features) for t in tables))
        return FeatureTable(
            [i for t in tables for i in t.ids],
            [g for t in tables for g in t.groups],
            np.concatenate([t.coords for t in tables]),
            {k: np.concatenate([t.features[k] for t in tables]) for k in keys},
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
    """One npz shard: ``ids``, ``groups``, ``coords`` and one array per feature (written atomically)."""
    from geodemo.storage import save_npz

    groups = np.array([g or "" for g in table.groups])
    return save_npz(path, ids=np.array(table.ids), groups=groups, coords=table.coords.astype(np.float32),
                    **{f"feat_{k}": v for k, v in table.features.items()})


def load_feature_shards(folder: str | Path) -> FeatureTable:
    """All ``shard-*.npz`` files of a feature folder written by ``scripts/extract_features.py``."""
    folder = Path(folder)
    shards = sorted(folder.glob("shard-*.npz"))
    if not shards:
        raise FileNotFoundError(
            f"no feature shards (shard-*.npz) in {folder}; run `python scripts/extract_features.py "
            f"--out {folder} ...` first"
        )
    tables = []
    for path in shards:
        with np.load(path, allow_pickle=False) as data:
            feats = {k[5:]: data[k] for k in data.files if k.startswith("feat_")}
            groups = [str(g) or None for g in data["groups"]]
            tables.append(FeatureTable([str(i) for i in data["ids"]], groups, data["coords"], feats))
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
    reproduces the order exactly without saving sampler state. G3's and DualGeo's loaders never shuffle."""

    def __init__(self, n: int, seed: int = 0, shuffle: bool = True):
        self.n, self.seed, self.shuffle = n, seed, shuffle

    def order(self, epoch: int) -> torch.Tensor:
        if not self.shuffle:
            return torch.arange(self.n)
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        return torch.randperm(self.n, generator=gen)

    def batch(self, epoch: int, index: int, batch_size: int, rank: int = 0, world: int = 1) -> torch.Tensor:
        """Rows of global batch ``index`` of ``epoch`` for process ``rank`` of ``world`` (drop-last)."""
        order = self.order(epoch)
        rows = order[index * batch_size : (index + 1) * batch_size]
        return rows[rank::world]

    def batches_per_epoch(self, batch_size: int) -> int:
        return max(self.n // batch_size, 1)


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
