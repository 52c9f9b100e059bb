"""The one way a stage failure is recorded on a :class:`~geodemo.result.LocationResult`.

``errors[stage]`` gets plain words a person can act on (no exception class, no server path);
``error_details[stage]`` keeps the technical detail for logs and bug reports; a missing optional
resource (weights, a checkpoint, a program that is not installed) also goes to
``unavailable[stage]`` with one line on how to add it.
"""

from __future__ import annotations

import re

from geodemo.result import LocationResult

__all__ = ["record_failure", "plain_words", "is_unavailable"]

# an absolute or home-relative path (POSIX or Windows), as exception messages often carry one
_PATH = re.compile(r"(?:(?<=\s)|(?<=^)|(?<=['\"(]))(?:~|[A-Za-z]:)?[/\\][^\s'\"(),;]+")


def is_unavailable(exc: BaseException) -> bool:
    """True when ``exc`` says an optional resource is not installed (rather than that it broke)."""
    from geodemo.models.base import ModelUnavailableError
    from geodemo.paths import MissingResourceError

    return isinstance(exc, (MissingResourceError, ModelUnavailableError, ImportError))


def plain_words(message: str) -> str:
    """``message`` without server paths, cut to its first sentence-sized part."""
    text = _PATH.sub("a local file", str(message)).strip()
    text = re.sub(r"\s+", " ", text)
    return text[:300] or "it failed for an unknown reason"


def record_failure(result: LocationResult, stage: str, failure: BaseException | str, *,
                   unavailable: bool | None = None, how_to_add: str | None = None) -> None:
    """Record that ``stage`` failed (an exception or a sentence) and let the rest of the pipeline run.

    ``unavailable`` defaults to :func:`is_unavailable`; ``how_to_add`` is the one line stored in
    ``result.unavailable[stage]`` (default: the exception's own message without paths).
    """
    if isinstance(failure, BaseException):
        detail = f"{type(failure).__name__}: {failure}"
        words = plain_words(str(failure))
        missing = is_unavailable(failure) if unavailable is None else unavailable
    else:
        detail = words = plain_words(failure)
        missing = bool(unavailable)
    if stage in result.errors:  # a second failure of the same stage adds to the first
        result.errors[stage] = f"{result.errors[stage]}; {words}"
        result.error_details[stage] = f"{result.error_details[stage]}; {detail}"
    else:
        result.errors[stage] = words
        result.error_details[stage] = detail
    if missing:
        result.unavailable[stage] = how_to_add or words
