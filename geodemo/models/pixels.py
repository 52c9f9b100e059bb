"""What an encoder needs from a photo, split between decoding workers and the device.

A :class:`PixelRecipe` describes an encoder's eval transform (size, how the photo is fitted,
interpolation, normalisation). Two ways to apply it, chosen by ``resize_on``:

* ``"workers"``: each decoding worker runs the encoder's own reference geometry in PIL (exactly what
  ``encode_images`` does) and ships a fixed-size uint8 array; the device only converts and
  normalises a batch. Features are identical to the single-process path. Best on a CPU.
* ``"device"``: workers only decode (JPEGs at a reduced DCT scale when the photo is at least twice
  the needed size) and ship uint8 arrays of any size; the device crops, resizes (antialiased) and
  normalises them in the batch. Best on a GPU: decoding is then the workers' only job.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from torch.nn import functional as F

__all__ = ["PixelRecipe", "recipe_of", "worker_pixels", "device_pixels", "draft_size"]

FITS = ("short-side", "central-crop")


@dataclass(frozen=True)
class PixelRecipe:
    """An encoder's input transform.

    ``fit``: ``"short-side"`` resizes the short side to ``size`` and crops the centre (CLIP);
    ``"central-crop"`` crops ``central_fraction`` of the photo and resizes it to ``size`` x ``size``
    (TF-slim, MobileNet). ``mean``/``std`` (0..1 scale) give float NCHW input; ``None`` keeps uint8
    NHWC (quantized TFLite models).
    """

    size: int
    fit: str
    interpolation: str  # "bicubic" | "bilinear"
    central_fraction: float = 1.0
    mean: tuple[float, float, float] | None = None
    std: tuple[float, float, float] | None = None

    def __post_init__(self) -> None:
        if self.fit not in FITS:
            raise ValueError(f"unknown fit {self.fit!r}; choose one of {FITS}")


def recipe_of(encoder) -> PixelRecipe:
    """The recipe a registered image encoder declares (``encoder.pixel_recipe()``)."""
    if not hasattr(encoder, "pixel_recipe"):
        raise TypeError(f"{getattr(encoder, 'name', encoder)!r} declares no pixel recipe; it cannot be batch-extracted")
    return encoder.pixel_recipe()


def draft_size(recipe: PixelRecipe) -> tuple[int, int]:
    """The smallest decoded size that still leaves the device a photo at least twice the input."""
    side = int(np.ceil(2 * recipe.size / recipe.central_fraction))
    return side, side


def worker_pixels(image: Image.Image, recipe: PixelRecipe) -> np.ndarray:
    """The encoder's reference geometry in PIL: ``(size, size, 3)`` uint8 (``resize_on="workers"``)."""
    image = image.convert("RGB")
    w, h = image.size
    method = Image.Resampling.BICUBIC if recipe.interpolation == "bicubic" else Image.Resampling.BILINEAR
    if recipe.fit == "short-side":
        scale = recipe.size / min(w, h)
        image = image.resize((max(recipe.size, round(w * scale)), max(recipe.size, round(h * scale))), method)
        w, h = image.size
        left, top = (w - recipe.size) // 2, (h - recipe.size) // 2
        image = image.crop((left, top, left + recipe.size, top + recipe.size))
    else:
        cw, ch = max(1, round(w * recipe.central_fraction)), max(1, round(h * recipe.central_fraction))
        left, top = (w - cw) // 2, (h - ch) // 2
        image = image.crop((left, top, left + cw, top + ch)).resize((recipe.size, recipe.size), method)
    return np.asarray(image, dtype=np.uint8)


def _fit_on_device(x: torch.Tensor, recipe: PixelRecipe) -> torch.Tensor:
    """One ``(3, H, W)`` float 0..255 photo -> ``(3, size, size)``, antialiased like PIL."""
    _, h, w = x.shape
    size = recipe.size
    if recipe.fit == "central-crop":
        cw, ch = max(1, round(w * recipe.central_fraction)), max(1, round(h * recipe.central_fraction))
        left, top = (w - cw) // 2, (h - ch) // 2
        x = x[:, top : top + ch, left : left + cw]
        out = (size, size)
    else:
        scale = size / min(w, h)
        out = (max(size, round(h * scale)), max(size, round(w * scale)))
    x = F.interpolate(x[None], size=out, mode=recipe.interpolation, antialias=True, align_corners=False)[0]
    if recipe.fit == "short-side":
        top, left = (out[0] - size) // 2, (out[1] - size) // 2
        x = x[:, top : top + size, left : left + size]
    return x


def device_pixels(photos: list[torch.Tensor], recipe: PixelRecipe, dtype: torch.dtype = torch.float32,
                  already_fitted: bool = False) -> torch.Tensor:
    """A batch of ``(H, W, 3)`` uint8 photos (already on the device) -> the encoder's input.

    ``already_fitted``: the photos are ``worker_pixels`` outputs (fixed size), only normalised here.
    Returns float ``(B, 3, size, size)`` in ``dtype``, or uint8 ``(B, size, size, 3)`` when the
    recipe has no mean/std.
    """
    if already_fitted:
        x = torch.stack(photos).permute(0, 3, 1, 2).float()
    else:
        x = torch.stack([_fit_on_device(p.permute(2, 0, 1).float(), recipe) for p in photos])
        x = x.clamp_(0, 255)  # bicubic overshoots
    if recipe.mean is None:
        return x.round_().to(torch.uint8).permute(0, 2, 3, 1).contiguous()
    mean = torch.tensor(recipe.mean, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(recipe.std, device=x.device).view(1, 3, 1, 1)
    return ((x / 255.0 - mean) / std).to(dtype)
