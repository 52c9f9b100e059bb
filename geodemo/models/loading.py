"""Helpers every loader uses: device and dtype choice, finding weights locally or on the hub.

Hub models resolve their files *before* building anything, so a missing model fails in well under
a second with one :class:`~geodemo.models.base.ModelUnavailableError` that names the model, where
it looked and how to supply it. With ``HF_HUB_OFFLINE=1`` (or when the hub cannot be reached
within a few seconds) only the local Hugging Face cache is consulted: no retry loops.
"""

from __future__ import annotations

import os
import socket
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from geodemo.models.base import ModelUnavailableError

__all__ = [
    "on_space_gpu",
    "resolve_device",
    "resolve_dtype",
    "hub_offline",
    "hub_endpoint",
    "hub_reachable",
    "resolve_hub_file",
    "resolve_hub_snapshot",
    "local_dir_or_none",
    "weights_source",
]

_TRUE = {"1", "true", "yes", "on"}


def on_space_gpu(fn: Any = None, *, duration: int = 120) -> Any:
    """``spaces.GPU(duration=...)(fn)`` when the ``spaces`` package is installed (a ZeroGPU Space attaches
    a GPU for the call), else ``fn`` unchanged; usable as ``@on_space_gpu`` or ``@on_space_gpu(duration=60)``.
    The image towers' forward passes and LMM generation carry it."""
    if fn is None:
        return lambda f: on_space_gpu(f, duration=duration)
    try:
        import spaces
    except ImportError:
        return fn
    return spaces.GPU(duration=duration)(fn)


def resolve_device(device: str | None = "auto") -> str:
    """``"auto"`` -> ``"cuda"`` if available, then ``"mps"``, then ``"cpu"``; other values pass through."""
    if device not in (None, "auto"):
        return str(device)
    import torch

    if torch.cuda.is_available():
        return "cuda"
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return "mps"
    return "cpu"


def resolve_dtype(dtype: str | Any | None, device: str) -> Any:
    """A ``torch.dtype`` from ``"auto"|"fp32"|"fp16"|"bf16"`` (``auto``: bf16/fp16 on GPU, fp32 on CPU)."""
    import torch

    if isinstance(dtype, torch.dtype):
        return dtype
    key = (dtype or "auto").lower()
    if key == "auto":
        if device.startswith("cuda"):
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        if device.startswith("mps"):
            return torch.float16
        return torch.float32
    table = {
        "fp32": torch.float32, "float32": torch.float32,
        "fp16": torch.float16, "float16": torch.float16, "half": torch.float16,
        "bf16": torch.bfloat16, "bfloat16": torch.bfloat16,
    }  # fmt: skip
    if key not in table:
        raise ValueError(f"unknown dtype {dtype!r}; use one of auto, {', '.join(sorted(table))}")
    return table[key]


def hub_offline() -> bool:
    """True when ``HF_HUB_OFFLINE`` or ``TRANSFORMERS_OFFLINE`` asks for no network access."""
    return any(
        os.environ.get(k, "").strip().lower() in _TRUE for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )


@lru_cache(maxsize=4)
def _probe(host: str, port: int, timeout_s: float) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def hub_endpoint() -> str:
    """The hub's address: ``HF_ENDPOINT`` (a mirror, or a local test server) or https://huggingface.co."""
    return os.environ.get("HF_ENDPOINT", "").strip().rstrip("/") or "https://huggingface.co"


def hub_reachable(timeout_s: float = 3.0) -> bool:
    """Whether the Hugging Face hub (:func:`hub_endpoint`) answers a TCP connect (checked once per
    process and address)."""
    if hub_offline():
        return False
    url = urlsplit(hub_endpoint())
    if not url.hostname:
        return False
    return _probe(url.hostname, url.port or (80 if url.scheme == "http" else 443), timeout_s)


def local_dir_or_none(path: str | os.PathLike | None) -> Path | None:
    """``path`` as a folder that exists, ``None`` when not given; a clear error when it is missing."""
    if path in (None, ""):
        return None
    folder = Path(path).expanduser()
    if not folder.exists():
        raise ModelUnavailableError(f"local model folder {folder} does not exist")
    return folder


