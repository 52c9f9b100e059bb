"""What a web answer may carry: no server paths.

The library's own results keep full paths (the CLI's user and the scripts need them); the web app
and its API answer with :func:`public_dict`, where neighbours are named by gallery id (a thumbnail
is fetched by that id through the app) and every path inside a message is cut to its file name
(:func:`geodemo.errors.redact_paths`, the same path rule as the plain words of an error).

>>> redact_paths("checkpoint folder /srv/app/checkpoints/offline-verifier lacks config.json")
'checkpoint folder offline-verifier lacks config.json'
"""

from __future__ import annotations

from typing import Any

from geodemo.errors import redact_paths  # the one path scrubber (also behind plain_text)

__all__ = ["redact_paths", "redact", "public_dict"]


def redact(value: Any) -> Any:
    """:func:`redact_paths` applied to every string inside lists, tuples and dicts."""
    if isinstance(value, str):
        return redact_paths(value)
    if isinstance(value, dict):
        return {k: redact(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact(v) for v in value]
    return value


def public_dict(result: Any) -> dict[str, Any]:
    """``result.to_dict()`` for a web answer: neighbours without ``image_path``, no path in any text."""
    out = result.to_dict() if hasattr(result, "to_dict") else dict(result)
    for n in out.get("neighbours") or []:
        if isinstance(n, dict):
            n.pop("image_path", None)
    return redact(out)
