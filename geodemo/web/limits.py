"""Server-wide limits of the web app that hold before any handler runs.

- :class:`BodyLimit`: an ASGI middleware that refuses a request body larger than the photo budget
  allows (``413`` with a plain message) from its declared ``Content-Length``, before a byte of it is
  read; a body without a declared length is counted as it streams and cut off at the same limit.
- :func:`upload_cache_policy`: how long Gradio keeps uploads and decoded ``data:`` URLs in its cache
  (``GEODEMO_UPLOAD_MAX_AGE_S``, default 1800 s; ``0`` keeps them until the server stops): the
  ``delete_cache=(frequency, age)`` the app's ``gr.Blocks`` is built with.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from geodemo import env

__all__ = ["BodyLimit", "max_body_bytes", "upload_cache_policy"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

#: Room for the JSON around a ``data:`` URL and the other settings of one request.
ENVELOPE_BYTES = 1 << 20


def max_body_bytes(max_photo_bytes: int) -> int:
    """Largest request body for a photo budget of ``max_photo_bytes``: the photo as base64, plus the envelope."""
    return max_photo_bytes * 4 // 3 + ENVELOPE_BYTES


def upload_cache_policy() -> tuple[int, int] | None:
    """``(frequency, age)`` in seconds for ``gr.Blocks(delete_cache=...)``; None keeps the cache (age 0)."""
    raw = env.get("GEODEMO_UPLOAD_MAX_AGE_S", "") or ""
    try:
        age = int(float(raw)) if raw else 1800
    except ValueError:
        raise ValueError(f"$GEODEMO_UPLOAD_MAX_AGE_S must be a number of seconds, got {raw!r}") from None
    if age <= 0:
        return None
    return max(1, min(age, 300) // 2), age


class _TooLarge(Exception):
    pass


class BodyLimit:
    """ASGI middleware: HTTP bodies over ``max_bytes`` are refused with ``413`` before they are read."""

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]], max_bytes: int) -> None:
        self.app = app
        self.max_bytes = int(max_bytes)

    def _message(self, size: int | None) -> str:
        limit = f"the {self.max_bytes / 2**20:.0f} MB limit for one request"
        if size is None:
            return f"the request body is over {limit}; send a smaller photo"
        return f"the request body is {size / 2**20:.1f} MB, over {limit}; send a smaller photo"

    async def _refuse(self, send: Send, status: int, text: str) -> None:
        body = json.dumps({"error": text}).encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("type") != "http":
            await self.app(scope, receive, send)
            return
        declared = next((v for k, v in scope.get("headers") or () if k.lower() == b"content-length"), None)
        if declared is not None:
            try:
                size = int(declared)
            except ValueError:
                await self._refuse(send, 400, "the request's Content-Length is not a number")
                return
            if size > self.max_bytes:
                await self._refuse(send, 413, self._message(size))
                return
        received = 0
        started = False

        async def counted_receive() -> Message:
            nonlocal received
            message = await receive()
            if message.get("type") == "http.request":
                received += len(message.get("body") or b"")
                if received > self.max_bytes:
                    raise _TooLarge
            return message

        async def tracked_send(message: Message) -> None:
            nonlocal started
            if message.get("type") == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted_receive, tracked_send)
        except _TooLarge:
            if not started:
                await self._refuse(send, 413, self._message(None))
