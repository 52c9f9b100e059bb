"""GeoCLIP's own prediction, as ``geoclip.GeoCLIP.predict(image, top_k)`` computes it.

The image MLP's output and every point of the 100K GPS gallery's location embedding are
L2-normalised; ``logit_scale.exp() * image @ locations.T`` over the whole gallery goes through a
softmax, and the ``top_k`` probabilities with their coordinates are the prediction. The location
embeddings are the wheel's trained encoder's, computed once and cached
(:func:`~geodemo.models.gps.geoclip_gps_gallery`) instead of on every call as the wheel does.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from geodemo.models.gps import geoclip_gps_gallery

__all__ = ["GPSGallery", "load_gps_gallery", "geoclip_predict"]


@dataclass(frozen=True)
class GPSGallery:
    """GeoCLIP's GPS gallery: ``coords`` ``(M, 2)`` [lat, lon] and unit location ``embeddings`` ``(M, 512)``."""

    coords: np.ndarray
    embeddings: torch.Tensor


def load_gps_gallery(progress: bool = False) -> GPSGallery:
    """The wheel's 100K-point gallery and its embeddings by the wheel's location encoder (cached on disk)."""
    coords, emb = geoclip_gps_gallery(progress=progress)
    return GPSGallery(np.asarray(coords, dtype=np.float32), torch.from_numpy(np.ascontiguousarray(emb, np.float32)))


@torch.no_grad()
def geoclip_predict(aligner: nn.Module, features: np.ndarray, gallery: GPSGallery,
                    top_k: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """``(top_k, 2)`` coordinates and ``(top_k,)`` probabilities for one photo's raw CLIP projection.

    ``aligner`` is GeoCLIP's (:func:`~geodemo.models.aligners.load_geoclip_aligner`): its image MLP,
    and its logit scale. ``features`` is ``(768,)`` or ``(1, 768)``, *not* normalised.
    """
    feats = np.asarray(features, dtype=np.float32).reshape(1, -1)
    p = next(aligner.parameters())
    image = aligner.image_embeddings(torch.from_numpy(feats).to(p.device, p.dtype)).float().cpu()
    logits = aligner.logit_scale.detach().float().cpu().exp() * (image @ gallery.embeddings.T)
    probs = logits.softmax(dim=-1)
    top = torch.topk(probs, int(min(top_k, probs.shape[1])), dim=1)
    idx = top.indices[0].numpy()
    return gallery.coords[idx].astype(np.float64), top.values[0].numpy().astype(np.float64)
