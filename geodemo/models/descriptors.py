"""Retrieval descriptors: the vector a database indexes and a query photo is embedded as.

A preset's ``"descriptor"`` section names one; :func:`load_descriptor` builds it::

    {"kind": "features", "encoder": "mobilenet-v1-imagenet"}
    {"kind": "g3", "encoder": "clip-vit-l14", "checkpoint": "g3.pth"}
    {"kind": "dualgeo", "encoder": "clip-vit-l14", "segmenter": "segformer-b5-ade", "checkpoint": "dualgeo"}
    {"kind": "dualgeo-tokens", "encoder": "clip-vit-l14", "segmenter": "segformer-b5-ade", "checkpoint": "dualgeo-tokens"}

* ``features``: the encoder's embedding as a unit row (any registered image encoder).
* ``g3``: G3's index vector (``IndexSearch.py``): the CLIP projection, its image->text and its
  image->GPS embedding, each L2-normalised, concatenated (3 x 768); ``gps`` is the image->GPS head's
  output, the one G3's verification compares with its location encoder.
* ``dualgeo``: DualGeo's index vector (``IndexSearch_DualGeo.py``): the enhanced image view (after the
  cross-attention with the segmentation view) and the encoder's own projection, each L2-normalised,
  concatenated, from :class:`~geodemo.models.dualgeo.DualGeoModel` (DualGeo's model; label maps resized
  bilinearly to its ``seg_size`` as DualGeo reads its PNGs); ``gps`` is its image view's GPS head.
* ``dualgeo-tokens``: the same vector from our token-level model
  (:class:`~geodemo.models.dualgeo_tokens.DualGeoTokenModel`, ``dualgeo-plus``); ``gps`` is its fused
  GPS-space embedding.

The concatenations are divided by sqrt(number of parts): rows are unit vectors, similarities are
cosines in [-1, 1], and every ranking is the papers' (their inner products scaled by one constant).
  Any encoder with ``encode_image_tokens`` works (CLIP's 16x16x1024 patch tokens, MobileNet's
  7x7x1024 feature map).

``checkpoint`` is a file or folder path, or a name under :func:`~geodemo.paths.checkpoints_dir`.
Without one, ``"weights": "random"`` builds the real architectures with seeded random weights
(tests, benchmarks); otherwise a missing checkpoint is a clear :class:`MissingResourceError`.

:attr:`Descriptor.name` is the descriptor's identity: kind, model names and fingerprints of their
weights. A database records it, and refuses queries made with another.

In a pipeline: search the database with ``output.descriptor``; give a GeoAligner ``output.features``
(the encoder's raw output: GeoCLIP's MLP takes the raw CLIP projection, not a unit row); verify with
``output.gps`` against :meth:`Descriptor.embed_locations` when the descriptor has its own GPS head.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.nn import functional as F

from geodemo.models.dualgeo import label_maps_to_tensor, load_dualgeo
from geodemo.models.dualgeo_tokens import load_dualgeo_tokens
from geodemo.models.g3 import G3Model, load_g3
from geodemo.models.loading import resolve_device
from geodemo.models.registry import get_spec, shared_model
from geodemo.models.segmentation import label_map_of
from geodemo.paths import MissingResourceError, checkpoints_dir, how_to_make_checkpoint

__all__ = ["DESCRIPTOR_KINDS", "DescriptorOutput", "Descriptor", "FeatureDescriptor", "G3Descriptor",
           "DualGeoDescriptor", "DualGeoTokenDescriptor", "load_descriptor", "module_fingerprint"]

DESCRIPTOR_KINDS = ("features", "g3", "dualgeo", "dualgeo-tokens")
SPEC_KEYS = {"kind", "encoder", "segmenter", "checkpoint", "weights", "seed", "batch_size"}
# loader options that change where or how fast a model runs, never what it computes
_RUNTIME_KEYS = {"device", "dtype", "num_threads", "name", "overlay_opacity"}


@dataclass
class DescriptorOutput:
    """What :meth:`Descriptor.describe` gives for ``N`` photos."""

    descriptor: np.ndarray  # (N, D) float32 retrieval vectors
    features: np.ndarray | None = None  # (N, d) the encoder's raw output (what an aligner takes)
    gps: np.ndarray | None = None  # (N, g) unit image->GPS embeddings (models with a GPS head)


# ---------------------------------------------------------------------------------------- identity


def module_fingerprint(module: torch.nn.Module) -> str:
    """Hash of a module's state dict (names, shapes, float32 values): changes whenever a weight does."""
    h = hashlib.sha1()
    for key, value in sorted(module.state_dict().items()):
        h.update(key.encode())
        h.update(str(tuple(value.shape)).encode())
        h.update(value.detach().float().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:10]


