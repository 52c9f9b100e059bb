"""The one way a stage failure is recorded on a :class:`~geodemo.result.LocationResult`.

``errors[stage]`` gets plain words a person can act on (no exception class, no server path);
``error_details[stage]`` keeps the technical detail for logs and bug reports. A missing optional
resource (weights, a checkpoint, an LMM server, a program that is not installed) is not a failure:
it goes to ``unavailable[stage]`` with one line on how to add it, and the page lists it as "not
installed". The words come from :func:`geodemo.errors.describe`, the one translation of exceptions.
"""

from __future__ import annotations

from geodemo.errors import describe, is_not_installed, plain_text
from geodemo.result import LocationResult

__all__ = ["record_failure", "plain_words", "is_unavailable"]


def is_unavailable(exc: BaseException) -> bool:
    """True when ``exc`` says an optional resource is not installed (rather than that it broke)."""
    return is_not_installed(exc) or isinstance(exc, ImportError)


def plain_words(message: str) -> str:
    """``message`` without server paths, exception class names or tracebacks, at most 300 characters."""
    return plain_text(message)[:300] or "it failed for an unknown reason"


def _add(table: dict[str, str], stage: str, text: str) -> None:
    table[stage] = f"{table[stage]}; {text}" if stage in table else text  # a second failure adds to the first


def record_failure(result: LocationResult, stage: str, failure: BaseException | str, *,
                   unavailable: bool | None = None, how_to_add: str | None = None) -> None:
    """Record that ``stage`` failed (an exception or a sentence) and let the rest of the pipeline run.

    ``unavailable`` defaults to :func:`is_unavailable`: then the stage is listed under
    ``result.unavailable`` with ``how_to_add`` (default: the plain words of the failure) instead of
    ``result.errors``.
    """
    if isinstance(failure, BaseException):
        words, detail = describe(failure)
        words = words[:300]
        missing = is_unavailable(failure) if unavailable is None else unavailable
    else:
        words, detail = plain_words(failure), str(failure)
        missing = bool(unavailable)
    _add(result.error_details, stage, detail)
    if missing:
        _add(result.unavailable, stage, how_to_add or words)
    else:
        _add(result.errors, stage, words)