def weights_source(
    pretrained: str | os.PathLike | None, local_dir: str | os.PathLike | None, random_init: bool
) -> tuple[str, Any]:
    """Where a hub-family model's weights come from: ``("random", None)``, ``("folder", Path)`` or
    ``("hub", repo_id)``. ``pretrained=None`` means random weights, as ``random_init=True`` does."""
    folder = local_dir_or_none(local_dir)
    if folder is not None:
        return "folder", folder
    if random_init or pretrained in (None, ""):
        return "random", None
    candidate = Path(str(pretrained)).expanduser()
    if candidate.exists() or str(pretrained).startswith((".", "/", "~")):
        return "folder", local_dir_or_none(candidate)
    return "hub", str(pretrained)


def _unavailable(
    model: str, where: str, how: str, cause: BaseException | None = None
) -> ModelUnavailableError:
    reason = f" ({type(cause).__name__}: {cause})" if cause is not None else ""
    mode = (
        "offline (HF_HUB_OFFLINE=1)"
        if hub_offline()
        else "hub unreachable"
        if not hub_reachable()
        else "online"
    )
    return ModelUnavailableError(
        f"weights for {model} are not available: looked in {where}; {mode}{reason}. To supply them: {how}"
    )


def resolve_hub_file(
    model: str, repo_id: str, filenames: list[str], how: str, revision: str | None = None
) -> Path:
    """The first of ``filenames`` in hub repo ``repo_id``: local cache first, then the hub if reachable."""
    from huggingface_hub import hf_hub_download

    local_only = not hub_reachable()
    last: BaseException | None = None
    for local_files_only in [True] if local_only else [True, False]:
        for filename in filenames:
            try:
                return Path(
                    hf_hub_download(repo_id, filename, revision=revision, local_files_only=local_files_only)
                )
            except Exception as exc:  # noqa: BLE001 - every hub failure becomes one clear error
                last = exc
    raise _unavailable(
        model, f"the Hugging Face cache and hub repo {repo_id} ({', '.join(filenames)})", how, last
    )


def resolve_hub_snapshot(
    model: str, repo_id: str, how: str, allow_patterns: list[str] | None = None, revision: str | None = None
) -> Path:
    """A local folder holding hub repo ``repo_id`` (cache first, download only when the hub answers)."""
    from huggingface_hub import snapshot_download

    attempts = [True] if not hub_reachable() else [True, False]
    last: BaseException | None = None
    for local_files_only in attempts:
        try:
            path = Path(
                snapshot_download(
                    repo_id,
                    revision=revision,
                    allow_patterns=allow_patterns,
                    local_files_only=local_files_only,
                )
            )
            if any(path.glob("*.json")):
                return path
        except Exception as exc:  # noqa: BLE001
            last = exc
    raise _unavailable(model, f"the Hugging Face cache and hub repo {repo_id}", how, last)


def transformers_weights(
    name: str,
    pretrained: str | os.PathLike | None,
    local_dir: str | os.PathLike | None,
    random_init: bool,
    *,
    saved_by: str,
    allow_patterns: list[str],
    revision: str | None = None,
) -> Path | None:
    """Folder of a transformers model's weights, or ``None`` for random weights of the architecture.

    A hub id is resolved here, before transformers is imported, so an offline miss fails fast.
    """
    kind, source = weights_source(pretrained, local_dir, random_init)
    if kind == "random":
        return None
    if kind == "folder":
        return Path(source)
    return resolve_hub_snapshot(
        name,
        source,
        how=f"pass local_dir=<folder saved by {saved_by}> or go online once ({source})",
        allow_patterns=allow_patterns,
        revision=revision,
    )


def from_pretrained(model_cls: Any, folder: Path, name: str, dtype: Any) -> Any:
    """``model_cls.from_pretrained(folder)`` with one clear error when the folder holds no usable weights."""
    try:
        return model_cls.from_pretrained(str(folder), dtype=dtype)
    except (OSError, ValueError) as exc:
        raise ModelUnavailableError(f"weights for {name} could not be loaded from {folder}: {exc}") from exc
