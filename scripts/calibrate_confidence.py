"""Fit the ``confidence`` calibration (see ``geodemo/pipeline/decision.py``) on the dev split.

    nice .venv/bin/python scripts/calibrate_confidence.py --preset offline --output offline

Every dev photo is located with its own photo and its photographer left out of the gallery; the
evidence behind each answer and whether it fell within 25 km are fitted with a logistic model whose
regularisation is chosen by photographer-fold cross-validated log-loss. Writes
``geodemo/pipeline/calibration/<output>.json`` with the fit and where it came from.
"""

from __future__ import annotations

import argparse
import datetime
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="offline")
    parser.add_argument("--benchmark", default="im2gps3k-dev", help="tune on the dev split only")
    parser.add_argument("--output", default="offline", help="calibration name (file stem)")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--radius-km", type=float, default=25.0)
    parser.add_argument("--limit", type=int, default=None, help="first N photos only (a quick check)")
    parser.add_argument("--no-clues", action="store_true",
                        help="switch the OCR clue stage off (reading 978 photos costs about an hour on 2 CPU cores)")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)

    from tqdm.auto import tqdm

    from geodemo.data import load_benchmark
    from geodemo.eval import QueryPhoto
    from geodemo.geo import haversine_km
    from geodemo.pipeline import GeoLocator
    from geodemo.pipeline.decision import CALIBRATION_DIR, fit_calibration, result_features
    from geodemo.scoring.fusion import group_folds

    dataset = load_benchmark(args.benchmark)
    samples = dataset.samples[: args.limit] if args.limit else dataset.samples
    overrides = {"clues": {"enabled": False}} if args.no_clues else {}
    locator = GeoLocator.from_preset(args.preset, gallery={"progress": not args.no_progress}, **overrides).warmup()
    rows, t0 = [], time.perf_counter()
    feats, bank = None, None
    if not locator.config.get("descriptor"):  # cached embeddings and gallery views, as scripts/ablate.py uses
        from geodemo.models.features import image_features

        feats = image_features(locator.config["encoder"], dataset, progress=not args.no_progress)
        bank = locator.view_bank()
    for i, s in enumerate(tqdm(samples, desc=f"locating ({args.preset}, photographer left out)",
                               disable=args.no_progress)):
        pre = {}
        if feats is not None and feats.valid[i]:
            pre["embedding"] = feats.embeddings[i]
            pre["views"] = bank.views_of(s.id) if bank is not None else None
        r = locator.locate_query(QueryPhoto(s.id, s.image_path, s.group), **pre)
        err = float(haversine_km(np.array([[r.lat, r.lon]]), np.array([[s.lat, s.lon]]))[0]) \
            if np.isfinite(r.lat) else float("inf")
        rows.append((s.id, s.group, result_features(r), err))
    elapsed = time.perf_counter() - t0
    x = np.stack([row[2] for row in rows])
    hit = np.array([row[3] < args.radius_km for row in rows])
    folds = group_folds([row[1] for row in rows], [row[0] for row in rows], args.folds)
    try:
        commit = subprocess.check_output(["git", "rev-parse", "--short", "HEAD"], text=True).strip()
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown"
    provenance = {
        "split": args.benchmark, "preset": args.preset, "overrides": overrides, "commit": commit,
        "date": datetime.date.today().isoformat(),
        "command": "scripts/calibrate_confidence.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "protocol": "each photo located with its photo and photographer left out of the gallery; C chosen by "
                    f"{args.folds}-fold photographer cross-validated log-loss; final fit on every photo",
        "seconds": round(elapsed, 1),
    }
    cal, report = fit_calibration(x, hit, folds, args.radius_km, provenance=provenance)
    path = cal.save(CALIBRATION_DIR / f"{args.output}.json")
    print(json.dumps(report, indent=1))
    print(f"coef {dict(zip(cal.features, np.round(cal.coef, 3), strict=True))}, intercept {cal.intercept:.3f}; wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
