"""G3's geo-alignment model (Jia et al., NeurIPS 2024) and compatibility with its published weights.

G3 keeps CLIP ViT-L/14 frozen and trains, on top of the raw (un-normalised) CLIP projections (768-d):
``vision_projection_else_1`` (image -> text space), ``vision_projection_else_2`` (image -> GPS space),
``text_projection_else`` and ``location_projection_else`` (512 -> 768 after a Mercator location
encoder with RFF sigmas 2^0, 2^4, 2^8), with three learnable log logit scales initialised at 3.99.

:class:`G3Heads` is that trainable part; it is also a GeoAligner over ``clip-vit-l14`` features
fed with the encoder's raw projection (``encode_image_outputs``), exactly what G3's forward feeds its
heads; only the heads' outputs are L2-normalised. :meth:`G3Heads.index_descriptor` is the retrieval
vector G3's ``IndexSearch.py`` indexes. :class:`G3Model` adds the CLIP
towers under G3's key names, so ``load_g3_checkpoint(path)`` reads a state dict saved by G3's training
script (``torch.save(model.state_dict())``) with ``weights_only=True`` and nothing else unpickled.
The tower sizes are read from the state dict's shapes, so no hub access is needed to load it.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from geodemo.geo import validate_coords
from geodemo.models import aligners  # aligners imports this module too: names are looked up when called
from geodemo.models.gps import LocationEncoder, load_geoclip_location_encoder
from geodemo.paths import MissingResourceError

__all__ = ["G3_LOGIT_SCALE_INIT", "G3Heads", "G3Model", "clip_config_from_state_dict", "load_g3_checkpoint",
           "load_g3", "g3_inputs"]

G3_LOGIT_SCALE_INIT = 3.99  # exp(3.99) = 54.1


class G3Heads(nn.Module):
    """G3's trainable heads, location encoder and logit scales (the keys of G3's state dict minus CLIP)."""

    architecture = "g3"
    CONFIG_KEYS = ("name", "encoder_name", "clip_dim", "location", "logit_scale_init", "text_head")

    def __init__(self, name: str = "g3", encoder_name: str = "clip-vit-l14", clip_dim: int = 768,
                 location: dict[str, Any] | None = None, logit_scale_init: float = G3_LOGIT_SCALE_INIT,
                 text_head: bool = True):
        super().__init__()
        self.name, self.encoder_name, self.clip_dim = name, encoder_name, int(clip_dim)
        self.text_head = bool(text_head)  # False: trained without a text tower (offline), no image->text part
        loc_cfg = {"projection": "mercator", **(location or {})}
        self.location_encoder = LocationEncoder(**loc_cfg)
        gps_dim = self.location_encoder.embed_dim
        self.vision_projection_else_1 = aligners.mlp([clip_dim, clip_dim, clip_dim])
        self.vision_projection_else_2 = aligners.mlp([clip_dim, clip_dim, clip_dim])
        self.text_projection_else = aligners.mlp([clip_dim, clip_dim, clip_dim])
        self.location_projection_else = aligners.mlp([gps_dim, gps_dim, clip_dim])
        for i in (1, 2, 3):
            setattr(self, f"logit_scale{i}", nn.Parameter(torch.tensor(float(logit_scale_init))))

    @property
    def config(self) -> dict[str, Any]:
        return {"architecture": self.architecture, "name": self.name, "encoder_name": self.encoder_name,
                "clip_dim": self.clip_dim, "location": self.location_encoder.config, "text_head": self.text_head}

    @classmethod
    def from_config(cls, cfg: dict[str, Any]) -> G3Heads:
        return cls(**{k: v for k, v in cfg.items() if k in cls.CONFIG_KEYS})

    @property
    def logit_scale(self) -> nn.Parameter:
        """The image<->GPS scale (``logit_scale2`` in G3)."""
        return self.logit_scale2

    def reset_logit_scales(self, value: float) -> None:
        for i in (1, 2, 3):
            getattr(self, f"logit_scale{i}").data.fill_(value)

    def init_location_from_geoclip(self) -> None:
        """Start from GeoCLIP's trained location encoder weights (as G3 does); keeps our projection."""
        self.location_encoder.load_state_dict(load_geoclip_location_encoder().state_dict())

    # embeddings (inputs: raw CLIP projections, as G3's forward feeds them; outputs: unit rows)
    def image_embeddings(self, clip_image: torch.Tensor) -> torch.Tensor:
        """Image -> GPS space (``vision_projection_else_2``)."""
        return F.normalize(self.vision_projection_else_2(clip_image), dim=-1)

    def image_text_embeddings(self, clip_image: torch.Tensor) -> torch.Tensor:
        """Image -> text space (``vision_projection_else_1``)."""
        return F.normalize(self.vision_projection_else_1(clip_image), dim=-1)

    def text_embeddings(self, clip_text: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.text_projection_else(clip_text), dim=-1)

    def index_descriptor(self, clip_image: torch.Tensor) -> torch.Tensor:
        """G3's retrieval vector ``(N, 3 * clip_dim)``: the CLIP projection, its image->text and its
        image->GPS embedding, each L2-normalised, concatenated in that order (G3's ``IndexSearch.py``)."""
        text = [self.image_text_embeddings(clip_image)] if self.text_head else []  # untrained without text
        return torch.cat([F.normalize(clip_image, dim=-1), *text, self.image_embeddings(clip_image)], dim=-1)

    @property
    def index_dim(self) -> int:
        """Width of :meth:`index_descriptor` (3 x clip_dim; 2 x without a text head)."""
        return (3 if self.text_head else 2) * self.clip_dim

    def location_embeddings(self, coords: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.location_projection_else(self.location_encoder(coords)), dim=-1)

    def forward(self, clip_image: torch.Tensor, clip_text: torch.Tensor, coords: torch.Tensor,
                extra_coords: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """G3's two contrastive terms: ``logits_image_text`` (B, B), ``logits_image_gps`` (B, B + extra)."""
        img_text = self.image_text_embeddings(clip_image)
        img_gps = self.image_embeddings(clip_image)
        text = self.text_embeddings(clip_text)
        if extra_coords is not None and len(extra_coords):
            coords = torch.cat([coords, extra_coords])
        loc = self.location_embeddings(coords)
        return {
            "logits_image_text": self.logit_scale1.exp() * img_text @ text.T,
            "logits_image_gps": self.logit_scale2.exp() * img_gps @ loc.T,
        }

    # GeoAligner protocol
    @torch.no_grad()
    def embed_image_features(self, features: np.ndarray) -> np.ndarray:
        """``(N, 768)`` raw CLIP ViT-L/14 image projections -> ``(N, 768)`` unit rows in G3's GPS space."""
        p = next(self.parameters())
        x = torch.as_tensor(np.asarray(features, np.float32)).to(p.device, p.dtype)
        if x.ndim != 2 or x.shape[1] != self.clip_dim:
            raise ValueError(f"{self.name} expects ({self.clip_dim})-dim {self.encoder_name} features, "
                             f"got shape {tuple(x.shape)}")
        return self.image_embeddings(x).float().cpu().numpy()

    @torch.no_grad()
    def embed_locations(self, coords: np.ndarray) -> np.ndarray:
        """``(M, 2)`` [lat, lon] -> ``(M, 768)`` unit rows."""
        p = next(self.parameters())
        pts = torch.from_numpy(validate_coords(coords).astype(np.float32)).to(p.device, p.dtype)
        out = [self.location_embeddings(c).float().cpu().numpy() for c in pts.split(8192)]
        return np.concatenate(out) if out else np.zeros((0, self.clip_dim), np.float32)


def g3_inputs(features: dict[str, Any], text_head: bool = True) -> dict[str, Any]:
    """Feature columns (feature shards, cached embeddings) -> the inputs G3's heads take, as a batch
    names them: ``image`` and ``text`` are the CLIP projections *before* L2 normalisation, as G3's
    forward feeds its heads and as :class:`~geodemo.models.descriptors.G3Descriptor` does at query time.

    Extraction stores CLIP's raw projections as ``projection`` / ``text_projection`` beside the unit
    ``image`` rows; those are used. An encoder without a raw output besides its unit rows (MobileNet,
    the offline analogue) has ``image`` alone, which is then what its descriptor feeds the heads too.
    Heads with a text head (CLIP) refuse unit rows: training on them and querying on raw projections
    would put the heads on two input scales.
    """
    out = dict(features)
    if "projection" in out:
        out["image"] = out.pop("projection")
    elif text_head:
        raise ValueError("G3's heads take raw CLIP projections, but these features hold unit rows only "
                         "(no 'projection' column): extract them again with scripts/extract_features.py")
    if "text_projection" in out:
        out["text"] = out.pop("text_projection")
    elif "text" in out:
        raise ValueError("these features hold unit-row text embeddings ('text'); G3's text head takes the "
                         "raw text projection: extract them again with scripts/extract_features.py --text")
    if not text_head:
        out.pop("text", None)
    return out


def clip_config_from_state_dict(state: dict[str, torch.Tensor], head_dim: int = 64):
    """A ``transformers.CLIPConfig`` whose towers match the ``vision_model.*``/``text_model.*`` shapes.

    Head counts are not stored in a state dict; CLIP's towers use 64-dim heads (ViT-L/14: 16 and 12).
    """
    from transformers import CLIPConfig

    def layers(prefix: str) -> int:
        ids = {int(m.group(1)) for k in state if (m := re.match(rf"{prefix}\.encoder\.layers\.(\d+)\.", k))}
        return max(ids) + 1

    try:
        patch = state["vision_model.embeddings.patch_embedding.weight"]
        v_pos = state["vision_model.embeddings.position_embedding.weight"]
        v_fc1 = state["vision_model.encoder.layers.0.mlp.fc1.weight"]
        tok = state["text_model.embeddings.token_embedding.weight"]
        t_pos = state["text_model.embeddings.position_embedding.weight"]
        t_fc1 = state["text_model.encoder.layers.0.mlp.fc1.weight"]
        proj = state["vision_projection.weight"]
    except KeyError as exc:
        raise KeyError(f"not a G3 state dict: key {exc} is missing (expected CLIP parts under "
                       "vision_model.*, text_model.*, vision_projection.weight)") from None
    v_dim, p = patch.shape[0], patch.shape[-1]
    grid = int(round((v_pos.shape[0] - 1) ** 0.5))
    t_dim = tok.shape[1]
    return CLIPConfig(
        vision_config={"hidden_size": v_dim, "intermediate_size": v_fc1.shape[0], "num_hidden_layers":
                       layers("vision_model"), "num_attention_heads": max(v_dim // head_dim, 1),
                       "patch_size": p, "image_size": grid * p, "projection_dim": proj.shape[0]},
        text_config={"hidden_size": t_dim, "intermediate_size": t_fc1.shape[0], "num_hidden_layers":
                     layers("text_model"), "num_attention_heads": max(t_dim // head_dim, 1),
                     "vocab_size": tok.shape[0], "max_position_embeddings": t_pos.shape[0],
                     "projection_dim": proj.shape[0]},
        projection_dim=proj.shape[0],
    )


class G3Model(G3Heads):
    """G3 with its CLIP towers: ``vision_model``, ``text_model``, ``vision_projection``, ``text_projection``."""

    def __init__(self, clip_config, **heads: Any):
        from transformers import CLIPModel

        heads.setdefault("clip_dim", clip_config.projection_dim)
        super().__init__(**heads)
        clip = CLIPModel(clip_config)
        self.vision_model = clip.vision_model
        self.text_model = clip.text_model
        self.vision_projection = clip.visual_projection
        self.text_projection = clip.text_projection
        for module in (self.vision_model, self.text_model, self.vision_projection, self.text_projection):
            module.requires_grad_(False)  # frozen as in G3

    def heads_state_dict(self) -> dict[str, torch.Tensor]:
        """The trainable part only (what :class:`G3Heads` loads)."""
        towers = ("vision_model.", "text_model.", "vision_projection.", "text_projection.")
        return {k: v for k, v in self.state_dict().items() if not k.startswith(towers)}

    @torch.no_grad()
    def encode_pixels(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Raw (un-normalised) CLIP image projections, G3's ``image_embeds`` as its heads take them."""
        pooled = self.vision_model(pixel_values=pixel_values).pooler_output
        return self.vision_projection(pooled)

    def heads(self) -> G3Heads:
        """The trainable part alone (a :class:`G3Heads` on the same device), without the CLIP towers."""
        heads = G3Heads.from_config(self.config)
        heads.load_state_dict(self.heads_state_dict(), strict=True)
        p = next(self.parameters())
        return heads.to(p.device).eval()


def _read_state(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    state = torch.load(path, map_location="cpu", weights_only=True)  # refuses pickled code
    if not isinstance(state, dict):
        raise ValueError(f"{path} holds a {type(state).__name__}, not a state dict")
    return state


def load_g3_checkpoint(path: str | Path, device: str = "cpu", clip_config=None) -> G3Model:
    """A :class:`G3Model` from a state dict saved by G3's training script (``.pth``/``.pt``/``.safetensors``).

    Only tensors are read (``weights_only=True``). ``clip_config`` defaults to one inferred from the
    state dict's shapes. ``position_ids`` buffers saved by older transformers are ignored.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingResourceError(f"G3 checkpoint not found at {path}; download G3's trained weights "
                                   "and pass the path of the saved state dict (e.g. g3.pth)")
    state = _read_state(path)
    model = G3Model(clip_config or clip_config_from_state_dict(state))
    own = model.state_dict()
    state = {k: v for k, v in state.items() if not (k.endswith("position_ids") and k not in own)}
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith("position_ids")]
    if missing or unexpected:
        raise ValueError(f"{path} does not match G3's layout: missing {missing[:8]}, unexpected {unexpected[:8]}")
    return model.to(device).eval()


def load_g3(checkpoint: str | None = None, device: str = "cpu", **heads: Any) -> G3Heads:
    """Registry loader: G3's heads from a checkpoint (full G3 state dict or heads folder), else fresh
    heads with GeoCLIP's location encoder (the starting point of G3's training)."""
    if checkpoint:
        path = Path(checkpoint)
        if path.is_dir():
            return aligners.load_aligner(path, device=device)
        return load_g3_checkpoint(path, device=device)
    model = G3Heads(**{k: v for k, v in heads.items() if k in G3Heads.CONFIG_KEYS})
    model.init_location_from_geoclip()
    return model.to(device).eval()
