"""A trained aligner as a :class:`geodemo.eval.Predictor`, scored by the evaluation harness.

Photo -> frozen registered encoder -> aligner -> nearest point of a GPS gallery (GeoCLIP's 100K by
default). :func:`harness_eval` runs :func:`geodemo.eval.evaluate` on a trainer's held-out photos, so
the figures come from the same resumable harness (per-photo CSV, summary JSON, Markdown table) as
every other method.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from geodemo.data import load_benchmark
from geodemo.data.dataset import GeoDataset
from geodemo.eval import evaluate
from geodemo.models.gps import geoclip_gallery_coords, geoclip_gps_gallery
from geodemo.models.registry import shared_model

__all__ = ["AlignerPredictor", "harness_eval"]


class AlignerPredictor:
    """Top-1 GPS-gallery retrieval with a GeoAligner (implements ``geodemo.eval.Predictor``)."""

    def __init__(self, aligner: Any, gallery_coords: np.ndarray, gallery_embeddings: np.ndarray | None = None,
                 encoder: Any | None = None):
        self.aligner = aligner
        self.name = f"{aligner.name}+gps-gallery"
        self.encoder = encoder if encoder is not None else shared_model(aligner.encoder_name)
        self.gallery_coords = np.asarray(gallery_coords, dtype=np.float64)
        self.gallery_embeddings = (gallery_embeddings if gallery_embeddings is not None
                                   else aligner.embed_locations(self.gallery_coords))

    def predict(self, batch: list) -> np.ndarray:
        if not batch:
            return np.zeros((0, 2))
        feats = self.encoder.encode_images([q.image for q in batch])
        emb = self.aligner.embed_image_features(feats)
        return self.gallery_coords[np.argmax(emb @ self.gallery_embeddings.T, axis=1)]


def harness_eval(trainer: Any, out_dir: str | Path, progress: bool = True) -> Any:
    """Score the trainer's model on its held-out photos through :func:`geodemo.eval.evaluate`."""
    dcfg = trainer.cfg["data"]
    held_ids = set(trainer.held_table.ids)
    parts = [load_benchmark(b).subset(ids=held_ids) for b in dcfg.get("benchmarks", [])]
    parts = [p for p in parts if len(p)]
    if not parts:
        raise ValueError("harness evaluation needs held-out photos from named benchmarks (data.benchmarks)")
    samples = [s for p in parts for s in p.samples]
    dataset = GeoDataset(f"held-out({'+'.join(p.name for p in parts)})", samples)
    model = trainer.accelerator.unwrap_model(trainer.objective).model.eval()
    frozen_geoclip = (trainer.cfg["model"].get("location_init") == "geoclip"
                      and not trainer.cfg["model"].get("train_location_encoder", True))
    if frozen_geoclip and trainer.cfg["model"].get("architecture", "mlp-aligner") == "mlp-aligner":
        coords, emb = geoclip_gps_gallery(progress=progress)
    else:
        coords, emb = geoclip_gallery_coords(), None
    return evaluate(AlignerPredictor(model, coords, emb), dataset, out_dir, progress=progress, resume=False)
