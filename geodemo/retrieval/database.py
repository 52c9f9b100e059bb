"""A FAISS retrieval database: unit embeddings + per-row metadata (id, lat, lon, place, image, group).

Index kinds (chosen by :class:`IndexConfig`, never by code paths):

* ``flat``  exact inner product (cosine on unit rows), the reference;
* ``hnsw``  graph index, approximate, no training;
* ``ivfpq`` inverted lists + product quantisation, compact for millions of rows;
* ``ivfsq`` inverted lists of each row's residual from its list centre in ``sq_bits``-bit scalar
  codes, each dimension's range set to its mean +- ``sq_range`` standard deviations; optionally on
  the first ``reduce_dim`` principal axes of the rows (uncentred, so inner products are kept up to
  the dropped tail) to fit a memory budget;
* ``ivfrabitq`` inverted lists of each row's residual in RaBitQ codes of ``rabitq_bits`` bits per
  dimension (FAISS ``IndexIVFRaBitQ``: a random rotation, then an estimator of the inner product
  with error bounds), on the first ``reduce_dim`` principal axes as above: at MP16 scale (4.1M x 768)
  704 axes at 4 bits fit in 1/8 of flat's memory;
* ``ivfsplit`` inverted lists of 8-bit codes of the leading ``lead_axes`` principal axes give a
  shortlist, re-ranked with codes of the other axes (and of the leading axes' rounding error) whose
  ``refine_bits`` bits are allocated by how much each axis moves inner products
  (:mod:`geodemo.retrieval.split_index`): the MP16-scale kind.

Recall against exact search, latency and memory of each kind, measured by
``scripts/bench_retrieval.py``, are in the README.

A database remembers the encoder that produced its rows: a query made with another encoder is
refused (:class:`EncoderMismatchError`). One built by :mod:`geodemo.retrieval.builder` also records
the full :attr:`~geodemo.models.descriptors.Descriptor.name` (descriptor kind, models, weight
fingerprints); searching or loading it for another descriptor raises :class:`DescriptorMismatchError`.
Search returns the top-k similar rows and, as G3 does, the top-k *dissimilar* ones, and can leave
out ids or groups (photographers) at query time, for leave-one-photographer-out evaluation.
Saved as ``index.faiss`` + ``meta.parquet`` + ``config.json``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from geodemo.errors import EncoderMismatchError
from geodemo.geo import validate_coords
from geodemo.paths import MissingResourceError
from geodemo.result import Neighbour
from geodemo.retrieval.split_index import SplitIVFIndex
from geodemo.storage import atomic_path, write_json

__all__ = [
    "IndexConfig",
    "GalleryMeta",
    "SearchResult",
    "RetrievalDatabase",
    "EncoderMismatchError",
    "DescriptorMismatchError",
    "INDEX_KINDS",
]

INDEX_KINDS = ("flat", "hnsw", "ivfpq", "ivfsq", "ivfrabitq", "ivfsplit")
IVF_KINDS = ("ivfpq", "ivfsq", "ivfrabitq", "ivfsplit")
CODED_IVF_KINDS = ("ivfsq", "ivfrabitq")  # CPU compositions: optional projection, choice of list quantizer
FORMAT_VERSION = 1


class DescriptorMismatchError(EncoderMismatchError):
    """A database built with one descriptor (model, weights) was asked to serve another."""


@dataclass
class IndexConfig:
    """How the FAISS index is built. ``None`` parameters are chosen from the gallery size."""

    kind: str = "flat"  # flat | hnsw | ivfpq | ivfsq | ivfrabitq | ivfsplit
    hnsw_m: int = 32
    ef_construction: int = 80
    ef_search: int = 128
    nlist: int | None = None  # IVF kinds: number of inverted lists (default ~4 sqrt(N))
    pq_m: int | None = None  # ivfpq: sub-quantisers (default: dim / 8, a divisor of dim)
    pq_bits: int = 8
    nprobe: int = 16
    train_size: int = 100_000  # IVF kinds: rows used to train the quantisers
    sq_bits: int = 4  # ivfsq: bits per dimension (4, 6 or 8)
    sq_range: float = 2.5  # ivfsq: each dimension's code range is its mean +- sq_range std
    rabitq_bits: int = 7  # ivfrabitq: bits per (projected) dimension, 1 to 9
    rabitq_query_bits: int = 8  # ivfrabitq: bits of the quantised query (FAISS ``qb``)
    reduce_dim: int | None = None  # ivfsq, ivfrabitq: keep this many principal axes (None: all)
    quantizer: str = "flat"  # ivfsq, ivfrabitq: list assignment by exact search of the centres, or "hnsw"
    kmeans_iters: int = 10  # ivfsq, ivfrabitq, ivfsplit: k-means iterations for the list centres
    lead_axes: int | None = None  # ivfsplit: leading principal axes coded in the lists (None: 64)
    lead_bits: int = 8  # ivfsplit: bits per leading axis in the lists (4, 6 or 8)
    refine_bits: int | None = None  # ivfsplit: bits per row of re-ranking codes (None: 3.4 per other axis)
    shortlist: int = 256  # ivfsplit: rows per query re-ranked with those codes
    use_gpu: str | bool = "auto"  # auto | True | False: GPU FAISS when present (flat, ivfpq)

    def __post_init__(self) -> None:
        if self.kind not in INDEX_KINDS:
            raise ValueError(f"unknown index kind {self.kind!r}; choose one of {', '.join(INDEX_KINDS)}")

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> IndexConfig:
        data = dict(data or {})
        known = set(cls.__dataclass_fields__)
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown index option(s) {sorted(unknown)}; known: {sorted(known)}")
        return cls(**data)


@dataclass
class GalleryMeta:
    """Columnar metadata, one row per indexed embedding."""

    ids: list[str]
    coords: np.ndarray  # (N, 2) [lat, lon]
    places: list[str | None] | None = None
    image_paths: list[str | None] | None = None
    groups: list[str | None] | None = None

    def __post_init__(self) -> None:
        self.ids = [str(i) for i in self.ids]
        self.coords = validate_coords(self.coords, name="gallery coordinates") if len(self.ids) else (
            np.zeros((0, 2))
        )
        n = len(self.ids)
        if len(self.coords) != n:
            raise ValueError(f"{len(self.coords)} coordinates for {n} ids")
        for name in ("places", "image_paths", "groups"):
            col = getattr(self, name)
            if col is None:
                setattr(self, name, [None] * n)
            elif len(col) != n:
                raise ValueError(f"gallery column {name!r} has {len(col)} rows for {n} ids")

    def __len__(self) -> int:
        return len(self.ids)

    @classmethod
    def concat(cls, parts: Sequence[GalleryMeta]) -> GalleryMeta:
        return cls(
            ids=[i for p in parts for i in p.ids],
            coords=np.concatenate([p.coords for p in parts]) if parts else np.zeros((0, 2)),
            places=[x for p in parts for x in p.places],
            image_paths=[x for p in parts for x in p.image_paths],
            groups=[x for p in parts for x in p.groups],
        )

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "id": self.ids,
                "lat": self.coords[:, 0],
                "lon": self.coords[:, 1],
                "place": pd.Series(self.places, dtype="string"),
                "image_path": pd.Series(self.image_paths, dtype="string"),
                "group": pd.Series(self.groups, dtype="string"),
            }
        )

    @classmethod
    def from_frame(cls, df: pd.DataFrame) -> GalleryMeta:
        def col(name: str) -> list[str | None]:
            return [None if pd.isna(v) else str(v) for v in df[name].tolist()]

        return cls(
            ids=df["id"].astype(str).tolist(),
            coords=df[["lat", "lon"]].to_numpy(np.float64),
            places=col("place"),
            image_paths=col("image_path"),
            groups=col("group"),
        )


@dataclass
class SearchResult:
    """Top-k similar and dissimilar rows for one query (row indices into the gallery)."""

    indices: np.ndarray  # (k,) most similar first
    similarities: np.ndarray  # (k,)
    dissimilar_indices: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    dissimilar_similarities: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))


def _auto_pq_m(dim: int) -> int:
    target = max(1, dim // 8)
    for m in range(target, 0, -1):
        if dim % m == 0:
            return m
    return 1


def _iter_chunks(embeddings: np.ndarray | Iterable[np.ndarray], chunk_size: int) -> Iterator[np.ndarray]:
    if isinstance(embeddings, np.ndarray):
        for start in range(0, len(embeddings), chunk_size):
            yield embeddings[start : start + chunk_size]
    else:
        yield from embeddings


def _as_query(x: np.ndarray, dim: int) -> np.ndarray:
    x = np.ascontiguousarray(np.asarray(x, dtype=np.float32))
    if x.ndim == 1:
        x = x[None, :]
    if x.ndim != 2 or x.shape[1] != dim:
        raise ValueError(f"expected embeddings of shape (N, {dim}), got {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("embeddings contain NaN or infinite values")
    return x


def _check_descriptor(recorded: str | None, encoder_name: str, query: str) -> None:
    if query == recorded:
        return
    built = (f"was built with descriptor {recorded!r}" if recorded
             else f"holds {encoder_name!r} embeddings and records no descriptor")
    raise DescriptorMismatchError(
        f"this retrieval database {built}, but the query descriptor is {query!r} (another model, "
        f"checkpoint or kind): its vectors cannot be compared. Rebuild it with `python -m geodemo index` "
        f"and this preset, or point gallery.path to a database built with the same descriptor"
    )


class RetrievalDatabase:
    """Embeddings of one encoder in a FAISS index, with their metadata."""

    def __init__(self, index: Any, meta: GalleryMeta, encoder_name: str, config: IndexConfig, dim: int,
                 descriptor: str | None = None):
        self.index = index
        self.meta = meta
        self.encoder_name = encoder_name
        self.descriptor = descriptor  # the Descriptor.name it was built with (None: built from embeddings)
        self.config = config
        self.dim = dim
        self._group_counts: dict[str, int] | None = None
        self._id_counts: dict[str, int] | None = None

    # ------------------------------------------------------------------ building
    @staticmethod
    def _new_index(dim: int, cfg: IndexConfig, n_expected: int) -> Any:
        import faiss

        if cfg.kind == "flat":
            return faiss.IndexFlatIP(dim)
        if cfg.kind == "hnsw":
            index = faiss.IndexHNSWFlat(dim, cfg.hnsw_m, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = cfg.ef_construction
            index.hnsw.efSearch = cfg.ef_search
            return index
        nlist = cfg.nlist or max(1, min(int(4 * math.sqrt(max(n_expected, 1))), max(1, n_expected // 39)))
        if cfg.kind in CODED_IVF_KINDS:
            return RetrievalDatabase._new_coded_ivf(dim, cfg, nlist)
        if cfg.kind == "ivfsplit":
            return SplitIVFIndex(dim, nlist, cfg.lead_axes, cfg.refine_bits, cfg.shortlist, cfg.nprobe,
                                 cfg.kmeans_iters, capacity=n_expected, lead_bits=cfg.lead_bits)
        pq_m = cfg.pq_m or _auto_pq_m(dim)
        if dim % pq_m:
            raise ValueError(f"ivfpq: pq_m={pq_m} must divide the embedding size {dim}")
        quantizer = faiss.IndexFlatIP(dim)
        index = faiss.IndexIVFPQ(quantizer, dim, nlist, pq_m, cfg.pq_bits, faiss.METRIC_INNER_PRODUCT)
        index.nprobe = min(cfg.nprobe, nlist)  # faiss's wrapper keeps the quantizer alive
        return index

    @staticmethod
    def _new_coded_ivf(dim: int, cfg: IndexConfig, nlist: int) -> Any:
        """``ivfsq`` or ``ivfrabitq``: optional bias-free projection, then inverted lists of codes."""
        import faiss

        d = dim if cfg.reduce_dim is None else int(cfg.reduce_dim)
        if not 0 < d <= dim:
            raise ValueError(f"{cfg.kind}: reduce_dim must be in 1..{dim}, got {d}")
        if cfg.quantizer not in ("flat", "hnsw"):
            raise ValueError(f"{cfg.kind}: quantizer must be 'flat' or 'hnsw', got {cfg.quantizer!r}")
        if cfg.quantizer == "hnsw":
            quantizer = faiss.IndexHNSWFlat(d, 32, faiss.METRIC_INNER_PRODUCT)
            quantizer.hnsw.efSearch = max(64, 2 * cfg.nprobe)
        else:
            quantizer = faiss.IndexFlatIP(d)
        if cfg.kind == "ivfrabitq":
            if not 1 <= cfg.rabitq_bits <= 9:
                raise ValueError(f"ivfrabitq: rabitq_bits must be 1 to 9, got {cfg.rabitq_bits}")
            if not 0 <= cfg.rabitq_query_bits <= 8:
                raise ValueError(f"ivfrabitq: rabitq_query_bits must be 0 to 8, got {cfg.rabitq_query_bits}")
            ivf = faiss.IndexIVFRaBitQ(quantizer, d, nlist, faiss.METRIC_INNER_PRODUCT, True, int(cfg.rabitq_bits))
            ivf.qb = int(cfg.rabitq_query_bits)
        else:
            qtypes = {4: faiss.ScalarQuantizer.QT_4bit, 6: faiss.ScalarQuantizer.QT_6bit,
                      8: faiss.ScalarQuantizer.QT_8bit}
            if cfg.sq_bits not in qtypes:
                raise ValueError(f"ivfsq: sq_bits must be 4, 6 or 8, got {cfg.sq_bits}")
            ivf = faiss.IndexIVFScalarQuantizer(quantizer, d, nlist, qtypes[cfg.sq_bits],
                                                faiss.METRIC_INNER_PRODUCT, True)
            ivf.sq.rangestat = faiss.ScalarQuantizer.RS_meanstd
            ivf.sq.rangestat_arg = float(cfg.sq_range)
        ivf.cp.niter = int(cfg.kmeans_iters)
        ivf.nprobe = min(cfg.nprobe, nlist)
        if d == dim and cfg.kind == "ivfsq":
            return ivf
        return faiss.IndexPreTransform(faiss.LinearTransform(dim, d, False), ivf)  # axes set by _train

    @staticmethod
    def _train(index: Any, train: np.ndarray) -> None:
        """Train ``index`` on ``train``; a bias-free projection first gets the top principal axes of the
        rows' second moment (uncentred: the projection keeps inner products, minus the dropped tail).
        Before RaBitQ codes the kept axes are turned by a fixed random rotation: its uniform bits per
        axis need every axis to carry a similar share of the variance (on principal axes as they come,
        recall@20 on the dev photos falls from 0.97 to 0.6)."""
        import faiss

        if isinstance(index, faiss.IndexPreTransform):
            lt = faiss.downcast_VectorTransform(index.chain.at(0))
            if isinstance(lt, faiss.LinearTransform) and not lt.is_trained:
                x = train.astype(np.float64)
                _, vecs = np.linalg.eigh(x.T @ x)
                axes = vecs[:, ::-1][:, : lt.d_out].T
                if isinstance(faiss.downcast_index(index.index), faiss.IndexIVFRaBitQ):
                    rng = np.random.default_rng(0)
                    axes = np.linalg.qr(rng.standard_normal((lt.d_out, lt.d_out)))[0].T @ axes
                axes = np.ascontiguousarray(axes, dtype=np.float32)
                faiss.copy_array_to_vector(axes.ravel(), lt.A)
                lt.is_trained = True
        index.train(train)

    @staticmethod
    def _set_search_params(index: Any, cfg: IndexConfig) -> None:
        """nprobe (and the HNSW quantizer's efSearch, or the split index's shortlist) from ``cfg`` (also
        after loading a saved index)."""
        import faiss

        if isinstance(index, SplitIVFIndex):
            index.nprobe, index.shortlist = cfg.nprobe, cfg.shortlist
        elif cfg.kind == "ivfpq":
            index.nprobe = int(cfg.nprobe)  # FAISS probes at most nlist lists
        elif cfg.kind in CODED_IVF_KINDS:
            ivf = faiss.downcast_index(faiss.extract_index_ivf(index))
            ivf.nprobe = min(cfg.nprobe, ivf.nlist)
            if cfg.kind == "ivfrabitq":
                ivf.qb = int(cfg.rabitq_query_bits)
            quantizer = faiss.downcast_index(ivf.quantizer)
            if isinstance(quantizer, faiss.IndexHNSW):
                quantizer.hnsw.efSearch = max(64, 2 * ivf.nprobe)

    @staticmethod
    def _maybe_gpu(index: Any, cfg: IndexConfig) -> Any:
        import faiss

        if cfg.use_gpu is False or cfg.kind in ("hnsw", "ivfsplit", *CODED_IVF_KINDS):  # CPU-only compositions
            return index
        n_gpus = faiss.get_num_gpus() if hasattr(faiss, "get_num_gpus") else 0
        if n_gpus == 0:
            if cfg.use_gpu is True:
                raise RuntimeError("use_gpu=True but FAISS sees no GPU (install faiss-gpu, or set use_gpu: auto)")
            return index
        return faiss.index_cpu_to_all_gpus(index)

    @classmethod
    def build(
        cls,
        embeddings: np.ndarray | Iterable[np.ndarray],
        meta: GalleryMeta,
        encoder_name: str,
        config: IndexConfig | dict | None = None,
        chunk_size: int = 65_536,
        progress: bool = True,
        descriptor: str | None = None,
    ) -> RetrievalDatabase:
        """Index ``embeddings`` (an ``(N, D)`` array or an iterable of chunks, unit rows).

        Rows are added ``chunk_size`` at a time (an iterable of chunks is never concatenated),
        so memory beyond the index itself stays bounded. IVF-PQ trains on the first
        ``config.train_size`` rows.
        """
        import faiss

        cfg = config if isinstance(config, IndexConfig) else IndexConfig.from_dict(config)
        n = len(meta)
        chunks = _iter_chunks(embeddings, chunk_size)
        first = next(chunks, None)
        if first is None:
            raise ValueError("cannot build a retrieval database from zero embeddings")
        dim = int(np.asarray(first).shape[1])
        index = cls._new_index(dim, cfg, n)
        pending: list[np.ndarray] = [first]
        if cfg.kind in IVF_KINDS:
            # gather training rows from the first chunks (bounded by train_size)
            have = len(first)
            while have < min(cfg.train_size, n):
                nxt = next(chunks, None)
                if nxt is None:
                    break
                pending.append(nxt)
                have += len(nxt)
            train = _as_query(np.concatenate(pending)[: cfg.train_size], dim)
            bits = cfg.pq_bits if cfg.kind == "ivfpq" else 0
            nlist = index.nlist if isinstance(index, SplitIVFIndex) else faiss.extract_index_ivf(index).nlist
            min_train = max(nlist, 2**bits)
            if len(train) < min_train:
                raise ValueError(
                    f"{cfg.kind} needs at least {min_train} training rows (nlist="
                    f"{nlist}, {bits}-bit codes); got {len(train)}: "
                    "use kind 'flat' or 'hnsw' for small galleries"
                )
            cls._train(index, train)
            del train
        index = cls._maybe_gpu(index, cfg)
        added = 0
        bar = tqdm(total=n, desc=f"indexing ({cfg.kind})", unit="row", disable=not progress)

        def add(chunk: np.ndarray) -> None:
            nonlocal added
            x = _as_query(chunk, dim)
            index.add(x)
            added += len(x)
            bar.update(len(x))

        for chunk in pending:
            add(chunk)
        del pending
        for chunk in chunks:
            add(chunk)
        bar.close()
        if added != n:
            raise ValueError(f"{added} embeddings for {n} metadata rows")
        return cls(index, meta, encoder_name, cfg, dim, descriptor=descriptor)

    # ------------------------------------------------------------------ searching
    def __len__(self) -> int:
        return int(self.index.ntotal)

    @property
    def index_nbytes(self) -> int:
        """Bytes the index takes as stored (its FAISS serialisation; a split index adds its own arrays)."""
        import faiss

        if isinstance(self.index, SplitIVFIndex):
            return self.index.nbytes
        return int(faiss.serialize_index(self.index).nbytes)

    def _check_encoder(self, encoder_name: str | None) -> None:
        if encoder_name is not None and encoder_name != self.encoder_name:
            raise EncoderMismatchError(
                f"this database holds {self.encoder_name!r} embeddings; a query embedded with "
                f"{encoder_name!r} cannot be compared with them. Rebuild the gallery with "
                f"{encoder_name!r} or embed the query with {self.encoder_name!r}"
            )

    def check_descriptor(self, descriptor: str) -> None:
        """Raise :class:`DescriptorMismatchError` unless this database was built with ``descriptor``."""
        _check_descriptor(self.descriptor, self.encoder_name, descriptor)

    def _excluded_count(self, exclude_ids: set[str], exclude_groups: set[str]) -> int:
        if not exclude_ids and not exclude_groups:
            return 0
        if self._group_counts is None:
            self._group_counts = pd.Series(self.meta.groups, dtype="object").value_counts().to_dict()
            self._id_counts = pd.Series(self.meta.ids).value_counts().to_dict()
        return sum(self._id_counts.get(i, 0) for i in exclude_ids) + sum(
            self._group_counts.get(g, 0) for g in exclude_groups
        )

    def _keep(self, idx: int, exclude_ids: set[str], exclude_groups: set[str]) -> bool:
        if idx < 0:
            return False
        if exclude_ids and self.meta.ids[idx] in exclude_ids:
            return False
        return not (exclude_groups and self.meta.groups[idx] in exclude_groups)

    def _search_filtered(
        self, x: np.ndarray, k: int, excl_ids: list[set[str]], excl_groups: list[set[str]]
    ) -> tuple[list[np.ndarray], list[np.ndarray]]:
        n_total = len(self)
        extra = max(self._excluded_count(i, g) for i, g in zip(excl_ids, excl_groups, strict=True)) if len(x) else 0
        fetch = min(n_total, k + extra)
        sims, idx = self.index.search(x, fetch)
        out_i, out_s = [], []
        for row in range(len(x)):
            keep = [
                j for j in range(fetch) if self._keep(int(idx[row, j]), excl_ids[row], excl_groups[row])
            ][:k]
            out_i.append(idx[row, keep].astype(np.int64))
            out_s.append(sims[row, keep].astype(np.float32))
        return out_i, out_s

    def search(
        self,
        queries: np.ndarray,
        k: int = 20,
        k_dissimilar: int = 0,
        encoder_name: str | None = None,
        exclude_ids: set[str] | Sequence[set[str]] | None = None,
        exclude_groups: set[str] | Sequence[set[str]] | None = None,
        descriptor: str | None = None,
    ) -> list[SearchResult]:
        """Top-``k`` most similar and top-``k_dissimilar`` least similar rows for each query.

        ``exclude_ids`` / ``exclude_groups`` are one set for all queries or one set per query;
        excluded rows never appear (the index is over-fetched by the number of excluded rows,
        so exact search stays exact). ``encoder_name`` and ``descriptor``, when given, must match
        the database's (:class:`EncoderMismatchError`, :class:`DescriptorMismatchError`).
        """
        self._check_encoder(encoder_name)
        if descriptor is not None:
            self.check_descriptor(descriptor)
        x = _as_query(queries, self.dim)
        nq = len(x)

        def per_query(value: Any) -> list[set[str]]:
            if value is None:
                return [set()] * nq
            if isinstance(value, (set, frozenset)):
                return [set(value)] * nq
            value = [set(v or ()) for v in value]
            if len(value) != nq:
                raise ValueError(f"{len(value)} exclusion sets for {nq} queries")
            return value

        ids, groups = per_query(exclude_ids), per_query(exclude_groups)
        top_i, top_s = self._search_filtered(x, k, ids, groups)
        if k_dissimilar > 0:
            # the least similar rows under inner product are the most similar to -q
            low_i, low_s = self._search_filtered(-x, k_dissimilar, ids, groups)
            low_s = [-s for s in low_s]
        else:
            low_i = [np.zeros(0, np.int64)] * nq
            low_s = [np.zeros(0, np.float32)] * nq
        return [SearchResult(top_i[q], top_s[q], low_i[q], low_s[q]) for q in range(nq)]

    def neighbours(
        self, indices: np.ndarray, similarities: np.ndarray, source: str = "image-gallery"
    ) -> list[Neighbour]:
        """Rows as :class:`~geodemo.result.Neighbour` records, ranked in the given order."""
        out = []
        for rank, (i, s) in enumerate(zip(indices.tolist(), similarities.tolist(), strict=True)):
            out.append(
                Neighbour(
                    rank=rank,
                    id=self.meta.ids[i],
                    lat=float(self.meta.coords[i, 0]),
                    lon=float(self.meta.coords[i, 1]),
                    similarity=float(s),
                    source=source,
                    place=self.meta.places[i],
                    image_path=self.meta.image_paths[i],
                )
            )
        return out

    # ------------------------------------------------------------------ persistence
    def save(self, directory: str | Path) -> Path:
        """Write ``index.faiss``, ``meta.parquet`` and ``config.json`` into ``directory``."""
        import faiss

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        index = self.index
        if hasattr(faiss, "index_gpu_to_cpu") and type(index).__name__.startswith("Gpu"):
            index = faiss.index_gpu_to_cpu(index)
        if isinstance(index, SplitIVFIndex):
            index.write(directory)
        else:
            with atomic_path(directory / "index.faiss") as tmp:
                faiss.write_index(index, str(tmp))
        with atomic_path(directory / "meta.parquet") as tmp:
            self.meta.to_frame().to_parquet(tmp, index=False)
        info = {
            "format_version": FORMAT_VERSION,
            "encoder_name": self.encoder_name,
            "descriptor": self.descriptor,
            "dim": self.dim,
            "ntotal": len(self),
            "index": asdict(self.config),
        }
        write_json(directory / "config.json", info, indent=2)
        return directory

    @classmethod
    def load(cls, directory: str | Path, use_gpu: str | bool | None = None,
             descriptor: str | None = None) -> RetrievalDatabase:
        """Read a database written by :meth:`save`; with ``descriptor``, refuse one built with another
        (:class:`DescriptorMismatchError`) before reading the index."""
        import faiss

        directory = Path(directory)
        missing = [n for n in ("index.faiss", "meta.parquet", "config.json") if not (directory / n).is_file()]
        if missing:
            raise MissingResourceError(
                f"retrieval database at {directory} lacks {', '.join(missing)}; build it with "
                f"RetrievalDatabase.build(...).save({str(directory)!r}) or geodemo.retrieval.galleries"
            )
        info = json.loads((directory / "config.json").read_text())
        if descriptor is not None:
            _check_descriptor(info.get("descriptor"), info["encoder_name"], descriptor)
        cfg = IndexConfig.from_dict(info["index"])
        if use_gpu is not None:
            cfg.use_gpu = use_gpu
        if cfg.kind == "ivfsplit":
            index = SplitIVFIndex.read(directory, cfg.lead_axes, cfg.lead_bits, cfg.shortlist, cfg.nprobe)
        else:
            index = faiss.read_index(str(directory / "index.faiss"))
        cls._set_search_params(index, cfg)
        meta = GalleryMeta.from_frame(pd.read_parquet(directory / "meta.parquet"))
        if index.ntotal != len(meta):
            raise ValueError(f"{directory}: index has {index.ntotal} rows but metadata {len(meta)}")
        return cls(cls._maybe_gpu(index, cfg), meta, info["encoder_name"], cfg, int(info["dim"]),
                   descriptor=info.get("descriptor"))
