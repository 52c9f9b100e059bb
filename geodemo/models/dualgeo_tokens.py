"""Our token-level dual-view model (``dualgeo-plus``; DualGeo's own model is :mod:`geodemo.models.dualgeo`):
CLIP patch tokens + a segmentation view, fused token by token.

The image view is the CLIP ViT's patch tokens projected to ``d_model``. The segmentation view embeds
the ADE20K label map (151 classes, 0 = other) and runs a small residual CNN over it (DualGeo uses a
ResNet-18 over the label map; depth and width are configurable here), giving one token per cell of
its output grid. Bidirectional cross-attention then lets image tokens attend to segmentation tokens
and vice versa, **within one photo**: DualGeo's public code attends across the batch, so a photo's
embedding depends on its batch-mates; here every normalisation is per sample (GroupNorm/LayerNorm)
and attention runs over the token axis, so it cannot. Projection heads map each pooled view into the
GPS space of a (GeoCLIP-initialised) location encoder.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from geodemo.models.aligners import mlp
from geodemo.models.dualgeo import NUM_ADE20K_CLASSES, FolderCheckpoint, label_maps_to_tensor
from geodemo.models.gps import LocationEncoder, load_geoclip_location_encoder

__all__ = ["SegmentationCNN", "CrossAttentionBlock", "DualGeoTokenModel", "load_dualgeo_tokens"]


class _ResBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int, groups: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.norm1 = nn.GroupNorm(groups, c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.norm2 = nn.GroupNorm(groups, c_out)
        self.skip = (nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.GroupNorm(groups, c_out))
                     if stride != 1 or c_in != c_out else nn.Identity())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.norm1(self.conv1(x)))
        return F.relu(self.norm2(self.conv2(y)) + self.skip(x))


class SegmentationCNN(nn.Module):
    """Embedded classes -> residual CNN (one stride-2 stage per width) -> ``(N, cells, width[-1])`` tokens."""

    def __init__(self, num_classes: int = NUM_ADE20K_CLASSES, class_dim: int = 32,
                 widths: tuple[int, ...] = (64, 128, 256, 512), groups: int = 8):
        super().__init__()
        self.embed = nn.Embedding(num_classes, class_dim)
        stages, c = [], class_dim
        for w in widths:
            stages.append(_ResBlock(c, w, stride=2, groups=min(groups, w)))
            c = w
        self.stages = nn.Sequential(*stages)
        self.out_dim = c

    def forward(self, label_map: torch.Tensor) -> torch.Tensor:
        x = self.embed(label_map.long().clamp(0, self.embed.num_embeddings - 1)).permute(0, 3, 1, 2)
        x = self.stages(x)
        return x.flatten(2).transpose(1, 2)  # (N, h*w, C)


class CrossAttentionBlock(nn.Module):
    """Bidirectional cross-attention over tokens of one photo, then a feed-forward layer per view."""

    def __init__(self, d_model: int, heads: int, dropout: float = 0.0):
        super().__init__()
        self.img_norm, self.seg_norm = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.img_from_seg = nn.MultiheadAttention(d_model, heads, dropout=dropout, batch_first=True)
        self.seg_from_img = nn.MultiheadAttention(d_model, heads, dropout=dropout, batch_first=True)
        self.img_ff = nn.Sequential(nn.LayerNorm(d_model), nn.Linear(d_model, 4 * d_model), nn.GELU(),
                                    nn.Linear(4 * d_model, d_model))
        self.seg_ff = nn.Sequential(nn.LayerNorm(d_model), nn.Linear(d_model, 4 * d_model), nn.GELU(),
                                    nn.Linear(4 * d_model, d_model))

    def forward(self, img: torch.Tensor, seg: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``img`` (N, Ti, d), ``seg`` (N, Ts, d): attention runs along the token axis of each photo."""
        qi, qs = self.img_norm(img), self.seg_norm(seg)
        img = img + self.img_from_seg(qi, qs, qs, need_weights=False)[0]
        seg = seg + self.seg_from_img(qs, qi, qi, need_weights=False)[0]
        return img + self.img_ff(img), seg + self.seg_ff(seg)


