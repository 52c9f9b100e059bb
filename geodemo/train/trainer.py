"""The trainer: heads on frozen features, Hugging Face ``accelerate`` (DDP, mixed precision, gradient
accumulation), exact resume, TensorBoard + CSV logs, and held-out retrieval accuracy after epochs.

>>> from geodemo.train import Trainer, load_preset
>>> summary = Trainer(load_preset("offline-verifier")).fit()

Resume is exact: the batch order is a pure function of (seed, epoch) (:class:`EpochSampler`), and a
state folder ``<output>/state/step-NNNNNNN`` holds the objective's weights and buffers (GPS queue
included) as safetensors, the optimizer state (``torch.load(weights_only=True)``), the torch RNG
state and the step. Nothing is pickled beyond tensors.
"""

from __future__ import annotations

import csv
import json
import math
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from geodemo.configs import check_keys
from geodemo.data import load_benchmark, load_csv
from geodemo.data.feature_table import FeatureTable, load_feature_shards
from geodemo.eval import accuracy_table
from geodemo.eval.baselines import DensityPrior, Gallery
from geodemo.extraction.features import load_benchmark_features, load_benchmark_views
from geodemo.geo import pairwise_haversine_km
from geodemo.models.aligners import MLPGeoAligner, save_pretrained
from geodemo.models.dualgeo import DualGeoModel
from geodemo.models.dualgeo_tokens import DualGeoTokenModel
from geodemo.models.g3 import G3Heads, g3_inputs
from geodemo.models.gps import geoclip_gallery_coords, geoclip_gps_gallery, load_geoclip_location_encoder
from geodemo.paths import REPO_ROOT, checkpoints_dir
from geodemo.storage import atomic_dir, drop_torn_tail, write_json
from geodemo.train.config import TRAINING_SCHEMA, resolve_device
from geodemo.train.data import EpochSampler, FeatureBatches, ImageSource, paired_view_source, split_table
from geodemo.train.objectives import build_objective

__all__ = ["build_model", "load_table", "Trainer", "retrieval_metrics"]


def build_model(mcfg: dict[str, Any]) -> nn.Module:
    """The trainable model named by the preset's ``model`` section."""
    arch = mcfg.get("architecture", "mlp-aligner")
    if arch == "mlp-aligner":
        model = MLPGeoAligner(
            name=mcfg.get("name", "aligner"),
            encoder_name=mcfg["encoder_name"],
            image_dims=mcfg.get("image_dims", (1024, 1024, 512)),
            location=mcfg.get("location"),
            dropout=float(mcfg.get("dropout", 0.0)),
            input_scale=float(mcfg.get("input_scale", 1.0)),
        )
        if mcfg.get("location_init") == "geoclip":
            model.location_encoder = load_geoclip_location_encoder()
        loc = model.location_encoder
    elif arch == "g3":
        model = G3Heads(**{k: v for k, v in mcfg.items() if k in G3Heads.CONFIG_KEYS})
        if mcfg.get("location_init") == "geoclip":
            model.init_location_from_geoclip()
        loc = model.location_encoder
    elif arch in ("dualgeo", "dualgeo-tokens"):
        model = (DualGeoModel if arch == "dualgeo" else DualGeoTokenModel).from_config(mcfg)
        if mcfg.get("location_init") == "geoclip":
            model.init_location_from_geoclip()
        loc = model.location_encoder
    else:
        raise ValueError(f"unknown model architecture {arch!r}; choose mlp-aligner, g3, dualgeo or dualgeo-tokens")
    if not mcfg.get("train_location_encoder", True):
        loc.requires_grad_(False)
    return model


def load_table(dcfg: dict[str, Any], progress: bool = True) -> FeatureTable:
    """Training rows from cached benchmark embeddings or from a folder of feature shards."""
    source = dcfg.get("source", "benchmarks")
    if source == "benchmarks":
        return load_benchmark_features(list(dcfg["benchmarks"]), dcfg["encoder"], progress=progress)
    if source == "shards":
        return load_feature_shards(dcfg["path"])
    if source == "benchmark-views":  # offline analogues: pooled features, image tokens, label maps
        return load_benchmark_views(list(dcfg["benchmarks"]), dcfg["encoder"], dcfg.get("segmenter"),
                                    tokens=bool(dcfg.get("tokens", False)),
                                    labelmap_size=int(dcfg.get("labelmap_size", 64)), progress=progress,
                                    cached_labelmaps_only=bool(dcfg.get("cached_labelmaps_only", False)),
                                    labelmap_resample=dcfg.get("labelmap_resample", "nearest"))
    if source == "paired-views":  # DualGeo's recipe: the un-augmented views, photos re-read per step
        return paired_view_source(dcfg, progress=progress).table()
    raise ValueError(f"unknown data source {source!r}; choose benchmarks, benchmark-views, shards, images "
                     "or paired-views")