def _file_fingerprint(path: Path, block: int = 1 << 20) -> str:
    """Size and the first and last MiB of a weights file (or of every file in a folder)."""
    h = hashlib.sha1()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for f in files:
        size = f.stat().st_size
        h.update(f"{f.name}:{size}".encode())
        with open(f, "rb") as fh:
            h.update(fh.read(block))
            if size > 2 * block:
                fh.seek(size - block)
                h.update(fh.read(block))
    return h.hexdigest()[:10]


def _model_fingerprint(name: str, overrides: dict[str, Any], model: Any) -> str:
    """Identity of a registered model's weights: its config (runtime options left out) and any
    weights file it names or reads, so the same weights on CPU or GPU, fp32 or bf16 match."""
    cfg = {k: v for k, v in {**get_spec(name).config, **overrides}.items() if k not in _RUNTIME_KEYS}
    parts = [json.dumps(cfg, sort_keys=True, default=str)]
    for value in cfg.values():
        if isinstance(value, str) and value and Path(value).expanduser().exists():
            parts.append(_file_fingerprint(Path(value).expanduser()))
    weights_path = getattr(getattr(model, "model", None), "path", None)  # TFLite models
    if weights_path is not None and Path(weights_path).is_file():
        parts.append(_file_fingerprint(Path(weights_path)))
    return hashlib.sha1("|".join(parts).encode()).hexdigest()[:10]


# ---------------------------------------------------------------------------------------- helpers


def _unit(x: np.ndarray | torch.Tensor) -> np.ndarray:
    t = torch.as_tensor(np.asarray(x, dtype=np.float32)) if not torch.is_tensor(x) else x.float()
    return F.normalize(t, dim=-1).cpu().numpy().astype(np.float32)


def _encoder_outputs(encoder: Any, images: list[Image.Image], batch_size: int,
                     tokens: bool = False) -> tuple[np.ndarray, torch.Tensor | None]:
    """The encoder's raw output (CLIP: projection before normalisation) and, if asked, its tokens."""
    if hasattr(encoder, "encode_image_outputs"):  # one forward pass for both (CLIP)
        return encoder.encode_image_outputs(images, batch_size=batch_size, tokens=tokens)
    feats = np.asarray(encoder.encode_images(images, batch_size=batch_size), dtype=np.float32)
    if not tokens:
        return feats, None
    if not hasattr(encoder, "encode_image_tokens"):
        raise ValueError(f"encoder {encoder.name!r} gives no image tokens (encode_image_tokens); "
                         "the dualgeo descriptor needs them")
    return feats, torch.as_tensor(encoder.encode_image_tokens(images, batch_size=batch_size))


def _label_maps(segmenter: Any, images: list[Image.Image]) -> list[np.ndarray]:
    if hasattr(segmenter, "label_maps"):
        return [np.asarray(m) for m in segmenter.label_maps(images)]
    return [label_map_of(segmenter, im) for im in images]


def _resolve_checkpoint(value: str | Path) -> Path:
    path = Path(value).expanduser()
    candidates = [path] if path.is_absolute() else [path, checkpoints_dir() / path]
    for candidate in candidates:
        if candidate.exists():
            return candidate
    raise MissingResourceError(
        f"descriptor checkpoint {str(value)!r} not found (looked in {', '.join(str(c) for c in candidates)}); "
        f"{how_to_make_checkpoint(value)}"
    )


# ---------------------------------------------------------------------------------------- descriptors


