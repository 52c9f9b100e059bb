"""Ollama (e.g. LLaVA) through the official ``ollama`` client: ``/api/tags`` and ``/api/chat``.

The host comes from the config, else ``$OLLAMA_HOST``, else ``http://127.0.0.1:11434``. The photo
travels as a base64 JPEG in the message's ``images``; each sample is one request with
``options.seed = seed + i``. Connection failures, time-outs and 5xx answers are retried a bounded
number of times; a model that is not pulled fails at once with the ``ollama pull`` to run.
"""

from __future__ import annotations

import os
from typing import Any

from PIL import Image

from geodemo.lmm.backends.base import (
    BackendError,
    BackendUnavailableError,
    endpoint_identity,
    jpeg_base64,
    register_backend,
    retry_call,
    time_left,
)

__all__ = ["OllamaBackend", "DEFAULT_OLLAMA_HOST", "DEFAULT_OLLAMA_MODEL"]

DEFAULT_OLLAMA_HOST = "http://127.0.0.1:11434"
DEFAULT_OLLAMA_MODEL = "llava:7b"


def _same_model(a: str, b: str) -> bool:
    """Ollama names without a tag mean ``:latest``."""

    def norm(x: str) -> str:
        return x if ":" in x else x + ":latest"

    return norm(a) == norm(b)


@register_backend("ollama")
class OllamaBackend:
    """A vision model served by Ollama."""

    sees_image = True
    completion = False

    @classmethod
    def availability(cls, timeout_s: float = 1.0, model: str | None = None, host: str | None = None) -> str | None:
        """None when the Ollama server (``host``, else ``$OLLAMA_HOST``, else the default) answers and has
        ``model`` (default: the backend's default model), else how to get there."""
        import httpx

        model = model or DEFAULT_OLLAMA_MODEL
        host = host or os.environ.get("OLLAMA_HOST") or DEFAULT_OLLAMA_HOST
        host = host if "://" in host else f"http://{host}"
        pull = f"`ollama pull {model}`"
        try:
            tags = httpx.get(f"{host.rstrip('/')}/api/tags", timeout=timeout_s).json()
        except (httpx.HTTPError, ValueError):
            return f"start Ollama (`ollama serve`, or set OLLAMA_HOST) and {pull}"
        names = [m.get("model") or m.get("name") or "" for m in tags.get("models", [])]
        return None if any(_same_model(model, n) for n in names) else f"run {pull}"

    def __init__(
        self,
        model: str | None = None,
        host: str | None = None,
        timeout_s: float = 120.0,
        retries: int = 2,
        backoff_s: float = 0.5,
        max_tokens: int = 128,
        format: str | dict | None = "json",
        keep_alive: str | float | None = None,
        image_max_side: int = 1024,
        check_model: bool = True,
        **_: Any,
    ) -> None:
        self.model = model or DEFAULT_OLLAMA_MODEL
        self.host = host or os.environ.get("OLLAMA_HOST") or DEFAULT_OLLAMA_HOST
        self.timeout_s = float(timeout_s)
        self.retries = int(retries)
        self.backoff_s = float(backoff_s)
        self.max_tokens = int(max_tokens)
        self.format = format or None
        self.keep_alive = keep_alive
        self.image_max_side = int(image_max_side)
        self.check_model = bool(check_model)
        self._checked = False
        self._clients: dict[float, Any] = {}

    @property
    def endpoint(self) -> str:
        """The server, as the answer cache keys it."""
        return endpoint_identity(self.host)

    def _get_client(self) -> Any:
        """A client whose requests end within ``timeout_s`` or the call's remaining time budget."""
        import ollama

        timeout = round(time_left(self.timeout_s), 1) or 0.1
        if timeout not in self._clients:
            if len(self._clients) > 8:
                self._clients.clear()
            self._clients[timeout] = ollama.Client(host=self.host, timeout=timeout)
        return self._clients[timeout]

    def _request(self, fn: Any) -> Any:
        """Run one client call, translating its failures into :class:`BackendError`."""
        import httpx
        import ollama

        try:
            return fn()
        except ollama.ResponseError as exc:
            if exc.status_code == 404:
                raise BackendUnavailableError(
                    f"model {self.model!r} is not available on the Ollama server at {self.host} "
                    f"({exc.error}); pull it with `ollama pull {self.model}` or set lmm.model"
                ) from None
            retryable = exc.status_code >= 500 or exc.status_code in (408, 429)
            raise BackendError(
                f"Ollama at {self.host} answered HTTP {exc.status_code}: {exc.error}", retryable=retryable
            ) from None
        except ConnectionError:
            raise BackendUnavailableError(
                f"no Ollama server answers at {self.host}; start it with `ollama serve`, or point "
                f"OLLAMA_HOST / the preset's lmm.host at a running server",
                retryable=True,
            ) from None
        except httpx.TimeoutException:
            raise BackendError(
                f"Ollama at {self.host} did not answer within {self.timeout_s:g} s (model {self.model})",
                retryable=True,
            ) from None
        except httpx.HTTPError as exc:
            raise BackendError(f"HTTP error talking to Ollama at {self.host}: {exc}", retryable=True) from None

    def available_models(self) -> list[str]:
        """Names the server lists under ``/api/tags``."""
        listing = retry_call(lambda: self._request(self._get_client().list), self.retries, self.backoff_s)
        return [m.model for m in listing.models if m.model]

    def _ensure_model(self) -> None:
        if self._checked or not self.check_model:
            return
        names = self.available_models()
        if not any(_same_model(self.model, n) for n in names):
            shown = ", ".join(names[:10]) or "none"
            raise BackendUnavailableError(
                f"model {self.model!r} is not pulled on the Ollama server at {self.host} (it has: {shown}); "
                f"run `ollama pull {self.model}` or choose one of those in lmm.model"
            )
        self._checked = True

    def generate(
        self, image: Image.Image | None, prompt: str, n: int = 1, temperature: float = 0.7, seed: int | None = None
    ) -> list[str]:
        """``n`` answers, one ``/api/chat`` request each (Ollama has no ``n``)."""
        self._ensure_model()
        message: dict[str, Any] = {"role": "user", "content": prompt}
        if image is not None:
            message["images"] = [jpeg_base64(image, self.image_max_side)]
        out = []
        for i in range(n):
            options: dict[str, Any] = {"temperature": float(temperature), "num_predict": self.max_tokens}
            if seed is not None:
                options["seed"] = int(seed) + i

            def call(options: dict[str, Any] = options) -> Any:
                return self._request(
                    lambda: self._get_client().chat(
                        model=self.model,
                        messages=[message],
                        stream=False,
                        format=self.format,
                        options=options,
                        keep_alive=self.keep_alive,
                    )
                )

            response = retry_call(call, self.retries, self.backoff_s)
            out.append(response.message.content or "")
        return out
