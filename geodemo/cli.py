"""Command line: ``geodemo locate PHOTO [--preset offline] [--json]`` (or ``python -m geodemo ...``).

Commands: ``locate``, ``presets``, ``index``, ``evaluate`` and ``train`` (a checkout's
``scripts/evaluate.py`` and ``scripts/train.py``), ``space-deploy`` (:mod:`geodemo.space`).

Prints the :class:`~geodemo.result.LocationResult` as JSON (``--json``) or as a short summary.
``python -m geodemo index --out DIR --preset g3 --csv photos.csv --images photos.tar`` builds a retrieval
database of the preset's descriptor (:mod:`geodemo.retrieval.builder`; resumable).
Every failure is one ``error: ...`` line on stderr (exit status 2 for bad input or options, 1 for
anything else), never a traceback; a result some stage failed for (or was not installed for) is flagged
as degraded.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import math
import sys
import textwrap
from collections.abc import Sequence

from geodemo import env
from geodemo.data import load_benchmark, load_csv, load_exif_folder
from geodemo.data.recorded import recorded_section
from geodemo.errors import GeodemoError, describe
from geodemo.models.base import ModelUnavailableError
from geodemo.models.descriptors import load_descriptor
from geodemo.paths import REPO_ROOT, MissingResourceError
from geodemo.pipeline import GeoLocator, LocateOptions, list_presets, load_preset
from geodemo.pipeline.choice import choose_preset
from geodemo.pipeline.options import InvalidOptionError, add_option_flags, flag_of, options_from_flags
from geodemo.pipeline.presets import with_random_weights
from geodemo.retrieval.builder import PhotoSource, ShardSource, build_database, descriptor_spec
from geodemo.retrieval.database import INDEX_KINDS
from geodemo.space import deploy

__all__ = ["main", "build_parser"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="geodemo", description="Worldwide photo geo-localization.")
    sub = parser.add_subparsers(dest="command", required=True)

    loc = sub.add_parser("locate", help="locate one photo")
    loc.add_argument("photo", help="path of the photo (JPEG, PNG, ...)")
    loc.add_argument("--preset", default=None,
                     help="a preset name (`presets` lists them) or a preset JSON path (default: the first of "
                          "GEODEMO_PRESETS, geoclip-plus,offline, whose weights are here or downloadable)")
    loc.add_argument("--json", action="store_true", help="print the whole LocationResult as JSON")
    add_option_flags(loc)  # one flag per option a stage lets a call override (--top-k, --lmm, ...)
    loc.add_argument("--exclude-group", action="append", default=[], help="leave out a photographer's photos")
    add_recorded_arguments(loc)
    loc.add_argument("--no-progress", action="store_true", help="no progress bars (first-time gallery builds)")
    loc.add_argument("--weights", choices=["pretrained", "random"], default="pretrained",
                     help="'random': untrained models of the real architectures (tests, timing)")

    sub.add_parser("presets", help="list the built-in presets and their stages")
    add_index_parser(sub)
    for name, what in _SCRIPT_COMMANDS.items():
        cmd = sub.add_parser(name, help=f"{what} (scripts/{name}.py; `geodemo {name} --help`)", add_help=False)
        cmd.add_argument("args", nargs=argparse.REMAINDER, help=f"the options of scripts/{name}.py")
    space = sub.add_parser("space-deploy", help="upload this checkout to a Hugging Face Space",
                           description="Create (or update) a Gradio Space and upload the files a Space needs "
                           "(huggingface_hub upload_folder: binaries go through Xet, no git history is sent).")
    space.add_argument("repo_id", help="the Space, e.g. your-name/geodemo")
    space.add_argument("--hardware", default="cpu-basic",
                       help="Space hardware (cpu-basic, cpu-upgrade, t4-small, zero-a10g, ...): a CPU one gets the "
                            "CPU torch wheel, a GPU one the CUDA wheel")
    space.add_argument("--private", action="store_true", help="create the Space private")
    space.add_argument("--dry-run", action="store_true", help="list the files and requirements, upload nothing")
    return parser


def add_recorded_arguments(parser: argparse.ArgumentParser) -> None:
    """``--recorded-lmm`` and ``--recorded-candidates``: other systems' recorded predictions, keyed by photo file name."""
    parser.add_argument("--recorded-lmm", metavar="NAME=FILE", default=None,
                        help="the LMM stage's answers come from this file of recorded predictions (e.g. "
                             "gemini-2.0-flash=predictions.csv) instead of a model")
    parser.add_argument("--recorded-candidates", metavar="NAME=FILE", action="append", default=[],
                        help="another geolocator's recorded predictions join the candidates as source NAME "
                             "(repeatable)")


# commands whose options live in a script of the checkout (run with the rest of the command line)
_SCRIPT_COMMANDS = {"evaluate": "score a predictor on a benchmark", "train": "train a model from a training preset"}


