#!/usr/bin/env python
"""Score a predictor on a benchmark and print our row beside the published ones.

Examples:
    .venv/bin/python scripts/evaluate.py --benchmark im2gps3k-dev --predictor density-prior
    .venv/bin/python scripts/evaluate.py --benchmark osv5m-sample --predictor random-gallery --limit 20
    .venv/bin/python scripts/evaluate.py --benchmark-csv my.csv --images photos/ --predictor geolocator --preset offline

Outputs go to ``--out`` (default ``runs/<benchmark>/<predictor>``): predictions.csv (resumable),
summary.json, table.md, and the accuracy per country (photos placed in Natural Earth outlines with
GeoPandas): countries.csv and the map countries.html. ``--explain`` (pipeline predictors) also keeps each photo's full result
in results/, writes attribution.csv (the stage that lost each failure) and prints the cause table;
the app's failure explorer opens such a folder.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

import geodemo  # noqa: E402,F401  (torchvision guard before any model import)
from geodemo.data import list_benchmarks, load_benchmark, load_csv  # noqa: E402
from geodemo.errors import GeodemoError, describe  # noqa: E402
from geodemo.eval import create_predictor, evaluate, list_predictors  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--benchmark", choices=list_benchmarks(), help="a named set under GEODEMO_SHARED")
    source.add_argument("--benchmark-csv", type=Path, help="any CSV in a supported format")
    parser.add_argument("--images", type=Path, help="photo folder (or .tar) for --benchmark-csv")
    parser.add_argument("--format", default="auto", help="CSV format for --benchmark-csv (default: detect)")
    parser.add_argument("--predictor", default="density-prior", choices=list_predictors(), help="what answers for each photo")
    parser.add_argument("--preset", default="offline", help="GeoLocator preset for --predictor geolocator")
    parser.add_argument("--predictions", metavar="NAME=FILE",
                        help="--predictor recorded: another system's recorded predictions (format detected)")
    parser.add_argument("--predictions-format", default="auto",
                        help="--predictor recorded: the file's format (generic, geoestimation, g3-predictions, "
                             "g3-responses, jsonl; default: detect)")
    from geodemo.cli import add_recorded_arguments

    add_recorded_arguments(parser)
    parser.add_argument(
        "--lmm",
        choices=["preset", "on", "off"],
        default="preset",
        help="--predictor geolocator: switch the preset's LMM stage on or off (output folder gets -lmm-on/-lmm-off)",
    )
    parser.add_argument(
        "--gallery",
        default="self",
        help="baseline gallery: 'self' (evaluated set, leave-one-photographer-out), 'geoclip-100k' or a CSV",
    )
    parser.add_argument("--radius-km", type=float, default=200.0, help="density-prior neighbourhood radius")
    parser.add_argument("--seed", type=int, default=0, help="random-gallery seed")
    parser.add_argument("--limit", type=int, default=None, help="evaluate only the first N photos")
    parser.add_argument("--batch-size", type=int, default=16, help="photos per predictor call")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default runs/<set>/<predictor>)")
    parser.add_argument("--fresh", action="store_true", help="ignore an existing predictions.csv instead of resuming")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars (scoring, galleries)")
    parser.add_argument(
        "--explain",
        action="store_true",
        help="keep each photo's full result, attribute every failure to the stage that lost it (attribution.csv)",
    )
    parser.add_argument("--failure-km", type=float, default=750.0, help="--explain: an error from here on is a failure")
    args = parser.parse_args(argv)
    if args.images is not None and args.benchmark_csv is None:
        parser.error("--images goes with --benchmark-csv")
    if (args.predictor == "recorded") != bool(args.predictions):
        parser.error("--predictions NAME=FILE goes with --predictor recorded (and it needs one)")
    if (args.recorded_lmm or args.recorded_candidates) and args.predictor != "geolocator":
        parser.error("--recorded-lmm and --recorded-candidates go with --predictor geolocator")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.benchmark:
        dataset = load_benchmark(args.benchmark)
    else:
        dataset = load_csv(args.benchmark_csv, images_dir=args.images, format=args.format)
    if dataset.tar_store is None and not any(s.image_path for s in dataset.samples):
        print(
            f"error: {dataset.name} has no images (metadata only); pass --benchmark-csv FILE --images DIR "
            "for a set whose photos you have",
            file=sys.stderr,
        )
        return 2
    options = {"gallery": args.gallery, "radius_km": args.radius_km, "seed": args.seed}
    if args.predictor == "recorded":
        options = {"predictions": args.predictions, "format": args.predictions_format}
    if args.predictor == "geolocator":
        from geodemo.data.recorded import recorded_section

        options = {"preset": args.preset, "progress": not args.no_progress,
                   "recorded": recorded_section(args.recorded_lmm, args.recorded_candidates)}
        if args.lmm != "preset":
            options["lmm"] = {"enabled": args.lmm == "on"}
    try:  # the preset's models and gallery load here: one that cannot load stops the run before any photo
        predictor = create_predictor(args.predictor, dataset, **options)
    except (GeodemoError, KeyError, FileNotFoundError, ValueError) as exc:
        print(f"error: {describe(exc, keep_paths=True)[0]}", file=sys.stderr)
        return 2
    suffix = f"-{args.gallery}" if args.predictor != "geolocator" and args.gallery != "self" else ""
    if args.predictor == "geolocator" and args.lmm != "preset":
        suffix = f"-lmm-{args.lmm}"
    if args.predictor == "geolocator" and (args.recorded_lmm or args.recorded_candidates):
        suffix += "+" + "+".join(sorted(n for role in options["recorded"].values() for n in role))
    name = predictor.name.replace(":", "-") + suffix
    out = args.out or REPO_ROOT / "runs" / dataset.name / name
    try:
        report = evaluate(
            predictor,
            dataset,
            out,
            limit=args.limit,
            batch_size=args.batch_size,
            progress=not args.no_progress,
            resume=not args.fresh,
            explain=args.explain,
        )
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    from geodemo.viz.curves import compare_runs

    table, curves = compare_runs(report.out_dir.parent, dataset.name)
    print(table)
    print(f"\naccuracy-against-distance curves of these runs: {curves}\n")
    if args.explain:
        from geodemo.eval.attribution import attribute_run, cause_table_markdown

        ids = [s.id for s in dataset.subset(args.limit).samples]
        attribution = attribute_run(report.out_dir, ids, threshold_km=args.failure_km)
        print(cause_table_markdown(attribution))
        print()
    from geodemo.eval.countries import write_country_table
    from geodemo.viz.country_map import write_country_map

    countries, countries_csv = write_country_table(report.out_dir)
    countries_map = write_country_map(countries, report.out_dir / "countries.html",
                                      title=f"{report.predictor} on {report.benchmark}")
    print(f"accuracy per country ({len(countries)} countries): {countries_csv}, map {countries_map}\n")
    m = report.metrics
    print(
        f"{report.predictor} on {report.benchmark}: {m['n']} photos scored, {m['n_failed']} without an answer, "
        f"{report.n_unreadable} unreadable; mean error {m['mean_km']:,.1f} km; "
        f"{report.seconds:.1f} s this run ({report.extra['resumed_photos']} resumed)"
    )
    print(f"results in {report.out_dir}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
