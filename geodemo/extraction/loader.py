"""Photos decoded by parallel worker processes and delivered to the device in batches.

:func:`photo_batches` wraps a :class:`~geodemo.data.GeoDataset` (a folder, a CSV + folder, a tar or
a folder of tar shards) in a ``torch.utils.data.DataLoader``: ``workers`` processes decode (and, with
``resize_on="workers"``, fit) photos; each batch travels as one packed uint8 buffer (pinned on CUDA,
copied without blocking); at most ``workers * prefetch`` batches wait in memory. A photo that cannot
be read is returned as a failure with its reason and never stops the run.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from geodemo.models.pixels import PixelRecipe, device_pixels, draft_size, worker_pixels

__all__ = ["PhotoBatch", "photo_batches", "resolve_resize_on"]

RESIZE_ON = ("auto", "workers", "device")


def resolve_resize_on(resize_on: str, device: torch.device) -> str:
    """``"auto"``: fit on the GPU when there is one, else in the workers (exact, CPU-parallel)."""
    if resize_on not in RESIZE_ON:
        raise ValueError(f"resize_on must be one of {RESIZE_ON}, got {resize_on!r}")
    if resize_on == "auto":
        return "device" if device.type == "cuda" else "workers"
    return resize_on


class _Decoder(Dataset):
    """Item ``i`` = the photo at ``positions[i]`` of ``dataset`` as uint8 HWC, or its failure reason."""

    def __init__(self, dataset, positions: Sequence[int], recipe: PixelRecipe, fit_in_worker: bool):
        self.dataset, self.positions, self.recipe = dataset, list(positions), recipe
        self.fit_in_worker = fit_in_worker
        self.draft = None if fit_in_worker else draft_size(recipe)

    def __len__(self) -> int:
        return len(self.positions)

    def __getitem__(self, i: int) -> tuple[int, np.ndarray | None, str | None]:
        position = self.positions[i]
        sample = self.dataset.samples[position]
        try:
            image = (self.dataset.open_image(sample) if self.draft is None
                     else self.dataset.open_image(sample, draft=self.draft))
            pixels = worker_pixels(image, self.recipe) if self.fit_in_worker else np.asarray(image.convert("RGB"))
        except Exception as exc:  # noqa: BLE001 - one broken photo must not end a million-photo run
            return position, None, str(exc) or type(exc).__name__
        return position, np.ascontiguousarray(pixels, dtype=np.uint8), None


@dataclass
class PhotoBatch:
    """Decoded photos of one batch packed in one uint8 buffer; ``failures`` = (position, reason)."""

    positions: list[int]
    buffer: torch.Tensor  # flat uint8
    shapes: list[tuple[int, int, int]]
    failures: list[tuple[int, str]]

    def pin_memory(self) -> PhotoBatch:  # called by the DataLoader's pinning thread
        self.buffer = self.buffer.pin_memory()
        return self

    def photos(self, device: torch.device) -> list[torch.Tensor]:
        """The photos as ``(H, W, 3)`` uint8 tensors on ``device`` (one non-blocking copy)."""
        flat = self.buffer.to(device, non_blocking=True)
        out, start = [], 0
        for shape in self.shapes:
            n = int(np.prod(shape))
            out.append(flat[start : start + n].view(shape))
            start += n
        return out


def _collate(items: list[tuple[int, np.ndarray | None, str | None]]) -> PhotoBatch:
    ok = [(p, a) for p, a, _ in items if a is not None]
    failures = [(p, err or "unreadable") for p, a, err in items if a is None]
    buffer = torch.from_numpy(np.concatenate([a.ravel() for _, a in ok])) if ok else torch.zeros(0, dtype=torch.uint8)
    return PhotoBatch([p for p, _ in ok], buffer, [tuple(a.shape) for _, a in ok], failures)


def photo_batches(
    dataset,
    positions: Sequence[int],
    recipe: PixelRecipe,
    device: torch.device | str = "cpu",
    batch_size: int = 64,
    workers: int = 4,
    resize_on: str = "auto",
    prefetch: int = 2,
    dtype: torch.dtype = torch.float32,
) -> Iterator[tuple[list[int], torch.Tensor | None, list[tuple[int, str]]]]:
    """``(positions, model input on device, failures)`` per batch, in the order of ``positions``.

    The model input is what :func:`~geodemo.models.pixels.device_pixels` makes (None when every
    photo of the batch failed). ``workers=0`` decodes in this process (same results).
    """
    device = torch.device(device)
    mode = resolve_resize_on(resize_on, device)
    loader = DataLoader(
        _Decoder(dataset, positions, recipe, fit_in_worker=mode == "workers"),
        batch_size=max(1, int(batch_size)),
        num_workers=max(0, int(workers)),
        collate_fn=_collate,
        pin_memory=device.type == "cuda",
        prefetch_factor=max(1, int(prefetch)) if workers > 0 else None,
        shuffle=False,
    )
    for batch in loader:
        if not batch.positions:
            yield [], None, batch.failures
            continue
        pixels = device_pixels(batch.photos(device), recipe, dtype=dtype, already_fitted=mode == "workers")
        yield batch.positions, pixels, batch.failures
