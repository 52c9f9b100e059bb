#!/usr/bin/env python
"""Retrieval benchmark: FAISS index kinds at scale, on real embeddings, and ``locate`` per stage.

    python scripts/bench_retrieval.py                       # 100K and 1M x 768, dev photos, locate
    python scripts/bench_retrieval.py --sizes 100000 --skip-locate

Table 1: build time, index size, peak process memory, single-query latency (p50/p95) and
recall@20 against exact search for ``flat``, ``hnsw`` and ``ivfpq`` (geodemo's IndexConfig
defaults), on synthetic unit vectors (a mixture of 2000 Gaussian clusters in 768 dims, queries
are perturbed database rows). Rows are generated and added chunk by chunk, never held twice.
A kind whose build would exceed ``--max-build-s`` (extrapolated from the smaller size) is skipped
and reported as such. Table 2: the same on the real MobileNet embeddings of the dev + OSV photos.
Table 3: per-stage latency of ``GeoLocator.locate`` (offline preset, warm) on real photos.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import geodemo  # noqa: E402,F401 - torchvision guard before model code
from geodemo.retrieval.database import GalleryMeta, IndexConfig, RetrievalDatabase  # noqa: E402

KINDS = ("flat", "hnsw", "ivfpq")


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2  # Linux: KiB


def index_size_gb(db: RetrievalDatabase) -> float:
    import faiss

    return faiss.serialize_index(db.index).nbytes / 1024**3


class Mixture:
    """Deterministic chunks of unit vectors around ``n_centres`` random directions."""

    def __init__(self, dim: int, n_centres: int = 2000, spread: float = 0.6, seed: int = 0):
        rng = np.random.default_rng(seed)
        self.centres = rng.normal(size=(n_centres, dim)).astype(np.float32)
        self.centres /= np.linalg.norm(self.centres, axis=1, keepdims=True)
        self.dim, self.spread, self.seed = dim, spread, seed

    def chunk(self, start: int, size: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, start])
        c = self.centres[rng.integers(0, len(self.centres), size)]
        x = c + self.spread / np.sqrt(self.dim) * rng.standard_normal((size, self.dim), dtype=np.float32)
        return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)

    def chunks(self, n: int, chunk: int):
        for start in range(0, n, chunk):
            yield self.chunk(start, min(chunk, n - start))


def latency_ms(db: RetrievalDatabase, queries: np.ndarray, k: int) -> tuple[float, float, list[np.ndarray]]:
    times, found = [], []
    for q in queries:
        t0 = time.perf_counter()
        r = db.search(q[None, :], k=k)[0]
        times.append((time.perf_counter() - t0) * 1000)
        found.append(r.indices)
    return float(np.percentile(times, 50)), float(np.percentile(times, 95)), found


def recall(found: list[np.ndarray], exact: list[np.ndarray], k: int) -> float:
    return float(np.mean([len(set(f[:k].tolist()) & set(e[:k].tolist())) / k for f, e in zip(found, exact, strict=True)]))


def bench_synthetic(
    sizes: list[int], dim: int, n_queries: int, max_build_s: float, chunk: int, ivf: dict,
    kinds: tuple[str, ...] = KINDS,
) -> list[dict]:
    rows: list[dict] = []
    rate: dict[str, float] = {}  # seconds per row at the previous size
    for n in sizes:
        mix = Mixture(dim)
        rng = np.random.default_rng(1)
        qi = np.sort(rng.choice(n, n_queries, replace=False))
        parts = []
        for start in np.unique((qi // chunk) * chunk):  # each needed chunk generated once
            rows_ = mix.chunk(int(start), min(chunk, n - int(start)))
            parts.append(rows_[qi[(qi >= start) & (qi < start + chunk)] - start])
        queries = np.concatenate(parts)
        queries += 0.3 / np.sqrt(dim) * rng.standard_normal(queries.shape, dtype=np.float32)
        queries /= np.linalg.norm(queries, axis=1, keepdims=True)
        meta = GalleryMeta(ids=np.arange(n).astype(str).tolist(), coords=np.zeros((n, 2)))
        exact = None
        for kind in ("flat", *[k for k in kinds if k != "flat"]):  # flat first: it is the ground truth
            est = rate.get(kind, 0.0) * n * (1.3 if kind == "hnsw" else 1.0)
            if est > max_build_s:
                rows.append({"n": n, "kind": kind, "skipped": f"estimated build {est / 60:.0f} min > budget"})
                print(f"  {kind} @ {n}: skipped (estimated {est:.0f} s)", flush=True)
                continue
            t0 = time.perf_counter()
            cfg = IndexConfig(kind, **(ivf if kind == "ivfpq" else {}))
            db = RetrievalDatabase.build(mix.chunks(n, chunk), meta, "synthetic", cfg, chunk, progress=False)
            build = time.perf_counter() - t0
            rate[kind] = build / n
            p50, p95, found = latency_ms(db, queries, 20)
            if kind == "flat":
                exact = found
            row = {
                "n": n, "kind": kind, "build_s": build, "index_gb": index_size_gb(db), "peak_rss_gb": peak_rss_gb(),
                "p50_ms": p50, "p95_ms": p95, "recall@20": recall(found, exact, 20),
            }
            rows.append(row)
            print(f"  {kind} @ {n}: {row}", flush=True)
            del db
    return rows


def bench_real(n_queries: int) -> list[dict]:
    from geodemo.data import load_benchmark
    from geodemo.models.features import image_features

    embs, ids, groups = [], [], []
    for name in ("im2gps3k-dev", "osv5m-sample"):
        ds = load_benchmark(name)
        f = image_features("mobilenet-v1-imagenet", ds, progress=False)
        embs.append(f.embeddings[f.valid])
        ids += [i for i, v in zip(f.ids, f.valid, strict=True) if v]
        groups += [s.group for s, v in zip(ds.samples, f.valid, strict=True) if v]
    emb = np.concatenate(embs)
    meta = GalleryMeta(ids=ids, coords=np.zeros((len(ids), 2)), groups=groups)
    queries = emb[:n_queries]
    rows, exact = [], None
    for kind in KINDS:
        t0 = time.perf_counter()
        db = RetrievalDatabase.build(emb, meta, "mobilenet-v1-imagenet", IndexConfig(kind), progress=False)
        build = time.perf_counter() - t0
        found = [r.indices for r in db.search(queries, k=21)]
        found = [f[1:] if len(f) and f[0] == i else f[:20] for i, f in enumerate(found)]  # drop self
        p50, p95, _ = latency_ms(db, queries, 20)
        exact = found if kind == "flat" else exact
        rows.append({"n": len(ids), "kind": kind, "build_s": build, "index_gb": index_size_gb(db),
                     "p50_ms": p50, "p95_ms": p95, "recall@20": recall(found, exact, 20)})
        print(f"  real {kind}: {rows[-1]}", flush=True)
    return rows


def bench_locate(n_photos: int) -> dict[str, float]:
    from geodemo.data import load_benchmark
    from geodemo.pipeline import GeoLocator

    dev = load_benchmark("im2gps3k-dev")
    locator = GeoLocator.from_preset("offline", gallery={"progress": False})
    t0 = time.perf_counter()
    locator.warmup()
    warm = time.perf_counter() - t0
    per_stage: dict[str, list[float]] = {}
    for s in dev.samples[10 : 10 + n_photos]:
        r = locator.locate(s.image_path)
        for k, v in r.timings.items():
            per_stage.setdefault(k, []).append(v)
    out = {k: float(np.median(v)) for k, v in per_stage.items()}
    out["warmup (load models + gallery)"] = warm
    return out


def md_table(rows: list[dict], title: str) -> str:
    lines = [title, "", "| rows | index | build s | index GB | peak RSS GB | p50 ms | p95 ms | recall@20 |",
             "|---:|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        if "skipped" in r:
            lines.append(f"| {r['n']:,} | {r['kind']} | {r['skipped']} | | | | | |")
            continue
        rss = f"{r['peak_rss_gb']:.2f}" if "peak_rss_gb" in r else "–"
        lines.append(f"| {r['n']:,} | {r['kind']} | {r['build_s']:.1f} | {r['index_gb']:.3f} | {rss} | "
                     f"{r['p50_ms']:.2f} | {r['p95_ms']:.2f} | {r['recall@20']:.3f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="100000,1000000", help="comma-separated gallery sizes")
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--chunk", type=int, default=50_000)
    parser.add_argument("--max-build-s", type=float, default=240.0, help="skip a build predicted to take longer")
    parser.add_argument("--threads", type=int, default=1, help="FAISS OpenMP threads (1 is fastest on a shared CPU)")
    parser.add_argument("--kinds", default=",".join(KINDS), help="index kinds (flat always runs: ground truth)")
    parser.add_argument("--ivf-nlist", type=int, default=1024, help="IVF lists for the synthetic sets")
    parser.add_argument("--ivf-train", type=int, default=50_000, help="IVF-PQ training rows")
    parser.add_argument("--skip-synthetic", action="store_true")
    parser.add_argument("--skip-real", action="store_true")
    parser.add_argument("--skip-locate", action="store_true")
    parser.add_argument("--locate-photos", type=int, default=5)
    args = parser.parse_args(argv)

    import faiss

    faiss.omp_set_num_threads(args.threads)
    t0 = time.perf_counter()
    out = []
    if not args.skip_synthetic:
        sizes = [int(s) for s in args.sizes.split(",")]
        ivf = {"nlist": args.ivf_nlist, "train_size": args.ivf_train}
        kinds = tuple(k for k in args.kinds.split(",") if k)
        rows = bench_synthetic(sizes, args.dim, args.queries, args.max_build_s, args.chunk, ivf, kinds)
        out.append(md_table(rows, f"Synthetic unit vectors, {args.dim} dims, {args.queries} single queries, "
                                  f"{args.threads} FAISS thread(s); hnsw M={IndexConfig.hnsw_m}, "
                                  f"efConstruction={IndexConfig.ef_construction}, efSearch={IndexConfig.ef_search}; "
                                  f"ivfpq nlist={args.ivf_nlist}, nprobe={IndexConfig.nprobe}, "
                                  f"PQ dim/8 x 8 bit, trained on {args.ivf_train:,} rows"))
    if not args.skip_real:
        out.append(md_table(bench_real(args.queries), "Real MobileNet V1 embeddings (1024 dims) of the dev + OSV "
                                                       "photos, self excluded"))
    if not args.skip_locate:
        stages = bench_locate(args.locate_photos)
        lines = [f"`locate` per stage, offline preset, warm, median of {args.locate_photos} dev photos", "",
                 "| stage | seconds |", "|---|---:|"]
        lines += [f"| {k} | {v:.3f} |" for k, v in stages.items()]
        out.append("\n".join(lines))
    print("\n\n".join(out))
    print(f"\nbenchmark wall time {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
