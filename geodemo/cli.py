"""Command line: ``python -m geodemo locate PHOTO [--preset offline] [--json]``.

Prints the :class:`~geodemo.result.LocationResult` as JSON (``--json``) or as a short summary.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence

__all__ = ["main", "build_parser"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m geodemo", description="Worldwide photo geo-localization.")
    sub = parser.add_subparsers(dest="command", required=True)

    loc = sub.add_parser("locate", help="locate one photo")
    loc.add_argument("photo", help="path of the photo (JPEG, PNG, ...)")
    loc.add_argument("--preset", default="offline", help="g3 | dualgeo | offline, or a preset JSON path")
    loc.add_argument("--json", action="store_true", help="print the whole LocationResult as JSON")
    lmm = loc.add_mutually_exclusive_group()
    lmm.add_argument("--lmm", dest="use_lmm", action="store_true", default=None, help="run the LMM stage")
    lmm.add_argument("--no-lmm", dest="use_lmm", action="store_false", help="skip the LMM stage")
    loc.add_argument("--lmm-backend", default=None, help="override the preset's LMM backend")
    loc.add_argument("--lmm-model", default=None, help="override the preset's LMM model")
    loc.add_argument("--top-k", type=int, default=None, help="neighbours to retrieve")
    loc.add_argument("--eps-km", type=float, default=None, help="DBSCAN radius in km")
    loc.add_argument("--min-samples", type=int, default=None, help="DBSCAN min_samples")
    loc.add_argument("--exclude-group", action="append", default=[], help="leave out a photographer's photos")
    loc.add_argument("--no-progress", action="store_true", help="no progress bars (first-time gallery builds)")

    sub.add_parser("presets", help="list the built-in presets")
    return parser


def _summary(result) -> str:
    lines = [
        f"{result.lat:.5f}, {result.lon:.5f}  {result.place or ''}",
        f"confidence {result.confidence:.2f}, uncertainty ~{result.uncertainty_km:.0f} km, "
        f"verifier {result.verifier}, preset {result.preset}",
    ]
    for c in sorted(result.candidates, key=lambda c: -(c.score or 0))[:5]:
        lines.append(f"  {c.source:<15} {c.lat:9.4f} {c.lon:10.4f}  score {c.score or 0:.3f}")
    for stage, message in result.errors.items():
        lines.append(f"  [{stage}] failed: {message}")
    for stage, how in result.unavailable.items():
        lines.append(f"  [{stage}] not installed: {how}")
    lines.append("  time: " + ", ".join(f"{k} {v:.2f}s" for k, v in result.timings.items()))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit status."""
    args = build_parser().parse_args(argv)
    if args.command == "presets":
        from geodemo.pipeline import list_presets, load_preset

        for name in list_presets():
            print(f"{name:10s} {load_preset(name).get('description', '')}")
        return 0

    from geodemo.errors import describe
    from geodemo.pipeline import GeoLocator, LocateOptions

    options = LocateOptions(
        top_k=args.top_k, eps_km=args.eps_km, min_samples=args.min_samples, use_lmm=args.use_lmm,
        lmm_backend=args.lmm_backend, lmm_model=args.lmm_model, exclude_groups=set(args.exclude_group),
    )
    try:
        locator = GeoLocator.from_preset(args.preset, gallery={"progress": not args.no_progress})
        result = locator.locate(args.photo, options)
    except Exception as exc:  # noqa: BLE001 - plain words for the user (GEODEMO_DEBUG=1 re-raises)
        if os.environ.get("GEODEMO_DEBUG"):
            raise
        print(f"error: {describe(exc)[0]}", file=sys.stderr)
        return 2
    print(json.dumps(result.to_dict(), indent=2, ensure_ascii=False) if args.json else _summary(result))
    return 0
