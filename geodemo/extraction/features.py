"""Embeddings and label maps of a dataset's photos, computed once and cached on disk.

>>> from geodemo.data import load_benchmark
>>> from geodemo.extraction.features import cached_image_embeddings
>>> dev = load_benchmark("im2gps3k-dev")
>>> feats = cached_image_embeddings("mobilenet-v1-imagenet", dev)   # (978, 1024), rows follow dev.samples

Caches live under ``geodemo.paths.cache_dir("features", <model>-<config hash>)``, one ``.npz`` per
dataset name, keyed per photo by (id, image path, file size): asking for a subset, or for a
dataset that grew, only encodes the photos not seen yet. Unreadable photos get a zero row and
``valid = False``; they are retried on the next call.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from geodemo import env
from geodemo.data import load_benchmark
from geodemo.data.feature_table import FeatureTable
from geodemo.extraction import encode_photos
from geodemo.models.dualgeo import label_maps_to_tensor
from geodemo.models.registry import get_spec, shared_model
from geodemo.models.segmentation import label_map_of
from geodemo.paths import cache_dir
from geodemo.storage import load_npz, save_npz

__all__ = [
    "FeatureSet",
    "image_features",
    "cached_image_embeddings",
    "cached_label_maps",
    "cached_image_tokens",
    "features_cache_path",
    "load_benchmark_features",
    "load_benchmark_views",
    "views_for",
]


@dataclass
class FeatureSet:
    """Embeddings aligned with ``ids``; ``valid[i]`` is False where the photo could not be read."""

    model: str
    ids: list[str]
    embeddings: np.ndarray  # (N, D) float32, unit rows (zero rows where invalid)
    valid: np.ndarray  # (N,) bool


def _model_key(name: str, overrides: dict[str, Any]) -> str:
    spec = get_spec(name)
    blob = json.dumps(
        {"loader": spec.loader, "config": {**spec.config, **overrides}}, sort_keys=True, default=str
    )
    return f"{name}-{hashlib.sha1(blob.encode()).hexdigest()[:10]}"


def features_cache_path(kind: str, model: str, dataset_name: str, **overrides: Any) -> Path:
    """Where the ``kind`` ("embeddings" | "labelmaps" | "tokens") cache of ``model`` on ``dataset_name`` lives."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in dataset_name)
    return cache_dir(kind, _model_key(model, overrides)) / f"{safe}.npz"


def _photo_key(sample: Any) -> str:
    path = getattr(sample, "image_path", None)
    member = getattr(sample, "meta", {}).get("tar_member") if hasattr(sample, "meta") else None
    size = -1
    if path is not None:
        try:
            size = os.stat(path).st_size
        except OSError:
            size = -1
    return f"{sample.id}|{path or member}|{size}"


def image_features(
    encoder_name: str,
    dataset: Any,
    progress: bool = True,
    refresh: bool = False,
    batch_size: int = 16,
    workers: int | None = None,
    **overrides: Any,
) -> FeatureSet:
    """Embeddings of every photo in ``dataset`` by the registered encoder, reusing the disk cache.

    Photos not cached yet are decoded by ``workers`` processes (default ``$GEODEMO_EXTRACT_WORKERS``,
    else 0: in this process) through :func:`geodemo.extraction.encode_photos`, with results identical
    to ``encoder.encode_images``.
    """
    path = features_cache_path("embeddings", encoder_name, dataset.name, **overrides)
    cached = {} if refresh else _read_embeddings(path)
    keys = [_photo_key(s) for s in dataset.samples]
    missing = [i for i, k in enumerate(keys) if k not in cached]
    failed: set[int] = set()
    if missing:
        encoder = shared_model(encoder_name, **overrides)
        if workers is None:
            workers = env.get_int("GEODEMO_EXTRACT_WORKERS", 0)
        if hasattr(encoder, "pixel_recipe") and hasattr(dataset, "open_image"):
            _encode_missing(encoder, dataset, missing, keys, cached, failed, batch_size, workers,
                            progress, f"{encoder_name} on {dataset.name}")
        else:  # an encoder without a pixel recipe: decode and encode one batch after another
            by_key = {k: i for i, k in enumerate(keys)}
            buffer: list[tuple[str, Any]] = []

            def flush() -> None:
                if buffer:
                    vectors = encoder.encode_images([im for _, im in buffer], batch_size=len(buffer))
                    cached.update({k: v for (k, _), v in zip(buffer, vectors, strict=True)})
                    buffer.clear()

            for sample, image in _iter_missing(dataset, missing, progress, f"{encoder_name} on {dataset.name}"):
                key = _photo_key(sample)
                if image is None:
                    failed.add(by_key[key])
                    continue
                buffer.append((key, image))
                if len(buffer) >= batch_size:
                    flush()
            flush()
        if cached:
            merged = {**_read_embeddings(path), **cached}  # keep rows another process wrote meanwhile
            good = sorted(merged)
            save_npz(path, compressed=True, keys=np.array(good),
                     embeddings=np.stack([merged[k] for k in good]).astype(np.float32))
    dim = next(iter(cached.values())).shape[0] if cached else 0
    emb = np.zeros((len(keys), dim), dtype=np.float32)
    valid = np.zeros(len(keys), dtype=bool)
    for i, k in enumerate(keys):
        if k in cached and i not in failed:
            emb[i] = cached[k]
            valid[i] = True
    return FeatureSet(model=encoder_name, ids=[s.id for s in dataset.samples], embeddings=emb, valid=valid)


