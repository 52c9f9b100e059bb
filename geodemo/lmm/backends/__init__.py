"""LMM backends behind one interface: ``generate(image, prompt, n, temperature, seed) -> list[str]``.

Registered names: ``ollama``, ``openai`` (alias ``openai-compatible``), ``transformers`` (alias
``transformers-vlm``) and ``gguf`` (alias ``transformers-text``).
"""

from geodemo.lmm.backends.base import (
    BackendError,
    LMMBackend,
    backend_availability,
    backend_status,
    create_backend,
    jpeg_base64,
    jpeg_bytes,
    list_backends,
    register_backend,
    retry_call,
)

__all__ = [
    "BackendError",
    "LMMBackend",
    "backend_availability",
    "backend_status",
    "create_backend",
    "jpeg_base64",
    "jpeg_bytes",
    "list_backends",
    "register_backend",
    "retry_call",
]
