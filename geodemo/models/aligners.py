"""Geo-aligners: image features and GPS coordinates embedded in one space (GeoAligner protocol).

``load_aligner("geoclip")`` gives GeoCLIP (image MLP + location encoder + logit scale from the
``geoclip`` wheel, over ``clip-vit-l14`` features); ``load_aligner("offline-verifier")`` or
``load_aligner("/path/to/folder")`` loads a checkpoint folder written by the trainer
(``config.json`` + ``model.safetensors``); a name is looked up in ``checkpoints_dir()``, then in the
embedded default ``assets/checkpoints``. A slim checkpoint (``"location_weights": "geoclip"``) holds
only the trained head and takes its frozen location encoder from the ``geoclip`` wheel. The
folder's ``config.json`` names its ``architecture`` (``"mlp-aligner"`` here, ``"g3"`` in :mod:`geodemo.models.g3`), so loading never unpickles code.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from geodemo.models import g3  # g3 imports this module too: names are looked up when called
from geodemo.models.gps import LocationEncoder, _geoclip_file, load_geoclip_location_encoder
from geodemo.paths import MissingResourceError, bundle_path, checkpoints_dir, how_to_make_checkpoint
from geodemo.storage import atomic_path, write_text

__all__ = [
    "CONFIG_FILE",
    "WEIGHTS_FILE",
    "mlp",
    "MLPGeoAligner",
    "save_pretrained",
    "read_pretrained",
    "load_geoclip_aligner",
    "load_aligner",
]

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
G3_LOGIT_SCALE_INIT = 3.99  # G3's initial log logit scale (exp = 54.1)


def mlp(dims: Sequence[int], dropout: float = 0.0) -> nn.Sequential:
    """``Linear, ReLU, [Dropout,] Linear ...`` through ``dims``; with two layers and no dropout the
    keys are ``0.*`` and ``2.*``, as in GeoCLIP's image MLP and G3's projection heads."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(dims[:-1], dims[1:], strict=True)):
        layers.append(nn.Linear(a, b))
        if i < len(dims) - 2:
            layers.append(nn.ReLU())
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers)


def _to_numpy_unit(x: torch.Tensor) -> np.ndarray:
    return nn.functional.normalize(x.float(), dim=-1).cpu().numpy()