def _script(name: str, argv: list[str]) -> int:
    """``scripts/<name>.py``'s ``main(argv)`` (a checkout's scripts; an installed wheel has none)."""


    path = REPO_ROOT / "scripts" / f"{name}.py"
    if not path.is_file():
        print(f"error: `geodemo {name}` runs scripts/{name}.py of a geodemo checkout, and this installation has "
              f"none: clone the repository and run it there", file=sys.stderr)
        return 2
    spec = importlib.util.spec_from_file_location(f"geodemo_script_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return int(module.main(argv) or 0)


def _space_deploy(args: argparse.Namespace) -> int:

    report = deploy(args.repo_id, hardware=args.hardware, private=args.private, dry_run=args.dry_run)
    print(report.summary())
    return 0


def add_index_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """``index``: photos or feature shards -> a saved retrieval database of a preset's descriptor."""

    idx = sub.add_parser("index", help="build a retrieval database for a preset (gallery.path)",
                         description="Describe photos (or feature shards) with a preset's descriptor and save a "
                         "retrieval database; point the preset's gallery.path to it. An interrupted build "
                         "resumes when the same command is run again.")
    idx.add_argument("--out", required=True, metavar="DIR", help="folder to write the database into")
    idx.add_argument("--preset", default="offline", help="preset whose descriptor and gallery.index are used")
    src = idx.add_mutually_exclusive_group(required=True)
    src.add_argument("--benchmark", help="a named photo set, e.g. im2gps3k-dev")
    src.add_argument("--csv", help="a CSV of geo-tagged photos (any format geodemo reads)")
    src.add_argument("--folder", help="a folder of photos with EXIF GPS positions")
    src.add_argument("--shards", help="a folder of feature shards from scripts/extract_features.py")
    idx.add_argument("--images", help="photo folder or .tar for --csv (default: images/ beside the CSV)")
    idx.add_argument("--limit", type=int, default=None, help="only the first N photos")
    idx.add_argument("--checkpoint", default=None, help="override the descriptor's checkpoint")
    idx.add_argument("--weights", choices=["pretrained", "random"], default=None,
                     help="'random': untrained models of the real architectures (tests, timing)")
    idx.add_argument("--seed", type=int, default=None, help="seed of random weights")
    idx.add_argument("--index-kind", choices=INDEX_KINDS, default=None,
                     help="override the preset's gallery.index.kind (factory: FAISS's own, e.g. IVFPQR for millions of rows)")
    idx.add_argument("--chunk-size", type=int, default=256, help="rows described per saved chunk")
    idx.add_argument("--device", default=None, help="auto | cpu | cuda (default: the preset's)")
    idx.add_argument("--overwrite", action="store_true", help="discard an interrupted build or database in --out")
    idx.add_argument("--no-progress", action="store_true", help="no progress bars")
    return idx


def _index(args: argparse.Namespace) -> int:

    preset = load_preset(args.preset)
    spec = descriptor_spec(preset)
    if args.weights == "random" and args.checkpoint is None:
        spec.pop("checkpoint", None)  # untrained models of the real architectures: the preset's weights are not read
    for key in ("checkpoint", "weights", "seed"):
        if getattr(args, key) is not None:
            spec[key] = getattr(args, key)
    index = dict((preset.get("gallery") or {}).get("index") or {})
    if args.index_kind:
        index["kind"] = args.index_kind
    if args.shards:
        source = ShardSource(args.shards)
    else:
        if args.benchmark:
            ds = load_benchmark(args.benchmark)
        elif args.csv:
            ds = load_csv(args.csv, images_dir=args.images)
        else:
            ds = load_exif_folder(args.folder)
        source = PhotoSource(ds.subset(args.limit) if args.limit else ds)
    descriptor = load_descriptor(spec, device=args.device or preset.get("device", "auto"))
    report = build_database(source, descriptor, args.out, index=index, chunk_size=args.chunk_size,
                            progress=not args.no_progress, overwrite=args.overwrite)
    print(report.summary())
    return 0


log = logging.getLogger("geodemo.cli")


def _without(result) -> str:
    """The stages the answer did without ("lmm failed, clues not installed"); empty when none."""
    parts = [f"{stage} failed" for stage in result.errors]
    parts += [f"{stage} not installed" for stage in result.unavailable if stage not in result.errors]
    return ", ".join(parts)


def _summary(result) -> str:
    lines = []
    if _without(result):
        lines.append(f"DEGRADED RESULT: {_without(result)}; the rest of the pipeline ran")
    lines += [
        f"{result.lat:.5f}, {result.lon:.5f}  {result.place or ''}",
        f"confidence {result.confidence:.2f}, uncertainty ~{result.uncertainty_km:.0f} km, "
        f"verifier {result.verifier}, preset {result.preset}",
    ]
    if result.decision:
        d = result.decision
        probs = ", ".join(f"P(<{k[2:-2]} km) {v:.2f}" for k, v in d.items() if k.startswith("p_"))
        lines.append(f"decided by {d.get('calibration') or d.get('rule')}: source {d.get('source')}"
                     + (f", {probs}" if probs else ""))
    for c in sorted(result.candidates, key=lambda c: -(c.score or 0))[:5]:
        lines.append(f"  {c.source:<15} {c.lat:9.4f} {c.lon:10.4f}  score {c.score or 0:.3f}")
    for stage, message in result.errors.items():
        lines.append(f"  [{stage}] failed: {message}")
    for stage, how in result.unavailable.items():
        lines.append(f"  [{stage}] not installed: {how}")
    lines.append("  time: " + ", ".join(f"{k} {v:.2f}s" for k, v in result.timings.items()))
    return "\n".join(lines)


def _presets_text() -> str:
    """Every preset: its name, what it is, and its stages in order (``*`` = a stage of the paper it runs
    or builds on)."""


    blocks = []
    for name in list_presets():
        locator = GeoLocator.from_preset(name)
        cfg = locator.config
        kind = (f"faithful {cfg['paper']}" if cfg.get("paper")
                else f"offline analogue of {cfg['analogue_of']}" if cfg.get("analogue_of")
                else f"improves {cfg['based_on']}" if cfg.get("based_on") else "ours")
        lines = [f"{name}  ({kind})"]
        lines += textwrap.wrap(cfg.get("description", ""), 100, initial_indent="    ", subsequent_indent="    ")
        stages = [f"{stage}{'*' if paper else ''}" for stage, _, paper in locator.describe()]
        lines += textwrap.wrap("stages: " + " -> ".join(stages), 100, initial_indent="    ",
                               subsequent_indent="        ", break_on_hyphens=False)
        blocks.append("\n".join(lines))
    blocks.append("* = a stage of the paper the preset runs or builds on")
    return "\n\n".join(blocks)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in _SCRIPT_COMMANDS:  # every option, --help included, belongs to the script
        return _script(argv[0], argv[1:])
    args = build_parser().parse_args(argv)
    if args.command == "index":

        try:
            return _index(args)
        except KeyboardInterrupt:
            print("interrupted: run the same command again to resume", file=sys.stderr)
            return 130
        except (MissingResourceError, ModelUnavailableError, FileNotFoundError, FileExistsError, KeyError,
                ValueError) as exc:
            print(f"error: {exc.args[0] if isinstance(exc, KeyError) and exc.args else exc}", file=sys.stderr)
            return 2
    if args.command == "presets":
        print(_presets_text())
        return 0
    if args.command == "space-deploy":

        try:
            return _space_deploy(args)
        except (GeodemoError, ValueError) as exc:
            print(f"error: {_one_line(exc)}", file=sys.stderr)
            return 2

    try:
        return _locate(args)
    except Exception as exc:  # noqa: BLE001 - one line for the user, the traceback in the debug log
        if env.get_flag("GEODEMO_DEBUG"):
            raise
        log.debug("locate failed", exc_info=True)
        print(f"error: {_one_line(exc)}", file=sys.stderr)
        return 1


def _one_line(exc: BaseException) -> str:
    """``exc`` in plain words (no class names; the user's own paths kept) on one line of at most 500 characters."""

    text = " ".join(describe(exc, keep_paths=True)[0].split())
    return text if len(text) <= 500 else text[:497] + "..."


def _locate(args: argparse.Namespace) -> int:

    try:
        options = LocateOptions(options_from_flags(args), exclude_groups=set(args.exclude_group))
    except InvalidOptionError as exc:
        print(f"error: {flag_of(exc.option)} {exc.reason}", file=sys.stderr)
        return 2
    if args.preset is None:

        choice = choose_preset()
        args.preset = choice.preset
        if choice.passed_over:
            print(f"note: {choice.explanation}", file=sys.stderr)
    try:

        recorded = recorded_section(args.recorded_lmm, args.recorded_candidates)
        config = load_preset(args.preset, gallery={"progress": not args.no_progress},
                             **({"recorded": recorded} if recorded else {}))
        locator = GeoLocator(with_random_weights(config) if args.weights == "random" else config)
        result = locator.locate(args.photo, options)
    except (GeodemoError, KeyError, FileNotFoundError, ValueError) as exc:  # bad input or a missing resource: exit 2
        if env.get_flag("GEODEMO_DEBUG"):
            raise
        log.debug("locate failed", exc_info=True)
        print(f"error: {_one_line(exc)}", file=sys.stderr)
        return 2
    if not (math.isfinite(result.lat) and math.isfinite(result.lon)):
        failed = "; ".join([*(f"{k}: {v}" for k, v in result.errors.items()),
                            *(f"{k}: not installed: {v}" for k, v in result.unavailable.items())])
        failed = failed or "no stage produced one"
        print(f"error: no location could be predicted ({_one_line(Exception(failed))})", file=sys.stderr)
        return 1
    if _without(result):
        print(f"warning: degraded result: {_without(result)}; the rest of the pipeline ran", file=sys.stderr)
    if args.json:
        print(json.dumps({**result.to_dict(), "degraded": bool(_without(result))}, indent=2, ensure_ascii=False))
    else:
        print(_summary(result))
    return 0
