"""Training the offline analogues (``dualgeo-offline``, ``g3-offline``) by photographer folds.

Every setting the preset leaves open (``select.epochs``) is chosen inside the photographers a model
is trained on: those are split again (``select.holdout_fraction`` of them, hashed with
``select.split_seed``), one run is trained to the largest candidate and scored after each candidate
epoch count (top-1 retrieval of the inner held-out photos against the inner training photos, mean
accuracy at 25/200/750/2500 km), and the model is then retrained on all its photographers with the
best count. The photos a fold model will score never enter either step.

Checkpoints carry their provenance in ``config.json`` under ``training``: data, fold, held-out and
training photographers, seed, the epochs chosen and the inner scores, and the git commit.
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from geodemo.data import load_benchmark
from geodemo.data.feature_table import FeatureTable, write_feature_shard
from geodemo.eval.fold_ablation import model_views
from geodemo.eval.metrics import accuracy_table
from geodemo.extraction.features import load_benchmark_views, views_for
from geodemo.models.descriptors import load_descriptor
from geodemo.paths import REPO_ROOT, cache_dir
from geodemo.pipeline.presets import load_preset as pipeline_preset
from geodemo.retrieval.builder import ShardSource, build_database
from geodemo.retrieval.database import IndexConfig, RetrievalDatabase
from geodemo.retrieval.galleries import gallery_key
from geodemo.storage import write_json
from geodemo.train.config import apply_overrides, list_presets, load_preset
from geodemo.train.data import split_table
from geodemo.train.trainer import Trainer, load_table

__all__ = ["is_fold_trained", "fold_checkpoint_name", "select_epochs", "train_checkpoint", "train_folds", "git_commit",
           "build_view_database", "build_preset_gallery"]

SELECT_KEYS = ("acc@25", "acc@200", "acc@750", "acc@2500")


def is_fold_trained(preset: str) -> bool:
    """A pipeline preset whose descriptor is a model trained here by photographer folds (a training preset
    of the same name with a ``select`` section): its ablation rows come from
    :mod:`geodemo.eval.fold_ablation`."""
    if (pipeline_preset(preset).get("descriptor") or {}).get("kind") not in ("dualgeo", "dualgeo-tokens", "g3"):
        return False
    name = Path(preset).stem
    return name in list_presets() and "select" in load_preset(name)


def fold_checkpoint_name(preset: str, fold: int, num_folds: int) -> str:
    return f"{preset}-fold{fold}of{num_folds}"


def git_commit() -> str:
    """The checkout's commit (``+dirty`` when it has uncommitted changes); "unknown" outside git."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True,
                              timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO_ROOT,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return head + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _top1_score(model: Any, train: FeatureTable, held: FeatureTable, view: str) -> dict[str, float]:
    g = model_views(model, train.features)[view]
    q = model_views(model, held.features)[view]
    best = np.argmax(q @ g.T, axis=1)
    return accuracy_table(train.coords[best].astype(np.float64), held.coords.astype(np.float64))


def select_epochs(cfg: dict[str, Any], table: FeatureTable, output: Path, progress: bool = False) -> dict[str, Any]:
    """The epoch count of ``cfg["select"]["epochs"]`` that scores best on an inner photographer split of
    ``table`` (which must hold only the photographers the final model trains on)."""
    sel = cfg["select"]
    candidates = sorted(int(e) for e in sel["epochs"])
    inner = apply_overrides(cfg, {"data.holdout_fraction": float(sel.get("holdout_fraction", 0.25)),
                                  "data.num_folds": 0, "data.split_seed": int(sel.get("split_seed", 1)),
                                  "optim.epochs": candidates[-1]})
    trainer = Trainer(inner, output_dir=output, progress=progress, table=table)
    model = trainer.accelerator.unwrap_model(trainer.objective).model
    scores = {}
    for e in candidates:
        trainer.fit(resume=False, stop_after=e * trainer.steps_per_epoch)
        m = _top1_score(model, trainer.train_table, trainer.held_table, sel.get("view", "descriptor"))
        scores[e] = {k: m[k] for k in SELECT_KEYS}
    best = max(candidates, key=lambda e: (float(np.mean([scores[e][k] for k in SELECT_KEYS])), -e))
    return {"epochs": best, "inner_scores": scores, "inner_n_train": len(trainer.train_table),
            "inner_n_held_out": len(trainer.held_table)}


