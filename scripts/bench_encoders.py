#!/usr/bin/env python
"""Per-image latency and peak memory of every encoder and segmenter, as a Markdown table.

Each model runs in its own subprocess so that its peak RSS (and, on a GPU, its
``torch.cuda.max_memory_allocated``) is its own. The offline models run with their real weights;
hub models use real weights when they are cached or reachable, else random weights of the real
architecture (ViT-L/14, SegFormer-B5: same compute, so the timings hold).

    python scripts/bench_encoders.py                       # CPU, all models, batch 1 and 16
    python scripts/bench_encoders.py --device cuda --dtype bf16
    python scripts/bench_encoders.py --models mobilenet-v1-imagenet deeplab-mnv2-ade --iters 10
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

DEFAULT_MODELS = [
    "mobilenet-v1-imagenet",
    "mobilenet-v2-imagenet-classifier",
    "deeplab-mnv2-ade",
    "clip-vit-l14",
    "hf-clip-vit-l14",
    "segformer-b5-ade",
]
HEAVY = {"clip-vit-l14", "hf-clip-vit-l14", "segformer-b5-ade"}  # few iterations on a CPU


def _photos(n: int):
    """``n`` real photos (OSV-5M street views, repeated if needed)."""
    from geodemo.data import load_benchmark

    images = []
    for _sample, image, _error in load_benchmark("osv5m-sample").subset(limit=n).iter_images(progress=False):
        if image is not None:
            images.append(image)
    while len(images) < n:
        images += images[: n - len(images)]
    return images


def _load(name: str, device: str, dtype: str, force_random: bool):
    """The model and a note on its weights; hub models fall back to random weights when unavailable."""
    from geodemo.models import ModelUnavailableError, create_model, get_spec

    kwargs = {}
    if "device" in get_spec(name).config:
        kwargs = {"device": device, "dtype": dtype}
    if force_random and name in HEAVY:
        return create_model(name, random_init=True, **kwargs), "random (real architecture)"
    try:
        return create_model(name, **kwargs), "pretrained"
    except ModelUnavailableError:
        if name not in HEAVY:
            raise
        return create_model(name, random_init=True, **kwargs), "random (real architecture)"


def _runner(model):
    """A function images -> output for one batch, whatever the model family."""
    if hasattr(model, "encode_images"):
        return lambda ims: model.encode_images(ims, batch_size=len(ims))
    if hasattr(model, "label_maps"):
        return lambda ims: model.label_maps(ims, batch_size=len(ims))
    if hasattr(model, "classify"):
        return lambda ims: [model.classify(im) for im in ims]
    raise TypeError(f"do not know how to run {type(model).__name__}")


def _threads(model) -> int:
    """Threads the model computes with: the TFLite interpreter's, else torch's."""
    from geodemo.models.tflite import TFLiteModel, default_threads

    if isinstance(getattr(model, "model", None), TFLiteModel):
        return default_threads()
    import torch

    return torch.get_num_threads()


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def bench_one(name: str, device: str, dtype: str, batch_sizes: list[int], iters: int, budget_s: float,
              force_random: bool) -> dict:  # fmt: skip
    """Measure one model in this process; returns a JSON-ready row."""
    import geodemo  # noqa: F401
    from geodemo.models.loading import resolve_device

    dev = resolve_device(device)
    cuda = dev.startswith("cuda")
    if cuda:
        import torch

        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    model, weights = _load(name, dev, dtype, force_random)
    load_s = time.perf_counter() - t0
    run = _runner(model)
    photos = _photos(max(batch_sizes))
    run(photos[:1])  # warm-up
    _sync(dev)
    import torch

    row = {"model": name, "weights": weights, "device": dev, "load_s": load_s, "ms_per_image": {},
           "threads": _threads(model), "load_average": os.getloadavg()[0]}  # fmt: skip
    per_image_s = None
    for bs in batch_sizes:
        if per_image_s is not None and per_image_s * bs > budget_s:
            row["ms_per_image"][str(bs)] = None  # skipped: would exceed the time budget
            continue
        n = iters if name not in HEAVY or cuda else 1
        times = []
        for _ in range(max(1, n)):
            start = time.perf_counter()
            run(photos[:bs])
            _sync(dev)
            times.append((time.perf_counter() - start) / bs)
        row["ms_per_image"][str(bs)] = 1000 * sorted(times)[len(times) // 2]
        per_image_s = per_image_s or sorted(times)[len(times) // 2]
    row["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if cuda:
        import torch

        row["peak_gpu_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return row


def markdown(rows: list[dict], batch_sizes: list[int]) -> str:
    """The results as a Markdown table."""
    head = ["model", "weights", "device", "threads", "load avg", "load s"] + [
        f"ms/img @ batch {b}" for b in batch_sizes
    ]
    head += ["peak RSS MB", "peak GPU MB"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['model']} | error: {r['error']} |" + " |" * (len(head) - 2))
            continue
        ms = [r["ms_per_image"].get(str(b)) for b in batch_sizes]
        cells = [r["model"], r["weights"], r["device"], str(r["threads"]), f"{r['load_average']:.1f}"]
        cells += [f"{r['load_s']:.1f}"]
        cells += ["skipped (time budget)" if v is None else f"{v:.0f}" for v in ms]
        cells += [f"{r['peak_rss_mb']:.0f}", f"{r['peak_gpu_mb']:.0f}" if "peak_gpu_mb" in r else "-"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=DEFAULT_MODELS, help="registered encoders to measure")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | mps")
    parser.add_argument("--dtype", default="auto", help="auto | fp32 | fp16 | bf16 (torch models)")
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[1, 16], help="batch sizes to time")
    parser.add_argument("--iters", type=int, default=3, help="timed repetitions (heavy models on CPU: 1)")
    parser.add_argument("--budget-s", type=float, default=120.0,
                        help="skip a batch size whose estimated run time exceeds this")  # fmt: skip
    parser.add_argument("--threads", type=int, default=None,
                        help="torch and TFLite threads (default: torch's choice, TFLite min(4, cores))")  # fmt: skip
    parser.add_argument("--random", action="store_true", help="random weights for hub models even if cached")
    parser.add_argument("--out", type=Path, help="also write the rows as JSON to this file")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON instead of the table")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: measure one model, print JSON
    args = parser.parse_args(argv)

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
        os.environ["GEODEMO_TFLITE_THREADS"] = str(args.threads)
    if args.one:
        row = bench_one(
            args.one, args.device, args.dtype, args.batch_sizes, args.iters, args.budget_s, args.random
        )
        print("BENCH_ROW " + json.dumps(row))
        return 0

    rows = []
    for name in args.models:
        cmd = [sys.executable, __file__, "--one", name, "--device", args.device, "--dtype", args.dtype,
               "--iters", str(args.iters), "--budget-s", str(args.budget_s),
               "--batch-sizes", *map(str, args.batch_sizes)] + (["--random"] if args.random else [])  # fmt: skip
        cmd += ["--threads", str(args.threads)] if args.threads else []
        print(f"benchmarking {name} ...", file=sys.stderr, flush=True)
        proc = subprocess.run(cmd, capture_output=True, text=True, env=os.environ.copy())
        found = [ln for ln in proc.stdout.splitlines() if ln.startswith("BENCH_ROW ")]
        if proc.returncode != 0 or not found:
            tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            rows.append({"model": name, "error": tail[:200]})
            continue
        rows.append(json.loads(found[-1][len("BENCH_ROW ") :]))
    import torch

    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print(f"\n{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}; "
              f"load avg = 1-min load average when the model was measured\n")  # fmt: skip
        print(markdown(rows, args.batch_sizes))
    if args.out:
        from geodemo.storage import write_json

        write_json(args.out, rows, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
