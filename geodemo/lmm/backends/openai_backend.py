"""Any OpenAI-compatible chat-completions server (OpenAI, vLLM, llama.cpp server, LM Studio ...).

Base URL, model and key come from the preset or the environment (``OPENAI_BASE_URL``,
``OPENAI_MODEL``, and the variable named by ``api_key_env``, default ``OPENAI_API_KEY``), never from
the web page. The photo is sent as a ``data:image/jpeg;base64`` image part. All ``n`` samples are
asked for in one request; servers that ignore ``n`` are asked again for the rest.
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

__all__ = ["OpenAICompatibleBackend", "DEFAULT_OPENAI_MODEL"]

DEFAULT_OPENAI_MODEL = "gpt-4o-mini"
_OPENAI_URL = "https://api.openai.com/v1"


@register_backend("openai", "openai-compatible")
class OpenAICompatibleBackend:
    """A vision chat model behind ``/v1/chat/completions``."""

    sees_image = True
    completion = False

    @classmethod
    def availability(cls, timeout_s: float = 1.0, api_key_env: str = "OPENAI_API_KEY") -> str | None:
        """None when a key is set and the server answers, else how to configure one."""
        import httpx

        base_url = (os.environ.get("OPENAI_BASE_URL") or _OPENAI_URL).rstrip("/")
        how = (f"set {api_key_env} for the OpenAI API, or OPENAI_BASE_URL to a local OpenAI-compatible "
               "server (e.g. vLLM or llama.cpp serving a vision model)")
        if base_url == _OPENAI_URL and not os.environ.get(api_key_env):
            return how
        try:
            httpx.get(f"{base_url}/models", timeout=timeout_s)
        except httpx.HTTPError:
            return how
        return None

    def __init__(
        self,
        model: str | None = None,
        base_url: str | None = None,
        api_key_env: str = "OPENAI_API_KEY",
        timeout_s: float = 120.0,
        retries: int = 2,
        max_tokens: int = 128,
        use_n: bool = True,
        image_detail: str = "auto",
        image_max_side: int = 1024,
        json_mode: bool = False,
        backoff_s: float = 0.5,
        **_: Any,
    ) -> None:
        self.model = model or os.environ.get("OPENAI_MODEL") or DEFAULT_OPENAI_MODEL
        self.base_url = (base_url or os.environ.get("OPENAI_BASE_URL") or _OPENAI_URL).rstrip("/")
        self.api_key_env = api_key_env
        self.timeout_s = float(timeout_s)
        self.retries = int(retries)
        self.max_tokens = int(max_tokens)
        self.use_n = bool(use_n)
        self.image_detail = image_detail
        self.image_max_side = int(image_max_side)
        self.json_mode = bool(json_mode)
        self.backoff_s = float(backoff_s)
        self._client: Any = None

    @property
    def endpoint(self) -> str:
        """The server, as the answer cache keys it (never the API key)."""
        return endpoint_identity(self.base_url)

    def _get_client(self) -> Any:
        if self._client is None:
            import openai

            key = os.environ.get(self.api_key_env, "")
            if not key:
                if self.base_url == _OPENAI_URL:
                    raise BackendError(
                        f"no API key for {self.base_url}: set the environment variable {self.api_key_env} "
                        f"(or lmm.api_key_env to the variable that holds it)"
                    )
                key = "not-needed"  # local servers (vLLM, llama.cpp) accept any key
            # retries are ours (retry_call), so that they end with the call's time budget
            self._client = openai.OpenAI(base_url=self.base_url, api_key=key, timeout=self.timeout_s, max_retries=0)
        return self._client

    def _create(self, messages: list[dict[str, Any]], n: int, temperature: float, seed: int | None) -> list[str]:
        import openai

        kwargs: dict[str, Any] = {
            "model": self.model,
            "messages": messages,
            "temperature": float(temperature),
            "max_tokens": self.max_tokens,
        }
        if n > 1:
            kwargs["n"] = n
        if seed is not None:
            kwargs["seed"] = int(seed)
        if self.json_mode:
            kwargs["response_format"] = {"type": "json_object"}
        where = f"{self.base_url} (model {self.model})"
        try:
            client = self._get_client().with_options(timeout=time_left(self.timeout_s))
            response = client.chat.completions.create(**kwargs)
        except openai.NotFoundError as exc:
            raise BackendError(f"model {self.model!r} not found at {self.base_url}: {exc.message}; set lmm.model") from None
        except openai.AuthenticationError as exc:
            raise BackendError(f"{where} refused the API key from ${self.api_key_env}: {exc.message}") from None
        except openai.APITimeoutError:
            raise BackendError(f"{where} did not answer within {self.timeout_s:g} s", retryable=True) from None
        except openai.APIConnectionError:
            raise BackendUnavailableError(f"no OpenAI-compatible server answers at {self.base_url}; check lmm.base_url",
                                          retryable=True) from None
        except openai.APIStatusError as exc:
            retryable = exc.status_code >= 500 or exc.status_code in (408, 409, 429)
            raise BackendError(f"{where} answered HTTP {exc.status_code}: {exc.message}", retryable=retryable) from None
        if not response.choices:
            raise BackendError(f"{where} returned no choices")
        return [c.message.content or "" for c in sorted(response.choices, key=lambda c: c.index)]

    def generate(
        self, image: Image.Image | None, prompt: str, n: int = 1, temperature: float = 0.7, seed: int | None = None
    ) -> list[str]:
        """``n`` answers; one request with ``n`` when allowed, further requests for what is missing."""
        content: list[dict[str, Any]] = [{"type": "text", "text": prompt}]
        if image is not None:
            url = "data:image/jpeg;base64," + jpeg_base64(image, self.image_max_side)
            content.append({"type": "image_url", "image_url": {"url": url, "detail": self.image_detail}})
        messages = [{"role": "user", "content": content}]
        out: list[str] = []
        while len(out) < n:
            want = n - len(out) if self.use_n else 1
            s = None if seed is None else int(seed) + len(out)
            out.extend(retry_call(lambda w=want, s=s: self._create(messages, w, temperature, s), self.retries,
                                  self.backoff_s)[:want])
        return out
