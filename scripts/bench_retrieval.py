#!/usr/bin/env python
"""Retrieval benchmark: FAISS index kinds at MP16 scale, on real embeddings, and ``locate`` per stage.

    python scripts/bench_retrieval.py                       # 100K and 1M x 768, dev photos, locate
    # ivfsplit beside FAISS's composites at 1/8 of flat's memory, MP16-like settings (the README's
    # comparison, at 1M and 4.1M rows); a JSON list of option sets (--index-options) or of whole
    # configurations (--variants) builds one index each:
    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 python scripts/bench_retrieval.py --sizes 1000000 \\
        --variants budget --nlist 4096 --ivf-train 131072 --nprobe 8,16,32 --shortlist 128,256,512 \\
        --build-threads 1 --max-build-s 50000 --skip-real --skip-locate

Table 1: build time, index bytes (and the ratio to flat's ``N x D x 4``), peak process memory,
single-query latency with one FAISS thread (p50/p95 wall clock, and p95 of the thread's CPU time,
which a loaded machine does not inflate) and recall@20 against exact search. Vectors are
synthetic and generated chunk by chunk, never held whole (a 4.1M x 768 float32 table is 12.6 GB):
``--data spectral`` (default) draws them like real image embeddings -- 4096 places around a shared
mean direction, each place's photos spread with a power-law spectrum (variance of the i-th principal
axis ~ 1/i, as measured on the dev photos' MobileNet embeddings), in a random orientation; the
generator's nearest-neighbour similarities (top-1 0.72, top-20 0.67 at 1,049 rows) were matched to
the real ones (0.72, 0.63) before any index was tried. ``--data isotropic`` is the older, harder
mixture (isotropic noise: all photos of a place equidistant). Queries are new draws (not in the
database); their exact top-20 is computed chunk-wise by brute force. A kind whose build would
exceed ``--max-build-s`` (extrapolated from the smaller size) is skipped and reported as such.
Table 2: the same on the real MobileNet embeddings of the dev + OSV photos.
Table 3: per-stage latency of ``GeoLocator.locate`` (offline preset, warm) on real photos.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import geodemo  # noqa: E402,F401 - torchvision guard before model code
from geodemo.retrieval.database import GalleryMeta, IndexConfig, RetrievalDatabase  # noqa: E402
from geodemo.retrieval.index_kinds import INDEX_KINDS  # noqa: E402


def _trains(kind: str) -> bool:
    return INDEX_KINDS.get(kind).trains

KINDS = ("flat", "hnsw", "ivfpq", "ivfsq", "ivfrabitq", "ivfsplit")
# FAISS's own composites and ivfsplit at the same budget, <= 1/8 of flat's 3072 bytes per 768-d row
# (8-byte ids included): `--variants budget`
BUDGET_VARIANTS = [
    {"kind": "ivfsplit", "refine_bits": 2400},  # 64 + 300 + 8 + 4 bytes
    {"kind": "factory", "factory": "IVF{nlist},PQ96+256", "metric": "l2"},  # IVFPQR: 96 + 256 + 8
    {"kind": "factory", "factory": "OPQ64,IVF{nlist},PQ64x4fs,Refine(SQ4)", "reduce_dim": 640},  # 32 + 8 + 320
    {"kind": "factory", "factory": "IVF{nlist},PQ64np,Refine(SQ4)", "reduce_dim": 576},  # 64 + 8 + 288
]


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2  # Linux: KiB


class Mixture:
    """Deterministic chunks of unit vectors around ``n_centres`` random directions (isotropic noise)."""

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


class Spectral(Mixture):
    """Embedding-like unit vectors: places around a shared mean, power-law spread, random orientation.

    The orientation is a random orthogonal map made of 64 x 64 rotations after a random permutation
    of the principal axes (every coordinate then mixes large and small axes, as under a dense random
    rotation, at 1/12 of the cost); similarities do not depend on it.
    """

    block = 64

    def __init__(self, dim: int, n_centres: int = 4096, spread: float = 0.7, alpha: float = 1.0,
                 mean: float = 1.3, seed: int = 0):
        rng = np.random.default_rng(seed)
        if dim % self.block:
            raise ValueError(f"dim must be a multiple of {self.block}")
        scale = np.arange(1, dim + 1) ** (-alpha / 2)
        self.scale = rng.permutation(scale / np.linalg.norm(scale)).astype(np.float32)
        self.rotations = np.stack([np.linalg.qr(rng.standard_normal((self.block, self.block)))[0]
                                   for _ in range(dim // self.block)]).astype(np.float32)
        direction = rng.standard_normal(dim).astype(np.float32)
        self.dim, self.spread, self.seed = dim, spread, seed
        self.centres = self._orient(rng.standard_normal((n_centres, dim)).astype(np.float32))
        self.centres += mean * direction / np.linalg.norm(direction)

    def _orient(self, z: np.ndarray) -> np.ndarray:
        """Standard normal rows -> rows with the power-law covariance in the random orientation."""
        z = (z * self.scale).reshape(len(z), -1, self.block)
        return np.einsum("nbi,bij->nbj", z, self.rotations).reshape(len(z), self.dim)

    def chunk(self, start: int, size: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, start])
        c = self.centres[rng.integers(0, len(self.centres), size)]
        x = c + self.spread * self._orient(rng.standard_normal((size, self.dim), dtype=np.float32))
        return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


class ExactTopK:
    """Running exact inner-product top-k of fixed queries over chunks of rows, fed as they stream by."""

    def __init__(self, queries: np.ndarray, k: int):
        self.queries, self.k, self.seen = queries, k, 0
        self.sims = np.full((len(queries), k), -np.inf, dtype=np.float32)
        self.ids = np.zeros((len(queries), k), dtype=np.int64)

    def add(self, rows: np.ndarray) -> None:
        sims = self.queries @ rows.T
        s = np.concatenate([self.sims, sims], 1)
        i = np.concatenate([self.ids, np.broadcast_to(np.arange(self.seen, self.seen + len(rows)), sims.shape)], 1)
        keep = np.argpartition(-s, self.k - 1, axis=1)[:, : self.k]
        self.sims, self.ids = np.take_along_axis(s, keep, 1), np.take_along_axis(i, keep, 1)
        self.seen += len(rows)

    def tee(self, chunks):
        """Pass ``chunks`` through unchanged, adding each one (one generation pass serves both)."""
        for rows in chunks:
            self.add(rows)
            yield rows

    def result(self) -> np.ndarray:
        return np.take_along_axis(self.ids, np.argsort(-self.sims, 1), 1)


class SourceClock:
    """Seconds spent producing the chunks of an iterable (generation, exact search), kept out of build time."""

    def __init__(self):
        self.seconds = 0.0

    def wrap(self, chunks):
        it = iter(chunks)
        while True:
            t0 = time.perf_counter()
            try:
                rows = next(it)
            except StopIteration:
                return
            finally:
                self.seconds += time.perf_counter() - t0
            yield rows


def latency_ms(db: RetrievalDatabase, queries: np.ndarray, k: int,
               threads: int = 1) -> tuple[dict[str, float], list[np.ndarray]]:
    """Single-query latency: wall-clock p50/p95 and p95 of this thread's CPU time (load-independent).

    ``threads`` bounds FAISS's OpenMP threads and numpy's BLAS pool alike (an index that scores in
    numpy would otherwise time BLAS threads spinning on a busy machine, which ``thread_time`` misses)."""
    import faiss
    from threadpoolctl import threadpool_limits

    wall, cpu, found = [], [], []
    build_threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(threads)
    with threadpool_limits(limits=threads):
        for q in queries:
            t0, c0 = time.perf_counter(), time.thread_time()
            r = db.search(q[None, :], k=k)[0]
            cpu.append((time.thread_time() - c0) * 1000)
            wall.append((time.perf_counter() - t0) * 1000)
            found.append(r.indices)
    faiss.omp_set_num_threads(build_threads)
    return {"p50_ms": float(np.percentile(wall, 50)), "p95_ms": float(np.percentile(wall, 95)),
            "cpu_p95_ms": float(np.percentile(cpu, 95))}, found


def recall(found: list[np.ndarray], exact: list[np.ndarray] | np.ndarray, k: int) -> float:
    return float(np.mean([len(set(f[:k].tolist()) & set(e[:k].tolist())) / k for f, e in zip(found, exact, strict=True)]))


def _search_settings(kind: str, nprobes: list[int], shortlists: list[int] | None = None) -> list[dict]:
    """nprobe x shortlist (rows a refine step re-ranks) for the kinds that take them."""
    if not _trains(kind):
        return [{}]
    return [{"nprobe": p, **({"shortlist": s} if s else {})} for p in nprobes for s in (shortlists or [None])]


def bench_synthetic(
    sizes: list[int], dim: int, n_queries: int, max_build_s: float, chunk: int, ivf: dict | list[dict],
    kinds: tuple[str, ...] = KINDS, data: str = "spectral", nprobes: list[int] | None = None,
    search_threads: int = 1, variants: list[dict] | None = None, shortlists: list[int] | None = None,
) -> list[dict]:
    """One row per (size, kind, IVF option set, search setting); every index is built once per size.

    ``ivf`` is one set of IVF options or a list of them, each built as its own IVF index;
    ``variants`` (IndexConfig dicts with their ``kind``, on top of ``ivf``) replace kinds x option sets."""
    option_sets = ivf if isinstance(ivf, list) else [ivf]
    common = {k: v for k, v in option_sets[0].items() if all(o.get(k) == v for o in option_sets)}
    if variants:
        variants = [(v["kind"], {**option_sets[0], **{k: x for k, x in v.items() if k != "kind"}})
                    for v in variants]
    else:
        variants = [(kind, opts) for kind in kinds for opts in (option_sets if _trains(kind) else [{}])]
    rows: list[dict] = []
    rate: dict[str, float] = {}  # seconds per row at the previous size
    gen = Spectral(dim) if data == "spectral" else Mixture(dim)
    for n in sizes:
        queries = gen.chunk(10**12, n_queries)  # new photos, not database rows
        truth, exact = ExactTopK(queries, 20), None
        meta = GalleryMeta(ids=np.arange(n).astype(str).tolist(), coords=np.zeros((n, 2)))
        for kind, options in variants:
            label = f"{kind} {json.dumps({k: v for k, v in options.items() if k not in common})}"
            est = rate.get(label, 0.0) * n * (1.3 if kind == "hnsw" else 1.0)
            if est > max_build_s:
                rows.append({"n": n, "kind": kind, "skipped": f"estimated build {est / 60:.0f} min > budget"})
                print(f"  {kind} @ {n}: skipped (estimated {est:.0f} s)", flush=True)
                continue
            t0 = time.perf_counter()
            cfg = IndexConfig(kind, **options)
            clock = SourceClock()
            rows_in = gen.chunks(n, chunk) if exact is not None else truth.tee(gen.chunks(n, chunk))
            db = RetrievalDatabase.build(clock.wrap(rows_in), meta, "synthetic", cfg, chunk, progress=False)
            build = time.perf_counter() - t0 - clock.seconds  # FAISS's own time: train + add
            print(f"  {kind} @ {n}: built in {build:.0f} s (+ {clock.seconds:.0f} s generating rows"
                  f"{'' if exact is not None else ' and the exact top-20'})", flush=True)
            exact = truth.result() if exact is None else exact
            rate[label] = build / n
            size = db.index_nbytes
            label = label.removesuffix(" {}")
            for setting in _search_settings(kind, nprobes or [cfg.nprobe], shortlists):
                for key, value in setting.items():
                    setattr(db.config, key, value)
                RetrievalDatabase._set_search_params(db.index, db.config)
                lat, found = latency_ms(db, queries, 20, search_threads)
                row = {"n": n, "kind": label, "setting": setting, "build_s": build, "index_gb": size / 1e9,
                       "vs_flat": size / (n * dim * 4), "peak_rss_gb": peak_rss_gb(), **lat,
                       "recall@20": recall(found, exact, 20)}
                rows.append(row)
                print(f"  {kind} @ {n}: {row}", flush=True)
            del db
    return rows


def bench_real(n_queries: int, search_threads: int = 1) -> list[dict]:
    from geodemo.data import load_benchmark
    from geodemo.extraction.features import image_features

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
    small_ivf = {"nlist": 16, "nprobe": 8}  # ~1,000 rows: a few lists, else IVF cannot train
    for kind in KINDS:
        t0 = time.perf_counter()
        cfg = IndexConfig(kind, **(small_ivf if _trains(kind) else {}))
        db = RetrievalDatabase.build(emb, meta, "mobilenet-v1-imagenet", cfg, progress=False)
        build = time.perf_counter() - t0
        found = [r.indices for r in db.search(queries, k=21)]
        found = [f[1:] if len(f) and f[0] == i else f[:20] for i, f in enumerate(found)]  # drop self
        lat, _ = latency_ms(db, queries, 20, search_threads)
        exact = found if kind == "flat" else exact
        size = db.index_nbytes
        rows.append({"n": len(ids), "kind": kind, "build_s": build, "index_gb": size / 1e9,
                     "vs_flat": size / emb.nbytes, **lat, "recall@20": recall(found, exact, 20)})
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
    lines = [title, "", "| rows | index | search | build s | index GB | / flat | peak RSS GB | p50 ms | p95 ms "
             "| CPU p95 ms | recall@20 |", "|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        if "skipped" in r:
            lines.append(f"| {r['n']:,} | {r['kind']} | | {r['skipped']} | | | | | | | |")
            continue
        rss = f"{r['peak_rss_gb']:.2f}" if "peak_rss_gb" in r else "–"
        setting = ", ".join(f"{k} {v}" for k, v in r.get("setting", {}).items()) or "–"
        ratio = f"{r['vs_flat']:.3f}" if "vs_flat" in r else "–"
        cpu = f"{r['cpu_p95_ms']:.2f}" if "cpu_p95_ms" in r else "–"
        lines.append(f"| {r['n']:,} | {r['kind']} | {setting} | {r['build_s']:.1f} | {r['index_gb']:.3f} | {ratio} "
                     f"| {rss} | {r['p50_ms']:.2f} | {r['p95_ms']:.2f} | {cpu} | {r['recall@20']:.3f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="100000,1000000", help="comma-separated gallery sizes")
    parser.add_argument("--dim", type=int, default=768, help="dimensions of the synthetic rows")
    parser.add_argument("--queries", type=int, default=200, help="single queries timed per index")
    parser.add_argument("--chunk", type=int, default=50_000, help="rows generated and added per step")
    parser.add_argument("--max-build-s", type=float, default=240.0, help="skip a build predicted to take longer")
    parser.add_argument("--threads", type=int, default=1, help="FAISS OpenMP threads for the timed queries")
    parser.add_argument("--build-threads", type=int, default=os.cpu_count() or 1,
                        help="FAISS OpenMP threads for training and adding (default: every core)")
    parser.add_argument("--kinds", default=",".join(KINDS), help="index kinds (exact search is the ground truth)")
    parser.add_argument("--data", choices=["spectral", "isotropic"], default="spectral",
                        help="synthetic vectors: embedding-like (default) or isotropic clusters")
    parser.add_argument("--nlist", type=int, default=1024, help="IVF lists for the synthetic sets")
    parser.add_argument("--ivf-train", type=int, default=50_000, help="IVF training rows")
    parser.add_argument("--index-options", default="{}",
                        help='more IndexConfig fields for the IVF kinds, as JSON, e.g. {"reduce_dim": 736}; '
                             'a list of such objects builds one index per object')
    parser.add_argument("--variants", default=None,
                        help='index configurations to build, as a JSON list of IndexConfig objects with their '
                             '"kind" (IVF options above apply beneath them), or "budget": ivfsplit beside '
                             "FAISS's IVF-PQ + Refine, OPQ fast-scan + Refine and IVFPQR at 1/8 of flat's memory")
    parser.add_argument("--nprobe", default="16", help="comma-separated nprobe values to measure (IVF kinds)")
    parser.add_argument("--shortlist", default="",
                        help="comma-separated rows re-ranked per query (ivfsplit, Refine, IVFPQR) to sweep "
                             "with each nprobe; empty: the IndexConfig's own")
    parser.add_argument("--skip-synthetic", action="store_true", help="leave out the synthetic galleries")
    parser.add_argument("--skip-real", action="store_true", help="leave out the real dev + OSV embeddings")
    parser.add_argument("--skip-locate", action="store_true", help="leave out the per-stage `locate` timing")
    parser.add_argument("--locate-photos", type=int, default=5, help="dev photos located for the per-stage timing")
    args = parser.parse_args(argv)

    import faiss

    faiss.omp_set_num_threads(args.build_threads)
    t0 = time.perf_counter()
    out = []
    if not args.skip_synthetic:
        sizes = [int(s) for s in args.sizes.split(",")]
        extra = json.loads(args.index_options)
        ivf = [{"nlist": args.nlist, "train_size": args.ivf_train, **o} for o in (extra if isinstance(extra, list) else [extra])]
        kinds = tuple(k for k in args.kinds.split(",") if k)
        nprobes = [int(x) for x in args.nprobe.split(",")]
        variants = None
        if args.variants:
            variants = BUDGET_VARIANTS if args.variants == "budget" else json.loads(args.variants)
        shortlists = [int(x) for x in args.shortlist.split(",") if x]
        rows = bench_synthetic(sizes, args.dim, args.queries, args.max_build_s, args.chunk, ivf, kinds,
                               args.data, nprobes, args.threads, variants, shortlists)
        out.append(md_table(rows, f"Synthetic {args.data} unit vectors, {args.dim} dims, {args.queries} single "
                                  f"queries on {args.threads} FAISS thread(s) (builds on {args.build_threads}); "
                                  f"hnsw M={IndexConfig.hnsw_m}, "
                                  f"efConstruction={IndexConfig.ef_construction}, efSearch={IndexConfig.ef_search}; "
                                  f"IVF nlist={args.nlist} trained on {args.ivf_train:,} rows, options "
                                  f"{args.index_options}; ivfpq PQ dim/8 x 8 bit; ivfsq residual scalar codes"))
    if not args.skip_real:
        out.append(md_table(bench_real(args.queries, args.threads), "Real MobileNet V1 embeddings (1024 dims) of the dev + OSV "
                                                       "photos, self excluded"))
    if not args.skip_locate:
        stages = bench_locate(args.locate_photos)
        lines = [f"`locate` per stage, offline preset, warm, median of {args.locate_photos} dev photos", "",
                 "| stage | seconds |", "|---|---:|"]
        lines += [f"| {k} | {v:.3f} |" for k, v in stages.items()]
        out.append("\n".join(lines))
    print("\n\n".join(out))
    print(f"\nload average (1, 5, 15 min): {', '.join(f'{x:.1f}' for x in os.getloadavg())}")
    print(f"\nbenchmark wall time {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
