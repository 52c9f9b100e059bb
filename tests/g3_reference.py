"""A transcription of G3's reference code (Applied-Machine-Learning-Lab/G3), for tests only.

Written from ``utils/G3.py`` (``LocationEncoderCapsule``, ``CustomLocationEncoder``, ``G3.forward``,
``clip_loss``), ``utils/rff/layers.py`` (``GaussianEncoding``), ``utils/utils.py`` (the caption of
``MP16Dataset.__getitem__``) and ``IndexSearch.py`` (the index vector of ``build_index``), independently
of geodemo's code: the only differences are that the CLIP towers are built from a config instead of
``from_pretrained`` (no hub here) and that tensors stay on the CPU instead of ``.to('cuda')``.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from pyproj import Proj, Transformer
from torch import nn


class RFF(nn.Module):
    """``rff.layers.GaussianEncoding``: gamma(v) = (cos 2 pi B v, sin 2 pi B v), B ~ N(0, sigma^2)."""

    def __init__(self, sigma: float, input_size: int, encoded_size: int):
        super().__init__()
        self.b = nn.Parameter(torch.randn(encoded_size, input_size) * sigma, requires_grad=False)

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        proj = 2 * math.pi * v @ self.b.T
        return torch.cat([torch.cos(proj), torch.sin(proj)], dim=-1)


class Capsule(nn.Module):
    """``LocationEncoderCapsule``."""

    def __init__(self, sigma: float):
        super().__init__()
        self.km = sigma
        self.capsule = nn.Sequential(RFF(sigma, 2, 256), nn.Linear(512, 1024), nn.ReLU(), nn.Linear(1024, 1024),
                                     nn.ReLU(), nn.Linear(1024, 1024), nn.ReLU())
        self.head = nn.Sequential(nn.Linear(1024, 512))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.capsule(x))


class MercatorLocationEncoder(nn.Module):
    """``CustomLocationEncoder``: pyproj WGS84 -> Web Mercator, (y, x) / 20037508.3427892, three scales summed."""

    def __init__(self, sigmas=(2**0, 2**4, 2**8)):
        super().__init__()
        self.sigma, self.n = list(sigmas), len(sigmas)
        for i, s in enumerate(self.sigma):
            self.add_module(f"LocEnc{i}", Capsule(s))
        self.transformer = Transformer.from_proj(Proj("epsg:4326"), Proj("epsg:3857"), always_xy=True)

    def forward(self, lat_lon: torch.Tensor) -> torch.Tensor:
        lat = lat_lon[:, 0].float().detach().cpu().numpy()
        lon = lat_lon[:, 1].float().detach().cpu().numpy()
        xs, ys = self.transformer.transform(lon, lat)
        location = torch.Tensor([[y, x] for x, y in zip(xs, ys, strict=True)]) / 20037508.3427892
        out = torch.zeros(location.shape[0], 512)
        for i in range(self.n):
            out += self._modules[f"LocEnc{i}"](location)
        return out


def _two_layer(d_in: int, d_mid: int, d_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d_in, d_mid), nn.ReLU(), nn.Linear(d_mid, d_out))


class G3Reference(nn.Module):
    """``G3``: frozen CLIP towers, two image heads, a text head, a location head, three log scales."""

    def __init__(self, clip_model):
        super().__init__()
        self.vision_model = clip_model.vision_model
        self.text_model = clip_model.text_model
        self.vision_projection = clip_model.visual_projection
        self.text_projection = clip_model.text_projection
        self.logit_scale1 = nn.Parameter(torch.tensor(3.99))
        self.logit_scale2 = nn.Parameter(torch.tensor(3.99))
        self.logit_scale3 = nn.Parameter(torch.tensor(3.99))
        self.location_encoder = MercatorLocationEncoder()
        self.vision_projection_else_1 = _two_layer(768, 768, 768)
        self.text_projection_else = _two_layer(768, 768, 768)
        self.vision_projection_else_2 = _two_layer(768, 768, 768)
        self.location_projection_else = _two_layer(512, 512, 768)
        for m in (self.vision_model, self.vision_projection, self.text_model, self.text_projection):
            m.requires_grad_(False)

    @staticmethod
    def clip_loss(similarity: torch.Tensor) -> torch.Tensor:
        target = torch.arange(len(similarity))
        return (nn.functional.cross_entropy(similarity, target)
                + nn.functional.cross_entropy(similarity.t(), torch.arange(len(similarity.t())))) / 2.0

    def forward(self, images, input_ids, longitude, latitude) -> dict[str, torch.Tensor]:
        image_embeds = self.vision_projection(self.vision_model(images)[1])
        text_embeds = self.text_projection(self.text_model(input_ids=input_ids)[1])
        location_embeds = self.location_encoder(torch.stack((latitude, longitude), dim=1))
        img1 = self.vision_projection_else_1(image_embeds)
        txt1 = self.text_projection_else(text_embeds.reshape(text_embeds.shape[0], -1))
        img1, txt1 = img1 / img1.norm(p=2, dim=-1, keepdim=True), txt1 / txt1.norm(p=2, dim=-1, keepdim=True)
        logits_text_image = txt1 @ img1.t() * self.logit_scale1.exp()
        img2 = self.vision_projection_else_2(image_embeds)
        loc2 = self.location_projection_else(location_embeds.reshape(location_embeds.shape[0], -1))
        img2, loc2 = img2 / img2.norm(p=2, dim=-1, keepdim=True), loc2 / loc2.norm(p=2, dim=-1, keepdim=True)
        logits_loc_image = loc2 @ img2.t() * self.logit_scale2.exp()
        loss1, loss2 = self.clip_loss(logits_text_image), self.clip_loss(logits_loc_image)
        return {"loss": loss1 + loss2, "loss_text": loss1, "loss_gps": loss2, "image_embeds": image_embeds}

    @torch.no_grad()
    def index_vector(self, images: torch.Tensor) -> torch.Tensor:
        """``IndexSearch.py``'s ``build_index``: [unit CLIP projection, unit image->text, unit image->GPS]."""
        vision_output = self.vision_model(images)[1]
        e = self.vision_projection(vision_output)
        e = e / e.norm(p=2, dim=-1, keepdim=True)
        t = self.vision_projection_else_1(self.vision_projection(vision_output))
        t = t / t.norm(p=2, dim=-1, keepdim=True)
        g = self.vision_projection_else_2(self.vision_projection(vision_output))
        g = g / g.norm(p=2, dim=-1, keepdim=True)
        return torch.cat([e, t, g], dim=1)