class Descriptor:
    """Photos -> retrieval vectors of one kind; see the module docstring."""

    kind = "features"

    def __init__(self, name: str, dim: int, encoder: Any, batch_size: int = 16):
        self.name, self.dim, self.encoder, self.batch_size = name, int(dim), encoder, int(batch_size)

    @property
    def has_gps_head(self) -> bool:
        return False

    def describe(self, images: list[Image.Image]) -> DescriptorOutput:
        """``N`` photos -> their descriptors (and raw features, GPS embeddings where the model has them)."""
        features, _ = _encoder_outputs(self.encoder, images, self.batch_size)
        return self.describe_features(features)

    def describe_features(self, features: np.ndarray, tokens: Any = None,
                          label_maps: Any = None) -> DescriptorOutput:
        """The same from the encoder's raw output (e.g. feature shards), without the encoder."""
        feats = np.asarray(features, dtype=np.float32)
        return DescriptorOutput(descriptor=_unit(feats), features=feats)

    def embed_locations(self, coords: np.ndarray) -> np.ndarray:
        """``(N, 2)`` [lat, lon] -> ``(N, g)`` unit rows in the model's GPS space."""
        raise NotImplementedError(f"descriptor {self.kind!r} has no GPS head; use kind 'g3' or 'dualgeo'")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, dim={self.dim})"


class FeatureDescriptor(Descriptor):
    """The encoder's embedding, L2-normalised."""

    kind = "features"


class G3Descriptor(Descriptor):
    """G3's index vector: [CLIP projection, image->text, image->GPS], each unit, concatenated."""

    kind = "g3"

    def __init__(self, name: str, encoder: Any, heads: Any, batch_size: int = 16):
        super().__init__(name, heads.index_dim, encoder, batch_size)
        self.heads = heads

    @property
    def has_gps_head(self) -> bool:
        return True

    @torch.no_grad()
    def describe_features(self, features: np.ndarray, tokens: Any = None,
                          label_maps: Any = None) -> DescriptorOutput:
        feats = np.asarray(features, dtype=np.float32)
        if feats.ndim != 2 or feats.shape[1] != self.heads.clip_dim:
            raise ValueError(f"G3 heads take ({self.heads.clip_dim})-dim CLIP projections, got {feats.shape}")
        p = next(self.heads.parameters())
        x = torch.from_numpy(feats).to(p.device, p.dtype)
        index = _unit(self.heads.index_descriptor(x))  # unit parts: / sqrt(number of parts)
        return DescriptorOutput(descriptor=index, features=feats,
                                gps=self.heads.image_embeddings(x).float().cpu().numpy())

    def embed_locations(self, coords: np.ndarray) -> np.ndarray:
        return self.heads.embed_locations(coords)


class DualGeoDescriptor(Descriptor):
    """DualGeo's index vector: [enhanced image view, encoder projection], each unit, concatenated."""

    kind = "dualgeo"

    def __init__(self, name: str, encoder: Any, segmenter: Any, model: Any, feature_dim: int,
                 batch_size: int = 16):
        view_dim = model.d_model if hasattr(model, "d_model") else model.clip_dim  # token model: d_model
        super().__init__(name, view_dim + int(feature_dim), encoder, batch_size)
        self.segmenter, self.model = segmenter, model

    @property
    def has_gps_head(self) -> bool:
        return True

    def describe(self, images: list[Image.Image]) -> DescriptorOutput:
        features, _ = _encoder_outputs(self.encoder, images, self.batch_size)
        return self.describe_features(features, None, _label_maps(self.segmenter, images))

    @torch.no_grad()
    def describe_features(self, features: np.ndarray, tokens: Any = None,
                          label_maps: Any = None) -> DescriptorOutput:
        """From the encoder's raw output and ADE20K label maps (a list at any size, resized bilinearly
        to the model's ``seg_size`` as DualGeo reads its PNGs, or ``(N, s, s)`` grey levels already)."""
        if label_maps is None:
            raise ValueError("the dualgeo descriptor needs label maps besides the features (extract them with "
                             "--segmenter, --labelmap-size 224 --labelmap-resample bilinear)")
        feats = np.asarray(features, dtype=np.float32)
        if feats.ndim != 2 or feats.shape[1] != self.model.clip_dim:
            raise ValueError(f"{self.model.name} takes ({self.model.clip_dim})-dim projections, got {feats.shape}")
        p = next(self.model.parameters())
        lm = (label_maps_to_tensor(label_maps, self.model.seg_size, resample="bilinear") if isinstance(label_maps, list)
              else torch.as_tensor(np.asarray(label_maps)))
        x = torch.from_numpy(feats).to(p.device, p.dtype)
        out = self.model(x, lm.to(p.device))
        descriptor = _unit(np.concatenate([_unit(out["enhanced_rgb"]), _unit(feats)], axis=1))  # / sqrt(2)
        return DescriptorOutput(descriptor=descriptor, features=feats, gps=out["image"].float().cpu().numpy())

    def embed_locations(self, coords: np.ndarray) -> np.ndarray:
        return self.model.embed_locations(coords)


