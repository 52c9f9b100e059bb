#!/usr/bin/env python
"""Ablation of the pipeline's stages in one run, leave-one-photographer-out.

    python scripts/ablate.py --benchmark im2gps3k-dev --preset offline

Every photo of the benchmark is located once with the preset (its own photo and every photo by the
same photographer are excluded from the gallery); the per-photo results are stored as JSON lines in
``--out``. Each table row is a named function over those stored results, so adding a row is adding
a function to ``ROWS`` and re-running with ``--reuse`` (no photo is located again).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import geodemo  # noqa: E402,F401 - torchvision guard before any model code
from geodemo.eval import QueryPhoto, accuracy_table  # noqa: E402
from geodemo.eval.metrics import ACC_KEYS  # noqa: E402
from geodemo.geo import haversine_km  # noqa: E402


@dataclass
class Context:
    """What row functions may use besides the stored records."""

    benchmark: str
    locator: object | None  # the GeoLocator (None with --reuse when it is not needed)
    gallery_meta: object | None


RowFn = Callable[[list[dict], Context], np.ndarray]


def _coords(records: list[dict], pick: Callable[[dict], tuple[float, float] | None]) -> np.ndarray:
    out = np.full((len(records), 2), np.nan)
    for i, r in enumerate(records):
        p = pick(r)
        if p is not None:
            out[i] = p
    return out


def row_density_prior(records: list[dict], ctx: Context) -> np.ndarray:
    """Always the densest gallery place (200 km), with the query's photographer left out."""
    from geodemo.eval.baselines import DensityPrior, Gallery

    meta = ctx.gallery_meta
    prior = DensityPrior(Gallery(f"{ctx.benchmark}-gallery", meta.coords, meta.ids, meta.groups))
    return prior.predict([QueryPhoto(r["id"], None, r["group"]) for r in records])


def row_retrieval_top1(records: list[dict], ctx: Context) -> np.ndarray:
    return _coords(records, lambda r: (r["result"]["neighbours"][0]["lat"], r["result"]["neighbours"][0]["lon"])
                   if r["result"]["neighbours"] else None)


def row_reranked_top1(records: list[dict], ctx: Context) -> np.ndarray:
    def pick(r: dict):
        res = r["result"]
        if not res["neighbours"] or not res["clusters_after"]:
            return None
        n = res["neighbours"][res["clusters_after"]["order"][0]]
        return n["lat"], n["lon"]

    return _coords(records, pick)


def row_cluster_centre(records: list[dict], ctx: Context) -> np.ndarray:
    def pick(r: dict):
        ca = r["result"]["clusters_after"]
        main = next((c for c in ca["clusters"] if c["is_main"]), None) if ca else None
        return (main["centre_lat"], main["centre_lon"]) if main else None

    return _coords(records, pick)


def row_verified(records: list[dict], ctx: Context) -> np.ndarray:
    return _coords(records, lambda r: (r["result"]["lat"], r["result"]["lon"]))


def row_oracle(records: list[dict], ctx: Context) -> np.ndarray:
    """The candidate nearest the truth: the ceiling any verifier over these candidates can reach."""
    def pick(r: dict):
        cands = r["result"]["candidates"]
        if not cands:
            return None
        c = np.array([[x["lat"], x["lon"]] for x in cands])
        return tuple(c[int(np.argmin(haversine_km(c, np.array([r["lat"], r["lon"]])[None, :])))])

    return _coords(records, pick)


ROWS: list[tuple[str, RowFn]] = [
    ("density prior", row_density_prior),
    ("retrieval top-1", row_retrieval_top1),
    ("+ re-ranking (DBSCAN, nearest to main centre)", row_reranked_top1),
    ("+ re-ranking: main cluster centre", row_cluster_centre),
    ("+ verification (final answer)", row_verified),
    ("oracle best-of-candidates", row_oracle),
]


def run_photos(dataset, locator, out_file: Path, limit: int | None) -> list[dict]:
    """Locate every photo (leave-one-photographer-out) and store one JSON line per photo."""
    from tqdm.auto import tqdm

    from geodemo.models.features import image_features

    samples = dataset.samples[:limit] if limit else dataset.samples
    feats = image_features(locator.config["encoder"], dataset, progress=True)  # cached on disk
    index = {sid: i for i, sid in enumerate(feats.ids)}
    records = []
    with out_file.open("w") as fh:
        for s in tqdm(samples, desc="locating", unit="photo"):
            i = index[s.id]
            if not feats.valid[i]:
                continue
            q = QueryPhoto(s.id, dataset.open_image(s), s.group)
            result = locator.locate_query(q, embedding=feats.embeddings[i])
            rec = {"id": s.id, "group": s.group, "lat": s.lat, "lon": s.lon, "result": result.to_dict()}
            fh.write(json.dumps(rec) + "\n")
            records.append(rec)
    return records


def table(rows: dict[str, dict], n_photos: int, benchmark: str, preset: str) -> str:
    head = " | ".join(f"acc@{k.split('@')[1]} km" for k in ACC_KEYS)
    lines = [
        f"Ablation on {benchmark} ({n_photos} photos, preset {preset}, leave-one-photographer-out; "
        "accuracy = share of photos with error < threshold, %)",
        "",
        f"| Stage | {head} | median km |",
        "|---|" + "---:|" * (len(ACC_KEYS) + 1),
    ]
    for name, m in rows.items():
        accs = " | ".join(f"{100 * m[k]:.1f}" for k in ACC_KEYS)
        lines.append(f"| {name} | {accs} | {m['median_km']:.0f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--benchmark", default="im2gps3k-dev")
    parser.add_argument("--preset", default="offline")
    parser.add_argument("--limit", type=int, default=None, help="first N photos only (debugging)")
    parser.add_argument("--out", type=Path, default=None, help="folder for results.jsonl and table.md")
    parser.add_argument("--reuse", action="store_true", help="recompute the table from stored results")
    args = parser.parse_args(argv)

    from geodemo.data import load_benchmark
    from geodemo.pipeline import GeoLocator

    out = args.out or Path("runs") / f"ablate-{args.benchmark}-{args.preset}"
    out.mkdir(parents=True, exist_ok=True)
    results_file = out / "results.jsonl"
    dataset = load_benchmark(args.benchmark)
    locator = GeoLocator.from_preset(args.preset).warmup()
    t0 = time.perf_counter()
    if args.reuse and results_file.is_file():
        records = [json.loads(line) for line in results_file.read_text().splitlines() if line.strip()]
    else:
        records = run_photos(dataset, locator, results_file, args.limit)
    elapsed = time.perf_counter() - t0
    ctx = Context(args.benchmark, locator, locator.gallery.meta)
    truth = np.array([[r["lat"], r["lon"]] for r in records])
    rows = {name: accuracy_table(fn(records, ctx), truth) for name, fn in ROWS}
    verifiers = sorted({r["result"]["verifier"] for r in records})
    text = table(rows, len(records), args.benchmark, args.preset)
    text += f"\n\nverifier(s): {', '.join(verifiers)}; gallery: {len(locator.gallery)} photos "
    text += f"({', '.join(locator.config['gallery'].get('datasets', []))}); {elapsed:.0f} s for the photos"
    print(text)
    (out / "table.md").write_text(text + "\n")
    (out / "metrics.json").write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
