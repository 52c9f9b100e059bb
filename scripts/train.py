#!/usr/bin/env python
"""Train a geo-alignment model from a preset (geodemo/train/presets/*.json).

CPU, a few minutes:
    python scripts/train.py --preset offline-verifier
Every checkpoint the offline presets need (offline analogues of G3 and DualGeo: the deployable model
and the photographer-fold models the ablation scores with; features cached on first use):
    python scripts/train.py --all
One analogue, its deployable model, or all its fold models (checkpoints/<preset>-fold{k}of3):
    python scripts/train.py --preset dualgeo-offline
    python scripts/train.py --preset dualgeo-offline --folds 3
Leave-one-photographer-out folds (held-out groups never seen in training):
    python scripts/train.py --preset offline-verifier --folds 5 --fold 0 --out checkpoints/ov-fold0
    python scripts/train.py --preset offline-verifier --exclude-groups-file groups.txt --out ...
One or many GPUs (DDP, mixed precision through accelerate):
    accelerate launch scripts/train.py --preset g3 --set data.path=features/mp16-vitl14 --set run.mixed_precision=bf16
Where torchvision's C ops do not load (CPU torch beside a CUDA torchvision wheel, as on this CPU box),
the accelerate CLI dies importing timm; the same command behind geodemo's guard works (also on CPU):
    python -m geodemo.train.launch launch --cpu --num_processes 2 scripts/train.py --preset offline-verifier
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import geodemo  # noqa: E402,F401  (torchvision guard first)
from geodemo.storage import write_json  # noqa: E402
from geodemo.train import Trainer, apply_overrides, list_presets, load_preset  # noqa: E402

ANALOGUE_PRESETS = ("g3-offline", "dualgeo-offline", "dualgeo-tokens-offline")  # what --all makes: deployable + fold models each
ALL_FOLDS = 3


def train_analogue(name: str, cfg: dict, folds: int | None, output: Path | None, progress: bool,
                   one_fold: tuple[int, int] | None = None) -> None:
    """An analogue preset (one with a ``select`` section): its deployable model, all its fold models, or
    one fold model (``one_fold`` = (num_folds, fold), e.g. to train the folds in parallel processes)."""
    from geodemo.paths import checkpoints_dir
    from geodemo.train.folds import (
        build_preset_gallery,
        fold_checkpoint_name,
        train_checkpoint,
        train_folds,
    )

    stem = Path(name).stem
    if one_fold:
        n, k = one_fold
        folder = output or checkpoints_dir() / fold_checkpoint_name(stem, k, n)
        print(f"saved {train_checkpoint(cfg, folder, num_folds=n, fold=k, progress=progress)}")
        return
    if folds:
        for folder in train_folds(cfg, folds, output or checkpoints_dir(), stem, progress=progress):
            print(f"saved {folder}")
        return
    print(f"saved {train_checkpoint(cfg, output or checkpoints_dir() / stem, progress=progress)}")
    if output is None:  # the deployable model: its pipeline preset's gallery, from the cached features
        print(f"gallery of the {stem} preset: {build_preset_gallery(stem, progress=progress)}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", help=f"one of {', '.join(list_presets())} or a JSON path")
    ap.add_argument("--all", action="store_true",
                    help=f"every checkpoint of {', '.join(ANALOGUE_PRESETS)}: deployable + {ALL_FOLDS} fold models")
    ap.add_argument("--folds", type=int, metavar="N",
                    help="split photographers into N folds: with --fold K train the model that holds out fold K; "
                         "without it (analogue presets) train all N fold models (checkpoints/<preset>-fold{k}ofN)")
    ap.add_argument("--fold", type=int, metavar="K", help="with --folds N: the fold held out (0 .. N-1)")
    ap.add_argument("--out", type=Path, help="run/checkpoint folder (default: the preset's run.output)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override a preset entry, e.g. --set optim.lr=3e-4 (JSON values)")
    ap.add_argument("--exclude-groups-file", type=Path,
                    help="photographers (one per line) left out of training and used as the held-out set")
    ap.add_argument("--seed", type=int, help="run.seed of the preset (also which photographers fall in which fold)")
    ap.add_argument("--epochs", type=int, help="optim.epochs of the preset (analogue presets: no epoch selection)")
    ap.add_argument("--harness", action="store_true",
                    help="after training, score the held-out photos through geodemo.eval.evaluate (photo -> "
                         "encoder -> aligner -> GPS gallery) into <output>/eval")
    ap.add_argument("--no-resume", action="store_true", help="ignore saved state and start afresh")
    ap.add_argument("--no-progress", action="store_true", help="no progress bars")
    args = ap.parse_args(argv)
    if not args.all and not args.preset:
        ap.error("give --preset NAME or --all")
    if args.fold is not None and not args.folds:
        ap.error("--fold K goes with --folds N")

    if args.all:
        for name in ANALOGUE_PRESETS:
            cfg = apply_overrides(load_preset(name), args.set)
            train_analogue(name, cfg, None, None, not args.no_progress)
            train_analogue(name, cfg, ALL_FOLDS, None, not args.no_progress)
        return 0
    cfg = load_preset(args.preset)
    if "select" in cfg:  # offline analogues: epochs chosen inside the training photographers
        overrides = list(args.set) + ([f"run.seed={args.seed}"] if args.seed is not None else [])
        if args.epochs is not None:
            overrides += [f"optim.epochs={args.epochs}", "select.epochs=[]"]
        one_fold = (args.folds, args.fold) if args.fold is not None else None
        train_analogue(args.preset, apply_overrides(cfg, overrides), None if one_fold else args.folds, args.out,
                       not args.no_progress, one_fold)
        return 0
    overrides = list(args.set)
    if args.folds is not None:
        overrides += [f"data.num_folds={args.folds}", f"data.fold={args.fold or 0}"]
    if args.seed is not None:
        overrides.append(f"run.seed={args.seed}")
    if args.epochs is not None:
        overrides.append(f"optim.epochs={args.epochs}")
    cfg = apply_overrides(cfg, overrides)
    exclude = None
    if args.exclude_groups_file:
        exclude = {line.strip() for line in args.exclude_groups_file.read_text().splitlines() if line.strip()}
    trainer = Trainer(cfg, output_dir=args.out, progress=not args.no_progress, exclude_groups=exclude)
    summary = trainer.fit(resume=not args.no_resume)
    trainer.accelerator.wait_for_everyone()
    if trainer.accelerator.is_main_process:
        held_groups = sorted(set(trainer.held_table.group_keys()))  # photographers never seen in training
        trained_on = list(cfg["data"].get("benchmarks") or [])
        folder = trainer.export(extra={"eval": summary.get("eval"), "held_out_groups": held_groups,
                                       "datasets": trained_on})
        write_json(folder / "summary.json", summary, indent=2, default=float)
        ev = summary.get("eval") or {}
        print(f"saved {folder}  steps={summary['steps']}  photos/s={summary['photos_per_s']:.0f}")
        for name in ("held_out", "density_prior"):
            if name in ev:
                m = ev[name]
                print(f"{name:>13}: n={m['n']}  " + "  ".join(
                    f"{k}={m[k]:.3f}" for k in ("acc@1", "acc@25", "acc@200", "acc@750", "acc@2500")
                ) + f"  median={m['median_km']:.0f} km")
        if args.harness:
            from geodemo.train.evaluate import harness_eval

            report = harness_eval(trainer, folder / "eval", progress=not args.no_progress)
            print(f"harness ({report.benchmark}, {report.n_photos} photos): " + "  ".join(
                f"{k}={report.metrics[k]:.3f}" for k in ("acc@1", "acc@25", "acc@200", "acc@750", "acc@2500")
            ) + f"  median={report.metrics['median_km']:.0f} km  -> {report.summary_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
