#!/usr/bin/env python
"""Time to first answer and per-photo latency of a preset's locator, per stage, as a Markdown table.

1. **First answer**: a fresh Python process with an empty cache imports geodemo, builds the preset's
   locator and locates one photo; the figure is the time from starting that process to its answer
   (``--first-answer-runs`` processes, 3 by default: each run, the median and the maximum).
2. **Per photo**: in this process, the locator is built and warmed up, then locates ``--photos``
   other photos one by one; each stage's wall time (``LocationResult.timings``), the whole call's
   wall time and its CPU time (this process and its children, e.g. Tesseract) are reported as
   median / p95 / max.

The photos are drawn (``--seed``) from the shared IM2GPS3k dev split, or from the photos bundled in
``assets/`` when there is no shared folder. Every run starts from an empty cache (a temporary
``GEODEMO_CACHE``) unless ``--cache`` names one, so nothing is answered from an earlier run. The
machine's load average is printed beside the figures: on a shared machine wall times grow with
the load, CPU times much less.

    python scripts/bench_locate.py --preset offline --photos 20
    python scripts/bench_locate.py --preset offline --photos 50 --out bench.json
    python scripts/bench_locate.py --preset offline --photos 20 --no-first-answer \
        --recorded-lmm gemini-2.0-flash=FILE --recorded-candidates geoestimation-isns=FILE

With recorded sources, every photo is also located by a second, equally warm locator without them, and
the time the recorded sources add (the stages they touch: lmm, candidates, verification, decision) is
printed as the median of the per-photo differences.

    python scripts/bench_locate.py --preset geoclip --weights random   # the real architectures, untrained

Peak memory is the largest resident set of this process and of the first-answer processes.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

# Run in a fresh interpreter by the first-answer measurement: argv = preset, photo, weights.
_FIRST_ANSWER = """
import json, resource, sys, time
def cpu():
    child = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + child.ru_utime + child.ru_stime
t0 = time.perf_counter()
from geodemo.pipeline import GeoLocator
from geodemo.pipeline.presets import load_preset, with_random_weights
config = load_preset(sys.argv[1], gallery={"progress": False})
locator = GeoLocator(with_random_weights(config) if sys.argv[3] == "random" else config)
t1, c1 = time.perf_counter(), cpu()
result = locator.locate(sys.argv[2])
print(json.dumps({"answered_at": time.time(), "import_s": t1 - t0, "locate_s": time.perf_counter() - t1,
                  "import_cpu_s": c1, "locate_cpu_s": cpu() - c1, "timings": result.timings, "lat": result.lat,
                  "lon": result.lon, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}), flush=True)