def _encode_missing(encoder: Any, dataset: Any, missing: list[int], keys: list[str], cached: dict[str, np.ndarray],
                    failed: set[int], batch_size: int, workers: int, progress: bool, desc: str) -> None:
    """Encode the photos at ``missing`` with parallel decoding; unreadable ones go to ``failed``."""
    with tqdm(total=len(missing), desc=desc, unit="photo", disable=not progress) as bar:
        for batch in encode_photos(encoder, dataset, missing, batch_size=batch_size, workers=workers,
                                   resize_on="workers"):
            for i, p in enumerate(batch.positions):
                cached[keys[p]] = batch.outputs["image"][i]
            failed.update(p for p, _ in batch.failures)
            bar.update(len(batch.positions) + len(batch.failures))


def _read_embeddings(path: Path) -> dict[str, np.ndarray]:
    """Cached rows by photo key; {} when the cache is missing or was corrupt (then it is rebuilt)."""
    data = load_npz(path, "embeddings cache", required=("keys", "embeddings"))
    if data is None or len(data["keys"]) != len(data["embeddings"]):
        return {}
    return {str(k): row for k, row in zip(data["keys"], data["embeddings"], strict=True)}


def cached_image_embeddings(
    encoder_name: str, dataset: Any, progress: bool = True, **overrides: Any
) -> np.ndarray:
    """``(N, D)`` float32 unit embeddings aligned with ``dataset.samples`` (zero rows for unreadable photos)."""
    return image_features(encoder_name, dataset, progress=progress, **overrides).embeddings


def cached_label_maps(
    segmenter_name: str, dataset: Any, progress: bool = True, cached_only: bool = False, **overrides: Any
) -> list[np.ndarray | None]:
    """ADE20K label maps (uint8, at each photo's size) aligned with ``dataset.samples``; None if unreadable
    (or, with ``cached_only``, not in the cache yet: nothing is segmented)."""
    path = features_cache_path("labelmaps", segmenter_name, dataset.name, **overrides)
    cached: dict[str, np.ndarray] = {}
    data = load_npz(path, "label-map cache", required=("keys",))
    if data is not None and all(f"map_{i}" in data for i in range(len(data["keys"]))):
        cached = {str(k): data[f"map_{i}"] for i, k in enumerate(data["keys"])}
    keys = [_photo_key(s) for s in dataset.samples]
    missing = [i for i, k in enumerate(keys) if k not in cached]
    if missing and not cached_only:
        segmenter = shared_model(segmenter_name, **overrides)
        by_key = {k: i for i, k in enumerate(keys)}
        for sample, image in _iter_missing(dataset, missing, progress, f"{segmenter_name} on {dataset.name}"):
            if image is not None:
                cached[keys[by_key[_photo_key(sample)]]] = label_map_of(segmenter, image)
        if cached:
            good = sorted(cached)
            arrays = {f"map_{i}": cached[k].astype(np.uint8) for i, k in enumerate(good)}
            save_npz(path, compressed=True, keys=np.array(good), **arrays)
    return [cached.get(k) for k in keys]