def caption(row: dict) -> str:
    """``MP16Dataset.__getitem__``'s text: city, state, country that are not NaN, after G3's prefix."""
    parts = [row[c] for c in ("city", "state", "country")]
    parts = [p for p in parts if p is not np.nan and str(p) != "nan"]
    return "A street view photo taken in " + ", ".join(parts)


def zero_shot_prompt() -> str:
    """``llm_predict.py``'s ``get_response`` text, with the indentation its triple-quoted string carries."""
    return """Suppose you are an expert in geo-localization, you have the ability to give two number GPS coordination given an image.
                Please give me the location of the given image.
                Remember, you must have an answer, just output your best guess, don't answer me that you can't give a location.
                Your answer should be in the following JSON format without any other information: {"latitude": float,"longitude": float}.
                Your answer should be in the following JSON format without any other information: {"latitude": float,"longitude": float}."""


def rag_prompt(similar: list[tuple[float, float]], dissimilar: list[tuple[float, float]]) -> str:
    """``get_response_rag``'s text; ``process_row_rag`` passes ``str`` of a list of ``'[lat, lon]'`` strings."""
    candidates_gps = str([f"[{lat}, {lon}]" for lat, lon in similar])
    reverse_gps = str([f"[{lat}, {lon}]" for lat, lon in dissimilar])
    return f"""Suppose you are an expert in geo-localization, Please analyze this image and give me a guess of the location.
                Your answer must be to the coordinates level in (latitude, longitude) format.
                For your reference, these are coordinates of some similar images: {candidates_gps}, and these are coordinates of some dissimilar images: {reverse_gps}.
                Remember, you must have an answer, just output your best guess, don't answer me that you can't give an location.
                Your answer should be in the following JSON format without any other information: {{"latitude": float,"longitude": float}}.
                Your answer should be in the following JSON format without any other information: {{"latitude": float,"longitude": float}}.
                """
