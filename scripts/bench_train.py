#!/usr/bin/env python
"""Throughput of feature extraction and of training steps (photos/s) and peak memory.

On a GPU (the real ViT-L/14 architecture with random weights; speed does not depend on the weights):
    python scripts/bench_train.py --arch vit-l14 --dtype bf16 --device cuda --batch-size 256 --steps 20
A short CPU run:
    python scripts/bench_train.py --arch vit-l14 --batch-size 2 --steps 2
Real offline encoder (TFLite MobileNet V1 from the shared folder):
    python scripts/bench_train.py --arch mobilenet --batch-size 16 --steps 2

Three figures are printed, each against G3's 4.1M photos / 7 h per epoch = 163 photos/s:
extraction (frozen tower forward), heads step on cached features (what our trainer runs), and a G3-style
step that recomputes the frozen tower for every photo (what G3's script runs).
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

import geodemo  # noqa: E402,F401

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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", choices=["vit-l14", "mobilenet"], default="vit-l14")
    ap.add_argument("--dtype", choices=["fp32", "bf16", "fp16"], default="fp32")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--batch-size", type=int, default=2)
    ap.add_argument("--head-batch-size", type=int, default=256, help="batch of the heads-only step")
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args(argv)

    from geodemo.models.g3 import G3Heads
    from geodemo.train.config import resolve_device
    from geodemo.train.objectives import G3Objective

    device = resolve_device(args.device)
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[args.dtype]
    torch.manual_seed(0)
    b = args.batch_size
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
    print(f"device: {name}  arch={args.arch} dtype={args.dtype} batch={b} (heads batch {hb})")
    print(f"  feature extraction       {figures['extract_photos_per_s']:10.1f} photos/s")
    print(f"  heads step, cached feats {figures['heads_step_cached_photos_per_s']:10.1f} photos/s")
    print(f"  G3-style step (tower+heads) {figures['g3_style_step_photos_per_s']:7.1f} photos/s")
    print(f"  G3 reference (4.1M / 7 h) {G3_PHOTOS_PER_S:9.1f} photos/s")
    print(f"  peak memory              {figures['peak_memory_mb']:10.0f} MB ({'GPU allocated' if device.startswith('cuda') else 'process RSS'})")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
