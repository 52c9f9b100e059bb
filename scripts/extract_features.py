#!/usr/bin/env python
"""Frozen-feature cache for training: encode every photo once, write resumable shards.

The CLIP towers are frozen in G3 and DualGeo, so their outputs never change during training; G3's
script still recomputes ViT-L/14 for every photo in every epoch. Here they are computed once, with
photos decoded by ``--workers`` processes and resized/normalised on the GPU in batches:

    # G3: image projections + CLIP text embeddings of the place prompt (MP16-Pro: CSV + tar shards)
    python scripts/extract_features.py --csv mp16pro.csv --images mp16pro-tars/ --encoder clip-vit-l14 \\
        --dtype bf16 --batch-size 256 --workers 16 --text --out features/mp16pro-clip-vit-l14
    # the same on every GPU of the machine (the photo list is split by process)
    accelerate launch scripts/extract_features.py --csv ... --out ...
    # DualGeo's model (dualgeo): raw projections + ADE20K label maps as DualGeo reads them
    python scripts/extract_features.py --csv ... --encoder clip-vit-l14 --segmenter segformer-b5-ade \\
        --labelmap-size 224 --labelmap-resample bilinear --out features/mp16pro-dualgeo
    # our token-level model (dualgeo-tokens): patch tokens (float16, memory-mappable .npy per shard)
    python scripts/extract_features.py --csv ... --encoder clip-vit-l14 --tokens --shard-size 1024 \\
        --segmenter segformer-b5-ade --out features/mp16pro-dualgeo-tokens
    # offline, real weights: MobileNet V1 on the dev split
    python scripts/extract_features.py --benchmark im2gps3k-dev --out features/dev-mobilenet

``--images`` is a photo folder, a ``.tar``, or a folder of ``.tar`` shards (MP16-Pro's layout).
Shards ``shard-00000.npz`` hold ``ids``, ``groups``, ``coords``, ``feat_image`` (unit rows),
``feat_projection`` (CLIP: the projection before normalisation) [``feat_text_projection``];
tokens and label maps go to ``shard-00000.tokens.npy`` / ``.labelmap.npy`` beside it. Existing
shards are skipped, so an interrupted run resumes; ``meta.json`` records what produced them and a
different encoder or shard size in the same folder is refused. Unreadable photos are reported,
listed in ``shard-NNNNN.skipped.json`` and left out. A shard is held in memory until it is complete:
with ``--tokens`` (512 KB per photo for ViT-L/14) pick ``--shard-size 1024`` or so.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import geodemo  # noqa: E402,F401


def _dataset(args):
    from geodemo.data import load_benchmark, load_csv
    from geodemo.retrieval.geocode import CAPTION_COLUMNS

    if args.benchmark:
        ds = load_benchmark(args.benchmark)
    else:
        ds = load_csv(args.csv, images_dir=args.images, meta_columns=list(CAPTION_COLUMNS))  # G3's captions
    return ds.subset(args.limit) if args.limit else ds


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--benchmark", help="a named set, e.g. im2gps3k-dev")
    src.add_argument("--csv", type=Path, help="a CSV of photos (any format geodemo.data.load_csv reads)")
    ap.add_argument("--images", type=Path, help="photo folder, .tar, or folder of .tar shards for --csv")
    ap.add_argument("--encoder", default="mobilenet-v1-imagenet", help="registered image encoder")
    ap.add_argument("--text", action="store_true", help="also CLIP text projections of G3's caption (the CSV's city, state, country; else the nearest city)")
    ap.add_argument("--tokens", action="store_true", help="also patch tokens, float16 (DualGeo)")
    ap.add_argument("--segmenter", help="also ADE20K label maps from this registered segmenter (DualGeo)")
    ap.add_argument("--labelmap-size", type=int, default=64, help="side of the stored label maps (px)")
    ap.add_argument("--labelmap-resample", choices=["nearest", "bilinear"], default="nearest",
                    help="bilinear with --labelmap-size 224: DualGeo's model (dualgeo preset); nearest: dualgeo-tokens")
    ap.add_argument("--out", type=Path, required=True, help="folder for the feature shards")
    ap.add_argument("--shard-size", type=int, default=4096, help="photos per shard")
    ap.add_argument("--batch-size", type=int, default=64, help="photos per encoder batch")
    ap.add_argument("--workers", type=int, default=4, help="decoding processes (0: decode in this process)")
    ap.add_argument("--prefetch", type=int, default=2, help="batches each worker may prepare ahead")
    ap.add_argument("--resize-on", choices=["auto", "workers", "device"], default="auto",
                    help="where photos are resized: auto = the GPU when there is one, else the workers")
    ap.add_argument("--limit", type=int, help="only the first N photos")
    ap.add_argument("--device", default="auto", help="auto, cpu, cuda or mps")
    ap.add_argument("--dtype", default="auto", help="encoder precision: auto, fp32, bf16, fp16")
    ap.add_argument("--model-options", default="{}",
                    help='more encoder options as JSON, e.g. {"local_dir": "weights/clip"}')
    ap.add_argument("--no-progress", action="store_true", help="no progress bars")
    args = ap.parse_args(argv)

    from accelerate import PartialState
    from tqdm.auto import tqdm

    from geodemo.extraction import extract_to_shards
    from geodemo.models import create_model
    from geodemo.retrieval.geocode import training_caption

    state = PartialState(cpu=args.device == "cpu")
    device = str(state.device) if args.device == "auto" else args.device
    try:
        ds = _dataset(args)
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    meta = {"dataset": ds.name, "encoder": args.encoder, "text": args.text, "tokens": args.tokens,
            "segmenter": args.segmenter, "labelmap_size": args.labelmap_size,
            **({"labelmap_resample": args.labelmap_resample} if args.labelmap_resample != "nearest" else {})}
    encoder = create_model(args.encoder, device=device, dtype=args.dtype, **json.loads(args.model_options))
    segmenter = create_model(args.segmenter) if args.segmenter else None
    try:
        report = extract_to_shards(
            ds, encoder, args.out, shard_size=args.shard_size, tokens=args.tokens,
            caption=(lambda s: training_caption(s.meta, s.lat, s.lon)) if args.text else None,
            segmenter=segmenter, labelmap_size=args.labelmap_size, labelmap_resample=args.labelmap_resample,
            batch_size=args.batch_size,
            workers=args.workers, resize_on=args.resize_on, prefetch=args.prefetch,
            process_index=state.process_index, num_processes=state.num_processes, meta=meta,
            progress=not args.no_progress and state.is_main_process,
            on_failure=lambda pid, reason: tqdm.write(f"skipped {pid}: {reason}"),
        )
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    rank = f"process {state.process_index}/{state.num_processes}: " if state.num_processes > 1 else ""
    print(f"{rank}{report.encoded} photos encoded ({len(report.failures)} unreadable) into "
          f"{report.shards_written} new shard(s) ({report.shards_present} already there) at {args.out} "
          f"in {report.seconds:.1f} s ({report.photos_per_s:.1f} photos/s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
