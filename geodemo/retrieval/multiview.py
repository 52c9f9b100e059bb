"""Multi-view re-ranking and reciprocal-neighbour matching for small image galleries.

A global descriptor of the whole frame misses a place that fills only part of it, or that was
shot mirror-wise. Two classic retrieval techniques correct this after the FAISS shortlist:

* **multi-view query** - the query is embedded as seven views (whole, mirrored, four corner crops
  and a centre crop, each ``crop`` of the side); a gallery photo's score is the best cosine between
  any query view and the gallery photo's whole or mirrored view (``GALLERY_VIEWS``);
* **reciprocal neighbours** (Qin et al., CVPR 2011) - the re-ranked top-1 gallery photo ``b`` is a
  trusted match when the query would rank among ``b``'s own ``k`` nearest gallery photos: its
  similarity to ``b`` beats all but ``k - 1`` of the similarities of ``b``'s views to the rest of
  the gallery (``b``'s photographer and everything the query excludes left out).

:class:`ViewBank` holds the seven view embeddings of every gallery photo, cached on disk per
(encoder, gallery) under ``cache_dir("views")``. Its :meth:`ViewBank.compact` form keeps only what
matching reads - the ``GALLERY_VIEWS`` of every photo and the gallery-to-gallery similarities the
reciprocal test needs - and is what the embedded default ships (``geodemo.retrieval.bundle``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps
from tqdm.auto import tqdm

from geodemo.imageio import load_image
from geodemo.paths import cache_dir
from geodemo.retrieval import bundle as gallery_bundle  # bundle imports this module: looked up when called
from geodemo.storage import load_npz, save_npz

__all__ = [
    "VIEW_NAMES",
    "GALLERY_VIEWS",
    "query_views",
    "ViewBank",
    "multiview_similarities",
    "reciprocal_rank",
]

VIEW_NAMES = ("whole", "mirrored", "top-left", "top-right", "bottom-left", "bottom-right", "centre")
GALLERY_VIEWS = (0, 1)  # a gallery photo is compared whole and mirrored


def query_views(image: Image.Image, crop: float = 0.6) -> list[Image.Image]:
    """The seven views of ``image`` named in ``VIEW_NAMES`` (crops keep ``crop`` of each side)."""
    if not 0.0 < crop <= 1.0:
        raise ValueError(f"crop must be in (0, 1], got {crop}")
    image = image.convert("RGB")
    w, h = image.size
    cw, ch = max(1, int(w * crop)), max(1, int(h * crop))
    corners = [(0, 0), (w - cw, 0), (0, h - ch), (w - cw, h - ch), ((w - cw) // 2, (h - ch) // 2)]
    return [image, ImageOps.mirror(image)] + [image.crop((x, y, x + cw, y + ch)) for x, y in corners]


def multiview_similarities(query: np.ndarray, gallery: np.ndarray) -> np.ndarray:
    """``(K,)`` best cosine between any of the query's views ``(Vq, D)`` and the ``GALLERY_VIEWS``
    of each gallery photo ``(K, V, D)``, V = all views or just the gallery views (unit rows; zero
    rows never win)."""
    q = np.asarray(query, dtype=np.float32).reshape(-1, query.shape[-1])
    g = np.asarray(gallery, dtype=np.float32)
    if g.shape[1] != len(GALLERY_VIEWS):
        g = g[:, list(GALLERY_VIEWS), :]
    return np.einsum("qd,kvd->kqv", q, g).reshape(len(g), -1).max(1)


@dataclass
class ViewBank:
    """View embeddings ``(N, len(VIEW_NAMES), D)`` of a gallery's photos, rows aligned with it;
    ``valid[i]`` is False where the photo could not be read (its rows are zero).

    A compact bank holds ``(N, len(GALLERY_VIEWS), D)`` and ``pairwise`` ``(N, N)``: photo b's
    multi-view similarity (all its views) to photo j (its gallery views), what the reciprocal test reads.
    """

    encoder_name: str
    embeddings: np.ndarray
    valid: np.ndarray
    groups: list[str | None]
    ids: list[str]
    pairwise: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.ids)

    def __post_init__(self) -> None:
        self._rows = {pid: i for i, pid in enumerate(self.ids)}
        self._ids = np.asarray(self.ids, dtype=object)
        self._groups = np.asarray(self.groups, dtype=object)

    def row_of(self, photo_id: str) -> int | None:
        """Row of a gallery photo id (None when it is not in the bank)."""
        return self._rows.get(photo_id)

    def views_of(self, photo_id: str) -> np.ndarray | None:
        """``(V, D)`` view embeddings of a gallery photo, or None when it is absent or unreadable
        (a benchmark photo that is also in the gallery need not be encoded again)."""
        row = self.row_of(photo_id)
        if self.embeddings.shape[1] != len(VIEW_NAMES):  # a compact bank lacks the crops
            return None
        return self.embeddings[row] if row is not None and self.valid[row] else None

    def compact(self, chunk: int = 256) -> ViewBank:
        """The bank as matching reads it: the ``GALLERY_VIEWS`` of each photo + the ``pairwise`` matrix."""
        if self.pairwise is not None:
            return self
        full = np.asarray(self.embeddings, dtype=np.float32)
        n, v, d = full.shape
        gallery = full[:, list(GALLERY_VIEWS), :].reshape(-1, d)  # (N * G, D)
        pairwise = np.zeros((n, n), dtype=np.float32)
        for start in range(0, n, chunk):
            block = full[start : start + chunk]  # (B, V, D) photos b, all views
            sims = (block.reshape(-1, d) @ gallery.T).reshape(len(block), v, n, len(GALLERY_VIEWS))
            pairwise[start : start + chunk] = sims.max(axis=(1, 3))
        return ViewBank(self.encoder_name, full[:, list(GALLERY_VIEWS), :], self.valid.copy(), list(self.groups),
                        list(self.ids), pairwise)

    @classmethod
    def build(
        cls, encoder: Any, image_paths: Sequence[str | None], ids: Sequence[str],
        groups: Sequence[str | None], crop: float = 0.6, progress: bool = True, use_cache: bool = True,
        use_bundle: bool = True,
    ) -> ViewBank:
        """Embed the views of every gallery photo (cached by encoder, ids, paths and crop); the
        embedded default's compact bank answers without encoding when it holds these ids."""
        name = getattr(encoder, "name", type(encoder).__name__)
        bundle = gallery_bundle.open_gallery_bundle() if use_bundle else None
        if bundle is not None and bundle.encoder_name == name and bundle.crop == crop and bundle.size == len(ids):
            bank = bundle.view_bank()
            if bank.ids == [str(i) for i in ids]:
                return bank
        key = hashlib.sha1(repr((name, crop, list(ids), [str(p) for p in image_paths])).encode()).hexdigest()[:12]
        path = cache_dir("views") / f"{Path(str(name)).name}-{key}.npz"
        z = load_npz(path, "gallery view cache", required=("embeddings", "valid")) if use_cache else None
        if z is not None and len(z["valid"]) == len(ids) == len(z["embeddings"]):
            return cls(str(name), z["embeddings"], z["valid"].astype(bool), list(groups), list(ids))
        dim = int(getattr(encoder, "embed_dim", 0)) or None
        out: np.ndarray | None = None
        valid = np.zeros(len(ids), dtype=bool)
        for i, p in enumerate(tqdm(image_paths, desc=f"gallery views ({name})", unit="photo", disable=not progress)):
            try:
                views = encoder.encode_images(query_views(load_image(p), crop), batch_size=len(VIEW_NAMES))
            except Exception:  # noqa: BLE001 - unreadable or missing photo: zero rows
                continue
            if out is None:
                out = np.zeros((len(ids), len(VIEW_NAMES), dim or views.shape[1]), dtype=np.float32)
            out[i], valid[i] = views, True
        if out is None:
            raise FileNotFoundError(f"none of the {len(ids)} gallery photos could be read for multi-view re-ranking")
        bank = cls(str(name), out, valid, list(groups), list(ids))
        if use_cache:
            save_npz(path, embeddings=out, valid=valid)
        return bank

    def keep_mask(self, exclude_ids: set[str] = frozenset(), exclude_groups: set[str] = frozenset()) -> np.ndarray:
        """``(N,)`` True for gallery photos a query with these exclusions may use."""
        keep = self.valid.copy()
        if exclude_ids:
            keep &= ~np.isin(self._ids, list(exclude_ids))
        if exclude_groups:
            keep &= ~np.isin(self._groups, [g for g in exclude_groups if g is not None])
        return keep


def reciprocal_rank(bank: ViewBank, b: int, similarity: float, keep: np.ndarray) -> int:
    """How many gallery photos ``b`` is more similar to than to the query (0 = the query would be
    ``b``'s nearest neighbour). ``similarity`` is the query's multi-view similarity to ``b``;
    ``keep`` masks the photos the query may use; ``b`` itself and its photographer are left out."""
    mask = keep.copy()
    mask[b] = False
    if bank.groups[b] is not None:
        mask &= bank._groups != bank.groups[b]
    idx = np.flatnonzero(mask)
    if len(idx) == 0:
        return 0
    if bank.pairwise is not None:
        sims = np.asarray(bank.pairwise[b, idx], dtype=np.float32)
    else:
        sims = multiview_similarities(bank.embeddings[b], bank.embeddings[idx])
    return int((sims > similarity).sum())