class MLPGeoAligner(nn.Module):
    """An MLP image head aligned contrastively with a (GeoCLIP-style) location encoder.

    ``forward(features, coords)`` returns image->location logits ``(N, M)``. Features are the
    registered encoder's raw output (what it was trained on: raw projections for GeoCLIP, unit rows
    for an aligner trained on cached unit embeddings), multiplied by ``input_scale`` before the head.
    """

    architecture = "mlp-aligner"

    def __init__(
        self,
        name: str,
        encoder_name: str,
        image_dims: Sequence[int] = (1024, 768, 512),
        location: dict[str, Any] | None = None,
        logit_scale_init: float = G3_LOGIT_SCALE_INIT,
        input_scale: float = 1.0,
        dropout: float = 0.0,
    ):
        super().__init__()
        self.name, self.encoder_name = name, encoder_name
        self.image_dims = [int(d) for d in image_dims]
        self.input_scale, self.dropout = float(input_scale), float(dropout)
        self.image_head = mlp(self.image_dims, dropout)
        self.location_encoder = LocationEncoder(**(location or {}))
        if self.location_encoder.embed_dim != self.image_dims[-1]:
            raise ValueError(
                f"image head ends at {self.image_dims[-1]} dims but the location encoder gives "
                f"{self.location_encoder.embed_dim}"
            )
        self.logit_scale = nn.Parameter(torch.tensor(float(logit_scale_init)))

    @property
    def config(self) -> dict[str, Any]:
        return {
            "architecture": self.architecture,
            "name": self.name,
            "encoder_name": self.encoder_name,
            "image_dims": self.image_dims,
            "location": self.location_encoder.config,
            "input_scale": self.input_scale,
            "dropout": self.dropout,
        }

    @classmethod
    def from_config(cls, cfg: dict[str, Any]) -> MLPGeoAligner:
        cfg = {k: v for k, v in cfg.items() if k not in ("architecture", "training", "location_weights")}
        return cls(**cfg)

    def image_embeddings(self, features: torch.Tensor) -> torch.Tensor:
        return nn.functional.normalize(self.image_head(features * self.input_scale), dim=-1)

    def location_embeddings(self, coords: torch.Tensor) -> torch.Tensor:
        return nn.functional.normalize(self.location_encoder(coords), dim=-1)

    def forward(self, features: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
        img = self.image_embeddings(features)
        loc = self.location_embeddings(coords)
        return self.logit_scale.exp() * img @ loc.T

    # GeoAligner protocol (numpy in, unit rows out)
    @torch.no_grad()
    def embed_image_features(self, features: np.ndarray) -> np.ndarray:
        """``(N, D_image)`` encoder embeddings -> ``(N, D_gps)`` float32 unit rows."""
        feats = np.asarray(features, dtype=np.float32)
        if feats.ndim != 2 or feats.shape[1] != self.image_dims[0]:
            raise ValueError(
                f"{self.name} expects ({self.image_dims[0]})-dim features of {self.encoder_name}, "
                f"got shape {feats.shape}"
            )
        p = next(self.parameters())
        return _to_numpy_unit(self.image_embeddings(torch.from_numpy(feats).to(p.device, p.dtype)))

    @torch.no_grad()
    def embed_locations(self, coords: np.ndarray) -> np.ndarray:
        """``(M, 2)`` [lat, lon] degrees -> ``(M, D_gps)`` float32 unit rows."""
        return self.location_encoder.encode(coords)


# --------------------------------------------------------------------------- checkpoint folders


def save_pretrained(model: nn.Module, folder: str | Path, config: dict[str, Any]) -> Path:
    """Write ``config.json`` and ``model.safetensors`` (contiguous CPU tensors) into ``folder``."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    # cloned: safetensors refuses tensors that share memory (DualGeo's ResNet is registered twice)
    state = {k: v.detach().cpu().clone().contiguous() for k, v in model.state_dict().items()}
    # written beside and renamed into place, so a reader never sees half a checkpoint
    with atomic_path(folder / WEIGHTS_FILE) as tmp:
        save_file(state, str(tmp), metadata={"format": "pt"})
    write_text(folder / CONFIG_FILE, json.dumps(config, indent=2, sort_keys=True) + "\n")
    return folder


def read_pretrained(folder: str | Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """``(config, state_dict)`` of a checkpoint folder, or a clear :class:`MissingResourceError`."""
    from safetensors.torch import load_file

    folder = Path(folder)
    missing = [f for f in (CONFIG_FILE, WEIGHTS_FILE) if not (folder / f).is_file()]
    if missing:
        raise MissingResourceError(
            f"checkpoint folder {folder} lacks {', '.join(missing)}; train one with "
            f"`python scripts/train.py --preset offline-verifier` or point to a folder holding "
            f"{CONFIG_FILE} and {WEIGHTS_FILE}"
        )
    return json.loads((folder / CONFIG_FILE).read_text()), load_file(str(folder / WEIGHTS_FILE))


def load_geoclip_aligner(device: str = "cpu", encoder_name: str = "clip-vit-l14", **_: object) -> MLPGeoAligner:
    """GeoCLIP's image MLP (768 -> 768 -> 512), location encoder and logit scale from the geoclip wheel.

    As in GeoCLIP's ``ImageEncoder.forward``, the MLP takes the *raw* CLIP ViT-L/14 projection
    (``get_image_features``, not L2-normalised: our ``encode_image_outputs``); only its output is
    normalised. Feeding it unit rows gives other (wrong) embeddings.
    """
    model = MLPGeoAligner("geoclip", encoder_name, (768, 768, 512), location={"seed": None})
    model.location_encoder = load_geoclip_location_encoder()
    mlp_state = torch.load(_geoclip_file("weights", "image_encoder_mlp_weights.pth"),
                           map_location="cpu", weights_only=True)
    model.image_head.load_state_dict(mlp_state, strict=True)
    scale = torch.load(_geoclip_file("weights", "logit_scale_weights.pth"), map_location="cpu",
                       weights_only=True)
    model.logit_scale.data.copy_(torch.as_tensor(scale, dtype=torch.float32).reshape(()))
    return model.to(device).eval()


def _from_folder(folder: Path, device: str) -> nn.Module:
    cfg, state = read_pretrained(folder)
    arch = cfg.get("architecture", "mlp-aligner")
    if arch == "mlp-aligner":
        model = MLPGeoAligner.from_config(cfg)
    elif arch == "g3":
        model = g3.G3Heads.from_config(cfg)
    else:
        raise ValueError(f"{folder / CONFIG_FILE}: architecture {arch!r} is not a GeoAligner "
                         f"(known: mlp-aligner, g3)")
    if cfg.get("location_weights") == "geoclip":  # a slim checkpoint: the frozen encoder comes from the wheel
        model.location_encoder = load_geoclip_location_encoder()
        state = {**{f"location_encoder.{k}": v for k, v in model.location_encoder.state_dict().items()}, **state}
    model.load_state_dict(state, strict=True)
    model.provenance = dict(cfg.get("training") or {})  # what it was trained on, who was held out
    return model.to(device).eval()


def load_aligner(path_or_name: str | Path, device: str = "cpu") -> nn.Module:
    """A :class:`~geodemo.models.base.GeoAligner` by name (``"geoclip"``, a folder under
    ``checkpoints_dir()``, e.g. ``"offline-verifier"``) or by checkpoint folder path."""
    if str(path_or_name) == "geoclip":
        return load_geoclip_aligner(device=device)
    path = Path(path_or_name).expanduser()
    candidates = ([path] if path.is_absolute() or path.exists()
                  else [path, checkpoints_dir() / path, bundle_path("checkpoints", str(path))])
    for folder in candidates:
        if folder.is_dir() and (folder / CONFIG_FILE).is_file():
            return _from_folder(folder, device)
    looked = ", ".join(str(c) for c in candidates)
    raise MissingResourceError(
        f"no aligner checkpoint {str(path_or_name)!r}: looked for {CONFIG_FILE} + {WEIGHTS_FILE} in {looked}; "
        f"{how_to_make_checkpoint(path.name)}, or use 'geoclip'"
    )