class DualGeoTokenDescriptor(DualGeoDescriptor):
    """DualGeo's index vector from our token-level model: [enhanced image view, encoder embedding]."""

    kind = "dualgeo-tokens"

    def describe(self, images: list[Image.Image]) -> DescriptorOutput:
        features, tokens = _encoder_outputs(self.encoder, images, self.batch_size, tokens=True)
        return self.describe_features(features, tokens, _label_maps(self.segmenter, images))

    @torch.no_grad()
    def describe_features(self, features: np.ndarray, tokens: Any = None,
                          label_maps: Any = None) -> DescriptorOutput:
        """From the encoder's output, its tokens ``(N, T, C)`` and ADE20K label maps (list or ``(N, H, W)``)."""
        if tokens is None or label_maps is None:
            raise ValueError("the dualgeo-tokens descriptor needs image tokens and label maps besides the features "
                             "(extract them with --tokens and --segmenter)")
        feats = np.asarray(features, dtype=np.float32)
        p = next(self.model.parameters())
        toks = torch.as_tensor(np.asarray(tokens) if not torch.is_tensor(tokens) else tokens).to(p.device, p.dtype)
        if toks.ndim != 3 or toks.shape[-1] != self.model.token_dim:
            raise ValueError(f"{self.model.name} takes (N, T, {self.model.token_dim}) tokens, got {tuple(toks.shape)}")
        lm = (torch.as_tensor(np.asarray(label_maps)) if not isinstance(label_maps, list)
              else label_maps_to_tensor(label_maps, self.model.labelmap_size))
        image_view, seg_view = self.model.pooled_views(toks, lm.to(p.device))
        fused = self.model.gps_embeddings(image_view, seg_view)["fused"]
        descriptor = _unit(np.concatenate([_unit(image_view), _unit(feats)], axis=1))  # / sqrt(2)
        return DescriptorOutput(descriptor=descriptor, features=feats, gps=fused.float().cpu().numpy())


# ---------------------------------------------------------------------------------------- loading


def _load_registered(name: str, device: str, random: bool, seed: int) -> tuple[Any, str]:
    """A registered model shared per process (as the locator loads it) and its weights fingerprint."""
    spec = get_spec(name)
    overrides: dict[str, Any] = {}
    if "device" in spec.config:
        overrides["device"] = device
    module_name, func_name = spec.loader.split(":")
    loader = getattr(importlib.import_module(module_name), func_name)
    if random and "random_init" in inspect.signature(loader).parameters:  # TFLite models are real only
        overrides.update(random_init=True, seed=int(seed))
    model = shared_model(name, **overrides)
    return model, _model_fingerprint(name, overrides, model)


def _validate(spec: dict[str, Any]) -> dict[str, Any]:
    if not isinstance(spec, dict):
        raise ValueError(f"a descriptor spec is a dict, got {type(spec).__name__}")
    unknown = set(spec) - SPEC_KEYS
    if unknown:
        raise ValueError(f"unknown descriptor option(s) {sorted(unknown)}; known: {sorted(SPEC_KEYS)}")
    kind = spec.get("kind", "features")
    if kind not in DESCRIPTOR_KINDS:
        raise ValueError(f"unknown descriptor kind {kind!r}; choose one of {', '.join(DESCRIPTOR_KINDS)}")
    if not spec.get("encoder"):
        raise ValueError(f"descriptor {kind!r} needs an 'encoder' (a registered image encoder)")
    if kind in ("dualgeo", "dualgeo-tokens") and not spec.get("segmenter"):
        raise ValueError(f"descriptor {kind!r} needs a 'segmenter' (e.g. segformer-b5-ade)")
    weights = spec.get("weights", "pretrained")
    if weights not in ("pretrained", "random"):
        raise ValueError(f"descriptor weights must be 'pretrained' or 'random', got {weights!r}")
    return {"kind": kind, "weights": weights, "seed": int(spec.get("seed", 0)),
            "batch_size": int(spec.get("batch_size", 16)), **{k: spec.get(k) for k in
                                                              ("encoder", "segmenter", "checkpoint")}}