def cached_image_tokens(
    encoder_name: str,
    dataset: Any,
    progress: bool = True,
    batch_size: int = 16,
    save_every: int = 128,
    **overrides: Any,
) -> tuple[np.ndarray, np.ndarray]:
    """``(N, T, D)`` float16 image tokens (``encode_image_tokens``) aligned with ``dataset.samples``,
    and ``(N,)`` valid flags; zero tokens where the photo is unreadable.

    Written every ``save_every`` new photos, so an interrupted run resumes where it stopped.
    """
    path = features_cache_path("tokens", encoder_name, dataset.name, **overrides)
    cached = _read_tokens(path)
    keys = [_photo_key(s) for s in dataset.samples]
    missing = [i for i, k in enumerate(keys) if k not in cached]
    if missing:
        encoder = shared_model(encoder_name, **overrides)
        buffer: list[tuple[str, Any]] = []
        unsaved = 0

        def flush() -> None:
            if buffer:
                tokens = encoder.encode_image_tokens([im for _, im in buffer], batch_size=len(buffer))
                rows = np.asarray(tokens.detach().cpu().numpy(), dtype=np.float16)
                cached.update({k: v for (k, _), v in zip(buffer, rows, strict=True)})
                buffer.clear()

        def save() -> None:
            merged = {**_read_tokens(path), **cached}  # keep rows another process wrote meanwhile
            good = sorted(merged)
            save_npz(path, keys=np.array(good), tokens=np.stack([merged[k] for k in good]))

        for sample, image in _iter_missing(dataset, missing, progress, f"{encoder_name} tokens on {dataset.name}"):
            if image is None:
                continue
            buffer.append((_photo_key(sample), image))
            if len(buffer) >= batch_size:
                unsaved += len(buffer)
                flush()
            if unsaved >= save_every:
                save()
                unsaved = 0
        flush()
        if cached:
            save()
    shape = next(iter(cached.values())).shape if cached else (0, 0)
    tokens = np.zeros((len(keys), *shape), dtype=np.float16)
    valid = np.array([k in cached for k in keys], dtype=bool)
    for i, k in enumerate(keys):
        if valid[i]:
            tokens[i] = cached[k]
    return tokens, valid


def _read_tokens(path: Path) -> dict[str, np.ndarray]:
    data = load_npz(path, "image-token cache", required=("keys", "tokens"))
    if data is None:
        return {}
    return {str(k): row for k, row in zip(data["keys"], data["tokens"], strict=True)}


def _iter_missing(dataset: Any, missing: list[int], progress: bool, desc: str) -> Iterator[tuple[Any, Any]]:
    """``(sample, image or None)`` for the samples at ``missing`` (read through the dataset's own loader)."""
    wanted = {_photo_key(dataset.samples[i]) for i in missing}
    if hasattr(dataset, "subset"):
        source = dataset.subset(ids={dataset.samples[i].id for i in missing}).iter_images(progress=False)
    else:
        source = dataset.iter_images(progress=False)
    bar = tqdm(total=len(missing), desc=desc, unit="photo", disable=not progress)
    for sample, image, _error in source:
        if _photo_key(sample) in wanted:
            bar.update(1)
            yield sample, image
    bar.close()


def load_benchmark_features(benchmarks: list[str], encoder: str, progress: bool = True) -> FeatureTable:
    """Cached ``encoder`` embeddings of named benchmarks (unreadable photos dropped)."""
    tables = []
    for name in benchmarks:
        ds = load_benchmark(name)
        fs = image_features(encoder, ds, progress=progress)
        table = FeatureTable(ds.ids(), ds.groups(), ds.coords().astype(np.float32), {"image": fs.embeddings})
        tables.append(table.take(fs.valid))
    return FeatureTable.concat(tables)


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
    resized to ``labelmap_size`` (``labelmap_resample``: nearest, or bilinear as DualGeo reads its PNGs). All come from this module's disk cache;
    ``cached_labelmaps_only`` keeps only the photos whose label maps are cached (segments nothing).
    """
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
