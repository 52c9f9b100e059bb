"""Index kinds by name: how each one is built, trained and searched (:data:`INDEX_KINDS`).

A kind is an :class:`IndexKind` in one registry; :class:`~geodemo.retrieval.database.RetrievalDatabase`
asks the registry, never ``if kind == ...``. ``factory`` takes any FAISS ``index_factory`` string,
so a new FAISS structure is configuration, not code. Search settings (``nprobe``, ``efSearch``,
RaBitQ's query bits, the rows a refine step re-ranks) and exclusions go to FAISS as one
``SearchParameters`` tree per search, the exclusions as an ``IDSelector`` applied inside the search.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from geodemo.registry import Registry
from geodemo.retrieval.split_index import SplitIVFIndex
from geodemo.storage import atomic_path

if TYPE_CHECKING:
    from geodemo.retrieval.database import IndexConfig

__all__ = ["IndexKind", "INDEX_KINDS", "register_index_kind", "default_nlist", "tune", "search_parameters",
           "is_faiss_index"]


@dataclass(frozen=True)
class IndexKind:
    """One index kind: ``new(dim, cfg, nlist)`` returns the empty index."""

    name: str
    new: Callable[[int, IndexConfig, int], Any]
    trains: bool = False  # needs training rows (``cfg.train_size``) before rows are added
    gpu: bool = False  # GPU FAISS can hold it
    code_bits: Callable[[IndexConfig], int] = lambda cfg: 0  # bits per PQ code word (training rows >= 2**bits)
    description: str = ""
    read: Callable[[Path, IndexConfig], Any] = lambda directory, cfg: _read_faiss(directory)  # a saved index
    write: Callable[[Any, Path], None] = lambda index, directory: _write_faiss(index, directory)  # ... and back


def _read_faiss(directory: Path) -> Any:
    import faiss

    return faiss.read_index(str(directory / "index.faiss"))


def _write_faiss(index: Any, directory: Path) -> None:
    import faiss

    with atomic_path(directory / "index.faiss") as tmp:
        faiss.write_index(index, str(tmp))


def default_nlist(n_expected: int) -> int:
    """Inverted lists for ``n_expected`` rows: about 4 sqrt(N), at least 39 rows per list."""
    return max(1, min(int(4 * math.sqrt(max(n_expected, 1))), max(1, n_expected // 39)))


def _projected_dim(dim: int, cfg: IndexConfig) -> int:
    d = dim if cfg.reduce_dim is None else int(cfg.reduce_dim)
    if not 0 < d <= dim:
        raise ValueError(f"{cfg.kind}: reduce_dim must be in 1..{dim}, got {d}")
    return d


def _projected(dim: int, d: int, inner: Any) -> Any:
    """``inner`` behind an uncentred projection onto ``d`` principal axes (set when trained), or as is."""
    import faiss

    return inner if d == dim else faiss.IndexPreTransform(faiss.LinearTransform(dim, d, False), inner)


def _flat(dim: int, cfg: IndexConfig, nlist: int) -> Any:
    import faiss

    return faiss.IndexFlatIP(dim)


def _hnsw(dim: int, cfg: IndexConfig, nlist: int) -> Any:
    import faiss

    index = faiss.IndexHNSWFlat(dim, cfg.hnsw_m, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = cfg.ef_construction
    return index


def _auto_pq_m(dim: int) -> int:
    target = max(1, dim // 8)
    return next(m for m in range(target, 0, -1) if dim % m == 0)


def _ivfpq(dim: int, cfg: IndexConfig, nlist: int) -> Any:
    import faiss

    pq_m = cfg.pq_m or _auto_pq_m(dim)
    if dim % pq_m:
        raise ValueError(f"ivfpq: pq_m={pq_m} must divide the embedding size {dim}")
    quantizer = faiss.IndexFlatIP(dim)
    return faiss.IndexIVFPQ(quantizer, dim, nlist, pq_m, cfg.pq_bits, faiss.METRIC_INNER_PRODUCT)


def _coded_ivf(dim: int, cfg: IndexConfig, nlist: int) -> Any:
    """``ivfsq`` or ``ivfrabitq``: optional uncentred projection, then inverted lists of codes."""
    import faiss

    d = _projected_dim(dim, cfg)
    if cfg.quantizer not in ("flat", "hnsw"):
        raise ValueError(f"{cfg.kind}: quantizer must be 'flat' or 'hnsw', got {cfg.quantizer!r}")
    if cfg.quantizer == "hnsw":
        quantizer = faiss.IndexHNSWFlat(d, 32, faiss.METRIC_INNER_PRODUCT)
        quantizer.hnsw.efSearch = max(64, 2 * cfg.nprobe)  # also used to assign rows to lists
    else:
        quantizer = faiss.IndexFlatIP(d)
    if cfg.kind == "ivfrabitq":
        if not 1 <= cfg.rabitq_bits <= 9:
            raise ValueError(f"ivfrabitq: rabitq_bits must be 1 to 9, got {cfg.rabitq_bits}")
        if not 0 <= cfg.rabitq_query_bits <= 8:
            raise ValueError(f"ivfrabitq: rabitq_query_bits must be 0 to 8, got {cfg.rabitq_query_bits}")
        ivf = faiss.IndexIVFRaBitQ(quantizer, d, nlist, faiss.METRIC_INNER_PRODUCT, True, int(cfg.rabitq_bits))
        # RaBitQ's uniform bits need every axis to carry a similar share of the variance: a fixed random
        # rotation after the projection (on principal axes as they come, dev recall@20 0.97 -> 0.6)
        rotate = True
    else:
        qtypes = {4: faiss.ScalarQuantizer.QT_4bit, 6: faiss.ScalarQuantizer.QT_6bit,
                  8: faiss.ScalarQuantizer.QT_8bit}
        if cfg.sq_bits not in qtypes:
            raise ValueError(f"ivfsq: sq_bits must be 4, 6 or 8, got {cfg.sq_bits}")
        ivf = faiss.IndexIVFScalarQuantizer(quantizer, d, nlist, qtypes[cfg.sq_bits],
                                            faiss.METRIC_INNER_PRODUCT, True)
        ivf.sq.rangestat = faiss.ScalarQuantizer.RS_meanstd
        ivf.sq.rangestat_arg = float(cfg.sq_range)
        rotate = False
    ivf.cp.niter = int(cfg.kmeans_iters)
    if rotate:
        return faiss.IndexPreTransform(faiss.LinearTransform(dim, d, False), ivf)
    return _projected(dim, d, ivf)


def _factory(dim: int, cfg: IndexConfig, nlist: int) -> Any:
    """FAISS's own index for ``cfg.factory`` (``{nlist}`` filled in), behind an uncentred projection
    onto ``reduce_dim`` principal axes when set (FAISS's ``PCA`` centres the rows, which changes the
    ranking by inner product)."""
    import faiss

    if not cfg.factory:
        raise ValueError("kind 'factory' needs a FAISS index_factory string in 'factory', "
                         "e.g. 'IVF{nlist},PQ64,Refine(SQ4)'")
    metrics = {"ip": faiss.METRIC_INNER_PRODUCT, "l2": faiss.METRIC_L2}
    if cfg.metric not in metrics:
        raise ValueError(f"factory: metric must be 'ip' or 'l2', got {cfg.metric!r}")
    d = _projected_dim(dim, cfg)
    try:
        inner = faiss.index_factory(d, cfg.factory.format(nlist=nlist), metrics[cfg.metric])
    except (RuntimeError, KeyError, IndexError, ValueError) as exc:
        raise ValueError(f"FAISS cannot build index_factory string {cfg.factory!r} on {d} dims "
                         f"with metric {cfg.metric!r}: {str(exc).splitlines()[-1]}") from None
    ivf = faiss.try_extract_index_ivf(inner)
    if ivf is not None:
        ivf.cp.niter = int(cfg.kmeans_iters)
    return _projected(dim, d, inner)


def _ivfsplit(dim: int, cfg: IndexConfig, nlist: int) -> Any:
    return SplitIVFIndex(dim, nlist, cfg.lead_axes, cfg.refine_bits, cfg.shortlist, cfg.nprobe,
                         cfg.kmeans_iters, lead_bits=cfg.lead_bits)


def _builtin(registry: Registry[IndexKind]) -> None:
    for kind in (
        IndexKind("flat", _flat, gpu=True, description="exact inner product (cosine on unit rows), the reference"),
        IndexKind("hnsw", _hnsw, description="graph index, approximate, no training"),
        IndexKind("ivfpq", _ivfpq, trains=True, gpu=True, code_bits=lambda cfg: cfg.pq_bits,
                  description="inverted lists + product quantisation"),
        IndexKind("ivfsq", _coded_ivf, trains=True,
                  description="inverted lists of residual scalar codes, optionally on reduce_dim axes"),
        IndexKind("ivfrabitq", _coded_ivf, trains=True,
                  description="inverted lists of residual RaBitQ codes on reduce_dim axes"),
        IndexKind("ivfsplit", _ivfsplit, trains=True,
                  description="IVF shortlist on the leading axes, re-ranked with bit-allocated codes",
                  read=lambda directory, cfg: SplitIVFIndex.read(directory, cfg.lead_axes, cfg.lead_bits,
                                                                 cfg.shortlist, cfg.nprobe),
                  write=lambda index, directory: index.write(directory)),
        IndexKind("factory", _factory, trains=True,
                  description="any FAISS index_factory string (e.g. 'IVF{nlist},PQ64,Refine(SQ4)') on "
                              "reduce_dim uncentred principal axes"),
    ):
        registry.add(kind.name, kind)


INDEX_KINDS: Registry[IndexKind] = Registry("index kind", _builtin, sort=False)


def register_index_kind(kind: IndexKind) -> IndexKind:
    """Add (or replace) an index kind; ``IndexConfig(kind=name)`` then builds it."""
    return INDEX_KINDS.add(kind.name, kind)


def is_faiss_index(index: Any) -> bool:
    """Whether ``index`` is FAISS's own (``ivfsplit``'s is not: it keeps, writes and searches its own arrays)."""
    import faiss

    return isinstance(index, faiss.Index)


def _nodes(index: Any) -> list[Any]:
    """The FAISS index and the ones it wraps (pre-transform, refine base), outermost first."""
    import faiss

    out, node = [], faiss.downcast_index(index)
    while True:
        out.append(node)
        if isinstance(node, faiss.IndexPreTransform):
            node = faiss.downcast_index(node.index)
        elif isinstance(node, faiss.IndexRefine):
            node = faiss.downcast_index(node.base_index)
        else:
            return out


def tune(index: Any, cfg: IndexConfig) -> None:
    """Set the search settings of ``cfg`` on ``index`` (after building or loading): ``nprobe`` of its
    inverted lists, ``ef_search`` of a graph, the query bits of RaBitQ, the rows a refine step re-ranks
    for a top-20 search (``shortlist``)."""
    import faiss

    if not is_faiss_index(index):  # the split index keeps its own settings
        index.nprobe, index.shortlist = cfg.nprobe, cfg.shortlist
        return
    for node in _nodes(index):
        if isinstance(node, (faiss.IndexRefine, faiss.IndexIVFPQR)):
            node.k_factor = max(1.0, cfg.shortlist / 20)
        if isinstance(node, faiss.IndexIVF):
            node.nprobe = min(int(cfg.nprobe), node.nlist)
            if isinstance(node, faiss.IndexIVFRaBitQ):
                node.qb = int(cfg.rabitq_query_bits)
            quantizer = faiss.downcast_index(node.quantizer)
            if isinstance(quantizer, faiss.IndexHNSW):
                quantizer.hnsw.efSearch = max(64, 2 * node.nprobe)
        elif isinstance(node, faiss.IndexHNSW):
            node.hnsw.efSearch = cfg.ef_search


def search_parameters(index: Any, cfg: IndexConfig, k: int, selector: Any = None) -> Any | None:
    """FAISS ``SearchParameters`` for a top-``k`` search of ``index`` that leaves out the rows
    ``selector`` rejects; ``None`` where the index takes none (ivfsplit, IVFPQR): the caller then
    over-fetches and filters. The result holds its pieces alive (SWIG keeps raw pointers)."""
    import faiss

    if not is_faiss_index(index):
        return None
    nodes = _nodes(index)
    inner = nodes[-1]
    if isinstance(inner, faiss.IndexIVFPQR):
        inner.k_factor = max(1.0, cfg.shortlist / max(k, 1))
        return None
    keep: list[Any] = [selector]  # SWIG holds raw pointers: keep every piece alive with the result
    if isinstance(inner, faiss.IndexIVF):
        params = faiss.IVFRaBitQSearchParameters() if isinstance(inner, faiss.IndexIVFRaBitQ) else (
            faiss.SearchParametersIVF())
        params.nprobe = inner.nprobe
        if isinstance(inner, faiss.IndexIVFRaBitQ):
            params.qb = inner.qb
    elif isinstance(inner, faiss.IndexHNSW):
        params = faiss.SearchParametersHNSW()
        params.efSearch = inner.hnsw.efSearch
    else:
        params = faiss.SearchParameters()
    if selector is not None:
        params.sel = selector
    for node in reversed(nodes[:-1]):
        if isinstance(node, faiss.IndexRefine):
            keep.append(params)
            outer = faiss.IndexRefineSearchParameters()
            outer.k_factor = max(1.0, cfg.shortlist / max(k, 1))
            outer.base_index_params = params
            params = outer
    params._geodemo_keep = keep
    return params