def _heads_checkpoint(kind: str, cfg: dict[str, Any]) -> Path | None:
    if cfg["checkpoint"]:
        return _resolve_checkpoint(cfg["checkpoint"])
    if cfg["weights"] == "random":
        return None
    raise MissingResourceError(
        f"descriptor {kind!r} needs a 'checkpoint' ("
        + ("G3's saved state dict, e.g. g3.pth, or a folder from `scripts/train.py --preset g3`"
           if kind == "g3" else f"DualGeo's saved checkpoint or a folder from `scripts/train.py --preset {kind}`")
        + "); set descriptor.checkpoint, or \"weights\": \"random\" for an untrained model (tests only)"
    )


def load_descriptor(spec: dict[str, Any], device: str = "cpu") -> Descriptor:
    """The :class:`Descriptor` a preset's ``"descriptor"`` section names (see the module docstring)."""
    cfg = _validate(spec)
    device = resolve_device(device)
    kind, random, seed = cfg["kind"], cfg["weights"] == "random", cfg["seed"]
    encoder, enc_fp = _load_registered(cfg["encoder"], device, random, seed)
    enc_id = f"{cfg['encoder']}@{enc_fp}"
    if kind == "features":
        return FeatureDescriptor(f"features:{enc_id}", encoder.embed_dim, encoder, cfg["batch_size"])

    checkpoint = _heads_checkpoint(kind, cfg)
    if kind == "g3":
        torch.manual_seed(seed)
        heads_cfg = {k: v for k, v in get_spec("g3").config.items() if k not in ("checkpoint", "device")}
        heads = load_g3(str(checkpoint) if checkpoint else None, device=device, **heads_cfg)
        if isinstance(heads, G3Model):  # G3's full state dict: keep the heads, drop its CLIP towers
            heads = heads.heads()
        if heads.clip_dim != encoder.embed_dim:
            raise ValueError(f"G3 heads take {heads.clip_dim}-dim projections but {cfg['encoder']} gives "
                             f"{encoder.embed_dim}")
        name = f"g3:{enc_id}+{heads.name}@{module_fingerprint(heads)}"
        return G3Descriptor(name, encoder, heads, cfg["batch_size"])

    segmenter, seg_fp = _load_registered(cfg["segmenter"], device, random, seed)
    torch.manual_seed(seed)
    model_cfg = {k: v for k, v in get_spec(kind).config.items() if k not in ("checkpoint", "device")}
    model_cfg.update(encoder_name=cfg["encoder"], segmenter_name=cfg["segmenter"])
    if kind == "dualgeo":
        model_cfg["clip_dim"] = encoder.embed_dim
        model = load_dualgeo(str(checkpoint) if checkpoint else None, device=device, **model_cfg)
        if model.clip_dim != encoder.embed_dim:
            raise ValueError(f"{checkpoint} takes {model.clip_dim}-dim projections but {cfg['encoder']} gives "
                             f"{encoder.embed_dim}")
        cls = DualGeoDescriptor
    else:
        token_dim = int(getattr(encoder, "token_dim", 0) or 0)
        if token_dim:
            model_cfg["token_dim"] = token_dim
        model = load_dualgeo_tokens(str(checkpoint) if checkpoint else None, device=device, **model_cfg)
        if token_dim and model.token_dim != token_dim:
            raise ValueError(f"{checkpoint} takes {model.token_dim}-dim tokens but {cfg['encoder']} gives {token_dim}")
        cls = DualGeoTokenDescriptor
    name = f"{kind}:{enc_id}+{cfg['segmenter']}@{seg_fp}+{model.name}@{module_fingerprint(model)}"
    return cls(name, encoder, segmenter, model, encoder.embed_dim, cfg["batch_size"])
