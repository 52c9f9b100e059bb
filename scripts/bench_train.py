#!/usr/bin/env python
"""Throughput of feature extraction and of training steps (photos/s) and peak memory.

On a GPU (the real ViT-L/14 architecture with random weights; speed does not depend on the weights):
    python scripts/bench_train.py --arch vit-l14 --dtype bf16 --device cuda --batch-size 256 --steps 20
A short CPU run:
    python scripts/bench_train.py --arch vit-l14 --batch-size 2 --steps 2
Real offline encoder (TFLite MobileNet V1 from the shared folder):
    python scripts/bench_train.py --arch mobilenet --batch-size 16 --steps 2
The real trainer (``geodemo.train.Trainer``, preset ``g3``) on N cached rows vs the same model's
heads step on one batch already on the device -- the ratio says what the data path costs:
    python scripts/bench_train.py --rows 4100000 --steps 2000 --device cuda      # an H100: >= 0.8 expected
    python scripts/bench_train.py --rows 65536 --steps 40 --device cpu

Three figures are printed, each against G3's 4.1M photos / 7 h per epoch = 163 photos/s:
extraction (frozen tower forward), heads step on cached features (what our trainer runs), and a G3-style
step that recomputes the frozen tower for every photo (what G3's script runs).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

import geodemo  # noqa: E402,F401
from geodemo.storage import write_json  # noqa: E402

G3_PHOTOS_PER_S = 4_100_000 / (7 * 3600)


def _peak_mb(device: str) -> float:
    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _timed(fn, steps: int, device: str) -> float:
    fn()  # warm-up (allocations, kernels, compile)
    _sync(device)
    t = time.perf_counter()
    for _ in range(steps):
        fn()
    _sync(device)
    return (time.perf_counter() - t) / steps


def vit_l14(device: str, dtype: torch.dtype):
    """CLIP ViT-L/14 vision tower + projection (transformers architecture, random weights)."""
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    cfg = CLIPVisionConfig(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
                           patch_size=14, image_size=224, projection_dim=768)
    model = CLIPVisionModelWithProjection(cfg).to(device, dtype).eval().requires_grad_(False)
    return lambda pixels: model(pixel_values=pixels).image_embeds


def synthetic_table(rows: int, dims: dict[str, int], seed: int = 0):
    """``rows`` cached rows (random unit features, coordinates over the globe), built from a tile of
    65,536 random rows so that millions of rows cost seconds; speed does not depend on the values."""
    import numpy as np

    from geodemo.data import FeatureTable

    rng = np.random.default_rng(seed)
    tile = min(rows, 65_536)
    reps = -(-rows // tile)
    feats = {}
    for name, dim in dims.items():
        block = rng.standard_normal((tile, dim), dtype=np.float32)
        block /= np.linalg.norm(block, axis=1, keepdims=True)
        feats[name] = np.tile(block, (reps, 1))[:rows]
    coords = np.stack([rng.uniform(-60, 70, rows), rng.uniform(-180, 180, rows)], 1).astype(np.float32)
    ids = [str(i) for i in range(rows)]
    return FeatureTable(ids, [None] * rows, coords, feats)


def trainer_vs_heads(rows: int, steps: int, device: str, preset: str = "g3", batch_size: int | None = None,
                     features_on_device_gb: str | float = "auto") -> dict:
    """photos/s of ``Trainer.fit`` on ``rows`` cached rows and of the bare heads step, same model."""
    import tempfile

    from geodemo.train import Trainer, apply_overrides, build_model, load_preset
    from geodemo.train.objectives import build_objective

    cfg = load_preset(preset)
    dim = int(cfg["model"].get("clip_dim", 768))
    b = int(batch_size or cfg["optim"]["batch_size"])
    with tempfile.TemporaryDirectory() as out:
        cfg = apply_overrides(cfg, {
            "model.location_init": None, "data.holdout_fraction": 0.0, "optim.steps": steps,
            "optim.batch_size": b, "optim.warmup_steps": 0, "eval.every_epochs": 0,
            "run.device": device, "run.checkpoint_every": 0, "run.tensorboard": False,
            "run.log_every": max(steps // 4, 1), "run.output": out,
            "run.features_on_device_gb": features_on_device_gb,
        })
        t0 = time.perf_counter()
        table = synthetic_table(rows, {"image": dim, "projection": dim, "text_projection": dim})  # as extraction stores CLIP
        trainer = Trainer(cfg, progress=False, table=table)
        setup = time.perf_counter() - t0
        summary = trainer.fit(resume=False)
        resident = trainer.batches.resident
        dev = str(trainer.accelerator.device)
        del trainer, table

    torch.manual_seed(0)
    objective = build_objective(cfg["objective"]["kind"], build_model(cfg["model"]), cfg["objective"]).to(dev)
    opt = torch.optim.AdamW([p for p in objective.parameters() if p.requires_grad], lr=1e-5)
    batch = {"image": torch.randn(b, dim, device=dev), "text": torch.randn(b, dim, device=dev),
             "coords": torch.stack([torch.rand(b) * 130 - 60, torch.rand(b) * 360 - 180], 1).to(dev)}
    mixed = cfg["run"].get("mixed_precision", "no")
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(mixed, torch.float32)
    autocast = torch.autocast(device_type=dev.split(":")[0], dtype=dtype, enabled=dtype != torch.float32)

    def heads_step() -> None:
        with autocast:
            loss, _ = objective(batch)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    t_heads = _timed(heads_step, steps, dev)
    return {"rows": rows, "steps": steps, "batch_size": b, "device": dev, "features_resident": resident,
            "setup_s": setup, "trainer_photos_per_s": summary["photos_per_s"], "heads_step_photos_per_s": b / t_heads,
            "ratio": summary["photos_per_s"] / (b / t_heads)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", choices=["vit-l14", "mobilenet"], default="vit-l14", help="image tower to time")
    ap.add_argument("--dtype", choices=["fp32", "bf16", "fp16"], default="fp32", help="precision of the tower")
    ap.add_argument("--device", default="auto", help="auto, cpu, cuda or mps")
    ap.add_argument("--batch-size", type=int, help="extraction batch (default 2); with --rows the preset's batch")
    ap.add_argument("--head-batch-size", type=int, default=256, help="batch of the heads-only step")
    ap.add_argument("--steps", type=int, default=2, help="timed steps of each kind")
    ap.add_argument("--out", type=Path, help="also write the figures as JSON to this file")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON instead of the table (the table goes to stderr)")
    ap.add_argument("--rows", type=int, help="measure the real trainer on this many cached rows vs the heads step")
    ap.add_argument("--preset", default="g3", help="training preset for --rows")
    ap.add_argument("--features-on-device-gb", default="auto",
                    help="--rows: cached features kept on the GPU up to this size (auto: half the free memory)")
    args = ap.parse_args(argv)

    if args.rows:
        from geodemo.train.config import resolve_device

        device = resolve_device(args.device)
        gb = args.features_on_device_gb if args.features_on_device_gb == "auto" else float(args.features_on_device_gb)
        figures = trainer_vs_heads(args.rows, args.steps, device, args.preset,
                                   args.batch_size, gb)
        return _report(figures, args, [
            f"trainer ({args.preset}) on {figures['rows']:,} cached rows, batch {figures['batch_size']}, "
            f"{figures['steps']} steps on {figures['device']} "
            f"(features {'on the device' if figures['features_resident'] else 'prefetched'})",
            f"  real trainer      {figures['trainer_photos_per_s']:10.1f} photos/s",
            f"  heads step alone  {figures['heads_step_photos_per_s']:10.1f} photos/s",
            f"  ratio             {figures['ratio']:10.2f}",
            f"  (table built and trainer set up in {figures['setup_s']:.1f} s; "
            f"load average {', '.join(f'{x:.1f}' for x in os.getloadavg())})",
        ])

    from geodemo.models.g3 import G3Heads
    from geodemo.train.config import resolve_device
    from geodemo.train.objectives import G3Objective

    device = resolve_device(args.device)
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[args.dtype]
    torch.manual_seed(0)
    b = args.batch_size or 2
    if args.arch == "vit-l14":
        tower = vit_l14(device, dtype)
        pixels = torch.randn(b, 3, 224, 224, device=device, dtype=dtype)
        extract = lambda: tower(pixels)  # noqa: E731
        feat_dim = 768
    else:
        import numpy as np
        from PIL import Image

        from geodemo.models import create_model

        enc = create_model("mobilenet-v1-imagenet")
        imgs = [Image.fromarray(np.random.default_rng(i).integers(0, 255, (224, 224, 3), dtype=np.uint8))
                for i in range(b)]
        extract = lambda: torch.from_numpy(enc.encode_images(imgs)).to(device)  # noqa: E731
        feat_dim = 1024
    with torch.inference_mode():
        t_extract = _timed(extract, args.steps, device)

    heads = G3Heads(clip_dim=feat_dim).to(device)
    objective = G3Objective(heads).to(device)
    opt = torch.optim.AdamW([p for p in objective.parameters() if p.requires_grad], lr=1e-5)
    hb = args.head_batch_size
    coords = torch.stack([torch.rand(hb) * 170 - 85, torch.rand(hb) * 360 - 180], 1).to(device)
    cached = {"image": torch.randn(hb, feat_dim, device=device), "text": torch.randn(hb, feat_dim, device=device),
              "coords": coords}
    autocast = torch.autocast(device_type=device.split(":")[0], dtype=dtype, enabled=dtype != torch.float32)

    def heads_step(batch) -> None:
        with autocast:
            loss, _ = objective(batch)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    t_heads = _timed(lambda: heads_step(cached), args.steps, device)

    def g3_step() -> None:  # G3's script: the frozen tower runs again for every photo of every epoch
        with torch.no_grad():
            img = extract().float()
        heads_step({"image": img, "text": cached["text"][:b], "coords": coords[:b]})

    t_g3 = _timed(g3_step, args.steps, device)

    name = torch.cuda.get_device_name() if device.startswith("cuda") else f"CPU ({torch.get_num_threads()} threads)"
    figures = {
        "device": name, "arch": args.arch, "dtype": args.dtype, "batch_size": b, "head_batch_size": hb,
        "extract_photos_per_s": b / t_extract,
        "heads_step_cached_photos_per_s": hb / t_heads,
        "g3_style_step_photos_per_s": b / t_g3,
        "g3_reference_photos_per_s": G3_PHOTOS_PER_S,
        "peak_memory_mb": _peak_mb(device),
    }
    return _report(figures, args, [
        f"device: {name}  arch={args.arch} dtype={args.dtype} batch={b} (heads batch {hb})",
        f"  feature extraction       {figures['extract_photos_per_s']:10.1f} photos/s",
        f"  heads step, cached feats {figures['heads_step_cached_photos_per_s']:10.1f} photos/s",
        f"  G3-style step (tower+heads) {figures['g3_style_step_photos_per_s']:7.1f} photos/s",
        f"  G3 reference (4.1M / 7 h) {G3_PHOTOS_PER_S:9.1f} photos/s",
        f"  peak memory              {figures['peak_memory_mb']:10.0f} MB "
        f"({'GPU allocated' if device.startswith('cuda') else 'process RSS'})",
    ])


def _report(figures: dict, args: argparse.Namespace, lines: list[str]) -> int:
    """The table (stderr with ``--json``, which prints the figures as JSON), and ``--out``'s JSON file."""
    print("\n".join(lines), file=sys.stderr if args.json else sys.stdout)
    if args.json:
        print(json.dumps(figures, indent=2))
    if args.out:
        write_json(args.out, figures, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
