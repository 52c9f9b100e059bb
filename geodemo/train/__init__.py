"""Training toolkit (kept apart from the library: nothing in geodemo/ outside this package imports it).

``python scripts/train.py --preset offline-verifier`` on a CPU; ``accelerate launch scripts/train.py
--preset g3`` on one or many GPUs.
"""

from geodemo.train.config import apply_overrides, list_presets, load_preset, resolve_device
from geodemo.train.data import EpochSampler, split_table
from geodemo.train.objectives import clip_loss
from geodemo.train.trainer import Trainer, build_model, retrieval_metrics

__all__ = [
    "EpochSampler",
    "Trainer",
    "apply_overrides",
    "build_model",
    "clip_loss",
    "list_presets",
    "load_preset",
    "resolve_device",
    "retrieval_metrics",
    "split_table",
]
