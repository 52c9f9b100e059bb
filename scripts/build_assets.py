#!/usr/bin/env python
"""Rebuild the embedded default bundle in ``assets/`` from the shared folder, and check its size.

What it writes (provenance and licences in ``assets/README.md``):

* ``assets/models/mobilenet-imagenet/mobilenet_v1_1.0_224_quant_embedding_extractor.tflite`` and
  ``assets/models/deeplabv3-mnv2-ade20k/deeplabv3_mnv2_ade20k.tflite``: byte copies of the shared weights;
* ``assets/checkpoints/offline-verifier/``: the offline verifier trained on every dev + OSV photo with
  ``geodemo/train/presets/offline-verifier.json`` (``data.holdout_fraction=0``), slimmed to its trained
  head in float16 (the frozen GeoCLIP location encoder comes from the ``geoclip`` wheel);
* ``assets/gallery/``: the offline preset's gallery and multi-view bank (``geodemo.retrieval.bundle``);
* ``assets/thumbnails/<dataset>/``: <= 160 px JPEG thumbnails of the gallery photos for the map pop-ups;
* ``assets/examples/``: ten example photos and ``examples.csv`` with their true location;
* ``assets/ne_110m_countries.geojson``: Natural Earth country outlines (from the ``pyogrio`` wheel);
* ``assets/bundle.json``: every bundled file with its size and sha256.

The same inputs give the same bytes (fixed seeds, sorted rows, no timestamps). The run fails when a
file reaches 10 MB or the bundle exceeds 25 MB (``git ls-files`` sizes are what count).

Usage: ``.venv/bin/python scripts/build_assets.py [--verifier FOLDER] [--only models,verifier,...]
[--no-progress]``
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import shutil
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

import geodemo  # noqa: E402,F401  (torchvision guard first)
from geodemo.paths import BUNDLE_DIR, shared_path  # noqa: E402
from geodemo.storage import atomic_open, atomic_path, sha256_file, write_json, write_text  # noqa: E402

FILE_LIMIT = 10 * 1024 * 1024
BUNDLE_LIMIT = 25 * 1024 * 1024
MODEL_FILES = (
    ("mobilenet-imagenet", "mobilenet_v1_1.0_224_quant_embedding_extractor.tflite"),
    ("deeplabv3-mnv2-ade20k", "deeplabv3_mnv2_ade20k.tflite"),
)
GALLERY_DATASETS = ("im2gps3k-dev", "osv5m-sample")  # the offline preset's gallery
ENCODER = "mobilenet-v1-imagenet"
VERIFIER = "offline-verifier"
VERIFIER_OVERRIDES = ["data.holdout_fraction=0"]  # trained on every dev + OSV photo
THUMBNAIL_PX = 160
EXAMPLES = (("im2gps3k-dev", 7), ("osv5m-sample", 3))
STEPS = ("countries", "models", "verifier", "gallery", "thumbnails", "examples")


def build_countries(out: Path, tolerance: float = 0.05, ndigits: int = 2) -> None:
    """Natural Earth 1:110m countries (public domain, from the pyogrio wheel), simplified and rounded."""
    import geopandas as gpd
    import pyogrio

    source = Path(pyogrio.__file__).parent / "tests" / "fixtures" / "naturalearth_lowres" / "naturalearth_lowres.shp"
    frame = gpd.read_file(source).to_crs(4326)
    frame["geometry"] = frame.geometry.simplify(tolerance, preserve_topology=True)

    def rounded(obj):
        if isinstance(obj, (list, tuple)):
            if obj and isinstance(obj[0], (int, float)):
                return [round(float(v), ndigits) for v in obj]
            return [rounded(v) for v in obj]
        return obj

    features = [{"type": "Feature", "properties": {"name": row.name, "iso_a3": row.iso_a3},
                 "geometry": {"type": row.geometry.__geo_interface__["type"],
                              "coordinates": rounded(row.geometry.__geo_interface__["coordinates"])}}
                for row in frame.itertuples()]
    collection = {"type": "FeatureCollection", "name": "ne_110m_countries",
                  "source": "Natural Earth 1:110m admin-0 countries (public domain), via pyogrio's test fixture",
                  "features": features}
    write_json(out, collection, separators=(",", ":"))


def copy_models(out: Path) -> None:
    """Byte copies of the offline preset's TFLite weights, in the shared folder's layout."""
    for subdir, name in MODEL_FILES:
        src = shared_path("models", subdir, name)
        dst = out / "models" / subdir / name
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dst)


def train_verifier(folder: Path, progress: bool) -> Path:
    """Train the offline verifier on every dev + OSV photo into ``folder`` (the existing trainer)."""
    from geodemo.train import Trainer, apply_overrides, load_preset

    cfg = apply_overrides(load_preset(VERIFIER), VERIFIER_OVERRIDES)
    trainer = Trainer(cfg, output_dir=folder, progress=progress)
    trainer.fit(resume=False)
    return trainer.export(extra={"held_out_groups": [], "datasets": list(cfg["data"]["benchmarks"])})


def slim_verifier(trained: Path, out: Path) -> None:
    """The trained head in float16; the frozen GeoCLIP location encoder is left to the geoclip wheel."""
    import torch
    from safetensors.torch import load_file, save_file

    from geodemo.models.gps import load_geoclip_location_encoder
    from geodemo.train import load_preset

    cfg = json.loads((trained / "config.json").read_text())
    state = load_file(str(trained / "model.safetensors"))
    geoclip = load_geoclip_location_encoder().state_dict()
    for key, value in geoclip.items():
        if not torch.equal(state[f"location_encoder.{key}"], value):
            raise SystemExit(f"the verifier's location encoder differs from GeoCLIP's at {key}: it cannot be slimmed")
    head = {k: v.to(torch.float16).contiguous() for k, v in sorted(state.items())
            if not k.startswith("location_encoder.")}
    preset = load_preset(VERIFIER)
    cfg["location_weights"] = "geoclip"
    cfg["training"] = {
        **cfg.get("training", {}),
        "preset": VERIFIER,
        "preset_sha256": hashlib.sha256(json.dumps(preset, sort_keys=True).encode()).hexdigest(),
        "overrides": VERIFIER_OVERRIDES,
        "seed": preset["run"]["seed"],
        "command": "python scripts/build_assets.py (scripts/train.py --preset offline-verifier "
                   "--set data.holdout_fraction=0, then slimmed)",
        "stored": "image head and logit scale in float16; location encoder = GeoCLIP's (geoclip wheel, frozen)",
    }
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / "model.safetensors") as tmp:
        save_file(head, str(tmp), metadata={"format": "pt"})
    write_text(out / "config.json", json.dumps(cfg, indent=2, sort_keys=True) + "\n")


def build_gallery(out: Path, progress: bool) -> list[tuple[str, str, str]]:
    """The offline preset's gallery + multi-view bank; returns (id, dataset, photo path) per row."""
    from geodemo.data import load_benchmark
    from geodemo.models.registry import shared_model
    from geodemo.pipeline import load_preset
    from geodemo.retrieval.bundle import save_gallery_bundle
    from geodemo.retrieval.galleries import image_gallery
    from geodemo.retrieval.multiview import ViewBank

    preset = load_preset("offline")
    if tuple(preset["gallery"]["datasets"]) != GALLERY_DATASETS or preset["encoder"] != ENCODER:
        raise SystemExit("the offline preset's gallery changed: update GALLERY_DATASETS / ENCODER here")
    crop = float(preset["multiview"]["crop"])
    db = image_gallery(list(GALLERY_DATASETS), ENCODER, {"kind": "flat"}, progress=progress, use_bundle=False)
    dataset_of = {s.id: name for name in GALLERY_DATASETS for s in load_benchmark(name).samples}
    paths = [p for p in db.meta.image_paths]
    bank = ViewBank.build(shared_model(ENCODER), paths, db.meta.ids, db.meta.groups, crop=crop,
                          progress=progress, use_bundle=False)
    rows = [(pid, dataset_of[pid], path) for pid, path in zip(db.meta.ids, paths, strict=True)]
    save_gallery_bundle(out / "gallery", db, bank, GALLERY_DATASETS, crop, [Path(p).name for _, _, p in rows],
                        [d for _, d, _ in rows], provenance={
                            "built_by": "scripts/build_assets.py",
                            "photos": "IM2GPS3k dev split (Flickr, CC) + OpenStreetView-5M sample (Mapillary, CC-BY-SA)",
                        })
    return rows


