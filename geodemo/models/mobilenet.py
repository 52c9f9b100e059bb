"""The real offline MobileNet models (TFLite, ImageNet-trained) from the shared folder.

``mobilenet-v1-imagenet`` is geodemo's offline default image encoder: MobileNet V1 1.0/224 with
the classifier removed, a 1024-d generic embedding (dequantized, then L2-normalised). Its image
tokens are the last feature map before the average pool (``Conv2d_13_pointwise``, 7x7x1024),
read from the interpreter's intermediate tensors: 49 tokens whose mean is the pooled embedding.
``mobilenet-v2-imagenet-classifier`` gives top-k ImageNet labels, a cheap text description of a photo.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from geodemo.models.pixels import PixelRecipe, worker_pixels
from geodemo.models.tflite import TFLiteModel, find_weights

__all__ = [
    "MobileNetEncoder",
    "MobileNetClassifier",
    "mobilenet_preprocess",
    "load_mobilenet_v1_encoder",
    "load_mobilenet_v2_classifier",
]

SHARED_SUBDIR = "mobilenet-imagenet"
TOKEN_TENSOR = "MobilenetV1/MobilenetV1/Conv2d_13_pointwise/Relu6"  # (B, 7, 7, 1024) before AvgPool


def mobilenet_preprocess(image: Image.Image, size: int = 224, central_fraction: float = 0.875) -> np.ndarray:
    """TF-slim ImageNet eval preprocessing: central crop of 87.5%, bilinear resize to ``size``.

    Returns ``(size, size, 3)`` uint8 RGB; the quantized input (scale 1/128, zero point 128) maps
    it to [-1, 1] exactly as the float model's ``x / 127.5 - 1`` did.
    """
    return worker_pixels(image, PixelRecipe(size, "central-crop", "bilinear", central_fraction))


class MobileNetEncoder:
    """ImageEncoder over the MobileNet V1 TFLite embedding extractor (1024-d, no text tower).

    ``encode_image_tokens`` gives the 7x7 grid of the last feature map as 49 tokens of 1024
    (a second interpreter that keeps its intermediate tensors, created on first use).
    """

    has_text_tower = False

    def __init__(
        self, path: Path, name: str = "mobilenet-v1-imagenet", num_threads: int | None = None
    ) -> None:
        self.name = name
        self.path = Path(path)
        self.num_threads = num_threads
        self.model = TFLiteModel(path, num_threads=num_threads)
        self.input_size = self.model.input_shape[1]
        self.embed_dim = 1024
        self.token_dim = 1024
        self._token_model: TFLiteModel | None = None

    def _tokens_of(self, x: np.ndarray) -> np.ndarray:
        if self._token_model is None:
            self._token_model = TFLiteModel(self.path, num_threads=self.num_threads, preserve_all_tensors=True)
        index = self._token_model.tensor_index(TOKEN_TENSOR)
        grid = self._token_model.dequantize(self._token_model.run(x, tensor=index), tensor=index)
        return grid.reshape(len(x), -1, grid.shape[-1])

    def encode_image_tokens(
        self, images: list[Image.Image], batch_size: int = 16, progress: bool = False
    ) -> torch.Tensor:
        """``(N, 49, 1024)`` float32 tokens: the dequantized 7x7 feature map, row-major (not normalised)."""
        step = max(1, int(batch_size))
        out = []
        with tqdm(total=len(images), desc=f"{self.name} tokens", disable=not progress, unit="img") as bar:
            for start in range(0, len(images), step):
                chunk = images[start : start + step]
                x = np.stack([mobilenet_preprocess(im, self.input_size) for im in chunk])
                out.append(torch.from_numpy(self._tokens_of(x)))
                bar.update(len(chunk))
        return torch.cat(out) if out else torch.zeros(0, 49, self.token_dim)

    def encode_images(
        self, images: list[Image.Image], batch_size: int = 16, progress: bool = False
    ) -> np.ndarray:
        """``(N, 1024)`` float32 unit rows, ``batch_size`` photos per interpreter call."""
        out = np.zeros((len(images), self.embed_dim), dtype=np.float32)
        step = max(1, int(batch_size))
        with tqdm(total=len(images), desc=self.name, disable=not progress, unit="img") as bar:
            for start in range(0, len(images), step):
                chunk = images[start : start + step]
                x = np.stack([mobilenet_preprocess(im, self.input_size) for im in chunk])
                out[start : start + len(chunk)] = self._embed(x)
                bar.update(len(chunk))
        return out

    def _embed(self, x: np.ndarray) -> np.ndarray:
        vecs = self.model.dequantize(self.model.run(x)).reshape(len(x), -1)
        norms = np.linalg.norm(vecs, axis=1, keepdims=True)
        return vecs / np.where(norms > 0, norms, 1.0)

    def pixel_recipe(self):
        """TF-slim eval transform on uint8 input (see :func:`mobilenet_preprocess`)."""
        return PixelRecipe(self.input_size, "central-crop", "bilinear", 0.875)

    def encode_pixels(self, pixels, tokens: bool = False) -> dict:
        """A ``(B, size, size, 3)`` uint8 batch made by the recipe -> ``{"image": (B, 1024) unit rows}``."""
        if tokens:
            raise NotImplementedError(f"{self.name} gives no patch tokens")
        import torch

        return {"image": torch.from_numpy(self._embed(pixels.cpu().numpy()).astype(np.float32))}

    def encode_texts(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        raise NotImplementedError(f"{self.name} has no text tower; use clip-vit-l14 for text embeddings")


class MobileNetClassifier:
    """MobileNet V2 ImageNet classifier (1001 classes, 0 = background) giving top-k labels."""

    def __init__(
        self,
        path: Path,
        labels: list[str],
        name: str = "mobilenet-v2-imagenet-classifier",
        num_threads: int | None = None,
    ) -> None:
        self.name = name
        self.model = TFLiteModel(path, num_threads=num_threads)
        self.labels = labels
        self.input_size = self.model.input_shape[1]

    def probabilities(self, image: Image.Image) -> np.ndarray:
        """``(1001,)`` class probabilities."""
        x = mobilenet_preprocess(image, self.input_size)[None]
        return self.model.dequantize(self.model.run(x)).reshape(-1)

    def classify(self, image: Image.Image, top: int = 5) -> list[tuple[str, float]]:
        """Top ImageNet labels (first synonym only) with their probabilities, background excluded."""
        probs = self.probabilities(image)
        probs[0] = 0.0
        order = np.argsort(-probs, kind="stable")[:top]
        return [(self.labels[i].split(",")[0].strip(), float(probs[i])) for i in order]


def load_mobilenet_v1_encoder(
    filename: str = "mobilenet_v1_1.0_224_quant_embedding_extractor.tflite",
    local_dir: str | os.PathLike | None = None,
    num_threads: int | None = None,
    device: str = "cpu",
    **_: object,
) -> MobileNetEncoder:
    """Registry loader for ``mobilenet-v1-imagenet`` (TFLite runs on the CPU whatever ``device`` says)."""
    path = find_weights("mobilenet-v1-imagenet", filename, local_dir, SHARED_SUBDIR)
    return MobileNetEncoder(path, num_threads=num_threads)


def load_mobilenet_v2_classifier(
    filename: str = "mobilenet_v2_1.0_224_quant.tflite",
    labels_file: str = "imagenet_labels.txt",
    local_dir: str | os.PathLike | None = None,
    num_threads: int | None = None,
    device: str = "cpu",
    **_: object,
) -> MobileNetClassifier:
    """Registry loader for ``mobilenet-v2-imagenet-classifier``."""
    name = "mobilenet-v2-imagenet-classifier"
    path = find_weights(name, filename, local_dir, SHARED_SUBDIR)
    labels_path = find_weights(name, labels_file, local_dir, SHARED_SUBDIR)
    labels = [line.rstrip("\n") for line in labels_path.read_text(encoding="utf-8").splitlines()]
    return MobileNetClassifier(path, labels, num_threads=num_threads)
