"""A FAISS retrieval database: unit embeddings + per-row metadata (id, lat, lon, place, image, group).

Index kinds (chosen by :class:`IndexConfig`, never by code paths) are the registry
:data:`~geodemo.retrieval.index_kinds.INDEX_KINDS`:

* ``flat``  exact inner product (cosine on unit rows), the reference;
* ``factory`` any FAISS ``index_factory`` string (``factory``, ``{nlist}`` filled in), on the first
  ``reduce_dim`` principal axes of the rows when set (uncentred, so inner products are kept up to the
  dropped tail): FAISS's own compact indexes (IVF-PQ + Refine, OPQ fast-scan + Refine, ...);
* ``hnsw``  graph index, approximate, no training;
* ``ivfpq`` inverted lists + product quantisation;
* ``ivfsq`` inverted lists of each row's residual in ``sq_bits``-bit scalar codes, each dimension's
  range its mean +- ``sq_range`` standard deviations, optionally on ``reduce_dim`` axes as above;
* ``ivfrabitq`` inverted lists of residual RaBitQ codes of ``rabitq_bits`` bits per dimension
  (FAISS ``IndexIVFRaBitQ``) on ``reduce_dim`` axes after a fixed random rotation;
* ``ivfsplit`` inverted lists of 8-bit codes of the leading ``lead_axes`` principal axes give a
  shortlist, re-ranked with bit-allocated codes of the other axes
  (:mod:`geodemo.retrieval.split_index`).

Excluded ids and groups are left out inside the FAISS search (an ``IDSelector``), so exact search
stays exact; only indexes that take no selector (``ivfsplit``, FAISS's IVFPQR, GPU indexes) are
over-fetched by the number of excluded rows and filtered.

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
from geodemo.retrieval.index_kinds import INDEX_KINDS, default_nlist, is_faiss_index, search_parameters, tune
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

FORMAT_VERSION = 1


class DescriptorMismatchError(EncoderMismatchError):
    """A database built with one descriptor (model, weights) was asked to serve another."""


@dataclass
class IndexConfig:
    """How the FAISS index is built. ``None`` parameters are chosen from the gallery size."""

    kind: str = "flat"  # a name in INDEX_KINDS: flat | factory | hnsw | ivfpq | ivfsq | ivfrabitq | ivfsplit
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
    reduce_dim: int | None = None  # factory, ivfsq, ivfrabitq: keep this many principal axes (None: all)
    quantizer: str = "flat"  # ivfsq, ivfrabitq: list assignment by exact search of the centres, or "hnsw"
    kmeans_iters: int = 10  # ivfsq, ivfrabitq, ivfsplit: k-means iterations for the list centres
    lead_axes: int | None = None  # ivfsplit: leading principal axes coded in the lists (None: 64)
    lead_bits: int = 8  # ivfsplit: bits per leading axis in the lists (4, 6 or 8)
    refine_bits: int | None = None  # ivfsplit: bits per row of re-ranking codes (None: 3.4 per other axis)
    shortlist: int = 256  # ivfsplit, factory with Refine or IVFPQR: rows per query re-ranked
    use_gpu: str | bool = "auto"  # auto | True | False: GPU FAISS when present (flat, ivfpq)
    factory: str | None = None  # factory: a FAISS index_factory string on the (reduce_dim) axes; {nlist} filled in
    metric: str = "ip"  # factory: "ip", or "l2" for structures FAISS has only for L2 (IVFPQR); rows are unit

    def __post_init__(self) -> None:
        INDEX_KINDS.get(self.kind)  # an unknown kind: KeyError (also a ValueError) listing the known ones

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


def _on_gpu(index: Any) -> bool:
    name = type(index).__name__
    return name.startswith("Gpu") or name == "IndexReplicas"


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
        self._rows_by: tuple[dict[str, np.ndarray], dict[str, np.ndarray]] | None = None  # id, group -> rows

    # ------------------------------------------------------------------ building
    @staticmethod
    def _new_index(dim: int, cfg: IndexConfig, n_expected: int) -> Any:
        return INDEX_KINDS.get(cfg.kind).new(dim, cfg, cfg.nlist or default_nlist(n_expected))

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
        """The search settings of ``cfg`` (nprobe, efSearch, shortlist ...) on ``index`` (also after loading)."""
        tune(index, cfg)

    @staticmethod
    def _maybe_gpu(index: Any, cfg: IndexConfig) -> Any:
        import faiss

        if cfg.use_gpu is False or not INDEX_KINDS.get(cfg.kind).gpu:  # CPU-only compositions
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
        if INDEX_KINDS.get(cfg.kind).trains:
            # gather training rows from the first chunks (bounded by train_size)
            have = len(first)
            while have < min(cfg.train_size, n):
                nxt = next(chunks, None)
                if nxt is None:
                    break
                pending.append(nxt)
                have += len(nxt)
            train = _as_query(np.concatenate(pending)[: cfg.train_size], dim)
            bits = INDEX_KINDS.get(cfg.kind).code_bits(cfg)
            if is_faiss_index(index):
                ivf = faiss.try_extract_index_ivf(index)
                nlist = 1 if ivf is None else ivf.nlist
            else:
                nlist = index.nlist
            min_train = max(nlist, 2**bits)
            if len(train) < min_train:
                raise ValueError(
                    f"{cfg.kind} needs at least {min_train} training rows (nlist="
                    f"{nlist}, {bits}-bit codes); got {len(train)}: "
                    "use kind 'flat' or 'hnsw' for small galleries"
                )
            cls._train(index, train)
            del train
        cls._set_search_params(index, cfg)
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

        if not is_faiss_index(self.index):
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

    def _excluded_rows(self, exclude_ids: frozenset[str], exclude_groups: frozenset[str]) -> np.ndarray:
        """Sorted row numbers of the excluded ids and groups."""
        if not exclude_ids and not exclude_groups:
            return np.zeros(0, np.int64)
        if self._rows_by is None:
            ids = pd.Series(self.meta.ids, dtype="object")
            groups = pd.Series(self.meta.groups, dtype="object")
            self._rows_by = (ids.groupby(ids, sort=False).indices, groups.groupby(groups, sort=False).indices)
        by_id, by_group = self._rows_by
        parts = [by_id[i] for i in exclude_ids if i in by_id] + [by_group[g] for g in exclude_groups if g in by_group]
        return np.unique(np.concatenate(parts)).astype(np.int64) if parts else np.zeros(0, np.int64)

    def _search_excluding(self, x: np.ndarray, k: int, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` of ``x`` (similarities, row numbers; -1 past the last row) leaving out ``rows``."""
        import faiss

        k = min(k, len(self) - len(rows))
        if k <= 0:
            return np.zeros((len(x), 0), np.float32), np.zeros((len(x), 0), np.int64)
        selector = None
        if len(rows):
            batch = faiss.IDSelectorBatch(rows)
            selector = faiss.IDSelectorNot(batch)
            selector._batch = batch  # SWIG holds a raw pointer
        params = None if _on_gpu(self.index) else search_parameters(self.index, self.config, k, selector)
        if params is not None:
            sims, idx = self.index.search(x, k, params=params)
        else:  # no selector inside this index: over-fetch by the excluded rows and filter
            sims, idx = self.index.search(x, min(len(self), k + len(rows)))
            dropped = np.isin(idx, rows) | (idx < 0)
            order = np.argsort(dropped, axis=1, kind="stable")[:, :k]
            sims, idx = np.take_along_axis(sims, order, 1), np.take_along_axis(idx, order, 1)
            idx = np.where(np.take_along_axis(dropped, order, 1), -1, idx)
        if self.config.metric == "l2":  # squared distances between unit rows -> inner products
            sims = (np.einsum("ij,ij->i", x, x)[:, None] + 1.0 - sims) / 2
        return sims, idx

    def _search_filtered(
        self, x: np.ndarray, k: int, excl_ids: list[set[str]], excl_groups: list[set[str]]
    ) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Per query, the top-``k`` rows and similarities; queries with the same exclusions go together."""
        out_i: list[np.ndarray] = [np.zeros(0, np.int64)] * len(x)
        out_s: list[np.ndarray] = [np.zeros(0, np.float32)] * len(x)
        batches: dict[tuple[frozenset[str], frozenset[str]], list[int]] = {}
        for q, (ids, groups) in enumerate(zip(excl_ids, excl_groups, strict=True)):
            batches.setdefault((frozenset(ids), frozenset(groups)), []).append(q)
        for (ids, groups), queries in batches.items():
            sims, idx = self._search_excluding(x[queries], k, self._excluded_rows(ids, groups))
            for row, q in enumerate(queries):
                keep = idx[row] >= 0
                out_i[q] = idx[row, keep].astype(np.int64)
                out_s[q] = sims[row, keep].astype(np.float32)
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
        excluded rows never appear (FAISS leaves them out inside the search, so exact search stays
        exact). ``encoder_name`` and ``descriptor``, when given, must match
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
        INDEX_KINDS.get(self.config.kind).write(index, directory)
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
        index = INDEX_KINDS.get(cfg.kind).read(directory, cfg)
        cls._set_search_params(index, cfg)
        meta = GalleryMeta.from_frame(pd.read_parquet(directory / "meta.parquet"))
        if index.ntotal != len(meta):
            raise ValueError(f"{directory}: index has {index.ntotal} rows but metadata {len(meta)}")
        return cls(cls._maybe_gpu(index, cfg), meta, info["encoder_name"], cfg, int(info["dim"]),
                   descriptor=info.get("descriptor"))