class DualGeoTokenModel(FolderCheckpoint, nn.Module):
    """Image tokens ``(N, T, token_dim)`` + label maps ``(N, H, W)`` -> unit embeddings in GPS space."""

    architecture = "dualgeo-tokens"
    CONFIG_KEYS = ("name", "encoder_name", "segmenter_name", "token_dim", "d_model", "heads", "layers",
                   "class_dim", "seg_widths", "labelmap_size", "dropout", "location", "logit_scale_init")

    def __init__(self, name: str = "dualgeo-tokens", encoder_name: str = "clip-vit-l14",
                 segmenter_name: str = "segformer-b5-ade", token_dim: int = 1024, d_model: int = 512,
                 heads: int = 8, layers: int = 2, class_dim: int = 32,
                 seg_widths: tuple[int, ...] = (64, 128, 256, 512), labelmap_size: int = 64,
                 dropout: float = 0.0, location: dict[str, Any] | None = None,
                 logit_scale_init: float = 3.99):
        super().__init__()
        self.name, self.encoder_name, self.segmenter_name = name, encoder_name, segmenter_name
        self.token_dim, self.d_model, self.heads, self.layers = int(token_dim), int(d_model), int(heads), int(layers)
        self.class_dim, self.seg_widths = int(class_dim), tuple(int(w) for w in seg_widths)
        self.labelmap_size, self.dropout = int(labelmap_size), float(dropout)
        self.location_encoder = LocationEncoder(**(location or {}))
        gps_dim = self.location_encoder.embed_dim

        self.image_in = nn.Sequential(nn.LayerNorm(token_dim), nn.Linear(token_dim, d_model))
        self.segmentation = SegmentationCNN(NUM_ADE20K_CLASSES, class_dim, self.seg_widths)
        self.seg_in = nn.Linear(self.segmentation.out_dim, d_model)
        cells = (labelmap_size // 2 ** len(self.seg_widths)) ** 2
        self.seg_pos = nn.Parameter(torch.zeros(1, max(cells, 1), d_model))
        self.fusion = nn.ModuleList(CrossAttentionBlock(d_model, heads, dropout) for _ in range(layers))
        self.image_norm, self.seg_norm = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.image_head = mlp([d_model, d_model, gps_dim])
        self.seg_head = mlp([d_model, d_model, gps_dim])
        self.logit_scale = nn.Parameter(torch.tensor(float(logit_scale_init)))

    @property
    def config(self) -> dict[str, Any]:
        return {"architecture": self.architecture, "name": self.name, "encoder_name": self.encoder_name,
                "segmenter_name": self.segmenter_name, "token_dim": self.token_dim, "d_model": self.d_model,
                "heads": self.heads, "layers": self.layers, "class_dim": self.class_dim,
                "seg_widths": list(self.seg_widths), "labelmap_size": self.labelmap_size,
                "dropout": self.dropout, "location": self.location_encoder.config}

    def init_location_from_geoclip(self) -> None:
        """GeoCLIP's trained location encoder weights (Equal Earth projection)."""
        self.location_encoder = load_geoclip_location_encoder()

    def reset_logit_scales(self, value: float) -> None:
        self.logit_scale.data.fill_(value)

    def views(self, tokens: torch.Tensor, label_map: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Fused token sequences ``(N, T, d)`` and ``(N, cells, d)``."""
        if label_map.shape[-1] != self.labelmap_size or label_map.shape[-2] != self.labelmap_size:
            label_map = F.interpolate(label_map[:, None].float(), size=(self.labelmap_size,) * 2,
                                      mode="nearest")[:, 0]
        img = self.image_in(tokens)
        seg = self.seg_in(self.segmentation(label_map))
        seg = seg + self.seg_pos[:, : seg.shape[1]]
        for block in self.fusion:
            img, seg = block(img, seg)
        return img, seg

    def pooled_views(self, tokens: torch.Tensor, label_map: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The fused image and segmentation views pooled per photo, ``(N, d_model)`` each: DualGeo's
        ``enhanced_rgb`` / ``enhanced_seg`` (after cross-attention, before the GPS heads)."""
        img, seg = self.views(tokens, label_map)
        return self.image_norm(img).mean(1), self.seg_norm(seg).mean(1)

    def embed_batch(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """A training batch (``tokens``, ``labelmap``) -> the unit GPS-space views the objective compares."""
        return self(batch["tokens"], batch["labelmap"])

    def logit_scales(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The (image view, segmentation view) log scales: one shared scale."""
        return self.logit_scale, self.logit_scale

    def forward(self, tokens: torch.Tensor, label_map: torch.Tensor) -> dict[str, torch.Tensor]:
        """Unit embeddings of the image view, the segmentation view and their fusion (their sum)."""
        return self.gps_embeddings(*self.pooled_views(tokens, label_map))

    def gps_embeddings(self, image_view: torch.Tensor, seg_view: torch.Tensor) -> dict[str, torch.Tensor]:
        """Pooled views -> unit GPS-space embeddings ``image``, ``segmentation`` and ``fused``."""
        e_img = F.normalize(self.image_head(image_view), dim=-1)
        e_seg = F.normalize(self.seg_head(seg_view), dim=-1)
        return {"image": e_img, "segmentation": e_seg, "fused": F.normalize(e_img + e_seg, dim=-1)}

    def location_embeddings(self, coords: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.location_encoder(coords), dim=-1)

    @torch.no_grad()
    def embed(self, tokens: torch.Tensor, label_maps: list[np.ndarray] | torch.Tensor) -> np.ndarray:
        """Fused unit embeddings ``(N, gps_dim)`` for retrieval/verification."""
        p = next(self.parameters())
        lm = label_maps if torch.is_tensor(label_maps) else label_maps_to_tensor(label_maps, self.labelmap_size)
        out = self(tokens.to(p.device, p.dtype), lm.to(p.device))
        return out["fused"].float().cpu().numpy()

    @torch.no_grad()
    def embed_locations(self, coords: np.ndarray) -> np.ndarray:
        return self.location_encoder.encode(coords)


def load_dualgeo_tokens(checkpoint: str | None = None, device: str = "cpu", location_init: str | None = "geoclip",
                        **cfg: Any) -> DualGeoTokenModel:
    """Registry loader: a trained folder, else a fresh model (location encoder from GeoCLIP by default)."""
    if checkpoint:
        return DualGeoTokenModel.from_pretrained(checkpoint, device=device)
    model = DualGeoTokenModel.from_config(cfg)
    if location_init == "geoclip":
        model.init_location_from_geoclip()
    return model.to(device).eval()
