"""The in-memory form of every geo-tagged photo set: :class:`GeoSample` rows in a :class:`GeoDataset`."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from geodemo.imageio import ImageError, MissingImageError, load_image

if TYPE_CHECKING:
    from geodemo.data.tarstore import TarImageStore, TarShardStore

__all__ = ["GeoSample", "GeoDataset", "SkippedRow"]


@dataclass
class GeoSample:
    """One photo with its ground-truth position.

    ``group`` is the photographer (IM2GPS ``AUTHOR``, Flickr owner), used to hold out a whole
    photographer at a time; ``meta`` keeps the other CSV columns (scene labels, title, tags, city...).
    """

    id: str
    lat: float
    lon: float
    image_path: Path | None = None
    group: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class SkippedRow:
    """A CSV row or photo left out while loading, and why."""

    where: str  # row number or file name
    reason: str


class GeoDataset:
    """A named list of :class:`GeoSample` with image access that reports failures instead of crashing."""

    def __init__(
        self,
        name: str,
        samples: list[GeoSample],
        *,
        tar_store: TarImageStore | TarShardStore | None = None,
        skipped: list[SkippedRow] | None = None,
        source: str | None = None,
        format: str | None = None,
        lat_lon_swapped: bool = False,
    ) -> None:
        self.name = name
        self.samples = list(samples)
        self.tar_store = tar_store
        self.skipped = list(skipped or [])
        self.source = source  # the CSV or folder it came from
        self.format = format  # the CsvFormat name, "exif-folder", ...
        self.lat_lon_swapped = lat_lon_swapped  # the header's lat/lon labels were found swapped
        self._by_id: dict[str, int] | None = None

    def __len__(self) -> int:
        return len(self.samples)

    def __iter__(self) -> Iterator[GeoSample]:
        return iter(self.samples)

    def __getitem__(self, index: int) -> GeoSample:
        return self.samples[index]

    def __repr__(self) -> str:
        return f"GeoDataset(name={self.name!r}, samples={len(self)}, skipped={len(self.skipped)})"

    def coords(self) -> np.ndarray:
        """Ground truth as a float64 ``(N, 2)`` [lat, lon] array."""
        if not self.samples:
            return np.zeros((0, 2), dtype=np.float64)
        return np.array([[s.lat, s.lon] for s in self.samples], dtype=np.float64)

    def ids(self) -> list[str]:
        return [s.id for s in self.samples]

    def groups(self) -> list[str | None]:
        return [s.group for s in self.samples]

    def get(self, sample_id: str) -> GeoSample:
        """The sample with this id (``KeyError`` naming the dataset otherwise)."""
        if self._by_id is None:
            self._by_id = {s.id: i for i, s in enumerate(self.samples)}
        try:
            return self.samples[self._by_id[sample_id]]
        except KeyError:
            raise KeyError(f"no sample with id {sample_id!r} in dataset {self.name!r}") from None

    def subset(self, limit: int | None = None, ids: set[str] | None = None) -> GeoDataset:
        """A new dataset with the first ``limit`` samples and/or only the given ids."""
        samples = [s for s in self.samples if ids is None or s.id in ids]
        if limit is not None:
            samples = samples[: max(int(limit), 0)]
        return GeoDataset(
            self.name,
            samples,
            tar_store=self.tar_store,
            skipped=self.skipped,
            source=self.source,
            format=self.format,
            lat_lon_swapped=self.lat_lon_swapped,
        )

    def open_image(self, sample: GeoSample, draft: tuple[int, int] | None = None) -> Image.Image:
        """Load the sample's photo as RGB; raises :class:`geodemo.imageio.ImageError` when it cannot.
        ``draft``: see :func:`geodemo.imageio.load_image`."""
        if sample.image_path is not None:
            return load_image(sample.image_path, draft=draft)
        member = sample.meta.get("tar_member")
        if member and self.tar_store is not None:
            return load_image(self.tar_store.read(member), draft=draft)
        raise MissingImageError(f"sample {sample.id!r} of {self.name!r} has no image (metadata-only set)")

    def iter_images(
        self, progress: bool = True, desc: str | None = None
    ) -> Iterator[tuple[GeoSample, Image.Image | None, str | None]]:
        """Yield ``(sample, image, None)`` or ``(sample, None, error)``: a broken photo never stops the loop."""
        bar = tqdm(self.samples, desc=desc or f"reading {self.name}", unit="photo", disable=not progress)
        for sample in bar:
            try:
                image = self.open_image(sample)
            except (ImageError, OSError) as exc:
                yield sample, None, str(exc)
                continue
            except Exception as exc:  # noqa: BLE001 - a decoder bug on one file must not end the run
                yield sample, None, f"unexpected error reading {sample.id}: {type(exc).__name__}: {exc}"
                continue
            yield sample, image, None
