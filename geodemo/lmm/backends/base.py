"""The one interface every LMM backend implements, and the registry that names them.

A backend turns ``(image, prompt)`` into ``n`` answer strings. Adding one is writing a class and
decorating it with :func:`register_backend`; the stage never branches on backend names.
"""

from __future__ import annotations

import base64
import contextvars
import inspect
import io
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Protocol, runtime_checkable
from urllib.parse import urlsplit, urlunsplit

from PIL import Image

from geodemo.errors import BackendError, BackendUnavailableError, describe
from geodemo.registry import Registry

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
    "call_deadline",
    "time_left",
    "endpoint_identity",
]

# Wall-clock end (time.monotonic) of the LMM call running in this thread, set by the stage.
_DEADLINE: contextvars.ContextVar[float | None] = contextvars.ContextVar("geodemo_lmm_deadline", default=None)


@contextmanager
def call_deadline(deadline: float | None) -> Iterator[None]:
    """Within the block, backends end their requests (retries included) by ``deadline`` (monotonic s)."""
    token = _DEADLINE.set(deadline)
    try:
        yield
    finally:
        _DEADLINE.reset(token)


def time_left(cap: float) -> float:
    """Seconds a request may still take: ``cap``, or less when the call's deadline is nearer.

    Raises a :class:`BackendError` when the deadline has passed (no request is started then).
    """
    deadline = _DEADLINE.get()
    if deadline is None:
        return cap
    left = deadline - time.monotonic()
    if left <= 0.01:
        raise BackendError("the call's time budget ran out before this request (lmm.timeout_s)")
    return min(cap, left)


def endpoint_identity(url: str) -> str:
    """The server a backend talks to, as it goes into a cache key: scheme, host, port and path of
    ``url``, lower-cased host, no trailing slash, no user name, password, query or fragment (where
    credentials may sit). A bare ``host:port`` (as ``$OLLAMA_HOST`` allows) is read as ``http://``."""
    url = url.strip()
    parts = urlsplit(url if "://" in url else f"http://{url}")
    host = (parts.hostname or "").lower()
    if ":" in host:  # an IPv6 literal
        host = f"[{host}]"
    netloc = host if parts.port is None else f"{host}:{parts.port}"
    return urlunsplit((parts.scheme.lower(), netloc, parts.path.rstrip("/"), "", ""))


@runtime_checkable
class LMMBackend(Protocol):
    """A multimodal (or text-only) model that answers a prompt about a photo.

    ``sees_image`` is False for text-only models: prompts then describe the photo in words.
    ``completion`` is True for base models that continue raw text instead of chatting.
    A backend that talks to a server also has ``endpoint`` (:func:`endpoint_identity` of its URL),
    which the answer cache keys on: two servers may serve different models under one name.
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


# Importing the modules registers their classes; they import their clients lazily.
BACKENDS: Registry[type] = Registry(
    "LMM backend", [f"geodemo.lmm.backends.{m}" for m in ("hf", "ollama_backend", "openai_backend")])


def register_backend(*names: str) -> Callable[[type], type]:
    """Class decorator: make a backend constructible by ``create_backend(name, **config)``."""

    def wrap(cls: type) -> type:
        cls.name = names[0]
        return BACKENDS.register(*names)(cls)

    return wrap


def list_backends() -> list[str]:
    """Registered backend names (aliases included)."""
    return BACKENDS.names()


def backend_availability(timeout_s: float = 1.0) -> dict[str, str | None]:
    """Each registered backend (aliases once) -> None when it can answer here, else one line on how
    to enable it (e.g. "start Ollama (`ollama serve`) and `ollama pull llava:7b`").

    A backend class tells through an optional ``availability(timeout_s) -> str | None`` classmethod;
    probes are quick (local files, a short TCP/HTTP check), never a model load.
    """
    return {cls.name: backend_status(cls.name, timeout_s) for cls in dict.fromkeys(c for _, c in BACKENDS.items())}


def backend_status(name: str, timeout_s: float = 1.0, **config: Any) -> str | None:
    """None when the backend registered as ``name`` can answer here, else how to enable it.

    ``config`` is the backend's settings as a preset or a request gives them (``model``, ``host`` ...):
    the probe checks the model that will be used, on the server that will be asked; settings a
    backend's probe does not take are ignored.
    """
    if name not in BACKENDS:
        return f"there is no LMM backend named {name!r}; registered: {', '.join(BACKENDS.names())}"
    cls = BACKENDS.get(name)
    probe = getattr(cls, "availability", None)
    if probe is None:
        return None
    params = inspect.signature(probe).parameters
    wanted = {k: v for k, v in config.items() if k in params and k != "timeout_s" and v is not None}
    try:
        return probe(timeout_s, **wanted)
    except Exception as exc:  # noqa: BLE001 - a failing probe means "not usable", in plain words
        return describe(exc)[0]


def create_backend(name: str, **config: Any) -> LMMBackend:
    """Build the backend registered as ``name``; unknown config keys are ignored by each backend."""
    return BACKENDS.get(name)(**config)


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
    """Call ``fn``; retry up to ``retries`` times on a retryable :class:`BackendError`.

    Never retries past the call's deadline (:func:`call_deadline`): the last error is raised instead.
    """
    attempt = 0
    while True:
        try:
            return fn()
        except BackendError as exc:
            pause = backoff_s * (2**attempt)
            deadline = _DEADLINE.get()
            out_of_time = deadline is not None and time.monotonic() + pause >= deadline
            if not exc.retryable or attempt >= retries or out_of_time:
                if attempt:
                    raise type(exc)(f"{exc} (after {attempt + 1} attempts)") from exc
                raise
            time.sleep(pause)
            attempt += 1
