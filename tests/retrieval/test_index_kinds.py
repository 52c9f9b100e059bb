"""Index kinds as a registry: FAISS's own composites through ``factory``, exclusions inside the search."""

from __future__ import annotations

import faiss
import numpy as np
import pytest

from geodemo.retrieval.database import GalleryMeta, IndexConfig, RetrievalDatabase
from geodemo.retrieval.index_kinds import INDEX_KINDS, IndexKind, register_index_kind, search_parameters

pytestmark = pytest.mark.usefixtures("one_faiss_thread")


def _spectral(n: int, d: int, seed: int = 0, places: int = 60) -> np.ndarray:
    """Unit rows around a shared mean with a 1/i spectrum, like image embeddings."""
    rng = np.random.default_rng(seed)
    scale = np.arange(1, d + 1) ** -0.5
    centres = np.random.default_rng(99).normal(size=(places, d)) * scale
    centres[:, 0] += 1.5
    x = centres[rng.integers(0, places, n)] + 0.7 * rng.normal(size=(n, d)) * scale
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def _meta(n: int, groups: int = 10) -> GalleryMeta:
    return GalleryMeta(ids=[f"r{i}" for i in range(n)], coords=np.zeros((n, 2)),
                       groups=[f"g{i % groups}" for i in range(n)])


@pytest.fixture(scope="module")
def gallery() -> tuple[np.ndarray, np.ndarray, GalleryMeta]:
    x = _spectral(6000, 64, places=50)
    return x, _spectral(40, 64, seed=5, places=50), _meta(len(x))


def _exact(x: np.ndarray, q: np.ndarray, k: int, leave_out: np.ndarray | None = None) -> np.ndarray:
    sims = q @ x.T
    if leave_out is not None:
        sims[:, leave_out] = -np.inf
    return np.argsort(-sims, 1)[:, :k]


def _recall(db: RetrievalDatabase, q: np.ndarray, exact: np.ndarray, **kw) -> float:
    found = db.search(q, k=exact.shape[1], **kw)
    return float(np.mean([len(set(r.indices.tolist()) & set(e.tolist())) / exact.shape[1]
                          for r, e in zip(found, exact, strict=True)]))


def test_the_kinds_are_one_registry_with_an_error_listing_them():
    assert INDEX_KINDS.names()[:3] == ["flat", "hnsw", "ivfpq"] and "factory" in INDEX_KINDS
    with pytest.raises(KeyError, match="unknown index kind 'ivfmagic'; known index kinds: flat, hnsw"):
        IndexConfig(kind="ivfmagic")
    with pytest.raises(ValueError, match="index_factory string"):
        RetrievalDatabase.build(np.eye(4, dtype=np.float32), _meta(4), "toy", {"kind": "factory"}, progress=False)
    with pytest.raises(ValueError, match="FAISS cannot build index_factory string 'IVF8,Nonsense42'"):
        RetrievalDatabase.build(np.eye(4, dtype=np.float32), _meta(4), "toy",
                                {"kind": "factory", "factory": "IVF8,Nonsense42"}, progress=False)


def test_a_registered_kind_is_built_by_name(gallery):
    x, q, meta = gallery
    register_index_kind(IndexKind("test-hnsw16", lambda dim, cfg, nlist: faiss.IndexHNSWFlat(
        dim, 16, faiss.METRIC_INNER_PRODUCT)))
    try:
        db = RetrievalDatabase.build(x, meta, "toy", {"kind": "test-hnsw16"}, progress=False)
        assert faiss.downcast_index(db.index).hnsw.nb_neighbors(0) == 32  # M=16: 2M links on level 0
        assert _recall(db, q, _exact(x, q, 10)) > 0.9
    finally:
        INDEX_KINDS.remove("test-hnsw16")


@pytest.mark.parametrize("options, min_recall, max_bytes", [
    # IVF-PQ shortlist re-ranked by 8-bit scalar codes, on 48 of 64 uncentred principal axes
    # ("np": no polysemous training, which only reorders codes and takes 10x the build time)
    ({"factory": "IVF{nlist},PQ16np,Refine(SQ8)", "reduce_dim": 48}, 0.9, 16 + 8 + 48),
    # OPQ-rotated 4-bit fast-scan PQ, re-ranked by scalar codes
    pytest.param({"factory": "OPQ16,IVF{nlist},PQ16x4fs,Refine(SQ8)"}, 0.9, 8 + 8 + 64,
                 marks=pytest.mark.slow),  # OPQ's training: about 20 s on a quiet core
    # IVFPQR: FAISS has it for L2 only, which ranks unit rows as inner product does
    ({"factory": "IVF{nlist},PQ16+32", "metric": "l2"}, 0.85, 16 + 32 + 8),
])
def test_factory_composites_recall_size_exclusions_and_round_trip(gallery, tmp_path, options, min_recall, max_bytes):
    x, q, meta = gallery
    cfg = {"kind": "factory", "nlist": 32, "nprobe": 8, "train_size": 6000, "shortlist": 100, **options}
    db = RetrievalDatabase.build(x, meta, "toy", cfg, progress=False)
    exact = _exact(x, q, 10)
    rec = _recall(db, q, exact)
    per_row = db.index_nbytes / len(x)
    print(options["factory"], "recall@10", rec, "bytes per row", per_row)
    assert rec >= min_recall, rec
    fixed = 4 * (32 * 64 + 64 * 64 + 2 * 256 * 64)  # centres, projection, codebooks: 11 bytes a row here
    assert max_bytes < per_row <= max_bytes + fixed / len(x), per_row
    # similarities are inner products (also for the L2 index), up to the codes' error
    r = db.search(q[:5], k=5)
    for qi, res in zip(q[:5], r, strict=True):
        np.testing.assert_allclose(res.similarities, x[res.indices] @ qi, atol=0.05)
    # a photographer's rows never come back, whether the index takes a selector or not
    left_out = {"g1", "g2"}
    rows = np.array([i for i, g in enumerate(meta.groups) if g in left_out])
    for res in db.search(q, k=10, exclude_groups=left_out):
        assert len(res.indices) == 10 and not set(res.indices.tolist()) & set(rows.tolist())
    assert _recall(db, q, _exact(x, q, 10, rows), exclude_groups=left_out) >= min_recall - 0.05
    db.save(tmp_path / "db")
    again = RetrievalDatabase.load(tmp_path / "db")
    for a, b in zip(db.search(q, k=10), again.search(q, k=10), strict=True):
        np.testing.assert_array_equal(a.indices, b.indices)


