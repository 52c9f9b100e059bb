"""DualGeo's dual-view model as its reference code builds it (CJ310177/DualGeo, ``utils/DualView_seg.py``).

* Segmentation view: the ADE20K label map as a greyscale image (class ids / 255, 224 x 224 after a
  bilinear resize, as DualGeo reads its label-map PNGs) -> ``semantic_encoder``: a ResNet-18 whose
  first convolution takes one channel, pooled (512) -> ``projection`` 512 -> 768 ->
  ``vision_projection_seg`` (768 -> 768, no bias).
* Image view: the frozen CLIP ViT-L/14's pooled projection (768), before L2 normalisation.
* ``cross_attn_fusion``: one bidirectional cross-attention block (8 heads), each view attending to
  the other, output projections, residual + LayerNorm, dropout 0.1.
* Heads ``rgb_projection_else`` / ``seg_projection_else`` (768 -> 768 -> 768), G3's trainable
  Mercator location encoder with ``location_projection_else`` (512 -> 512 -> 768), two log logit
  scales initialised at 3.99; the loss is the sum of the two views' symmetric InfoNCE against GPS.

Module names and shapes are DualGeo's, so the state dict its ``DualGeo_train.py`` saves loads with
``strict=True`` (:func:`load_dualgeo_checkpoint`; the CLIP tower under ``vision_model_rgb.*`` /
``vision_projection_rgb.*``). **One departure**: DualGeo's attention reshapes the batch so that each
photo attends to every photo of its batch (its embedding then depends on its batch-mates, and on the
batch size at indexing time). Here attention runs over each photo's own tokens; with one token per
view the softmax is exactly 1, so the fused view is the output projection of the other view's value,
and a batch of one gives DualGeo's forward exactly.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.nn import functional as F

from geodemo.geo import validate_coords
from geodemo.models.aligners import mlp, read_pretrained, save_pretrained
from geodemo.models.gps import LocationEncoder, load_geoclip_location_encoder
from geodemo.paths import MissingResourceError

__all__ = ["NUM_ADE20K_CLASSES", "DUALGEO_SEG_SIZE", "label_maps_to_tensor", "segmentation_view",
           "SemanticEncoder", "CrossAttentionFusion", "DualGeoModel", "DualGeoCLIPModel",
           "load_dualgeo_checkpoint", "load_dualgeo"]

NUM_ADE20K_CLASSES = 151
DUALGEO_SEG_SIZE = 224  # DualGeo resizes its label-map PNGs to 224 x 224


def label_maps_to_tensor(label_maps: list[np.ndarray], size: int = 64, resample: str = "nearest") -> torch.Tensor:
    """Label maps of any sizes -> ``(N, size, size)`` long tensor.

    ``resample="nearest"`` keeps class ids; ``"bilinear"`` is what DualGeo does to its label-map PNGs
    (torchvision's ``Resize`` on a greyscale PIL image), interpolating ids as grey levels.
    """
    if resample not in ("nearest", "bilinear"):
        raise ValueError(f"resample must be nearest or bilinear, got {resample!r}")
    out = []
    for lm in label_maps:
        if resample == "bilinear":
            grey = Image.fromarray(np.asarray(lm, dtype=np.uint8))  # 2-D uint8: greyscale
            out.append(torch.from_numpy(np.asarray(grey.resize((size, size), Image.Resampling.BILINEAR))).long())
            continue
        t = torch.from_numpy(np.array(lm, dtype=np.float32))[None, None]
        out.append(F.interpolate(t, size=(size, size), mode="nearest")[0, 0].long())
    return torch.stack(out) if out else torch.zeros((0, size, size), dtype=torch.long)


def segmentation_view(label_maps: torch.Tensor | np.ndarray) -> torch.Tensor:
    """``(N, H, W)`` grey levels 0..255 (label maps as DualGeo's PNGs) -> ``(N, 1, H, W)`` float in [0, 1]
    (``to_tensor`` of a greyscale image)."""
    x = torch.as_tensor(np.asarray(label_maps) if not torch.is_tensor(label_maps) else label_maps)
    if x.ndim == 4:
        return x.float()  # already a view
    return (x.float() / 255.0)[:, None]


class SemanticEncoder(nn.Module):
    """ResNet-18 with a one-channel first convolution over the label map, pooled, -> ``output_dim``."""

    def __init__(self, output_dim: int = 768):
        super().__init__()
        from torchvision import models  # geodemo/__init__ installed the torchvision op guard

        self.resnet = models.resnet18(weights=None)
        self.resnet.conv1 = nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.features = nn.Sequential(*list(self.resnet.children())[:-1])  # shares the ResNet's modules
        self.projection = nn.Linear(512, output_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.projection(torch.flatten(self.features(x), 1))


class CrossAttentionFusion(nn.Module):
    """DualGeo's bidirectional cross-attention, run over the tokens of each photo (never across photos).

    ``rgb``/``seg`` are ``(N, d)`` (one token per view, DualGeo's case) or ``(N, T, d)``.
    """

    def __init__(self, embed_dim: int = 768, num_heads: int = 8, dropout: float = 0.1):
        super().__init__()
        if embed_dim % num_heads:
            raise ValueError("embed_dim must be divisible by num_heads")
        self.embed_dim, self.num_heads, self.head_dim = embed_dim, num_heads, embed_dim // num_heads
        for name in ("q_proj_rgb", "k_proj_seg", "v_proj_seg", "q_proj_seg", "k_proj_rgb", "v_proj_rgb",
                     "output_proj_rgb", "output_proj_seg"):
            setattr(self, name, nn.Linear(embed_dim, embed_dim))
        self.norm_rgb, self.norm_seg = nn.LayerNorm(embed_dim), nn.LayerNorm(embed_dim)
        self.dropout = nn.Dropout(dropout)

    def _attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """``(N, T, d)`` queries over ``(N, S, d)`` keys/values of the same photo, per head."""
        n, t, _ = q.shape

        def heads(x: torch.Tensor) -> torch.Tensor:
            return x.view(n, x.shape[1], self.num_heads, self.head_dim).transpose(1, 2)

        weights = torch.softmax(heads(q) @ heads(k).transpose(-2, -1) / self.head_dim**0.5, dim=-1)
        return (weights @ heads(v)).transpose(1, 2).reshape(n, t, self.embed_dim)

    def forward(self, rgb: torch.Tensor, seg: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        single = rgb.ndim == 2
        if single:
            rgb, seg = rgb[:, None], seg[:, None]
        rgb_enhanced = self.output_proj_rgb(self._attend(self.q_proj_rgb(rgb), self.k_proj_seg(seg), self.v_proj_seg(seg)))
        seg_enhanced = self.output_proj_seg(self._attend(self.q_proj_seg(seg), self.k_proj_rgb(rgb), self.v_proj_rgb(rgb)))
        rgb_out = self.norm_rgb(rgb + self.dropout(rgb_enhanced))
        seg_out = self.norm_seg(seg + self.dropout(seg_enhanced))
        return (rgb_out[:, 0], seg_out[:, 0]) if single else (rgb_out, seg_out)


class FolderCheckpoint:
    """``from_config`` / ``from_pretrained`` / ``save_pretrained`` for a model with ``CONFIG_KEYS`` and ``config``
    (``config.json`` + ``model.safetensors``, loaded with ``strict=True``)."""

    CONFIG_KEYS: tuple[str, ...] = ()

    @classmethod
    def from_config(cls, cfg: dict[str, Any]):
        return cls(**{k: v for k, v in cfg.items() if k in cls.CONFIG_KEYS})

    @classmethod
    def from_pretrained(cls, folder: str | Path, device: str = "cpu"):
        """Load ``config.json`` + ``model.safetensors`` written by :meth:`save_pretrained`."""
        cfg, state = read_pretrained(folder)
        model = cls.from_config(cfg)
        model.load_state_dict(state, strict=True)
        return model.to(device).eval()

    def save_pretrained(self, folder: str | Path) -> Path:
        return save_pretrained(self, folder, self.config)


class DualGeoModel(FolderCheckpoint, nn.Module):
    """DualGeo's trainable part (its state dict minus the CLIP tower) over cached CLIP projections.

    Inputs: ``image`` ``(N, clip_dim)`` raw CLIP projections and ``seg`` ``(N, H, W)`` label-map grey
    levels (or ``(N, 1, H, W)`` views). ``clip_dim`` is 768 in DualGeo; the offline analogue sets it
    to its encoder's width.
    """

    architecture = "dualgeo"
    CONFIG_KEYS = ("name", "encoder_name", "segmenter_name", "clip_dim", "heads", "dropout", "seg_size",
                   "location", "logit_scale_init")

    def __init__(self, name: str = "dualgeo", encoder_name: str = "clip-vit-l14",
                 segmenter_name: str = "segformer-b5-ade", clip_dim: int = 768, heads: int = 8,
                 dropout: float = 0.1, seg_size: int = DUALGEO_SEG_SIZE, location: dict[str, Any] | None = None,
                 logit_scale_init: float = 3.99):
        super().__init__()
        self.name, self.encoder_name, self.segmenter_name = name, encoder_name, segmenter_name
        self.clip_dim, self.heads, self.dropout, self.seg_size = int(clip_dim), int(heads), float(dropout), int(seg_size)
        self.semantic_encoder = SemanticEncoder(self.clip_dim)
        self.vision_projection_seg = nn.Linear(self.clip_dim, self.clip_dim, bias=False)
        self.cross_attn_fusion = CrossAttentionFusion(self.clip_dim, self.heads, self.dropout)
        self.logit_scale_rgb = nn.Parameter(torch.tensor(float(logit_scale_init)))
        self.logit_scale_seg = nn.Parameter(torch.tensor(float(logit_scale_init)))
        self.location_encoder = LocationEncoder(**{"projection": "mercator", **(location or {})})
        gps_dim = self.location_encoder.embed_dim
        self.rgb_projection_else = mlp([self.clip_dim] * 3)
        self.seg_projection_else = mlp([self.clip_dim] * 3)
        self.location_projection_else = mlp([gps_dim, gps_dim, self.clip_dim])

    @property
    def config(self) -> dict[str, Any]:
        return {"architecture": self.architecture, "name": self.name, "encoder_name": self.encoder_name,
                "segmenter_name": self.segmenter_name, "clip_dim": self.clip_dim, "heads": self.heads,
                "dropout": self.dropout, "seg_size": self.seg_size, "location": self.location_encoder.config}

    def init_location_from_geoclip(self) -> None:
        """GeoCLIP's trained location encoder weights in G3's Mercator encoder (DualGeo_train.py loads them)."""
        self.location_encoder.load_state_dict(load_geoclip_location_encoder().state_dict())

    def reset_logit_scales(self, value: float) -> None:
        self.logit_scale_rgb.data.fill_(value)
        self.logit_scale_seg.data.fill_(value)

    def logit_scales(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.logit_scale_rgb, self.logit_scale_seg

    def enhanced_views(self, image: torch.Tensor, seg: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """DualGeo's ``extract_enhanced_features`` from the CLIP projection: ``enhanced_rgb``, ``enhanced_seg``."""
        seg_feat = self.vision_projection_seg(self.semantic_encoder(segmentation_view(seg).to(image.dtype)))
        return self.cross_attn_fusion(image, seg_feat)

    def gps_embeddings(self, enhanced_rgb: torch.Tensor, enhanced_seg: torch.Tensor) -> dict[str, torch.Tensor]:
        """Unit GPS-space embeddings of both views (``image``, ``segmentation``)."""
        return {"image": F.normalize(self.rgb_projection_else(enhanced_rgb), dim=-1),
                "segmentation": F.normalize(self.seg_projection_else(enhanced_seg), dim=-1)}

    def forward(self, image: torch.Tensor, seg: torch.Tensor) -> dict[str, torch.Tensor]:
        rgb, seg_v = self.enhanced_views(image, seg)
        return {**self.gps_embeddings(rgb, seg_v), "enhanced_rgb": rgb, "enhanced_seg": seg_v}

    def embed_batch(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """A training batch (``image`` raw projections, ``labelmap`` grey levels) -> unit GPS-space views."""
        return self(batch["image"], batch["labelmap"])

    def location_embeddings(self, coords: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.location_projection_else(self.location_encoder(coords)), dim=-1)

    @torch.no_grad()
    def embed_locations(self, coords: np.ndarray) -> np.ndarray:
        p = next(self.parameters())
        pts = torch.from_numpy(validate_coords(coords).astype(np.float32)).to(p.device, p.dtype)
        out = [self.location_embeddings(c).float().cpu().numpy() for c in pts.split(8192)]
        return np.concatenate(out) if out else np.zeros((0, self.clip_dim), np.float32)


def _vision_config_from_state(state: dict[str, torch.Tensor], head_dim: int = 64):
    """A ``transformers.CLIPVisionConfig`` matching the ``vision_model_rgb.*`` shapes (64-dim heads)."""
    from transformers import CLIPVisionConfig

    try:
        patch = state["vision_model_rgb.embeddings.patch_embedding.weight"]
        pos = state["vision_model_rgb.embeddings.position_embedding.weight"]
        fc1 = state["vision_model_rgb.encoder.layers.0.mlp.fc1.weight"]
        proj = state["vision_projection_rgb.weight"]
    except KeyError as exc:
        raise KeyError(f"not a DualGeo state dict: key {exc} is missing (expected the CLIP tower under "
                       "vision_model_rgb.*, vision_projection_rgb.weight)") from None
    layers = {int(m.group(1)) for k in state if (m := re.match(r"vision_model_rgb\.encoder\.layers\.(\d+)\.", k))}
    width, p = patch.shape[0], patch.shape[-1]
    return CLIPVisionConfig(hidden_size=width, intermediate_size=fc1.shape[0], num_hidden_layers=max(layers) + 1,
                            num_attention_heads=max(width // head_dim, 1), patch_size=p,
                            image_size=int(round((pos.shape[0] - 1) ** 0.5)) * p, projection_dim=proj.shape[0])


class DualGeoCLIPModel(DualGeoModel):
    """DualGeo with its frozen CLIP tower (``vision_model_rgb``, ``vision_projection_rgb``): the layout of
    the state dict ``DualGeo_train.py`` saves."""

    def __init__(self, vision_config, **kwargs: Any):
        from transformers import CLIPVisionModelWithProjection

        kwargs.setdefault("clip_dim", vision_config.projection_dim)
        super().__init__(**kwargs)
        tower = CLIPVisionModelWithProjection(vision_config)
        self.vision_model_rgb = tower.vision_model
        self.vision_projection_rgb = tower.visual_projection
        self.vision_model_rgb.requires_grad_(False)
        self.vision_projection_rgb.requires_grad_(False)

    @torch.no_grad()
    def encode_pixels(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Raw CLIP projections (DualGeo's ``vision_projection_rgb(vision_model_rgb(x)[1])``)."""
        return self.vision_projection_rgb(self.vision_model_rgb(pixel_values=pixel_values).pooler_output)

    def trainable_part(self) -> DualGeoModel:
        """The trainable part alone (a :class:`DualGeoModel`), without the CLIP tower."""
        model = DualGeoModel.from_config(self.config)
        towers = ("vision_model_rgb.", "vision_projection_rgb.")
        model.load_state_dict({k: v for k, v in self.state_dict().items() if not k.startswith(towers)}, strict=True)
        return model.to(next(self.parameters()).device).eval()


def load_dualgeo_checkpoint(path: str | Path, device: str = "cpu", vision_config=None, **kwargs: Any) -> DualGeoCLIPModel:
    """A :class:`DualGeoCLIPModel` from DualGeo's checkpoint (``{"model_state_dict": ...}`` as
    ``DualGeo_train.py`` saves it, or the bare state dict), loaded with ``strict=True``; only tensors
    are read (``weights_only=True``)."""
    path = Path(path)
    if not path.is_file():
        raise MissingResourceError(f"DualGeo checkpoint not found at {path}; pass the file DualGeo_train.py "
                                   "saved (e.g. checkpoints/dvseg_9_.pth)")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path))
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "model_state_dict" in state:
        state = state["model_state_dict"]
    if not isinstance(state, dict):
        raise ValueError(f"{path} holds a {type(state).__name__}, not a state dict")
    model = DualGeoCLIPModel(vision_config or _vision_config_from_state(state), **kwargs)
    state = {k: v for k, v in state.items() if not (k.endswith("position_ids") and k not in model.state_dict())}
    model.load_state_dict(state, strict=True)
    return model.to(device).eval()


def load_dualgeo(checkpoint: str | None = None, device: str = "cpu", location_init: str | None = "geoclip",
                 **cfg: Any) -> DualGeoModel:
    """Registry loader: DualGeo's own checkpoint file (CLIP tower dropped), a trained folder, else a fresh
    model (location encoder from GeoCLIP by default, as DualGeo_train.py starts)."""
    if checkpoint:
        path = Path(checkpoint)
        if path.is_file():
            names = {k: cfg[k] for k in ("name", "encoder_name", "segmenter_name") if k in cfg}
            return load_dualgeo_checkpoint(path, device=device, **names).trainable_part()
        return DualGeoModel.from_pretrained(path, device=device)
    model = DualGeoModel.from_config(cfg)
    if location_init == "geoclip":
        model.init_location_from_geoclip()
    return model.to(device).eval()
