"""The one interface every LMM backend implements, and the registry that names them.

A backend turns ``(image, prompt)`` into ``n`` answer strings. Adding one is writing a class and
decorating it with :func:`register_backend`; the stage never branches on backend names.
"""

from __future__ import annotations

import base64
import io
import time
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

from PIL import Image

from geodemo.errors import BackendError, BackendUnavailableError

__all__ = [
    "LMMBackend",
    "BackendError",
    "BackendUnavailableError",
    "register_backend",
    "create_backend",
    "list_backends",
    "backend_availability",
    "backend_status",
    "jpeg_bytes",
    "jpeg_base64",
    "retry_call",
]


@runtime_checkable
class LMMBackend(Protocol):
    """A multimodal (or text-only) model that answers a prompt about a photo.

    ``sees_image`` is False for text-only models: prompts then describe the photo in words.
    ``completion`` is True for base models that continue raw text instead of chatting.
    """

    name: str
    model: str
    sees_image: bool
    completion: bool

    def generate(
        self, image: Image.Image | None, prompt: str, n: int = 1, temperature: float = 0.7, seed: int | None = None
    ) -> list[str]:
        """``n`` answers to ``prompt``; sample ``i`` uses ``seed + i`` where the backend takes a seed."""
        ...


_REGISTRY: dict[str, type] = {}


def register_backend(*names: str) -> Callable[[type], type]:
    """Class decorator: make a backend constructible by ``create_backend(name, **config)``."""

    def wrap(cls: type) -> type:
        for name in names:
            _REGISTRY[name] = cls
        cls.name = names[0]
        return cls

    return wrap


def _load_builtin() -> None:
    # Importing the modules registers their classes; they import their clients lazily.
    from geodemo.lmm.backends import hf, ollama_backend, openai_backend  # noqa: F401


def list_backends() -> list[str]:
    """Registered backend names (aliases included)."""
    _load_builtin()
    return sorted(_REGISTRY)


def backend_availability(timeout_s: float = 1.0) -> dict[str, str | None]:
    """Each registered backend (aliases once) -> None when it can answer here, else one line on how
    to enable it (e.g. "start Ollama (`ollama serve`) and `ollama pull llava:7b`").

    A backend class tells through an optional ``availability(timeout_s) -> str | None`` classmethod;
    probes are quick (local files, a short TCP/HTTP check), never a model load.
    """
    _load_builtin()
    return {cls.name: backend_status(cls.name, timeout_s) for cls in dict.fromkeys(_REGISTRY.values())}


def backend_status(name: str, timeout_s: float = 1.0) -> str | None:
    """None when the backend registered as ``name`` can answer here, else how to enable it."""
    from geodemo.errors import describe

    _load_builtin()
    cls = _REGISTRY.get(name)
    if cls is None:
        return f"there is no LMM backend named {name!r}; registered: {', '.join(sorted(_REGISTRY))}"
    probe = getattr(cls, "availability", None)
    try:
        return probe(timeout_s) if probe is not None else None
    except Exception as exc:  # noqa: BLE001 - a failing probe means "not usable", in plain words
        return describe(exc)[0]


def create_backend(name: str, **config: Any) -> LMMBackend:
    """Build the backend registered as ``name``; unknown config keys are ignored by each backend."""
    _load_builtin()
    if name not in _REGISTRY:
        raise ValueError(f"unknown LMM backend {name!r}; registered: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name](**config)


def jpeg_bytes(image: Image.Image, max_side: int | None = 1024, quality: int = 90) -> bytes:
    """The photo as JPEG bytes (RGB), downscaled so its long side is at most ``max_side``."""
    img = image.convert("RGB")
    if max_side and max(img.size) > max_side:
        img = img.copy()
        img.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def jpeg_base64(image: Image.Image, max_side: int | None = 1024) -> str:
    """Base64 text of :func:`jpeg_bytes` (what Ollama and data URLs carry)."""
    return base64.b64encode(jpeg_bytes(image, max_side)).decode("ascii")


def retry_call(fn: Callable[[], Any], retries: int, backoff_s: float = 0.5) -> Any:
    """Call ``fn``; retry up to ``retries`` times on a retryable :class:`BackendError`."""
    attempt = 0
    while True:
        try:
            return fn()
        except BackendError as exc:
            if not exc.retryable or attempt >= retries:
                if attempt:
                    raise type(exc)(f"{exc} (after {attempt + 1} attempts)") from exc
                raise
            time.sleep(backoff_s * (2**attempt))
            attempt += 1
