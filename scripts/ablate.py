#!/usr/bin/env python
"""Ablation of a preset's stages in one run, leave-one-photographer-out.

    python scripts/ablate.py --benchmark im2gps3k-dev --preset offline
    python scripts/ablate.py --benchmark im2gps3k-dev --preset dualgeo-offline
    python scripts/ablate.py --benchmark im2gps3k-dev --preset g3-offline

Pipeline presets: every photo of the benchmark is located once with the preset (its own photo and every
photo by the same photographer are excluded from the gallery; the learned verifier that scores it was
trained without its photographer, ``--cross-fit``); per-photo results are stored as JSON lines in
``--out``; the fusion table (weights cross-validated over photographers) and the LMM stage on the first
``--lmm-subset`` photos follow. Offline analogues (``dualgeo-offline``, ``g3-offline``): each paper's stages
as rows, every photo scored by the fold model trained without its photographer (make them with
``python scripts/train.py --preset NAME --folds 3``); for ``dualgeo-offline`` the first ``--lmm-subset``
photos also go through the preset's LMM and decision stages over the same fold-held-out neighbours
(+ LMM rows, records in ``results-lmm.jsonl``). The library is ``geodemo.eval.ablation``.

With recorded sources (``--recorded-lmm NAME=FILE``, ``--recorded-candidates NAME=FILE``) it prints the
decision table instead: every subset of the sources beside the preset's own candidates, each source alone,
today's decision, the calibrated decision (photographer folds) and the oracle
(``geodemo.eval.decision_table``; ``--reuse`` reads the photos' results that
``scripts/calibrate_confidence.py --out`` stored in the same folder).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import geodemo  # noqa: E402,F401 - torchvision guard before any model code
from geodemo.eval.ablation import AblationOptions, run_ablation  # noqa: E402
from geodemo.train.folds import is_fold_trained  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--benchmark", default="im2gps3k-dev", help="named photo set (tune on the dev split only)")
    parser.add_argument("--preset", default="offline", help="pipeline preset whose stages are switched off in turn")
    parser.add_argument("--limit", type=int, default=None, help="first N photos only (debugging)")
    parser.add_argument("--out", type=Path, default=None, help="folder for results.jsonl and table.md")
    parser.add_argument("--reuse", action="store_true", help="recompute the table from stored results")
    parser.add_argument(
        "--cross-fit", default="auto",
        help="fold checkpoint pattern, e.g. offline-verifier-fold{}of3: each photo is verified by an aligner "
             "trained without its photographer. 'auto': <aligner>-fold{}of3 when present; 'none': the preset's "
             "aligner as is (only honest if it never saw the benchmark's photos)")
    parser.add_argument("--folds", type=int, default=3, help="offline analogues: number of photographer folds")
    parser.add_argument("--lmm-subset", type=int, default=50, metavar="N",
                        help="also locate the first N photos with the LMM stage on and add the + LMM rows (0: skip)")
    parser.add_argument("--fusion", action=argparse.BooleanOptionalAction, default=True,
                        help="add the log-linear fusion rows (weights cross-validated over photographer folds)")
    parser.add_argument("--save-weights", metavar="NAME",
                        help="fit the fusion weights on every photo and save geodemo/scoring/weights/NAME.json "
                             "(dev split only)")
    parser.add_argument("--tau-km", type=float, default=3000.0, help="fusion target width (see fit_fusion)")
    parser.add_argument("--cached-only", action="store_true",
                        help="offline analogues: score only the photos whose label maps are already cached")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    from geodemo.cli import add_recorded_arguments

    add_recorded_arguments(parser)
    args = parser.parse_args(argv)
    if args.save_weights and args.benchmark != "im2gps3k-dev":
        parser.error("fusion weights are fitted on the dev split only (im2gps3k-dev)")
    from geodemo.models.base import ModelUnavailableError
    from geodemo.paths import MissingResourceError

    try:
        if args.recorded_lmm or args.recorded_candidates:
            from geodemo.data.recorded import recorded_section
            from geodemo.eval.decision_table import run_decision_study

            out = args.out or Path("runs") / f"decision-{args.benchmark}-{args.preset}"
            print(run_decision_study(args.benchmark, args.preset,
                                     recorded_section(args.recorded_lmm, args.recorded_candidates), out,
                                     reuse=args.reuse, limit=args.limit, num_folds=5, cross_fit=args.cross_fit,
                                     progress=not args.no_progress))
            return 0
        print(run_ablation(AblationOptions(
            benchmark=args.benchmark, preset=args.preset, limit=args.limit, out=args.out, reuse=args.reuse,
            cross_fit=args.cross_fit, lmm_subset=args.lmm_subset, fusion=args.fusion,
            save_weights=args.save_weights, tau_km=args.tau_km, num_folds=args.folds,
            progress=not args.no_progress, cached_only=args.cached_only, analogue=is_fold_trained(args.preset))))
    except (MissingResourceError, ModelUnavailableError, FileNotFoundError, KeyError, ValueError) as exc:
        print(f"error: {exc.args[0] if exc.args else exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
