"""Training presets: JSON files in ``geodemo/train/presets/`` plus ``section.key=value`` overrides.

Every key a preset or an override may set is in :data:`TRAINING_SCHEMA`; any other key is an error
(``optim.lrr=0.1`` is refused, naming the known keys). A new setting the trainer reads is added there.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from geodemo import configs
from geodemo.configs import list_configs, read_config
from geodemo.models.loading import resolve_device  # re-exported: one device rule for library and trainer

__all__ = ["PRESET_DIR", "TRAINING_SCHEMA", "list_presets", "load_preset", "apply_overrides", "resolve_device"]


def _keys(*names: str) -> dict[str, None]:
    return dict.fromkeys(names)


TRAINING_SCHEMA: configs.Schema = {
    "preset": None,
    "description": None,
    "model": _keys("architecture", "name", "encoder_name", "segmenter_name", "location_init",
                   "train_location_encoder", "dropout", "image_dims", "input_scale", "clip_dim", "text_head",
                   "class_dim", "d_model", "heads", "layers", "labelmap_size", "seg_widths", "token_dim",
                   "seg_size", "location"),  # location: the location encoder's own options
    "objective": _keys("kind", "logit_scale_init", "gps_queue", "positive_km", "seg_weight"),
    "data": _keys("source", "path", "csv", "images", "benchmarks", "encoder", "segmenter", "tokens",
                  "labelmap_size", "seg_size", "cached_labelmaps_only", "holdout_fraction", "split_seed", "num_folds",
                  "fold", "augment"),
    "select": _keys("epochs", "holdout_fraction", "split_seed", "view"),
    "optim": _keys("lr", "weight_decay", "warmup_steps", "batch_size", "epochs", "steps", "grad_accum",
                   "grad_clip", "shuffle", "schedule", "step_epochs", "gamma"),
    "eval": _keys("gallery", "every_epochs"),
    "run": _keys("seed", "device", "mixed_precision", "compile", "checkpoint_every", "log_every", "output",
                 "tensorboard", "features_on_device_gb", "prefetch_batches"),
}

PRESET_DIR = Path(__file__).with_name("presets")


def list_presets() -> list[str]:
    """Names of the built-in training presets."""
    return list_configs(PRESET_DIR)


def load_preset(name_or_path: str | Path) -> dict[str, Any]:
    """A preset by name (``"offline-verifier"``) or by path to a JSON file."""
    return read_config(name_or_path, PRESET_DIR, what="training preset", name_key="preset", error=FileNotFoundError,
                       schema=TRAINING_SCHEMA)


def apply_overrides(cfg: dict[str, Any], overrides: Iterable[str] | Mapping[str, Any] | None) -> dict[str, Any]:
    """A copy of ``cfg`` with ``"optim.lr=0.01"``-style (or ``{"optim.lr": 0.01}``) overrides applied;
    a key outside :data:`TRAINING_SCHEMA` raises ``ValueError`` listing the known ones."""
    return configs.apply_overrides(cfg, overrides, TRAINING_SCHEMA, what=f"training preset {cfg.get('preset', '')!r}")
