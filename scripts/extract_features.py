#!/usr/bin/env python
"""Frozen-feature cache for training: encode every photo once, write sharded npz files.

The CLIP towers are frozen in G3 and DualGeo, so their outputs never change during training; G3's
script still recomputes ViT-L/14 for every photo in every epoch. Here they are computed once:

    # G3: image projections + CLIP text embeddings of the place prompt
    python scripts/extract_features.py --csv mp16pro.csv --images mp16pro.tar --encoder clip-vit-l14 \\
        --text --out features/mp16pro-clip-vit-l14
    # DualGeo: patch tokens (float16) + ADE20K label maps
    python scripts/extract_features.py --csv ... --encoder clip-vit-l14 --tokens \\
        --segmenter segformer-b5-ade --out features/mp16pro-dualgeo
    # offline, real weights: MobileNet V1 on the dev split
    python scripts/extract_features.py --benchmark im2gps3k-dev --out features/dev-mobilenet

Shards ``shard-00000.npz`` hold ``ids``, ``groups``, ``coords`` and ``feat_image`` [``feat_text``,
``feat_tokens``, ``feat_labelmap``]; existing shards are skipped, so an interrupted run resumes.
``meta.json`` records what produced them; a different encoder or shard size in the same folder
is refused. Unreadable photos are reported and left out.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

import geodemo  # noqa: E402,F401
from geodemo.storage import read_json, write_json  # noqa: E402


def _dataset(args):
    from geodemo.data import load_benchmark, load_csv

    if args.benchmark:
        ds = load_benchmark(args.benchmark)
    else:
        ds = load_csv(args.csv, images_dir=args.images)
    return ds.subset(args.limit) if args.limit else ds


def _encode(pending: list, encoder, segmenter, args, feats: dict, samples: list, bar) -> None:
    """Encode a batch of ``(sample, image)`` into ``feats`` and empty ``pending``."""
    from geodemo.models.dualgeo import label_maps_to_tensor

    images = [im for _, im in pending]
    feats["image"].append(encoder.encode_images(images, batch_size=args.batch_size))
    if args.tokens:
        feats["tokens"].append(encoder.encode_image_tokens(images).cpu().numpy().astype(np.float16))
    if segmenter is not None:
        maps = [np.asarray(segmenter.segment(im).label_map) for im in images]
        feats["labelmap"].append(label_maps_to_tensor(maps, args.labelmap_size).numpy().astype(np.uint8))
    if args.text:
        from geodemo.retrieval.geocode import place_prompt, reverse_geocode

        prompts = [place_prompt(reverse_geocode(sm.lat, sm.lon)) for sm, _ in pending]
        feats["text"].append(encoder.encode_texts(prompts))
    samples.extend(sm for sm, _ in pending)
    bar.update(len(pending))
    pending.clear()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--benchmark", help="a named set, e.g. im2gps3k-dev")
    src.add_argument("--csv", type=Path, help="a CSV of photos (any format geodemo.data.load_csv reads)")
    ap.add_argument("--images", type=Path, help="photo folder or .tar for --csv")
    ap.add_argument("--encoder", default="mobilenet-v1-imagenet", help="registered image encoder")
    ap.add_argument("--text", action="store_true", help="also CLIP text embeddings of the place prompt (G3)")
    ap.add_argument("--tokens", action="store_true", help="also patch tokens, float16 (DualGeo)")
    ap.add_argument("--segmenter", help="also ADE20K label maps from this registered segmenter (DualGeo)")
    ap.add_argument("--labelmap-size", type=int, default=64)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--shard-size", type=int, default=4096)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--limit", type=int)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)

    from tqdm.auto import tqdm

    from geodemo.models import create_model
    from geodemo.train.data import FeatureTable, write_feature_shard

    ds = _dataset(args)
    meta = {"dataset": ds.name, "n": len(ds), "encoder": args.encoder, "text": args.text, "tokens": args.tokens,
            "segmenter": args.segmenter, "labelmap_size": args.labelmap_size, "shard_size": args.shard_size}
    args.out.mkdir(parents=True, exist_ok=True)
    meta_path = args.out / "meta.json"
    old = read_json(meta_path, "feature folder description")
    if old is not None and old != meta:
        raise SystemExit(f"{args.out} holds features made with {old}; use another --out for {meta}")
    write_json(meta_path, meta, indent=2)

    kwargs = {} if args.device == "auto" else {"device": args.device}
    encoder = create_model(args.encoder, **kwargs)
    segmenter = create_model(args.segmenter) if args.segmenter else None
    n_shards = (len(ds) + args.shard_size - 1) // args.shard_size
    bar = tqdm(total=len(ds), desc=f"{args.encoder} on {ds.name}", unit="photo", disable=args.no_progress)
    started, done, failed = time.perf_counter(), 0, 0
    for s in range(n_shards):
        path = args.out / f"shard-{s:05d}.npz"
        rows = ds.samples[s * args.shard_size : (s + 1) * args.shard_size]
        if path.exists():
            bar.update(len(rows))
            continue
        part = ds.subset(ids={r.id for r in rows})
        samples, feats = [], {"image": [], "text": [], "tokens": [], "labelmap": []}
        pending: list = []

        for sample, image, error in part.iter_images(progress=False):
            if image is None:
                failed += 1
                bar.update(1)
                tqdm.write(f"skipped {sample.id}: {error}")
                continue
            pending.append((sample, image))
            if len(pending) >= args.batch_size:
                _encode(pending, encoder, segmenter, args, feats, samples, bar)
        if pending:
            _encode(pending, encoder, segmenter, args, feats, samples, bar)
        table = FeatureTable(
            [sm.id for sm in samples], [sm.group for sm in samples],
            np.array([[sm.lat, sm.lon] for sm in samples], dtype=np.float32).reshape(-1, 2),
            {k: np.concatenate(v) for k, v in feats.items() if v},
        )
        write_feature_shard(path, table)
        done += len(samples)
    bar.close()
    secs = time.perf_counter() - started
    print(f"{done} photos encoded ({failed} unreadable) into {n_shards} shard(s) at {args.out} "
          f"in {secs:.1f} s ({done / max(secs, 1e-9):.1f} photos/s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
