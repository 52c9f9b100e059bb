#!/usr/bin/env python
"""Extraction speed from files vs the encoder alone, on the same device, in one run (photos/s).

    # here (CPU, real MobileNet V1, 64 dev photos): the CI-size run
    python scripts/bench_extract.py --encoder mobilenet-v1-imagenet --device cpu --limit 64 --workers 2
    # an H100: ViT-L/14 in bf16 (random weights of the real architecture: speed does not depend on them)
    python scripts/bench_extract.py --encoder hf-clip-vit-l14 --random-init --device cuda --dtype bf16 \\
        --batch-size 256 --workers 16 --synthetic-photos 8192
    # ... and DualGeo's float16 patch tokens
    python scripts/bench_extract.py --encoder hf-clip-vit-l14 --random-init --device cuda --dtype bf16 \\
        --batch-size 256 --workers 16 --synthetic-photos 8192 --tokens

End to end = ``geodemo.extraction.extract_to_shards`` over JPEG files (decoding workers, device
resize/normalise, forward, shards written to a temporary folder). Model alone = ``encode_pixels``
on a batch already on the device. ``--baseline`` also times the single-process path (decode, PIL
preprocessing and ``encode_images`` one batch after another, as extraction worked before).
Photos come from ``--benchmark`` (default im2gps3k-dev) or, with ``--synthetic-photos N``, N JPEGs
of ``--photo-size`` written first (for machines without the shared photos).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402

import geodemo  # noqa: E402,F401
from geodemo.storage import write_json, write_text  # noqa: E402


def synthetic_photos(folder: Path, n: int, size: tuple[int, int], seed: int = 0, distinct: int = 256):
    """``n`` JPEG photos (smooth random colour fields, quality 90) and a CSV dataset of them; beyond
    ``distinct`` photos the files are hard links to the first ones (decoding costs the same, writing
    8192 JPEGs would not fit a short GPU lease)."""
    from PIL import Image

    from geodemo.data import load_csv

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    w, h = size
    lines = ["IMG_ID,LAT,LON"]
    for i in range(n):
        if i >= distinct:
            os.link(folder / f"{i % distinct:06d}.jpg", folder / f"{i:06d}.jpg")
        else:
            small = rng.integers(0, 256, (h // 16, w // 16, 3), dtype=np.uint8)
            noise = rng.integers(-12, 13, (h, w, 3))
            img = np.asarray(Image.fromarray(small).resize((w, h), Image.Resampling.BICUBIC), dtype=np.int16) + noise
            Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(folder / f"{i:06d}.jpg", quality=90)
        lines.append(f"{i:06d}.jpg,{rng.uniform(-60, 70):.5f},{rng.uniform(-180, 180):.5f}")
    write_text(folder.parent / "photos.csv", "\n".join(lines) + "\n")
    return load_csv(folder.parent / "photos.csv", images_dir=folder)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def model_alone(encoder, batch_size: int, steps: int, tokens: bool) -> float:
    """photos/s of ``encode_pixels`` on a fitted batch already on the device (outputs copied to host)."""
    from geodemo.models.pixels import device_pixels, recipe_of

    recipe = recipe_of(encoder)
    device = torch.device(getattr(encoder, "device", "cpu"))
    dtype = encoder.dtype if isinstance(getattr(encoder, "dtype", None), torch.dtype) else torch.float32
    photos = [torch.randint(0, 256, (recipe.size, recipe.size, 3), dtype=torch.uint8, device=device)
              for _ in range(batch_size)]
    pixels = device_pixels(photos, recipe, dtype=dtype, already_fitted=True)

    def step():
        out = encoder.encode_pixels(pixels, tokens=tokens)
        return {k: v.to("cpu", torch.float16 if k == "tokens" else torch.float32) for k, v in out.items()}

    step()
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(device)
    return batch_size * steps / (time.perf_counter() - t0)


def single_process(encoder, dataset, batch_size: int) -> float:
    """photos/s of the old path: decode, PIL preprocessing and the forward, one after another."""
    t0 = time.perf_counter()
    images, n = [], 0
    for _, image, _ in dataset.iter_images(progress=False):
        if image is not None:
            images.append(image)
        if len(images) == batch_size:
            encoder.encode_images(images, batch_size=batch_size)
            n, images = n + len(images), []
    if images:
        encoder.encode_images(images, batch_size=batch_size)
        n += len(images)
    return n / (time.perf_counter() - t0)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--encoder", default="mobilenet-v1-imagenet", help="any registered image encoder")
    ap.add_argument("--random-init", action="store_true", help="real architecture, random weights (no download)")
    ap.add_argument("--model-options", default="{}", help='more create_model options as JSON, e.g. {"config": ...}')
    ap.add_argument("--device", default="auto", help="auto, cpu, cuda or mps")
    ap.add_argument("--dtype", default="auto", help="auto, fp32, bf16, fp16")
    ap.add_argument("--benchmark", default="im2gps3k-dev", help="named photo set to read (unless --synthetic-photos)")
    ap.add_argument("--synthetic-photos", type=int, default=0, help="write and use this many JPEGs instead")
    ap.add_argument("--photo-size", default="640x480", help="size of the synthetic JPEGs")
    ap.add_argument("--limit", type=int, help="photos of the benchmark to use")
    ap.add_argument("--batch-size", type=int, default=64, help="photos per encoder batch")
    ap.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2) - 1), help="decoding processes")
    ap.add_argument("--resize-on", choices=["auto", "workers", "device"], default="auto",
                    help="where photos are resized to the encoder's input: decoding workers or the device")
    ap.add_argument("--tokens", action="store_true", help="also patch tokens (float16), as for DualGeo")
    ap.add_argument("--model-steps", type=int, default=5, help="batches timed for the model alone")
    ap.add_argument("--baseline", action="store_true", help="also time the single-process path")
    ap.add_argument("--out", type=Path, help="also write the figures as JSON to this file")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON instead of the table (the table goes to stderr)")
    args = ap.parse_args(argv)

    from geodemo.data import load_benchmark
    from geodemo.extraction import extract_to_shards
    from geodemo.models import create_model
    from geodemo.models.loading import resolve_device

    device = resolve_device(args.device)
    overrides = {"device": device, "dtype": args.dtype, **json.loads(args.model_options)}
    if args.random_init:
        overrides["random_init"] = True
    encoder = create_model(args.encoder, **overrides)
    with tempfile.TemporaryDirectory() as tmp:
        if args.synthetic_photos:
            w, h = (int(x) for x in args.photo_size.lower().split("x"))
            t0 = time.perf_counter()
            dataset = synthetic_photos(Path(tmp) / "photos", args.synthetic_photos, (w, h))
            print(f"wrote {len(dataset)} synthetic {w}x{h} JPEGs in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
        else:
            dataset = load_benchmark(args.benchmark)
        if args.limit:
            dataset = dataset.subset(args.limit)
        # warm-up (worker start, kernels, allocator) on one batch, then the timed run
        extract_to_shards(dataset.subset(args.batch_size), encoder, Path(tmp) / "warm", tokens=args.tokens,
                          batch_size=args.batch_size, workers=args.workers, resize_on=args.resize_on, progress=False)
        report = extract_to_shards(dataset, encoder, Path(tmp) / "shards", tokens=args.tokens,
                                   batch_size=args.batch_size, workers=args.workers, resize_on=args.resize_on,
                                   progress=False)
        figures = {"encoder": args.encoder, "device": device, "dtype": str(getattr(encoder, "dtype", "uint8")),
                   "photos": len(dataset), "unreadable": len(report.failures), "batch_size": args.batch_size,
                   "workers": args.workers, "tokens": args.tokens,
                   "end_to_end_photos_per_s": report.photos_per_s,
                   "model_alone_photos_per_s": model_alone(encoder, args.batch_size, args.model_steps, args.tokens)}
        if args.baseline:
            figures["single_process_photos_per_s"] = single_process(encoder, dataset, args.batch_size)
    figures["end_to_end_vs_model"] = figures["end_to_end_photos_per_s"] / figures["model_alone_photos_per_s"]
    name = torch.cuda.get_device_name() if device.startswith("cuda") else f"CPU, {torch.get_num_threads()} threads"
    say = functools.partial(print, file=sys.stderr if args.json else sys.stdout)
    say(f"{args.encoder}{' + tokens' if args.tokens else ''} on {name}: {figures['photos']} photos, "
          f"batch {args.batch_size}, {args.workers} decoding workers")
    say(f"  end to end from files  {figures['end_to_end_photos_per_s']:10.1f} photos/s")
    say(f"  model alone            {figures['model_alone_photos_per_s']:10.1f} photos/s")
    say(f"  ratio                  {figures['end_to_end_vs_model']:10.2f}")
    if "single_process_photos_per_s" in figures:
        sp = figures["single_process_photos_per_s"]
        say(f"  single-process path    {sp:10.1f} photos/s (end to end is {figures['end_to_end_photos_per_s'] / sp:.2f}x)")
    say(f"  load average           {', '.join(f'{x:.1f}' for x in os.getloadavg())}")
    if args.json:
        print(json.dumps(figures, indent=2))
    if args.out:
        write_json(args.out, figures, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
