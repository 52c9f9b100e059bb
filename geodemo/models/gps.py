"""GPS encoder of G3 and GeoCLIP: projection, random Fourier features at three scales, summed MLPs.

A coordinate ``[lat, lon]`` is projected (Mercator for G3, Equal Earth for GeoCLIP), mapped by
random Fourier features ``[cos 2 pi B v, sin 2 pi B v]`` with ``B ~ N(0, sigma^2)`` at sigmas
2^0, 2^4 and 2^8 (continent, region and city scales), each through its own MLP; the branch outputs
are summed. The module layout (``LocEnc{i}.capsule.{0,1,3,5}``, ``LocEnc{i}.head.0``) is the one of
``geoclip.LocationEncoder`` and of G3's ``location_encoder``, so their state dicts load unchanged.

GeoCLIP's trained weights and its 100K-point GPS gallery ship in the ``geoclip`` wheel;
:func:`load_geoclip_location_encoder` reads them without importing ``geoclip`` (which would pull
its CLIP backbone), and :func:`geoclip_gps_gallery` encodes the gallery once and caches it on disk.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from geodemo.geo import equal_earth_projection, mercator_projection, validate_coords
from geodemo.paths import MissingResourceError, cache_dir
from geodemo.storage import load_npz, save_npz, sha256_file

__all__ = [
    "PROJECTIONS",
    "DEFAULT_SIGMAS",
    "GaussianEncoding",
    "LocationBranch",
    "LocationEncoder",
    "geoclip_package_dir",
    "load_geoclip_location_encoder",
    "geoclip_gallery_coords",
    "geoclip_gps_gallery",
]

log = logging.getLogger(__name__)

PROJECTIONS = {"mercator": mercator_projection, "equal_earth": equal_earth_projection}
DEFAULT_SIGMAS = (2.0**0, 2.0**4, 2.0**8)


class GaussianEncoding(nn.Module):
    """Random Fourier features ``[cos(2 pi v B^T), sin(2 pi v B^T)]``; ``B`` is a frozen parameter."""

    def __init__(self, sigma: float, input_size: int = 2, encoded_size: int = 256):
        super().__init__()
        b = torch.randn((encoded_size, input_size)) * sigma
        self.b = nn.Parameter(b, requires_grad=False)

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        vp = 2 * np.pi * v @ self.b.T  # same operation order as the rff package GeoCLIP uses
        return torch.cat((torch.cos(vp), torch.sin(vp)), dim=-1)


class LocationBranch(nn.Module):
    """One scale: RFF -> 3 x (Linear, ReLU) -> Linear head (GeoCLIP's ``LocationEncoderCapsule``)."""

    def __init__(self, sigma: float, rff_dim: int = 256, hidden_dim: int = 1024, embed_dim: int = 512):
        super().__init__()
        self.sigma = float(sigma)
        self.capsule = nn.Sequential(
            GaussianEncoding(sigma, 2, rff_dim),
            nn.Linear(2 * rff_dim, hidden_dim),
            nn.ReLU(),
            nn.Linear(hidden_dim, hidden_dim),
            nn.ReLU(),
            nn.Linear(hidden_dim, hidden_dim),
            nn.ReLU(),
        )
        self.head = nn.Sequential(nn.Linear(hidden_dim, embed_dim))

    def forward(self, projected: torch.Tensor) -> torch.Tensor:
        return self.head(self.capsule(projected))


class LocationEncoder(nn.Module):
    """Multi-scale GPS encoder: ``(N, 2)`` [lat, lon] degrees -> ``(N, embed_dim)`` (not normalised).

    ``projection`` is ``"mercator"`` (G3) or ``"equal_earth"`` (GeoCLIP). ``seed`` fixes the random
    initialisation of a fresh encoder (Fourier matrices and MLPs) without touching the global RNG;
    pretrained weights replace it on load.
    """

    def __init__(
        self,
        projection: str = "equal_earth",
        sigmas: Sequence[float] = DEFAULT_SIGMAS,
        rff_dim: int = 256,
        hidden_dim: int = 1024,
        embed_dim: int = 512,
        seed: int | None = 0,
    ):
        super().__init__()
        if projection not in PROJECTIONS:
            raise ValueError(f"unknown projection {projection!r}; choose one of {sorted(PROJECTIONS)}")
        self.projection = projection
        self.sigmas = tuple(float(s) for s in sigmas)
        self.rff_dim, self.hidden_dim, self.embed_dim = rff_dim, hidden_dim, embed_dim
        with torch.random.fork_rng(devices=[], enabled=seed is not None):
            if seed is not None:
                torch.manual_seed(seed)
            for i, s in enumerate(self.sigmas):
                self.add_module(f"LocEnc{i}", LocationBranch(s, rff_dim, hidden_dim, embed_dim))

    @property
    def config(self) -> dict:
        """Constructor arguments, for ``config.json`` beside saved weights."""
        return {
            "projection": self.projection,
            "sigmas": list(self.sigmas),
            "rff_dim": self.rff_dim,
            "hidden_dim": self.hidden_dim,
            "embed_dim": self.embed_dim,
        }

    def project(self, coords: torch.Tensor) -> torch.Tensor:
        """The 2-D projection the Fourier features see.

        Mercator is computed in float64 on the CPU, as G3 does it (pyproj): the 2^8 Fourier scale
        turns a float32 rounding of the projection into a visible change of the embedding.
        """
        if self.projection == "mercator":
            return mercator_projection(coords.detach().cpu().double()).to(coords.device, coords.dtype)
        return PROJECTIONS[self.projection](coords)

    def forward(self, coords: torch.Tensor) -> torch.Tensor:
        x = self.project(coords)
        out = torch.zeros(coords.shape[0], self.embed_dim, dtype=x.dtype, device=x.device)
        for i in range(len(self.sigmas)):
            out = out + self._modules[f"LocEnc{i}"](x)
        return out

    @torch.no_grad()
    def encode(self, coords, batch_size: int = 8192, normalize: bool = True,
               progress: bool = False) -> np.ndarray:
        """NumPy convenience: ``(M, 2)`` [lat, lon] -> ``(M, embed_dim)`` float32 (unit rows by default)."""
        pts = validate_coords(coords, name="coords").astype(np.float32)
        param = next(self.parameters())
        chunks = []
        starts = range(0, len(pts), batch_size)
        for s in tqdm(starts, desc="encode GPS", disable=not progress, unit="batch"):
            x = torch.from_numpy(pts[s : s + batch_size]).to(param.device, param.dtype)
            emb = self(x)
            if normalize:
                emb = nn.functional.normalize(emb, dim=-1)
            chunks.append(emb.float().cpu().numpy())
        if not chunks:
            return np.zeros((0, self.embed_dim), np.float32)
        return np.concatenate(chunks)


# --------------------------------------------------------------------------- GeoCLIP's packaged files


def geoclip_package_dir() -> Path:
    """``geoclip/model`` inside the installed wheel, found without importing the package."""
    spec = importlib.util.find_spec("geoclip")
    if spec is None or not spec.submodule_search_locations:
        raise MissingResourceError(
            "the geoclip package is not installed; GeoCLIP's location encoder weights and GPS gallery "
            "ship in its wheel: run `pip install --no-deps geoclip==1.2.0`"
        )
    return Path(list(spec.submodule_search_locations)[0]) / "model"


def _geoclip_file(*parts: str) -> Path:
    path = geoclip_package_dir().joinpath(*parts)
    if not path.is_file():
        raise MissingResourceError(
            f"{'/'.join(parts)} not found in the geoclip wheel at {path.parent}; "
            "reinstall it with `pip install --force-reinstall --no-deps geoclip==1.2.0`"
        )
    return path


def load_geoclip_location_encoder(device: str = "cpu", **_: object) -> LocationEncoder:
    """GeoCLIP's trained location encoder (Equal Earth, sigmas 2^0, 2^4, 2^8) from the geoclip wheel."""
    path = _geoclip_file("weights", "location_encoder_weights.pth")
    state = torch.load(path, map_location="cpu", weights_only=True)
    model = LocationEncoder(projection="equal_earth", sigmas=DEFAULT_SIGMAS, seed=None)
    model.load_state_dict(state, strict=True)
    model.weights_sha256 = sha256_file(path)
    return model.to(device).eval()


def geoclip_gallery_coords() -> np.ndarray:
    """GeoCLIP's packaged GPS gallery: ``(100000, 2)`` float32 [lat, lon]."""
    import pandas as pd

    path = _geoclip_file("gps_gallery", "coordinates_100K.csv")
    return pd.read_csv(path)[["LAT", "LON"]].to_numpy(np.float32)


def geoclip_gps_gallery(progress: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """GeoCLIP's 100K GPS gallery and its unit location embeddings, ``(M, 2)`` and ``(M, 512)`` float32.

    Encoded once and cached as npz under ``cache_dir("gps-gallery")``, keyed by the hashes of the
    weights and the gallery file (GeoCLIP's own ``predict`` re-encodes the gallery on every call).
    """
    weights = _geoclip_file("weights", "location_encoder_weights.pth")
    csv = _geoclip_file("gps_gallery", "coordinates_100K.csv")
    key = hashlib.sha256((sha256_file(weights) + sha256_file(csv)).encode()).hexdigest()[:16]
    path = cache_dir("gps-gallery") / f"geoclip-100k-{key}.npz"
    data = load_npz(path, "GPS gallery cache", required=("coords", "embeddings"))
    if data is not None:
        return data["coords"], data["embeddings"]
    coords = geoclip_gallery_coords()
    encoder = load_geoclip_location_encoder()
    emb = encoder.encode(coords, batch_size=4096, progress=progress)
    save_npz(path, coords=coords, embeddings=emb)
    return coords, emb

