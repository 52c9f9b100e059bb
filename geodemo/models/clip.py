"""CLIP image/text encoders behind one interface: open_clip and transformers ``CLIPModel``.

Both give L2-normalised ``encode_images`` / ``encode_texts`` in the joint space and
``encode_image_tokens``: the vision tower's patch tokens (CLS dropped, after the final layer norm,
``(N, grid*grid, width)``, e.g. ``(N, 256, 1024)`` for ViT-L/14 at 224 px) for DualGeo's fusion.

Weights come from the Hugging Face hub (what a Space does), a local folder or a file; with
``random_init=True`` the real architecture is built with random weights (tests, benchmarks).
Weights are resolved before anything is built, so offline a missing model fails in well under a
second with one :class:`~geodemo.models.base.ModelUnavailableError`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

import geodemo  # noqa: F401  (runs the torchvision guard before open_clip / transformers vision code)
from geodemo.models.base import ModelUnavailableError
from geodemo.models.loading import (
    from_pretrained,
    local_dir_or_none,
    on_space_gpu,
    resolve_device,
    resolve_dtype,
    resolve_hub_file,
    transformers_weights,
)
from geodemo.models.pixels import PixelRecipe, worker_pixels

__all__ = [
    "CLIPEncoder",
    "OpenCLIPEncoder",
    "HFCLIPEncoder",
    "load_open_clip",
    "load_hf_clip",
    "clip_preprocess",
]

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


def clip_preprocess(
    image: Image.Image, size: int, mean: tuple[float, ...] = OPENAI_MEAN, std: tuple[float, ...] = OPENAI_STD
) -> torch.Tensor:
    """CLIP's eval transform: bicubic resize of the short side to ``size``, centre crop, normalise."""
    pixels = worker_pixels(image, PixelRecipe(size, "short-side", "bicubic"))
    x = torch.from_numpy(pixels.astype(np.float32) / 255.0).permute(2, 0, 1)
    return (x - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(std).view(3, 1, 1)


def _unit(x: torch.Tensor) -> np.ndarray:
    x = x.float()
    return torch.nn.functional.normalize(x, dim=-1).cpu().numpy().astype(np.float32)


class CLIPEncoder:
    """Shared batching, device and dtype handling; subclasses implement the three forward passes."""

    has_text_tower = True

    def __init__(
        self, name: str, model: torch.nn.Module, embed_dim: int, token_dim: int, device: str, dtype: Any
    ):
        self.name = name
        self.model = model.eval()
        self.embed_dim = int(embed_dim)
        self.token_dim = int(token_dim)
        self.device = device
        self.dtype = dtype
        for p in self.model.parameters():
            p.requires_grad_(False)

    # subclasses -----------------------------------------------------------------------------
    def pixels(self, images: list[Image.Image]) -> torch.Tensor:
        raise NotImplementedError

    def _image_forward(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def _text_forward(self, texts: list[str]) -> torch.Tensor:
        raise NotImplementedError

    # public ----------------------------------------------------------------------------------
    def _batches(self, items: list[Any], batch_size: int, progress: bool, desc: str):
        step = max(1, int(batch_size))
        with tqdm(total=len(items), desc=desc, unit="item", disable=not progress) as bar:
            for start in range(0, len(items), step):
                chunk = items[start : start + step]
                yield chunk
                bar.update(len(chunk))

    def encode_images(
        self, images: list[Image.Image], batch_size: int = 16, progress: bool = False
    ) -> np.ndarray:
        """``(N, embed_dim)`` float32 unit rows."""
        projections, _ = self.encode_image_outputs(images, batch_size, progress)
        return _unit(torch.from_numpy(projections))

    def pixel_recipe(self):
        """The eval transform as a :class:`~geodemo.models.pixels.PixelRecipe` (batched extraction)."""
        return PixelRecipe(self.image_size, "short-side", "bicubic", mean=tuple(self.mean), std=tuple(self.std))

    @on_space_gpu(duration=60)
    @torch.inference_mode()
    def encode_pixels(self, pixels: torch.Tensor, tokens: bool = False) -> dict[str, torch.Tensor]:
        """A normalised ``(B, 3, size, size)`` batch -> ``{"image": unit rows, "projection": the same
        projections before L2 normalisation (what G3's heads take), "tokens": patch tokens}`` as tensors
        on the encoder's device (tokens only when asked)."""
        pooled, toks = self._image_forward(pixels.to(self.device, self.dtype))
        out = {"image": torch.nn.functional.normalize(pooled.float(), dim=-1), "projection": pooled.float()}
        if tokens:
            out["tokens"] = toks
        return out

    @on_space_gpu(duration=60)  # ZeroGPU: a GPU for the image tower's forward passes
    @torch.no_grad()  # not inference_mode: the tokens feed trainable fusion layers (autograd saves them)
    def encode_image_outputs(
        self, images: list[Image.Image], batch_size: int = 16, progress: bool = False, tokens: bool = False
    ) -> tuple[np.ndarray, torch.Tensor | None]:
        """One forward pass: ``(N, embed_dim)`` float32 projections *before* L2 normalisation (what G3's
        heads and GeoCLIP's image MLP take) and, with ``tokens=True``, the patch tokens of
        :meth:`encode_image_tokens` (else ``None``)."""
        pooled_out = [np.zeros((0, self.embed_dim), dtype=np.float32)]
        token_out = []
        for chunk in self._batches(images, batch_size, progress, self.name):
            pooled, toks = self._image_forward(self.pixels(chunk))
            pooled_out.append(pooled.float().cpu().numpy())
            if tokens:
                token_out.append(toks.float())
        if not tokens:
            return np.concatenate(pooled_out), None
        return np.concatenate(pooled_out), (torch.cat(token_out) if token_out else torch.zeros(0, 0, self.token_dim))

    def encode_image_tokens(
        self, images: list[Image.Image], batch_size: int = 16, progress: bool = False
    ) -> torch.Tensor:
        """``(N, T, token_dim)`` float32 patch tokens on the encoder's device (CLS excluded)."""
        return self.encode_image_outputs(images, batch_size, progress, tokens=True)[1]

    @torch.inference_mode()
    def encode_texts(self, texts: list[str], batch_size: int = 64, normalize: bool = True) -> np.ndarray:
        """``(N, embed_dim)`` float32 unit rows (``normalize=False``: the text projections before L2
        normalisation, what G3's text head takes)."""
        out = [np.zeros((0, self.embed_dim), dtype=np.float32)]
        for chunk in self._batches(list(texts), batch_size, False, self.name):
            proj = self._text_forward(chunk)
            out.append(_unit(proj) if normalize else proj.float().cpu().numpy())
        return np.concatenate(out)


# --------------------------------------------------------------------------------------------
# open_clip
# --------------------------------------------------------------------------------------------


class OpenCLIPEncoder(CLIPEncoder):
    """An open_clip ``CLIP`` model (e.g. ``ViT-L-14``/``openai``, the backbone of G3, DualGeo, GeoCLIP)."""

    def __init__(
        self, name: str, model: torch.nn.Module, preprocess: Any, tokenizer: Any, device: str, dtype: Any
    ):
        visual = model.visual
        visual.output_tokens = True
        embed_dim = int(visual.output_dim)
        token_dim = int(visual.conv1.out_channels) if hasattr(visual, "conv1") else embed_dim
        super().__init__(name, model, embed_dim, token_dim, device, dtype)
        self.preprocess = preprocess
        self.tokenizer = tokenizer
        size = getattr(visual, "image_size", 224)
        self.image_size = int(size[0] if isinstance(size, (tuple, list)) else size)
        self.mean = tuple(getattr(visual, "image_mean", None) or OPENAI_MEAN)
        self.std = tuple(getattr(visual, "image_std", None) or OPENAI_STD)

    def pixels(self, images: list[Image.Image]) -> torch.Tensor:
        batch = torch.stack([self.preprocess(im.convert("RGB")) for im in images])
        return batch.to(self.device, self.dtype)

    def _image_forward(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pooled, tokens = self.model.visual(pixels)
        return pooled, tokens

    def _text_forward(self, texts: list[str]) -> torch.Tensor:
        return self.model.encode_text(self.tokenizer(texts).to(self.device))


def _open_clip_weights(
    name: str, model_name: str, pretrained: str | None, local_dir: Path | None, hf_hub: str | None = None
) -> str | None:
    """A weights file path (or ``local-dir:`` schema) for open_clip, resolved without downloading blindly."""
    how = (
        f"pass local_dir=<folder with open_clip_model.safetensors> or pretrained=<file>, or go online once "
        f"so the hub cache holds it (create_model('{name}'))"
    )
    if local_dir is not None:
        if (local_dir / "open_clip_config.json").is_file():
            return f"local-dir:{local_dir}"
        for pattern in ("*.safetensors", "*.bin", "*.pt", "*.pth"):
            found = sorted(local_dir.glob(pattern))
            if found:
                return str(found[0])
        raise ModelUnavailableError(
            f"weights for {name} not found: no *.safetensors/*.bin/*.pt in {local_dir}"
        )
    if pretrained is None:
        return None
    if Path(pretrained).expanduser().is_file():
        return str(Path(pretrained).expanduser())
    hub = hf_hub or ""
    if not hub:  # ask open_clip where the tag lives (importing it costs seconds, hence the config entry)
        import open_clip

        cfg = open_clip.get_pretrained_cfg(model_name, pretrained)
        if not cfg:
            raise ModelUnavailableError(
                f"{name}: open_clip knows no pretrained tag {pretrained!r} for {model_name}; "
                f"known: {open_clip.list_pretrained_tags_by_model(model_name)}"
            )
        hub = cfg.get("hf_hub", "")
    if not hub:
        raise ModelUnavailableError(f"{name}: pretrained tag {pretrained!r} has no hub copy; {how}")
    parts = hub.strip("/").split("/")
    repo_id, filename = "/".join(parts[:2]), "/".join(parts[2:])
    names = [filename] if filename else ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"]
    return str(resolve_hub_file(name, repo_id, names, how))


def load_open_clip(
    model_name: str = "ViT-L-14",
    pretrained: str | None = "openai",
    hf_hub: str | None = None,
    quick_gelu: bool | None = None,
    local_dir: str | os.PathLike | None = None,
    random_init: bool = False,
    seed: int = 0,
    device: str = "auto",
    dtype: str = "auto",
    name: str = "clip-vit-l14",
    **_: object,
) -> OpenCLIPEncoder:
    """Registry loader for open_clip models (hub tag, weights file, local folder or random weights).

    ``pretrained`` is an open_clip tag ("openai"), a weights file, or None (random weights, as
    ``random_init=True``); ``hf_hub`` names the tag's hub repo so that resolving it needs no
    open_clip import; ``quick_gelu`` overrides the tag's activation (OpenAI weights use QuickGELU).
    """
    folder = local_dir_or_none(local_dir)
    weights = None if random_init else _open_clip_weights(name, model_name, pretrained, folder, hf_hub)

    import open_clip

    is_tag = bool(pretrained) and not Path(str(pretrained)).expanduser().is_file()
    tag_cfg = (open_clip.get_pretrained_cfg(model_name, pretrained) or {}) if is_tag else {}
    if quick_gelu is not None:
        tag_cfg = {**tag_cfg, "quick_gelu": quick_gelu}
    dev = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, dev)
    if weights is None:
        torch.manual_seed(seed)  # random weights of the real architecture, reproducible
    if weights is not None and weights.startswith("local-dir:"):
        model, _, preprocess = open_clip.create_model_and_transforms(weights)
        tokenizer = open_clip.get_tokenizer(weights)
    else:
        model, _, preprocess = open_clip.create_model_and_transforms(
            model_name,
            pretrained=weights,
            force_quick_gelu=bool(tag_cfg.get("quick_gelu", False)),
            image_mean=tag_cfg.get("mean"),
            image_std=tag_cfg.get("std"),
            image_interpolation=tag_cfg.get("interpolation"),
            image_resize_mode=tag_cfg.get("resize_mode"),
            pretrained_text=False,
        )
        tokenizer = open_clip.get_tokenizer(model_name)
    model = model.to(device=dev, dtype=torch_dtype)
    return OpenCLIPEncoder(name, model, preprocess, tokenizer, dev, torch_dtype)


# --------------------------------------------------------------------------------------------
# transformers CLIPModel
# --------------------------------------------------------------------------------------------


class HFCLIPEncoder(CLIPEncoder):
    """A transformers ``CLIPModel`` (e.g. ``openai/clip-vit-large-patch14`` or a local folder)."""

    def __init__(
        self, name: str, model: Any, tokenizer: Any, image_cfg: dict[str, Any], device: str, dtype: Any,
        tokenizer_folder: Path | None = None, image_processor: Any = None,
    ):
        super().__init__(
            name,
            model,
            embed_dim=model.config.projection_dim,
            token_dim=model.config.vision_config.hidden_size,
            device=device,
            dtype=dtype,
        )
        self._tokenizer, self._tokenizer_folder = tokenizer, tokenizer_folder
        self.image_size = int(image_cfg.get("size", model.config.vision_config.image_size))
        self.mean = tuple(image_cfg.get("mean", OPENAI_MEAN))
        self.std = tuple(image_cfg.get("std", OPENAI_STD))
        self.image_processor = image_processor  # transformers' own processor (GeoCLIP's), else ours

    @property
    def tokenizer(self) -> Any:
        """Loaded on first use: image-only work (feature extraction) never needs it."""
        if self._tokenizer is None:
            self._tokenizer = _hf_tokenizer(self._tokenizer_folder)
        return self._tokenizer

    def pixels(self, images: list[Image.Image]) -> torch.Tensor:
        if self.image_processor is not None:  # as GeoCLIP's ImageEncoder.preprocess_image does it
            batch = self.image_processor(images=list(images), return_tensors="pt")["pixel_values"]
        else:
            batch = torch.stack([clip_preprocess(im, self.image_size, self.mean, self.std) for im in images])
        return batch.to(self.device, self.dtype)

    def _image_forward(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.model.vision_model(pixel_values=pixels)
        pooled = self.model.visual_projection(out.pooler_output)
        tokens = self.model.vision_model.post_layernorm(out.last_hidden_state[:, 1:])
        return pooled, tokens

    def _text_forward(self, texts: list[str]) -> torch.Tensor:
        max_len = self.model.config.text_config.max_position_embeddings
        if hasattr(self.tokenizer, "model_max_length") and callable(self.tokenizer):
            enc = self.tokenizer(
                texts, padding=True, truncation=True, max_length=max_len, return_tensors="pt"
            )
            ids, mask = enc["input_ids"], enc["attention_mask"]
        else:  # open_clip's SimpleTokenizer: the same OpenAI BPE ids, padded with 0
            ids = self.tokenizer(texts, context_length=max_len)
            mask = (ids != 0).long()
        out = self.model.text_model(input_ids=ids.to(self.device), attention_mask=mask.to(self.device))
        return self.model.text_projection(out.pooler_output)


# The real ViT-L/14 CLIP architecture (openai/clip-vit-large-patch14), for random_init without the hub.
VIT_L14_HF_CONFIG: dict[str, Any] = {
    "projection_dim": 768,
    "text_config": {
        "hidden_size": 768, "intermediate_size": 3072, "num_attention_heads": 12, "num_hidden_layers": 12,
        "max_position_embeddings": 77, "vocab_size": 49408, "projection_dim": 768,
        "bos_token_id": 49406, "eos_token_id": 49407, "pad_token_id": 1,
    },
    "vision_config": {
        "hidden_size": 1024, "intermediate_size": 4096, "num_attention_heads": 16, "num_hidden_layers": 24,
        "image_size": 224, "patch_size": 14, "projection_dim": 768,
    },
}  # fmt: skip


def _hf_image_cfg(folder: Path | None) -> dict[str, Any]:
    path = folder / "preprocessor_config.json" if folder else None
    if not path or not path.is_file():
        return {}
    raw = json.loads(path.read_text())
    crop = raw.get("crop_size", 224)
    size = crop.get("height", 224) if isinstance(crop, dict) else int(crop)
    return {"size": size, "mean": raw.get("image_mean", OPENAI_MEAN), "std": raw.get("image_std", OPENAI_STD)}


def _hf_tokenizer(folder: Path | None) -> Any:
    if folder is not None and any((folder / f).is_file() for f in ("tokenizer.json", "vocab.json")):
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(str(folder))
    import open_clip

    return open_clip.get_tokenizer("ViT-L-14")


def _transformers_processor(folder: Path | None) -> Any:
    """The image processor ``AutoProcessor.from_pretrained(folder)`` gives (GeoCLIP's preprocessing);
    without a folder, the class it picks for CLIP with CLIP's defaults (224 px, OpenAI mean/std)."""
    if folder is not None:
        from transformers import AutoProcessor

        return AutoProcessor.from_pretrained(str(folder))
    from transformers import CLIPImageProcessor

    return CLIPImageProcessor()


def load_hf_clip(
    pretrained: str | None = "openai/clip-vit-large-patch14",
    local_dir: str | os.PathLike | None = None,
    random_init: bool = False,
    config: dict[str, Any] | None = None,
    device: str = "auto",
    dtype: str = "auto",
    revision: str | None = None,
    seed: int = 0,
    name: str = "hf-clip-vit-l14",
    preprocess: str = "geodemo",
    **_: object,
) -> HFCLIPEncoder:
    """Registry loader for transformers CLIP (hub id, local folder, or random weights of ``config``).

    ``preprocess="transformers"`` resizes and crops with the repo's own ``AutoProcessor`` (what
    GeoCLIP does) instead of our pixel recipe, so the features equal GeoCLIP's.
    """
    if preprocess not in ("geodemo", "transformers"):
        raise ValueError(f"preprocess must be 'geodemo' or 'transformers', got {preprocess!r}")
    dev = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, dev)
    folder = transformers_weights(name, pretrained, local_dir, random_init, saved_by="CLIPModel.save_pretrained",
                                  allow_patterns=["*.json", "*.safetensors", "*.txt"], revision=revision)

    from transformers import CLIPConfig, CLIPModel

    if folder is None:
        torch.manual_seed(seed)
        model = CLIPModel(CLIPConfig(**(config or VIT_L14_HF_CONFIG)))
    else:
        model = from_pretrained(CLIPModel, folder, name, torch_dtype)
    model = model.to(device=dev, dtype=torch_dtype)
    processor = _transformers_processor(folder) if preprocess == "transformers" else None
    return HFCLIPEncoder(name, model, None, _hf_image_cfg(folder), dev, torch_dtype, tokenizer_folder=folder,
                         image_processor=processor)