def image_source(dcfg: dict[str, Any]) -> ImageSource:
    """Photos of named benchmarks or of a CSV (``images``: folder or tar), encoded on the fly."""
    if dcfg.get("csv"):
        datasets = [load_csv(dcfg["csv"], images_dir=dcfg.get("images"))]
    else:
        datasets = [load_benchmark(b) for b in dcfg["benchmarks"]]
    return ImageSource(datasets, dcfg["encoder"], dcfg.get("augment"))


def retrieval_metrics(image_emb: np.ndarray, gallery_emb: np.ndarray, gallery_coords: np.ndarray,
                      truth: np.ndarray) -> dict[str, float]:
    """Top-1 GPS-gallery retrieval scored with :func:`geodemo.eval.accuracy_table`."""
    best = np.empty(len(image_emb), dtype=np.int64)
    for s in range(0, len(image_emb), 256):
        best[s : s + 256] = np.argmax(image_emb[s : s + 256] @ gallery_emb.T, axis=1)
    return accuracy_table(gallery_coords[best], truth)


class Trainer:
    """Trains the preset's model on frozen features; ``fit()`` returns a summary dict."""

    def __init__(self, cfg: dict[str, Any], output_dir: str | Path | None = None, progress: bool = True,
                 exclude_groups: set[str] | None = None, table: FeatureTable | None = None):
        from accelerate import Accelerator

        check_keys(cfg, TRAINING_SCHEMA, what=f"training config {cfg.get('preset', '')!r}")  # typos are errors
        self.cfg, self.progress = cfg, progress
        run, optim, dcfg = cfg.get("run", {}), cfg["optim"], cfg["data"]
        out = Path(output_dir or run.get("output", f"runs/{cfg.get('preset', 'train')}"))
        if not out.is_absolute() and out.parts[:1] == ("checkpoints",):
            out = checkpoints_dir().joinpath(*out.parts[1:])  # where load_aligner looks ($GEODEMO_CHECKPOINTS)
        self.output = out if out.is_absolute() else REPO_ROOT / out
        self.seed = int(run.get("seed", 0))
        device = resolve_device(run.get("device", "auto"))
        self.accelerator = Accelerator(
            cpu=device == "cpu",
            mixed_precision=run.get("mixed_precision", "no"),
            gradient_accumulation_steps=int(optim.get("grad_accum", 1)),
        )
        self.images: ImageSource | None = None
        self._held_features: np.ndarray | None = None
        if table is None and dcfg.get("source") == "images":  # augmented training on raw photos
            self.images = image_source(dcfg)
            table = self.images.table()
        if dcfg.get("source") == "paired-views":  # DualGeo: paired augmentation of photo and label map
            self.images = paired_view_source(dcfg, progress=progress)
            table = table if table is not None else self.images.table()
        table = table if table is not None else load_table(dcfg, progress=progress)
        if cfg["model"].get("architecture") == "g3":  # G3's heads train on what they are queried with
            table = FeatureTable(table.ids, table.groups, table.coords,
                                 g3_inputs(table.features, bool(cfg["model"].get("text_head", True))))
        self.train_table, self.held_table = split_table(
            table,
            holdout_fraction=float(dcfg.get("holdout_fraction", 0.0)),
            num_folds=int(dcfg.get("num_folds", 0)),
            fold=int(dcfg.get("fold", 0)),
            exclude_groups=exclude_groups,
            seed=int(dcfg.get("split_seed", 0)),
        )
        if len(self.train_table) == 0:
            raise ValueError("the training split is empty; check holdout_fraction / folds / excluded groups")
        torch.manual_seed(self.seed)  # after data loading, which may draw from the RNG (encoders, caches)
        self.model = build_model(cfg["model"])
        self.objective = build_objective(cfg["objective"]["kind"], self.model, cfg["objective"])
        if "logit_scale_init" in cfg["objective"] and hasattr(self.model, "reset_logit_scales"):
            self.model.reset_logit_scales(float(cfg["objective"]["logit_scale_init"]))
        params = [p for p in self.objective.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(params, lr=float(optim["lr"]),
                                           weight_decay=float(optim.get("weight_decay", 0.0)))
        self.objective, self.optimizer = self.accelerator.prepare(self.objective, self.optimizer)
        if run.get("compile"):
            self.objective = torch.compile(self.objective)

        self.batch_size = min(int(optim["batch_size"]), len(self.train_table))
        self.sampler = EpochSampler(len(self.train_table), seed=self.seed, shuffle=optim.get("shuffle", True))
        self.steps_per_epoch = self.sampler.batches_per_epoch(self.batch_size)
        self.total_steps = int(optim.get("steps") or self.steps_per_epoch * int(optim["epochs"]))
        self.step = 0
        self.positive_km = float(cfg["objective"].get("positive_km", 0.0))
        columns = {"coords": np.ascontiguousarray(self.train_table.coords, dtype=np.float32),
                   **self.train_table.features}
        loc = getattr(self.model, "location_encoder", None)
        if loc is not None and not any(p.requires_grad for p in loc.parameters()) and hasattr(
            self.model, "location_embeddings"
        ):  # frozen: embed every training coordinate once instead of at every step
            with torch.no_grad():
                columns["location"] = torch.cat([
                    self.model.location_embeddings(c.to(self.accelerator.device)).cpu()
                    for c in torch.from_numpy(columns["coords"]).split(4096)
                ]).numpy()
        self.batches = FeatureBatches(
            columns, self.sampler, self.batch_size, self.accelerator.device,
            rank=self.accelerator.process_index, world=self.accelerator.num_processes,
            resident_bytes=self._resident_bytes(run.get("features_on_device_gb", "auto")),
            prefetch=int(run.get("prefetch_batches", 2)),
        )

    def _resident_bytes(self, setting: Any) -> float:
        """Bytes of cached features allowed to stay on the accelerator: a number of GB, or ``"auto"``
        (half of the GPU memory free now)."""
        if setting != "auto":
            return float(setting) * 1e9
        device = self.accelerator.device
        if device.type == "cuda":
            free, _ = torch.cuda.mem_get_info(device)
            return free / 2
        return 0.0

    # ------------------------------------------------------------------ schedule and batches
    def lr_at(self, step: int) -> float:
        """``optim.schedule``: ``"cosine"`` (default): linear warm-up then cosine decay to 0;
        ``"step"``: PyTorch's ``StepLR`` stepped once per epoch as G3 and DualGeo do, the rate times
        ``gamma`` every ``step_epochs`` epochs, no warm-up."""
        optim = self.cfg["optim"]
        base, warm = float(optim["lr"]), int(optim.get("warmup_steps", 0))
        schedule = optim.get("schedule", "cosine")
        if schedule == "step":
            epoch = step // max(self.steps_per_epoch, 1)
            return base * float(optim.get("gamma", 0.87)) ** (epoch // int(optim.get("step_epochs", 1)))
        if schedule != "cosine":
            raise ValueError(f"unknown optim.schedule {schedule!r}; choose cosine or step")
        if step < warm:
            return base * (step + 1) / warm
        progress = (step - warm) / max(self.total_steps - warm, 1)
        return base * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))

    def batch_at(self, step: int) -> dict[str, torch.Tensor]:
        """The batch of global step ``step`` for this process, on its device."""
        return self._finish(self.batches.gather(step), step)

    def _batches(self, start: int, end: int) -> Iterator[dict[str, torch.Tensor]]:
        """Batches of steps ``start .. end - 1``: prefetched ahead unless photos are encoded per step."""
        if self.images is not None:
            for step in range(start, end):
                yield self.batch_at(step)
            return
        ahead = self.batches.iterate(start, end)
        try:
            for step, batch in zip(range(start, end), ahead, strict=True):
                yield self._finish(batch, step)
        finally:
            ahead.close()

    def _finish(self, batch: dict[str, torch.Tensor], step: int) -> dict[str, torch.Tensor]:
        device = self.accelerator.device
        if self.images is not None:  # encode this batch's photos now, augmented with a per-step seed
            photo_rows = batch.pop("row").cpu().numpy()
            feats = self.images.encode(photo_rows, seed=self.seed * 1_000_003 + step)
            for k, v in (feats if isinstance(feats, dict) else {"image": feats}).items():
                batch[k] = torch.from_numpy(v).to(device)
        for k, v in batch.items():  # float16 caches (tokens, image) train in float32
            if v.dtype == torch.float16:
                batch[k] = v.float()
        if self.positive_km > 0:
            c = batch["coords"].double()
            batch["positives"] = pairwise_haversine_km(c, c) < self.positive_km
        return batch

    # ------------------------------------------------------------------ state
    def state_dir(self) -> Path:
        return self.output / "state"

    def save_state(self) -> Path:
        """Write ``state/step-NNNNNNN`` (weights, optimizer, RNG, step); keep the two newest."""
        from safetensors.torch import save_file

        if not self.accelerator.is_main_process:
            return self.state_dir()
        folder = self.state_dir() / f"step-{self.step:07d}"
        objective = self.accelerator.unwrap_model(self.objective)
        state = {k: v.detach().cpu().contiguous() for k, v in objective.state_dict().items()}
        with atomic_dir(folder) as tmp:  # a run killed mid-save leaves the previous state intact
            save_file(state, str(tmp / "train_state.safetensors"))
            torch.save(self.optimizer.state_dict(), tmp / "optimizer.pt")
            save_file({"torch_cpu": torch.get_rng_state()}, str(tmp / "rng.safetensors"))
            write_json(tmp / "trainer_state.json",
                       {"step": self.step, "total_steps": self.total_steps, "seed": self.seed, "config": self.cfg}, indent=2)
        for old in sorted(self.state_dir().glob("step-???????"))[:-2]:
            shutil.rmtree(old, ignore_errors=True)
        return folder

    def latest_state(self) -> Path | None:
        states = sorted(self.state_dir().glob("step-???????"))
        return states[-1] if states else None

    def load_state(self, folder: str | Path) -> None:
        """Restore a ``state/step-NNNNNNN`` folder written by :meth:`save_state`."""
        from safetensors.torch import load_file

        folder = Path(folder)
        objective = self.accelerator.unwrap_model(self.objective)
        objective.load_state_dict(load_file(str(folder / "train_state.safetensors")), strict=True)
        self.optimizer.load_state_dict(torch.load(folder / "optimizer.pt", weights_only=True,
                                                  map_location=self.accelerator.device))
        torch.set_rng_state(load_file(str(folder / "rng.safetensors"))["torch_cpu"])
        self.step = int(json.loads((folder / "trainer_state.json").read_text())["step"])

    # ------------------------------------------------------------------ evaluation and export
    @torch.no_grad()
    def evaluate(self) -> dict[str, Any]:
        """Held-out top-1 retrieval accuracy over the GPS gallery, beside the density-prior baseline."""
        if len(self.held_table) == 0:
            return {}
        if not hasattr(self.accelerator.unwrap_model(self.objective).model, "embed_image_features"):
            return {}  # not a GeoAligner (DualGeo): scored on its own views by geodemo.eval.fold_ablation
        if "image" in self.held_table.features:
            held_features = self.held_table.features["image"]
        elif self.images is not None:
            if self._held_features is None:
                self._held_features = self.images.encode(self.held_table.features["row"])
            held_features = self._held_features
        else:
            return {}
        model = self.accelerator.unwrap_model(self.objective).model
        was_training = model.training
        model.eval()
        try:
            img = model.embed_image_features(held_features)
            gallery = self.cfg.get("eval", {}).get("gallery", "geoclip-100k")
            if gallery == "geoclip-100k":
                frozen_geoclip = (self.cfg["model"].get("location_init") == "geoclip"
                                  and not self.cfg["model"].get("train_location_encoder", True)
                                  and self.cfg["model"].get("architecture", "mlp-aligner") == "mlp-aligner")
                if frozen_geoclip:
                    g_coords, g_emb = geoclip_gps_gallery(progress=self.progress)
                else:
                    g_coords = geoclip_gallery_coords()
                    g_emb = model.embed_locations(g_coords)
            else:  # the training photos' own coordinates
                g_coords = self.train_table.coords
                g_emb = model.embed_locations(g_coords)
        finally:
            model.train(was_training)
        truth = self.held_table.coords.astype(np.float64)
        metrics = retrieval_metrics(img, g_emb, g_coords.astype(np.float64), truth)
        prior = DensityPrior(Gallery("train", self.train_table.coords.astype(np.float64)))
        answer = prior.answer(np.zeros(0, dtype=np.int64))  # the training set's densest place
        baseline = accuracy_table(np.repeat(answer[None], len(truth), 0), truth)
        return {"held_out": metrics, "density_prior": baseline, "n_held_out": len(truth)}

    def export(self, folder: str | Path | None = None, extra: dict[str, Any] | None = None) -> Path:
        """Write the trained model as ``config.json`` + ``model.safetensors`` (loadable by load_aligner)."""
        model = self.accelerator.unwrap_model(self.objective).model
        folder = Path(folder) if folder else self.output
        config = {**model.config, "training": {"preset": self.cfg.get("preset"), "steps": self.step,
                                               "n_train": len(self.train_table), **(extra or {})}}
        return save_pretrained(model, folder, config)

    # ------------------------------------------------------------------ loop
    def fit(self, resume: bool = True, stop_after: int | None = None) -> dict[str, Any]:
        """Train to ``total_steps`` (resuming from the newest state when ``resume``); ``stop_after``
        ends the run early after that many global steps, as a kill would (used by the resume test)."""
        run = self.cfg.get("run", {})
        if resume and (latest := self.latest_state()) is not None:
            self.load_state(latest)
        self.output.mkdir(parents=True, exist_ok=True)
        writer = self._tensorboard()
        log_path = self.output / "log.csv"
        drop_torn_tail(log_path, "training log")  # a run killed mid-row: the next row starts on its own line
        log_file = open(log_path, "a", newline="")
        log = csv.writer(log_file)
        if log_file.tell() == 0:
            log.writerow(["step", "epoch", "loss", "lr", "photos_per_s", "elapsed_s"])
        every = int(run.get("checkpoint_every", 0))
        eval_every = int(self.cfg.get("eval", {}).get("every_epochs", 1))
        end = self.total_steps if stop_after is None else min(self.total_steps, stop_after)
        history: list[dict[str, Any]] = []
        self.objective.train()
        bar = tqdm(total=self.total_steps, initial=self.step, desc=self.cfg.get("preset", "train"),
                   unit="step", disable=not self.progress or not self.accelerator.is_main_process)
        started, seen, loss_value = time.perf_counter(), 0, math.nan
        log_every = int(run.get("log_every", 10))
        batches = self._batches(self.step, end)
        try:
            while self.step < end:
                for group in self.optimizer.param_groups:
                    group["lr"] = self.lr_at(self.step)
                batch = next(batches)
                with self.accelerator.accumulate(self.objective):
                    loss, parts = self.objective(batch)
                    self.accelerator.backward(loss)
                    clip = float(self.cfg["optim"].get("grad_clip", 0.0))
                    if clip > 0 and self.accelerator.sync_gradients:
                        self.accelerator.clip_grad_norm_(self.objective.parameters(), clip)
                    self.optimizer.step()
                    self.optimizer.zero_grad(set_to_none=True)
                self.step += 1
                seen += len(batch["coords"]) * self.accelerator.num_processes
                bar.update(1)
                if self.step % log_every == 0 or self.step == end:  # the only host sync of a step
                    loss_value = float(loss.detach())
                    elapsed = time.perf_counter() - started
                    rate = seen / max(elapsed, 1e-9)
                    bar.set_postfix(loss=f"{loss_value:.4f}", photos_s=f"{rate:.0f}")
                    epoch = self.step / self.steps_per_epoch
                    log.writerow([self.step, f"{epoch:.3f}", f"{loss_value:.6f}", f"{self.lr_at(self.step - 1):.3e}",
                                  f"{rate:.1f}", f"{elapsed:.2f}"])
                    if writer:
                        writer.add_scalar("train/loss", loss_value, self.step)
                        for k, v in parts.items():
                            writer.add_scalar(f"train/{k}", float(v), self.step)
                        writer.add_scalar("train/photos_per_s", rate, self.step)
                if every and self.step % every == 0:
                    self.save_state()
                if self.step % self.steps_per_epoch == 0:
                    epoch = self.step // self.steps_per_epoch
                    if eval_every and epoch % eval_every == 0 and self.step < self.total_steps:
                        metrics = self.evaluate()
                        if metrics:
                            history.append({"epoch": epoch, **metrics})
                            if writer:
                                for k, v in metrics["held_out"].items():
                                    writer.add_scalar(f"eval/{k}", v, self.step)
        finally:
            batches.close()
            bar.close()
            log_file.close()
            if writer:
                writer.close()
        summary: dict[str, Any] = {"steps": self.step, "final_loss": loss_value,
                                   "seconds": time.perf_counter() - started,
                                   "photos_per_s": seen / max(time.perf_counter() - started, 1e-9),
                                   "n_train": len(self.train_table), "n_held_out": len(self.held_table),
                                   "history": history}
        if self.step >= self.total_steps:
            summary["eval"] = self.evaluate()
        if every:
            self.save_state()
        return summary

    def _tensorboard(self):
        if not self.cfg.get("run", {}).get("tensorboard", True) or not self.accelerator.is_main_process:
            return None
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            return None
        return SummaryWriter(str(self.output / "tensorboard"))
