"""Command line: ``python -m geodemo locate PHOTO [--preset offline] [--json]``.

Prints the :class:`~geodemo.result.LocationResult` as JSON (``--json``) or as a short summary.
Every failure is one ``error: ...`` line on stderr (exit status 2 for bad input or options, 1 for
anything else), never a traceback; a result some stage failed for is flagged as degraded.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
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

    sub.add_parser("presets", help="list the built-in presets")
    return parser


_FLAGS = {"top_k": "--top-k", "eps_km": "--eps-km", "min_samples": "--min-samples",
          "lmm_backend": "--lmm-backend", "lmm_model": "--lmm-model", "lmm_samples": "--lmm-samples"}
log = logging.getLogger("geodemo.cli")


def _summary(result) -> str:
    lines = []
    if result.errors:
        lines.append(f"DEGRADED RESULT: {', '.join(result.errors)} failed; the rest of the pipeline ran")
    lines += [
        f"{result.lat:.5f}, {result.lon:.5f}  {result.place or ''}",
        f"confidence {result.confidence:.2f}, uncertainty ~{result.uncertainty_km:.0f} km, "
        f"verifier {result.verifier}, preset {result.preset}",
    ]
    for c in sorted(result.candidates, key=lambda c: -(c.score or 0))[:5]:
        lines.append(f"  {c.source:<15} {c.lat:9.4f} {c.lon:10.4f}  score {c.score or 0:.3f}")
    for stage, message in result.errors.items():
        lines.append(f"  [{stage}] {message}")
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

    try:
        return _locate(args)
    except Exception as exc:  # noqa: BLE001 - one line for the user, the traceback in the debug log
        log.debug("locate failed", exc_info=True)
        print(f"error: {_one_line(exc)}", file=sys.stderr)
        return 1


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 500 else text[:497] + "..."


def _locate(args: argparse.Namespace) -> int:
    from geodemo.imageio import ImageError
    from geodemo.models.base import ModelUnavailableError
    from geodemo.paths import MissingResourceError
    from geodemo.pipeline import GeoLocator, LocateOptions
    from geodemo.pipeline.locator import InvalidOptionError

    try:
        options = LocateOptions(
            top_k=args.top_k, eps_km=args.eps_km, min_samples=args.min_samples, use_lmm=args.use_lmm,
            lmm_backend=args.lmm_backend, lmm_model=args.lmm_model, exclude_groups=set(args.exclude_group),
        )
    except InvalidOptionError as exc:
        print(f"error: {_FLAGS.get(exc.option, exc.option)} {exc.reason}", file=sys.stderr)
        return 2
    try:
        locator = GeoLocator.from_preset(args.preset, gallery={"progress": False})
        result = locator.locate(args.photo, options)
    except (ImageError, MissingResourceError, ModelUnavailableError, KeyError, FileNotFoundError) as exc:
        print(f"error: {_one_line(exc)}", file=sys.stderr)
        return 2
    if not (math.isfinite(result.lat) and math.isfinite(result.lon)):
        failed = "; ".join(f"{k}: {v}" for k, v in result.errors.items()) or "no stage produced one"
        print(f"error: no location could be predicted ({_one_line(Exception(failed))})", file=sys.stderr)
        return 1
    if result.errors:
        print(f"warning: degraded result: {', '.join(result.errors)} failed; the rest of the pipeline ran",
              file=sys.stderr)
    if args.json:
        print(json.dumps({**result.to_dict(), "degraded": bool(result.errors)}, indent=2, ensure_ascii=False))
    else:
        print(_summary(result))
    return 0