def test_the_projection_is_uncentred_so_inner_products_survive(gallery):
    """Rows in a 9-dim subspace far from the origin: 9 uncentred axes keep every inner product
    (a centred PCA would keep the differences only, and rank rows by the mean's share too)."""
    rng = np.random.default_rng(3)
    basis = np.linalg.qr(rng.normal(size=(64, 9)))[0].T  # 9 orthonormal rows
    coef = rng.normal(size=(3000, 9)) * 0.3
    coef[:, 0] += 3.0
    x = (coef @ basis).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    q = x[:20] + 0.1 * rng.normal(size=(20, 64)).astype(np.float32)
    db = RetrievalDatabase.build(x, _meta(len(x)), "toy", {"kind": "factory", "factory": "Flat", "reduce_dim": 9},
                                 progress=False)
    for qi, res in zip(q, db.search(q, k=10), strict=True):
        np.testing.assert_array_equal(res.indices, np.argsort(-(x @ qi))[:10])
        np.testing.assert_allclose(res.similarities, np.sort(x @ qi)[::-1][:10], atol=1e-4)


@pytest.mark.parametrize("kind, options", [
    ("flat", {}), ("hnsw", {}), ("ivfsq", {"nlist": 16, "nprobe": 16}),
    ("ivfrabitq", {"nlist": 16, "nprobe": 16, "reduce_dim": 48}),
    ("factory", {"factory": "IVF{nlist},PQ16np,Refine(SQ8)", "nlist": 16, "nprobe": 16}),
])
def test_exclusions_go_into_the_faiss_search(gallery, kind, options):
    """The excluded rows go to FAISS as an IDSelector (no over-fetch): exact search stays exact, and
    each query's own exclusions are applied to it alone."""
    x, q, meta = gallery
    db = RetrievalDatabase.build(x, meta, "toy", {"kind": kind, "train_size": 6000, **options}, progress=False)
    rows = np.arange(0, 6000, 10)  # group g0
    params = search_parameters(db.index, db.config, 20, faiss.IDSelectorNot(faiss.IDSelectorBatch(rows)))
    assert params is not None
    inner = params.base_index_params if isinstance(params, faiss.IndexRefineSearchParameters) else params
    assert inner.sel is not None
    per_query = [{"g0"} if i % 2 else {"g3"} for i in range(len(q))]
    found = db.search(q, k=20, exclude_groups=per_query)
    for i, res in enumerate(found):
        group = 0 if i % 2 else 3
        assert len(res.indices) == 20 and all(j % 10 != group for j in res.indices.tolist())
    if kind == "flat":  # exact: the top-20 of the rows that are left
        for i, res in enumerate(found):
            left = np.arange(0 if i % 2 else 3, 6000, 10)
            np.testing.assert_array_equal(res.indices, _exact(x, q[i : i + 1], 20, left)[0])


def test_excluding_ids_and_more_rows_than_are_left(gallery):
    x, q, meta = gallery
    db = RetrievalDatabase.build(x[:30], GalleryMeta(ids=meta.ids[:30], coords=np.zeros((30, 2)),
                                                     groups=meta.groups[:30]), "toy", progress=False)
    res = db.search(q[:2], k=20, k_dissimilar=5, exclude_ids={"r0", "r1"}, exclude_groups={"g2", "g3"})
    for r in res:
        assert len(r.indices) == 20 and not {0, 1, 2, 3, 12, 13, 22, 23} & set(r.indices.tolist())
        assert len(r.dissimilar_indices) == 5 and r.dissimilar_similarities[0] <= r.similarities[-1]
    res = db.search(q[:1], k=20, exclude_groups={f"g{i}" for i in range(9)})  # 3 rows left
    assert sorted(res[0].indices.tolist()) == [9, 19, 29]
