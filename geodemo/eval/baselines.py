"""Two honest floors every method must beat: the gallery-density prior and a random gallery point.

Neither looks at the pixels. The density prior always answers the densest place of the gallery
(the point with the most gallery points within ``radius_km``), which is what a model that learned
only the photo distribution would say; the random baseline answers a random gallery point.
When the gallery is the evaluated set itself, each query's own photo and every photo of its
photographer are left out (leave-one-photographer-out), so no answer is copied from the truth.
"""

from __future__ import annotations

import hashlib
import importlib.util
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from geodemo.data.dataset import GeoDataset
from geodemo.eval.harness import QueryPhoto
from geodemo.geo import EARTH_RADIUS_KM, pairwise_haversine_km, validate_coords
from geodemo.paths import MissingResourceError

__all__ = ["Gallery", "geoclip_gallery", "DensityPrior", "RandomGallery"]


@dataclass
class Gallery:
    """Reference coordinates with optional ids and photographer groups (for exclusions)."""

    name: str
    coords: np.ndarray  # (N, 2) [lat, lon]
    ids: list[str] | None = None
    groups: list[str | None] | None = None
    _id_index: dict[str, int] = field(default_factory=dict, init=False, repr=False)
    _group_index: dict[str, np.ndarray] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        self.coords = validate_coords(self.coords, name=f"gallery {self.name}")
        if len(self.coords) == 0:
            raise ValueError(f"gallery {self.name!r} is empty")
        if self.ids is not None:
            self._id_index = {sid: i for i, sid in enumerate(self.ids)}
        if self.groups is not None:
            by_group: dict[str, list[int]] = {}
            for i, g in enumerate(self.groups):
                if g:
                    by_group.setdefault(g, []).append(i)
            self._group_index = {g: np.array(ix, dtype=np.int64) for g, ix in by_group.items()}

    def __len__(self) -> int:
        return len(self.coords)

    @classmethod
    def from_dataset(cls, dataset: GeoDataset) -> Gallery:
        """The dataset's own ground truth as a gallery (queries from it are then held out)."""
        return cls(dataset.name, dataset.coords(), dataset.ids(), dataset.groups())

    def excluded(self, query: QueryPhoto) -> np.ndarray:
        """Indices that must not answer ``query``: its own photo and its photographer's photos."""
        parts = []
        if query.id in self._id_index:
            parts.append(np.array([self._id_index[query.id]], dtype=np.int64))
        if query.group and query.group in self._group_index:
            parts.append(self._group_index[query.group])
        return np.unique(np.concatenate(parts)) if parts else np.zeros(0, dtype=np.int64)


def geoclip_gallery() -> Gallery:
    """GeoCLIP's 100K GPS gallery (sampled from its MP16 training photos), read from the geoclip wheel."""
    spec = importlib.util.find_spec("geoclip")  # locates the package without importing torch code
    if spec is None or not spec.submodule_search_locations:
        raise MissingResourceError("the geoclip package is not installed; pip install geoclip==1.2.0")
    path = Path(list(spec.submodule_search_locations)[0]) / "model" / "gps_gallery" / "coordinates_100K.csv"
    if not path.is_file():
        raise MissingResourceError(f"GeoCLIP GPS gallery not found at {path}; reinstall geoclip==1.2.0")
    coords = np.loadtxt(path, delimiter=",", skiprows=1, dtype=np.float64)
    return Gallery("geoclip-100k", coords)


def _stable_seed(*parts: object) -> int:
    digest = hashlib.sha256("|".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "little")


class DensityPrior:
    """Always answers the gallery point with the most gallery neighbours within ``radius_km``.

    Candidate answers are all gallery points, or a seeded sample of ``max_candidates`` of them for
    big galleries; neighbour counts use every gallery point. Ties go to the lowest gallery index.
    """

    def __init__(self, gallery: Gallery, radius_km: float = 200.0, max_candidates: int = 20_000, seed: int = 0):
        from sklearn.neighbors import BallTree

        self.gallery = gallery
        self.radius_km = float(radius_km)
        self.name = "density-prior"
        n = len(gallery)
        if n > max_candidates:
            rng = np.random.default_rng(seed)
            self.candidates = np.sort(rng.choice(n, size=max_candidates, replace=False))
        else:
            self.candidates = np.arange(n)
        tree = BallTree(np.deg2rad(gallery.coords), metric="haversine")
        self.counts = tree.query_radius(
            np.deg2rad(gallery.coords[self.candidates]), r=self.radius_km / EARTH_RADIUS_KM, count_only=True
        ).astype(np.int64)
        self._cache: dict[bytes, np.ndarray] = {}

    def answer(self, excluded: np.ndarray) -> np.ndarray:
        """The densest candidate once the ``excluded`` gallery indices are removed from the counts."""
        key = excluded.tobytes()
        if key in self._cache:
            return self._cache[key]
        score = self.counts.copy()
        if len(excluded):
            cand = self.gallery.coords[self.candidates]
            near = pairwise_haversine_km(cand, self.gallery.coords[excluded]) <= self.radius_km
            score -= near.sum(axis=1)
            score[np.isin(self.candidates, excluded)] = -1
        best = self.gallery.coords[self.candidates[int(np.argmax(score))]]
        self._cache[key] = best
        return best

    def predict(self, batch: list[QueryPhoto]) -> np.ndarray:
        return np.stack([self.answer(self.gallery.excluded(q)) for q in batch]) if batch else np.zeros((0, 2))


class RandomGallery:
    """Answers a uniformly random gallery point (never the query's own photo or photographer).

    The draw is seeded by ``seed`` and the photo id, so a resumed or re-batched run gives the
    same answers.
    """

    def __init__(self, gallery: Gallery, seed: int = 0):
        self.gallery = gallery
        self.seed = int(seed)
        self.name = "random-gallery"

    def _pick(self, query: QueryPhoto) -> np.ndarray:
        rng = np.random.default_rng(_stable_seed(self.seed, query.id))
        excluded = self.gallery.excluded(query)
        n = len(self.gallery)
        if len(excluded) >= n:
            return np.array([np.nan, np.nan])  # nothing left to answer with
        allowed = np.setdiff1d(np.arange(n), excluded, assume_unique=True) if len(excluded) else None
        index = int(rng.integers(n)) if allowed is None else int(allowed[rng.integers(len(allowed))])
        return self.gallery.coords[index]

    def predict(self, batch: list[QueryPhoto]) -> np.ndarray:
        return np.stack([self._pick(q) for q in batch]) if batch else np.zeros((0, 2))
