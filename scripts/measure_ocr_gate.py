#!/usr/bin/env python
"""Recall and pass rate of the OCR text gate (``geodemo.clues.gate``) on the dev split and the OCR
test signs; the threshold is chosen by photographer-fold cross-validation, never on the figure shown.

For every dev photo it needs the OCR report read without the gate (``read_clues`` with the
preset's clue settings: cached on disk, so a shared ``GEODEMO_CACHE`` that already holds the dev
split's reports makes this quick) and the gate's score. A photo "where OCR reads text" is one
whose report the reader shows (``summary``: enough letters to name a language); a photo with any
kept word at all is reported too.

Cross-validation: photographers are split into ``--folds`` folds (``geodemo.data.folds``); for
each fold the threshold is the highest one that keeps ``--target`` of the other folds' photos with
any word read (``--positives any``; 73 dev photos, where the photos whose text OCR reads are 5, too
few to place a threshold: with 2 of them in the training folds the rule followed their minimum), and
the fold's photos are scored with it. The pooled held-out recall and pass rate are the figures; the
threshold for ``ClueConfig.gate_threshold`` is the same rule over all folds.

    GEODEMO_CACHE=/work/cache-shared python scripts/measure_ocr_gate.py
    python scripts/measure_ocr_gate.py --cached-only --out gate.json   # photos already read only
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def highest_threshold(scores: np.ndarray, positive: np.ndarray, target: float) -> int:
    """The highest integer threshold whose pass (``score >= t``) keeps ``target`` of the positives."""
    pos = np.sort(scores[positive])
    if len(pos) == 0:
        return 0
    allowed_misses = int(np.floor((1.0 - target) * len(pos) + 1e-9))
    return int(pos[allowed_misses])


def cross_validate(scores: np.ndarray, positive: np.ndarray, folds: np.ndarray, target: float) -> dict:
    """Held-out pass decisions per photo, with the threshold each fold got from the others."""
    passed = np.zeros(len(scores), dtype=bool)
    per_fold = []
    for f in np.unique(folds):
        train, test = folds != f, folds == f
        t = highest_threshold(scores[train], positive[train], target)
        passed[test] = scores[test] >= t
        per_fold.append({"fold": int(f), "threshold": t, "photos": int(test.sum()),
                         "text_photos": int((test & positive).sum())})
    return {"passed": passed, "folds": per_fold}


def _rate(mask: np.ndarray, of: np.ndarray) -> str:
    n = int(of.sum())
    return f"{(mask & of).sum()}/{n} = {100.0 * (mask & of).sum() / n:.1f}%" if n else "n/a"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", default="offline", help="preset whose clue settings are measured")
    ap.add_argument("--folds", type=int, default=5, help="photographer folds of the cross-validation")
    ap.add_argument("--target", type=float, default=0.8, help="recall the threshold keeps on training folds")
    ap.add_argument("--positives", choices=("any", "reads"), default="any",
                    help="photos the threshold must keep: any word read, or text the OCR reads (a language)")
    ap.add_argument("--cached-only", action="store_true", help="leave out photos whose OCR report is not cached")
    ap.add_argument("--out", type=Path, help="write every photo's score and report to this JSON file")
    ap.add_argument("--json", action="store_true",
                    help="print the threshold, folds and signs as JSON instead of the report (the report goes to stderr)")
    args = ap.parse_args(argv)
    say = functools.partial(print, file=sys.stderr if args.json else sys.stdout)

    from tqdm.auto import tqdm

    from geodemo.clues.gate import text_score
    from geodemo.clues.reader import ClueConfig, cached_clues, read_clues
    from geodemo.data import load_benchmark
    from geodemo.data.folds import group_fold
    from geodemo.imageio import load_image
    from geodemo.pipeline.presets import load_preset

    section = {k: v for k, v in (load_preset(args.preset).get("clues") or {}).items() if k != "apply_prior"}
    cfg = ClueConfig.from_dict({**section, "enabled": True, "cache": True, "gate": False})
    dev = load_benchmark("im2gps3k-dev")
    rows = []
    for s in tqdm(dev.samples, desc="dev photos", unit="photo"):
        image = load_image(s.image_path)
        report = cached_clues(image, cfg) if args.cached_only else read_clues(image, cfg)
        if report is None:
            continue
        rows.append({"id": s.id, "author": s.group or s.id, "score": text_score(image, cfg.gate_side),
                     "reads_text": bool(report.summary), "any_text": bool(report.text), "text": report.text,
                     "language": report.language})
    if not rows:
        raise SystemExit("no dev photo has a cached OCR report; run without --cached-only")
    scores = np.array([r["score"] for r in rows], dtype=float)
    reads, any_text = np.array([r["reads_text"] for r in rows]), np.array([r["any_text"] for r in rows])
    folds = np.array([group_fold(r["author"], args.folds) for r in rows])
    positive = any_text if args.positives == "any" else reads
    cv = cross_validate(scores, positive, folds, args.target)
    final = highest_threshold(scores, positive, args.target)

    say(f"# OCR gate on {len(rows)} of {len(dev.samples)} dev photos (preset {args.preset})")
    say(f"OCR reads text in {reads.sum()} photos, keeps some word in {any_text.sum()}")
    kept = "photos with any word read" if args.positives == "any" else "photos where OCR reads text"
    say(f"\n{args.folds}-fold photographer cross-validation (threshold keeps {args.target:.0%} of the other "
          f"folds' {kept}):")
    for f in cv["folds"]:
        say(f"  fold {f['fold']}: threshold {f['threshold']}, {f['photos']} photos, {f['text_photos']} positive")
    everyone = np.ones(len(rows), dtype=bool)
    say(f"  held-out recall on photos where OCR reads text: {_rate(cv['passed'], reads)}")
    say(f"  held-out recall on photos with any word read:    {_rate(cv['passed'], any_text)}")
    say(f"  held-out share of photos let through to OCR:     {_rate(cv['passed'], everyone)}")
    say(f"\nthreshold from all folds (ClueConfig.gate_threshold): {final}")

    sys.path.insert(0, str(next((REPO / "tests").rglob("test_clues.py"), REPO / "tests").parent))
    try:
        from test_clues import SIGNS, render_sign
    except ImportError:
        SIGNS = []
    signs = [(script, text_score(render_sign(font, text), cfg.gate_side)) for script, font, text, *_ in SIGNS
             if Path(font).exists()]
    if signs:
        kept = sum(score >= final for _, score in signs)
        say(f"OCR test signs let through at {final}: {kept}/{len(signs)} "
              f"({', '.join(f'{s} {v}' for s, v in signs)})")
    if args.json:
        print(json.dumps({"threshold": final, "folds": cv["folds"], "signs": signs}, indent=1))
    if args.out:
        from geodemo.storage import write_json

        write_json(args.out, {"threshold": final, "folds": cv["folds"], "rows": rows, "signs": signs}, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