"""


def _photos(n: int, seed: int) -> tuple[list[str], str]:
    """``n`` photo paths and where they come from (the shared dev split, else the bundled photos)."""
    try:
        from geodemo.data import load_benchmark

        samples = [s for s in load_benchmark("im2gps3k-dev").samples if s.image_path]
        source = "shared IM2GPS3k dev split"
        paths = [str(s.image_path) for s in samples]
    except Exception:  # noqa: BLE001 - no shared folder: the photos bundled with the project
        paths = sorted(str(p) for p in (REPO / "assets").rglob("*") if p.suffix.lower() in {".jpg", ".jpeg", ".png"})
        source = "photos bundled in assets/"
    if not paths:
        raise SystemExit("no photos: neither the shared dev split nor any photo in assets/ was found")
    random.Random(seed).shuffle(paths)
    return paths[:n], source


def _cpu_s() -> float:
    """CPU seconds of this process and of its finished children (Tesseract runs as a child)."""
    child = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + child.ru_utime + child.ru_stime


def _quantiles(values: list[float]) -> tuple[float, float, float]:
    import numpy as np

    a = np.asarray(values, dtype=float)
    return float(np.median(a)), float(np.percentile(a, 95)), float(a.max())


def _locator(preset: str, weights: str):
    from geodemo.pipeline import GeoLocator, load_preset
    from geodemo.pipeline.presets import with_random_weights

    config = load_preset(preset, gallery={"progress": False})
    return GeoLocator(with_random_weights(config) if weights == "random" else config)


def _peak_rss_mb() -> float:
    """Largest resident set of this process so far, in MB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def first_answer(preset: str, photo: str, env: dict[str, str], weights: str = "pretrained") -> dict:
    """Seconds from starting a fresh Python process to its first answer (the answer printed; the
    process exits later, once the work it started in the background is done), with its own split."""
    t0 = time.time()
    proc = subprocess.run([sys.executable, "-c", _FIRST_ANSWER, preset, photo, weights], env=env, cwd=REPO,
                          capture_output=True, text=True)
    exited = time.time() - t0
    if proc.returncode != 0:
        tail = proc.stderr.strip().splitlines()[-1:] or ["no output"]
        raise SystemExit(f"the first-answer process failed: {tail[0]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    out["first_answer_s"] = out.pop("answered_at") - t0
    out["process_exit_s"] = exited
    return out


_TOUCHED = ("lmm", "candidates.", "verify", "decide.")  # the stages recorded sources add work to


def recorded_cost(preset: str, photos: list[str], recorded: dict) -> dict:
    """Milliseconds recorded sources add per photo: each photo located by two warm locators, with and
    without them, in turn; the median (and p95) of the per-photo differences of the stages they touch."""
    from geodemo.pipeline import GeoLocator

    plain = GeoLocator.from_preset(preset, gallery={"progress": False}).warmup()
    with_rec = GeoLocator.from_preset(preset, gallery={"progress": False}, recorded=recorded).warmup()

    def touched(timings: dict) -> float:
        return sum(v for k, v in timings.items() if k != "total" and k.startswith(_TOUCHED))

    diffs, whole = [], []
    for path in photos:
        a = plain.locate(path).timings
        b = with_rec.locate(path).timings
        diffs.append(touched(b) - touched(a))
        whole.append(b["total"] - a["total"])
    med, p95, _ = _quantiles(diffs)
    wmed, _, _ = _quantiles(whole)
    return {"added_ms_median": med * 1e3, "added_ms_p95": p95 * 1e3, "whole_call_diff_ms_median": wmed * 1e3,
            "photos": len(photos)}


def per_photo(preset: str, photos: list[str], cpu_stages: bool, own_cache: bool, weights: str = "pretrained") -> dict:
    """Warm-up time, then per-photo wall / CPU time and per-stage timings of ``photos``.

    With ``cpu_stages`` the photos are located a second time with the stages strictly in turn
    (``GeoLocator.overlap = False``) and each stage's CPU time (this process and its children) is read
    between the stages ``iter_locate`` yields; in a cache of its own (``own_cache``) the first pass's
    OCR reports are removed first, so the photos are read again.
    """
    from geodemo.paths import cache_dir

    t0 = time.perf_counter()
    locator = _locator(preset, weights).warmup()
    warmup = time.perf_counter() - t0
    rows = []
    for path in photos:
        c0, t0 = _cpu_s(), time.perf_counter()
        result = locator.locate(path)
        rows.append({"photo": Path(path).name, "wall_s": time.perf_counter() - t0, "cpu_s": _cpu_s() - c0,
                     "stages": dict(result.timings), "errors": dict(result.errors),
                     "ocr": bool(result.clues is not None and not result.clues.gated_out
                                 and result.clues.skipped is None)})
    if cpu_stages:
        if own_cache:
            shutil.rmtree(cache_dir("clues"), ignore_errors=True)
        locator.overlap = False
        for row, path in zip(rows, photos, strict=True):
            row["cpu_stages"], c0 = {}, _cpu_s()
            for stage, _ in locator.iter_locate(path):
                c1 = _cpu_s()
                row["cpu_stages"][stage], c0 = c1 - c0, c1
    return {"warmup_s": warmup, "rows": rows, "peak_rss_mb": _peak_rss_mb()}


def table(rows: list[dict]) -> str:
    """Markdown table: one line per stage, then the whole call's wall and CPU time."""
    stages: list[str] = []
    for r in rows:
        stages += [s for s in r["stages"] if s not in stages and s != "total"]
    cpu = all("cpu_stages" in r for r in rows)
    head = "| stage | median ms | p95 ms | max ms |" + (" CPU median ms | CPU p95 ms |" if cpu else "")
    lines = [head, "|---|---:|---:|---:|" + ("---:|---:|" if cpu else "")]
    for stage in stages:
        med, p95, top = _quantiles([r["stages"].get(stage, 0.0) for r in rows])
        line = f"| {stage} | {med * 1e3:.0f} | {p95 * 1e3:.0f} | {top * 1e3:.0f} |"
        if cpu:
            cmed, cp95, _ = _quantiles([r["cpu_stages"].get(stage, 0.0) for r in rows])
            line += f" {cmed * 1e3:.0f} | {cp95 * 1e3:.0f} |"
        lines.append(line)
    med, p95, top = _quantiles([r["wall_s"] for r in rows])
    line = f"| **per photo** | **{med * 1e3:.0f}** | **{p95 * 1e3:.0f}** | **{top * 1e3:.0f}** |"
    if cpu:
        cmed, cp95, _ = _quantiles([sum(r["cpu_stages"].values()) for r in rows])
        line += f" {cmed * 1e3:.0f} | {cp95 * 1e3:.0f} |"
    lines.append(line)
    med, p95, top = _quantiles([r["cpu_s"] for r in rows])
    lines.append(f"| per photo, CPU (overlapped, incl. Tesseract) | {med * 1e3:.0f} | {p95 * 1e3:.0f} | "
                 f"{top * 1e3:.0f} |" + (" | |" if cpu else ""))
    return "\n".join(lines)


def _load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} / {five:.2f} / {fifteen:.2f} (1 / 5 / 15 min) on {os.cpu_count()} cores"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="offline", help="preset name or JSON path (default: offline)")
    ap.add_argument("--photos", type=int, default=20, help="photos timed after the warm-up (default: 20)")
    ap.add_argument("--seed", type=int, default=0, help="which photos are drawn")
    ap.add_argument("--cache", help="cache folder to use (default: a new empty one, removed afterwards)")
    ap.add_argument("--no-first-answer", action="store_true", help="skip the fresh-process measurement")
    ap.add_argument("--first-answer-runs", type=int, default=3,
                    help="fresh processes timed to their first answer, each with an empty cache of its own")
    ap.add_argument("--cpu-stages", action="store_true",
                    help="also locate the photos again, stages in turn, and report each stage's CPU time "
                         "(what a quiet machine would take when the load makes wall times meaningless)")
    ap.add_argument("--weights", choices=["pretrained", "random"], default="pretrained",
                    help="'random': untrained models of the real architectures (timing where the weights are not)")
    ap.add_argument("--out", type=Path, help="also write every figure to this JSON file")
    ap.add_argument("--json", action="store_true", help="print every figure as JSON instead of the report (the report goes to stderr)")
    from geodemo.cli import add_recorded_arguments

    add_recorded_arguments(ap)
    args = ap.parse_args(argv)
    say = functools.partial(print, file=sys.stderr if args.json else sys.stdout)
    if args.photos < 1:
        ap.error("--photos must be at least 1")

    photos, source = _photos(args.photos + 1, args.seed)
    if len(photos) < 2:
        ap.error(f"only {len(photos)} photo(s) found in the {source}")
    cache = Path(args.cache) if args.cache else Path(tempfile.mkdtemp(prefix="geodemo-bench-"))
    os.environ["GEODEMO_CACHE"] = str(cache)
    env = {**os.environ, "GEODEMO_CACHE": str(cache)}
    report: dict = {"preset": args.preset, "weights": args.weights, "photos": len(photos) - 1, "source": source, "cache": str(cache),
                    "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
                    "python": platform.python_version()}
    say(f"# bench_locate: preset {args.preset} ({args.weights} weights), {len(photos) - 1} photos from the {source}")
    say(f"cache: {'empty, temporary' if not args.cache else cache}")
    try:
        if not args.no_first_answer:
            report["load_before_first"] = _load()
            report["first_answer"] = []
            for run in range(max(1, args.first_answer_runs)):
                own = Path(tempfile.mkdtemp(prefix="geodemo-first-")) if not args.cache else cache
                try:
                    first = first_answer(args.preset, photos[0], {**env, "GEODEMO_CACHE": str(own)}, args.weights)
                finally:
                    if not args.cache:
                        shutil.rmtree(own, ignore_errors=True)
                report["first_answer"].append(first)
                slow = sorted(((k, v) for k, v in first["timings"].items() if k != "total"), key=lambda kv: -kv[1])[:3]
                say(f"\nfirst answer (run {run + 1}) {first['first_answer_s']:.1f} s after process start, which "
                      f"exits at {first['process_exit_s']:.1f} s "
                      f"(imports + locator {first['import_s']:.1f} s, CPU {first['import_cpu_s']:.1f} s; first locate "
                      f"{first['locate_s']:.1f} s, CPU {first['locate_cpu_s']:.1f} s, slowest stages "
                      f"{', '.join(f'{k} {v:.1f} s' for k, v in slow)}); load average {_load()}")
            firsts = [f["first_answer_s"] for f in report["first_answer"]]
            say(f"first answer over {len(firsts)} fresh processes: median {statistics.median(firsts):.1f} s, "
                  f"max {max(firsts):.1f} s")
        report["load_before"] = _load()
        timed = per_photo(args.preset, photos[1:], args.cpu_stages, own_cache=not args.cache, weights=args.weights)
        report.update(timed)
        from geodemo.data.recorded import recorded_section

        recorded = recorded_section(args.recorded_lmm, args.recorded_candidates)
        if recorded:
            report["recorded_cost"] = recorded_cost(args.preset, photos[1:], recorded)
        report["load_after"] = _load()
    finally:
        if not args.cache:
            shutil.rmtree(cache, ignore_errors=True)
    ocr = sum(r["ocr"] for r in timed["rows"])
    say(f"warm-up {timed['warmup_s']:.1f} s; OCR ran on {ocr} of {len(timed['rows'])} photos")
    peaks = [timed["peak_rss_mb"], *(f.get("peak_rss_mb", 0.0) for f in report.get("first_answer", []))]
    say(f"peak memory (resident set) {max(peaks):.0f} MB")
    say(f"load average before {report['load_before']}, after {report['load_after']}\n")
    say(table(timed["rows"]))
    if "recorded_cost" in report:
        cost = report["recorded_cost"]
        say(f"\nrecorded sources ({', '.join(n for role in recorded.values() for n in role)}) add "
              f"{cost['added_ms_median']:.2f} ms per photo (median; p95 {cost['added_ms_p95']:.2f} ms) to the stages "
              f"they touch, over {cost['photos']} photos; whole call, median difference "
              f"{cost['whole_call_diff_ms_median']:.1f} ms (dominated by noise on a shared machine)")
    if args.json:
        print(json.dumps(report, indent=2))
    if args.out:
        from geodemo.storage import write_json

        write_json(args.out, report, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