def train_checkpoint(cfg: dict[str, Any], output: str | Path, table: FeatureTable | None = None,
                     num_folds: int = 0, fold: int = 0, progress: bool = True) -> Path:
    """Train one checkpoint of an analogue preset: all its data (``num_folds=0``) or every photographer
    but fold ``fold``'s; epochs chosen inside (see module doc); written to ``output`` with provenance."""
    table = table if table is not None else load_table(cfg["data"], progress=progress)
    cfg = apply_overrides(cfg, {"data.num_folds": num_folds, "data.fold": fold})
    train_rows, held_rows = split_table(table, holdout_fraction=float(cfg["data"].get("holdout_fraction", 0.0)),
                                        num_folds=num_folds, fold=fold,
                                        seed=int(cfg["data"].get("split_seed", 0)))
    output = Path(output)
    chosen: dict[str, Any] = {}
    if cfg.get("select", {}).get("epochs"):
        chosen = select_epochs(cfg, train_rows, output / "select", progress=progress)
        cfg = apply_overrides(cfg, {"optim.epochs": chosen["epochs"]})
    trainer = Trainer(cfg, output_dir=output, progress=progress, table=table)
    summary = trainer.fit(resume=False)
    assert set(trainer.held_table.ids) == set(held_rows.ids)  # one split rule for selection and training
    extra = {
        "datasets": list(cfg["data"].get("benchmarks") or []), "data": cfg["data"],
        "num_folds": num_folds, "fold": fold if num_folds else None,
        "held_out_groups": sorted(set(trainer.held_table.group_keys())),
        "train_groups": sorted(set(trainer.train_table.group_keys())),
        "n_held_out": len(trainer.held_table), "seed": trainer.seed, "epochs": int(cfg["optim"]["epochs"]),
        "selection": chosen, "final_loss": summary["final_loss"], "seconds": summary["seconds"],
        "commit": git_commit(),
    }
    return trainer.export(output, extra=extra)


def train_folds(cfg: dict[str, Any], num_folds: int, output_root: str | Path, preset: str,
                progress: bool = True, table: FeatureTable | None = None) -> list[Path]:
    """``<output_root>/<preset>-fold{k}of{num_folds}`` for every fold (data loaded once, unless given)."""
    table = table if table is not None else load_table(cfg["data"], progress=progress)
    return [train_checkpoint(cfg, Path(output_root) / fold_checkpoint_name(preset, k, num_folds), table,
                             num_folds=num_folds, fold=k, progress=progress) for k in range(num_folds)]


def build_view_database(descriptor: Any, table: FeatureTable, out: str | Path, index: Any = None,
                        image_paths: dict[str, str] | None = None, progress: bool = True) -> Path:
    """A retrieval database of ``descriptor`` over cached views (``table`` from
    :func:`~geodemo.extraction.features.load_benchmark_views`), through the database builder's feature-shard path:
    no photo is decoded or segmented again. ``image_paths`` (id -> path) lets the page show the neighbours."""
    out = Path(out)
    with tempfile.TemporaryDirectory(dir=out.parent if out.parent.exists() else None) as tmp:
        write_feature_shard(Path(tmp) / "shard-00000.npz", table)
        write_json(Path(tmp) / "meta.json", {"encoder": descriptor.encoder.name})
        build_database(ShardSource(tmp), descriptor, out, index=index, progress=progress, overwrite=True)
    if image_paths:
        db = RetrievalDatabase.load(out)
        db.meta.image_paths = [image_paths.get(i) for i in db.meta.ids]
        db.save(out)
    return out


def build_preset_gallery(preset_name: str, progress: bool = True) -> Path:
    """The gallery a pipeline preset with a trained analogue descriptor searches (``gallery.datasets``),
    built from the cached views into the folder the locator looks in, so its first photo is fast."""
    preset = pipeline_preset(preset_name)
    spec, cfg = preset["descriptor"], preset["gallery"]
    descriptor = load_descriptor(spec)
    datasets = list(cfg.get("datasets", []))
    index = IndexConfig.from_dict(cfg.get("index"))
    # the folder geodemo.pipeline.components.Components._descriptor_gallery reads
    folder = cache_dir("galleries") / f"descriptor-{gallery_key('descriptor', descriptor.name, datasets, index.kind)}"
    if (folder / "config.json").is_file():
        return folder
    opts = views_for(getattr(descriptor, "model", None))
    table = load_benchmark_views(datasets, spec["encoder"], spec.get("segmenter") if opts["dual"] else None,
                                 tokens=opts["tokens"], labelmap_size=opts["labelmap_size"],
                                 labelmap_resample=opts["labelmap_resample"], progress=progress)
    paths = {s.id: str(s.image_path) for name in datasets for s in load_benchmark(name).samples if s.image_path}
    return build_view_database(descriptor, table, folder, index=index, image_paths=paths, progress=progress)