def build_thumbnails(out: Path, rows: list[tuple[str, str, str]]) -> None:
    from PIL import Image

    from geodemo.imageio import load_image
    from geodemo.retrieval.bundle import thumbnail_path

    root = out / "thumbnails"
    if root.exists():
        shutil.rmtree(root)
    for _pid, dataset, path in rows:
        image = load_image(path)
        image.thumbnail((THUMBNAIL_PX, THUMBNAIL_PX), Image.Resampling.LANCZOS)
        dst = thumbnail_path(dataset, Path(path).name, root)
        dst.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(dst) as tmp:
            image.save(tmp, format="JPEG", quality=70, optimize=True)


def build_examples(out: Path) -> None:
    """Ten photos spread over the dev split and the OSV sample, and their true location."""
    from geodemo.data import load_benchmark

    folder = out / "examples"
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    rows = []
    for name, count in EXAMPLES:
        samples = [s for s in load_benchmark(name).samples if s.image_path is not None]
        for s in samples[:: max(1, len(samples) // count)][:count]:
            file = Path(s.image_path).name
            shutil.copyfile(s.image_path, folder / file)
            rows.append([file, repr(float(s.lat)), repr(float(s.lon)), s.group or "", name, s.id])
    with atomic_open(folder / "examples.csv", "w", newline="") as f:  # geodemo.data.load_csv reads it
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["image", "lat", "lon", "photographer", "dataset", "gallery_id"])
        writer.writerows(rows)


def bundle_files(out: Path) -> list[Path]:
    """Every file of the bundle (the assets folder minus its README and index)."""
    return sorted(p for p in out.rglob("*") if p.is_file() and p.name not in ("README.md", "bundle.json"))


def check_sizes(out: Path) -> list[str]:
    """Problems with the size limits (a file >= 10 MB, the bundle > 25 MB); [] when within them."""
    files = bundle_files(out)
    problems = [f"{p.relative_to(out)} is {p.stat().st_size / 2**20:.1f} MiB (limit 10 MB)"
                for p in files if p.stat().st_size >= FILE_LIMIT]
    total = sum(p.stat().st_size for p in files)
    if total > BUNDLE_LIMIT:
        problems.append(f"the bundle holds {total / 2**20:.1f} MiB (limit 25 MB)")
    return problems


def write_index(out: Path) -> dict:
    files = bundle_files(out)
    index = {"total_bytes": sum(p.stat().st_size for p in files),
             "files": {str(p.relative_to(out)): {"bytes": p.stat().st_size, "sha256": sha256_file(p)} for p in files}}
    write_text(out / "bundle.json", json.dumps(index, indent=1, sort_keys=True) + "\n")
    return index


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=BUNDLE_DIR, help="bundle folder to write (default: assets/)")
    parser.add_argument("--verifier", type=Path, help="a trained offline-verifier folder (default: train it now)")
    parser.add_argument("--only", default=",".join(STEPS), help=f"comma-separated steps: {', '.join(STEPS)}")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    steps = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = sorted(set(steps) - set(STEPS))
    if unknown:
        parser.error(f"unknown step(s) {unknown}; choose from {', '.join(STEPS)}")
    out, progress = args.out, not args.no_progress
    out.mkdir(parents=True, exist_ok=True)
    if "countries" in steps:
        build_countries(out / "ne_110m_countries.geojson")
    if "models" in steps:
        copy_models(out)
    if "verifier" in steps:
        with tempfile.TemporaryDirectory() as tmp:
            trained = args.verifier or train_verifier(Path(tmp) / VERIFIER, progress)
            slim_verifier(trained, out / "checkpoints" / VERIFIER)
    if {"gallery", "thumbnails"} & set(steps):
        rows = build_gallery(out, progress)
        if "thumbnails" in steps:
            build_thumbnails(out, rows)
    if "examples" in steps:
        build_examples(out)
    index = write_index(out)
    for name, info in index["files"].items():
        if info["bytes"] >= 512 * 1024:
            print(f"{info['bytes'] / 2**20:7.2f} MiB  {name}")
    print(f"{len(index['files'])} files, {index['total_bytes'] / 2**20:.2f} MiB in {out}")
    problems = check_sizes(out)
    for p in problems:
        print(f"error: {p}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
