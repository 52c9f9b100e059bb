"""Contrastive objectives: GeoCLIP/G3 image<->GPS alignment (with an optional GPS queue), G3's
image<->text term, and DualGeo's two views<->GPS. Each objective is an ``nn.Module`` holding the
model it trains, so one state dict carries everything resume needs (queue included)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["clip_loss", "GeoAlignmentObjective", "G3Objective", "DualGeoObjective", "build_objective"]


def clip_loss(logits: torch.Tensor, n_extra_cols: int = 0, positives: torch.Tensor | None = None) -> torch.Tensor:
    """Symmetric InfoNCE of ``(B, B + extra)`` logits whose diagonal holds the positives.

    Extra columns (queued negatives) enter only the row-wise term. ``positives`` (``(B, B)`` bool,
    diagonal true) marks further in-batch pairs taken at the same place (e.g. one photographer's
    shots of one square): they share the target mass instead of being pushed apart as negatives.
    """
    b = logits.shape[0]
    if positives is None:
        target = torch.arange(b, device=logits.device)
        rows = F.cross_entropy(logits, target)
        cols = F.cross_entropy(logits[:, :b].T, target)
        return (rows + cols) / 2
    soft = positives.float() / positives.float().sum(1, keepdim=True)
    pad = torch.zeros(b, logits.shape[1] - b, device=logits.device, dtype=soft.dtype)
    rows = F.cross_entropy(logits, torch.cat([soft, pad], 1))
    cols = F.cross_entropy(logits[:, :b].T, soft.T / soft.T.sum(1, keepdim=True))
    return (rows + cols) / 2


class _GPSQueue(nn.Module):
    """GeoCLIP-style FIFO of recent training coordinates, used as extra negatives.

    ``ptr`` and ``filled`` are buffers (saved with the state, for exact resume) mirrored by Python
    ints, so a training step never waits for the device to read them back.
    """

    def __init__(self, size: int):
        super().__init__()
        self.size = int(size)
        self.register_buffer("coords", torch.zeros(self.size, 2))
        self.register_buffer("ptr", torch.zeros((), dtype=torch.long))
        self.register_buffer("filled", torch.zeros((), dtype=torch.long))
        self._ptr, self._filled = 0, 0
        self.register_load_state_dict_post_hook(lambda module, _keys: module._read_counters())

    def _read_counters(self) -> None:
        self._ptr, self._filled = int(self.ptr), int(self.filled)

    @property
    def count(self) -> int:
        return self._filled

    def current(self) -> torch.Tensor:
        return self.coords[: self._filled]

    @torch.no_grad()
    def push(self, coords: torch.Tensor) -> None:
        coords = coords.detach().to(self.coords.dtype)[-self.size :]
        n, p = len(coords), self._ptr
        idx = (torch.arange(n, device=coords.device) + p) % self.size
        self.coords[idx] = coords
        self._ptr, self._filled = (p + n) % self.size, min(self._filled + n, self.size)
        self.ptr.fill_(self._ptr)
        self.filled.fill_(self._filled)


class GeoAlignmentObjective(nn.Module):
    """Image features <-> GPS for an :class:`~geodemo.models.aligners.MLPGeoAligner`."""

    def __init__(self, model: nn.Module, gps_queue: int = 0):
        super().__init__()
        self.model = model
        self.queue = _GPSQueue(gps_queue) if gps_queue > 0 else None

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        img = self.model.image_embeddings(batch["image"])
        coords = batch["coords"]
        # a frozen location encoder's embeddings may come precomputed with the batch
        loc = batch["location"] if "location" in batch else self.model.location_embeddings(coords)
        extra = 0
        if self.queue is not None and self.queue.count > 0:
            queued = self.queue.current()
            extra = len(queued)
            loc = torch.cat([loc, self.model.location_embeddings(queued)])
        logits = self.model.logit_scale.exp() * img @ loc.T
        loss = clip_loss(logits, extra, batch.get("positives"))
        if self.queue is not None and self.training:
            self.queue.push(batch["coords"])
        return loss, {"loss_img_gps": loss.detach(), "logit_scale": self.model.logit_scale.detach()}


class G3Objective(nn.Module):
    """G3 geo-alignment on cached CLIP outputs: image<->text and image<->GPS, summed.

    A batch without ``"text"`` (an encoder with no text tower, e.g. the offline MobileNet) trains the
    image<->GPS term alone.
    """

    def __init__(self, model: nn.Module, gps_queue: int = 0):
        super().__init__()
        self.model = model
        self.queue = _GPSQueue(gps_queue) if gps_queue > 0 else None

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        extra_coords = self.queue.current() if self.queue is not None else None
        if "text" not in batch:  # no text tower (offline analogues): image<->GPS only
            coords = batch["coords"] if extra_coords is None else torch.cat([batch["coords"], extra_coords])
            logits = (self.model.logit_scale.exp() * self.model.image_embeddings(batch["image"])
                      @ self.model.location_embeddings(coords).T)
            if self.queue is not None and self.training:
                self.queue.push(batch["coords"])
            loss = clip_loss(logits, logits.shape[1] - logits.shape[0])
            return loss, {"loss_img_gps": loss.detach()}
        out = self.model(batch["image"], batch["text"], batch["coords"], extra_coords=extra_coords)
        if self.queue is not None and self.training:
            self.queue.push(batch["coords"])
        n_extra = out["logits_image_gps"].shape[1] - out["logits_image_gps"].shape[0]
        l_text = clip_loss(out["logits_image_text"])
        l_gps = clip_loss(out["logits_image_gps"], n_extra)
        return l_text + l_gps, {"loss_img_text": l_text.detach(), "loss_img_gps": l_gps.detach()}


class DualGeoObjective(nn.Module):
    """DualGeo (``DualView_seg.py``): image view <-> GPS + segmentation view <-> GPS, each a symmetric
    InfoNCE with its own logit scale (one shared scale for the token-level model)."""

    def __init__(self, model: nn.Module, seg_weight: float = 1.0):
        super().__init__()
        self.model = model
        self.seg_weight = float(seg_weight)

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        out = self.model.embed_batch(batch)
        # a frozen location encoder's embeddings may come precomputed with the batch
        loc = batch["location"] if "location" in batch else self.model.location_embeddings(batch["coords"])
        scale_img, scale_seg = self.model.logit_scales()
        l_img = clip_loss(scale_img.exp() * out["image"] @ loc.T)
        l_seg = clip_loss(scale_seg.exp() * out["segmentation"] @ loc.T)
        loss = l_img + self.seg_weight * l_seg
        return loss, {"loss_img_gps": l_img.detach(), "loss_seg_gps": l_seg.detach()}


def build_objective(kind: str, model: nn.Module, cfg: dict[str, Any]) -> nn.Module:
    """``kind``: ``"geo-alignment"`` | ``"g3"`` | ``"dualgeo"`` (either DualGeo model)."""
    if kind == "geo-alignment":
        return GeoAlignmentObjective(model, gps_queue=int(cfg.get("gps_queue", 0)))
    if kind == "g3":
        return G3Objective(model, gps_queue=int(cfg.get("gps_queue", 0)))
    if kind in ("dualgeo", "dualgeo-tokens"):
        return DualGeoObjective(model, seg_weight=float(cfg.get("seg_weight", 1.0)))
    raise ValueError(f"unknown objective {kind!r}; choose geo-alignment, g3 or dualgeo")
