"""Resumable, sharded feature extraction: photos -> frozen encoder -> ``shard-NNNNN`` files.

Shard ``s`` holds the photos at positions ``[s * shard_size, (s + 1) * shard_size)`` of the dataset
(unreadable ones left out and listed in the shard). A shard is written only when complete (side
``.npy`` files first, the ``.npz`` last, each atomically), so a killed run restarts at the first
missing shard and never writes a photo twice. With ``num_processes > 1`` (one per GPU under
``accelerate launch``) process ``p`` takes the shards ``s`` with ``s % num_processes == p``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from geodemo.data.feature_table import FeatureTable, feature_shards, write_feature_shard
from geodemo.extraction.loader import photo_batches
from geodemo.models.dualgeo import label_maps_to_tensor
from geodemo.models.pixels import recipe_of
from geodemo.storage import read_json, remove_stale_temps, write_json

__all__ = ["EncodedBatch", "ExtractionReport", "encode_photos", "extract_to_shards"]


@dataclass
class EncodedBatch:
    """Outputs of one batch on the host: ``outputs[name]`` rows follow ``positions``."""

    positions: list[int]
    outputs: dict[str, np.ndarray]
    failures: list[tuple[int, str]]


@dataclass
class ExtractionReport:
    """What a run did: photos encoded now, shards written and skipped (already there), failures."""

    encoded: int = 0
    shards_written: int = 0
    shards_present: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)  # (photo id, reason)
    seconds: float = 0.0

    @property
    def photos_per_s(self) -> float:
        return self.encoded / max(self.seconds, 1e-9)


def encode_photos(
    encoder: Any,
    dataset: Any,
    positions: list[int] | None = None,
    *,
    tokens: bool = False,
    batch_size: int = 64,
    workers: int = 4,
    resize_on: str = "auto",
    prefetch: int = 2,
) -> Iterator[EncodedBatch]:
    """Image embeddings (and float16 patch tokens) of the photos at ``positions``, batch by batch.

    Decoding runs in ``workers`` processes while the encoder runs on its device; the device's
    outputs are copied back without blocking and read one batch later, so on a GPU the copy of
    batch ``i`` overlaps the forward pass of batch ``i + 1``.
    """
    positions = list(range(len(dataset))) if positions is None else positions
    device = torch.device(getattr(encoder, "device", "cpu"))
    dtype = getattr(encoder, "dtype", torch.float32)
    dtype = dtype if isinstance(dtype, torch.dtype) else torch.float32
    pending = None  # (positions, host tensors, failures, copy-done event) of the previous batch

    def to_host(outputs: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], Any]:
        host = {}
        for k, v in outputs.items():
            v = v.detach().to(torch.float16 if k == "tokens" else torch.float32)
            host[k] = v.to("cpu", non_blocking=True) if v.is_cuda else v
        if device.type != "cuda":
            return host, None
        done = torch.cuda.Event()
        done.record(torch.cuda.current_stream(device))
        return host, done

    def finish(item) -> EncodedBatch:
        pos, host, failures, done = item
        if done is not None:  # waits for this batch's copies only, not for the batch computing now
            done.synchronize()
        return EncodedBatch(pos, {k: v.numpy() for k, v in host.items()}, failures)

    batches = photo_batches(dataset, positions, recipe_of(encoder), device, batch_size, workers, resize_on,
                            prefetch, dtype)
    for pos, pixels, failures in batches:
        if pixels is None:
            current = (pos, {}, failures, None)
        else:
            with torch.inference_mode():
                host, done = to_host(encoder.encode_pixels(pixels, tokens=tokens))
            current = (pos, host, failures, done)
        if pending is not None:
            yield finish(pending)
        pending = current
    if pending is not None:
        yield finish(pending)


def _meta_check(out: Path, meta: dict[str, Any], write: bool) -> None:
    old = read_json(out / "meta.json", "feature folder description")
    if old is not None and old != meta:
        raise ValueError(f"{out} holds features made with {old}; use another output folder for {meta}")
    if old is None and write:
        write_json(out / "meta.json", meta, indent=2)


def extract_to_shards(
    dataset: Any,
    encoder: Any,
    out: str | Path,
    *,
    shard_size: int = 4096,
    tokens: bool = False,
    caption: Callable[[Any], str] | None = None,
    segmenter: Any = None,
    labelmap_size: int = 64,
    labelmap_resample: str = "nearest",
    batch_size: int = 64,
    workers: int = 4,
    resize_on: str = "auto",
    prefetch: int = 2,
    process_index: int = 0,
    num_processes: int = 1,
    meta: dict[str, Any] | None = None,
    progress: bool = True,
    on_failure: Any = None,
) -> ExtractionReport:
    """Encode ``dataset`` into ``out/shard-NNNNN.npz`` (+ ``.tokens.npy``, ``.labelmap.npy``); resumable.

    ``meta`` (what produced the features) is stored in ``meta.json``; a folder made with different
    settings is refused. Encoders with a raw output besides their unit rows (CLIP) store it as
    ``projection``. ``caption(sample)`` (e.g. G3's, from
    :func:`~geodemo.retrieval.geocode.training_caption`: the CSV's city/state/country) adds
    ``text_projection``, the CLIP text projection of each photo's caption;
    ``segmenter`` adds ADE20K label maps (DualGeo), segmented in this process from the whole photo and
    resized to ``labelmap_size`` (``labelmap_resample="bilinear"``, size 224: as DualGeo reads its PNGs).
    ``on_failure(photo_id, reason)`` is called for each unreadable photo.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    _meta_check(out, {**(meta or {}), "shard_size": shard_size, "n": len(dataset)}, write=process_index == 0)
    n_shards = (len(dataset) + shard_size - 1) // shard_size
    mine = [s for s in range(n_shards) if s % num_processes == process_index]
    present = {p.name for p in feature_shards(out)}
    todo = [s for s in mine if f"shard-{s:05d}.npz" not in present]
    for s in todo:  # temporary files of a run killed while writing these shards (only this process writes them)
        remove_stale_temps(out / f"shard-{s:05d}", older_than_s=0)
    report = ExtractionReport(shards_present=len(mine) - len(todo))
    positions = [p for s in todo for p in range(s * shard_size, min((s + 1) * shard_size, len(dataset)))]
    bar = tqdm(total=len(positions), desc=f"{getattr(encoder, 'name', 'encoder')} on {dataset.name}",
               unit="photo", disable=not progress)
    started = time.perf_counter()
    rows: dict[int, dict[str, np.ndarray]] = {}
    template: dict[str, tuple[tuple[int, ...], np.dtype]] = {}  # feature -> row shape, dtype
    failed: dict[int, str] = {}

    def flush(shard: int) -> None:
        lo, hi = shard * shard_size, min((shard + 1) * shard_size, len(dataset))
        kept = [p for p in range(lo, hi) if p in rows]
        samples = [dataset.samples[p] for p in kept]
        feats = {k: np.stack([rows[p][k] for p in kept]) if kept else np.zeros((0, *shape), dtype)
                 for k, (shape, dtype) in template.items()}  # a shard of only failures keeps the columns
        if caption is not None:  # its text projection before L2 normalisation (what G3's text head takes)
            prompts = [caption(s) for s in samples]
            feats["text_projection"] = (encoder.encode_texts(prompts, normalize=False) if prompts
                                        else np.zeros((0, encoder.embed_dim), np.float32))
        table = FeatureTable([s.id for s in samples], [s.group for s in samples],
                             np.array([[s.lat, s.lon] for s in samples], dtype=np.float32).reshape(-1, 2), feats)
        write_feature_shard(out / f"shard-{shard:05d}.npz", table)
        bad = [p for p in range(lo, hi) if p in failed]
        if bad:  # listed beside the shard, so a resumed run reports them without retrying
            write_json(out / f"shard-{shard:05d}.skipped.json", {dataset.samples[p].id: failed[p] for p in bad},
                       indent=1)
        for p in range(lo, hi):
            rows.pop(p, None)
            failed.pop(p, None)
        report.shards_written += 1

    queue = list(todo)
    for batch in encode_photos(encoder, dataset, positions, tokens=tokens, batch_size=batch_size,
                               workers=workers, resize_on=resize_on, prefetch=prefetch):
        for i, p in enumerate(batch.positions):
            rows[p] = {k: v[i] for k, v in batch.outputs.items()}
        if segmenter is not None and batch.positions:
            maps = [np.asarray(segmenter.segment(dataset.open_image(dataset.samples[p])).label_map)
                    for p in batch.positions]
            lm = label_maps_to_tensor(maps, labelmap_size, resample=labelmap_resample).numpy().astype(np.uint8)
            for i, p in enumerate(batch.positions):
                rows[p]["labelmap"] = lm[i]
        if batch.positions and not template:
            template.update({k: (v.shape, v.dtype) for k, v in rows[batch.positions[0]].items()})
        for p, reason in batch.failures:
            failed[p] = reason
            report.failures.append((dataset.samples[p].id, reason))
            if on_failure is not None:
                on_failure(dataset.samples[p].id, reason)
        report.encoded += len(batch.positions)
        bar.update(len(batch.positions) + len(batch.failures))
        while queue and all(p in rows or p in failed for p in
                            range(queue[0] * shard_size, min((queue[0] + 1) * shard_size, len(dataset)))):
            flush(queue.pop(0))
    while queue:  # shards whose photos all failed
        flush(queue.pop(0))
    bar.close()
    report.seconds = time.perf_counter() - started
    return report
