"""Fit the decision models of every source set (``geodemo/pipeline/decision.py``) on the dev split.

    nice .venv/bin/python scripts/calibrate_confidence.py --preset offline \
        --recorded-lmm gemini-2.0-flash=../shared/data/peer-predictions/gemini-2.0-flash_im2gps3k-dev.csv \
        --recorded-candidates geoestimation-isns=../shared/data/peer-predictions/geoestimation-isns_im2gps3k-dev.csv

Every dev photo is located once with the preset and every recorded source, its photographer left out of the
gallery and verified by the fold verifier that never saw that photographer (``--cross-fit``). For each
subset of the sources (``offline``, ``offline+gemini-2.0-flash``, ...), the decision model is fitted on
every photo (family and regularisation chosen by photographer-fold log-loss) and written with its
provenance to ``geodemo/pipeline/calibration/decision/<source set>.json``; the table of each source set
(every photo decided by a model fitted without its photographer) is printed and saved in ``--out``.
"""

from __future__ import annotations

import argparse
import datetime
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import geodemo  # noqa: E402,F401 - torchvision guard before any model code
from geodemo.cli import add_recorded_arguments  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="offline", help="the preset whose own candidates are the base source")
    parser.add_argument("--benchmark", default="im2gps3k-dev", help="tune on the dev split only")
    add_recorded_arguments(parser)
    parser.add_argument("--folds", type=int, default=5, help="photographer folds for the choice and the table")
    parser.add_argument("--cross-fit", default="auto",
                        help="fold verifier pattern (e.g. offline-verifier-fold{}of3); 'auto' finds them, 'none' "
                             "verifies with the preset's own verifier")
    parser.add_argument("--limit", type=int, default=None, help="first N photos only (a quick check)")
    parser.add_argument("--lmm", action="store_true",
                        help="also run the preset's own LMM stage (e.g. Gemma 3 270M for offline): one more source")
    parser.add_argument("--out", type=Path, default=None, help="folder for results.jsonl and the table")
    parser.add_argument("--reuse", action="store_true", help="read the photos' results from --out instead of locating")
    parser.add_argument("--resume", action="store_true",
                        help="continue a killed run: the photos already in --out's results.jsonl are kept, the others "
                             "located and appended one at a time")
    parser.add_argument("--no-save", action="store_true", help="print the table, write no model")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)

    from geodemo.data.recorded import recorded_section
    from geodemo.errors import describe
    from geodemo.eval.decision_table import run_decision_study

    try:
        recorded = recorded_section(args.recorded_lmm, args.recorded_candidates)
        try:
            commit = subprocess.check_output(["git", "rev-parse", "--short", "HEAD"], text=True).strip()
        except (OSError, subprocess.CalledProcessError):
            commit = "unknown"
        provenance = {"commit": commit, "date": datetime.date.today().isoformat(),
                      "command": "scripts/calibrate_confidence.py " + " ".join(argv if argv is not None else sys.argv[1:]),
                      "protocol": "each photo located with its photographer left out of the gallery and verified by "
                                  "a fold verifier trained without that photographer; family and C chosen by "
                                  f"{args.folds}-fold photographer cross-validated log-loss; final fit on every photo"}
        out = args.out or Path("runs") / f"decision-{args.benchmark}-{args.preset}"
        print(run_decision_study(args.benchmark, args.preset, recorded, out, reuse=args.reuse, limit=args.limit,
                                 num_folds=args.folds, save=not args.no_save, cross_fit=args.cross_fit,
                                 progress=not args.no_progress, provenance=provenance, use_lmm=args.lmm,
                                 resume=args.resume))
    except (ValueError, FileNotFoundError, KeyError) as exc:
        print(f"error: {describe(exc)[0]}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
