"""geodemo's one error hierarchy, and the one function that turns any exception into words for people.

Every error geodemo raises on purpose is a :class:`GeodemoError`: a message that says what went
wrong and a ``hint`` that says how to fix it. Errors for an optional resource that is simply not
there (weights, a checkpoint, an LMM server, Tesseract) set ``not_installed``: the page and the CLI
show them as "not installed: how to add it", not as a failed stage.

:func:`describe` is what the page, the CLI and the pipeline use to report an exception: it returns
``(plain words, technical detail)``. The plain words never hold a traceback, an exception class
name or a server path; the detail (class name, full message, cause) goes to logs and to the
``error_details`` of a JSON result.

The classes keep their historical import places too (``geodemo.paths.MissingResourceError``,
``geodemo.models.base.ModelUnavailableError``, ``geodemo.retrieval.database.EncoderMismatchError``,
``geodemo.imageio.ImageError``, ``geodemo.lmm.backends.BackendError``, ...).
"""

from __future__ import annotations

import re

__all__ = [
    "GeodemoError",
    "MissingResourceError",
    "ModelUnavailableError",
    "EncoderMismatchError",
    "ImageError",
    "InvalidCoordinateError",
    "BackendError",
    "BackendUnavailableError",
    "ToolUnavailableError",
    "describe",
    "is_not_installed",
    "plain_text",
    "redact_paths",
]


class GeodemoError(Exception):
    """Base of every error geodemo raises on purpose: ``message`` (what) + ``hint`` (how to fix).

    ``str(exc)`` is the full technical message (it may name files); :attr:`plain` is what a person
    is shown.
    """

    not_installed = False  # True: an optional resource is absent, not a failure
    summary = "something went wrong"  # used when the message has nothing left after scrubbing

    def __init__(self, message: str = "", *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    @property
    def plain(self) -> str:
        """The message and its hint in plain words: no class names, no server paths."""
        return self.plain_words()

    def plain_words(self, keep_paths: bool = False) -> str:
        """:attr:`plain`; ``keep_paths=True`` keeps paths whole (the CLI's own user)."""
        text = plain_text(self.message, keep_paths) or self.summary
        if self.hint:
            hint = plain_text(self.hint, keep_paths)
            if hint and hint not in text:
                text = f"{text.rstrip('.')}; {hint}"
        return text


class MissingResourceError(GeodemoError, FileNotFoundError):
    """A dataset, weight file, checkpoint or index that geodemo needs is not where it looked."""

    not_installed = True
    summary = "a data file or checkpoint is not installed"


class ModelUnavailableError(GeodemoError, RuntimeError):
    """Weights for a registered model cannot be found or loaded; the message says where we looked."""

    not_installed = True
    summary = "the model's weights are not installed"


class EncoderMismatchError(GeodemoError, ValueError):
    """A query embedded by one encoder was sent to a database built with another."""

    summary = "the photo was encoded by a different model than the gallery"


class ImageError(GeodemoError, ValueError):
    """A photo that cannot be read: not an image, truncated, too large or otherwise broken."""

    summary = "the file cannot be read as a photo"


class InvalidCoordinateError(GeodemoError, ValueError):
    """A latitude/longitude that is NaN, infinite or out of range."""

    summary = "a coordinate is out of range"


class BackendError(GeodemoError, RuntimeError):
    """An LMM backend call failed (model missing, time-out, bad answer ...)."""

    summary = "the multimodal model did not answer"

    def __init__(self, message: str = "", *, hint: str | None = None, retryable: bool = False) -> None:
        super().__init__(message, hint=hint)
        self.retryable = retryable


class BackendUnavailableError(BackendError):
    """An LMM backend cannot be reached or loaded at all (no server, no weights): not installed."""

    not_installed = True
    summary = "the multimodal model is not installed or not running"


class ToolUnavailableError(GeodemoError, RuntimeError):
    """An external program an optional stage uses (e.g. Tesseract) is not installed."""

    not_installed = True
    summary = "a program this stage needs is not installed"


# ----------------------------------------------------------------------------- plain words

# An absolute, home or dot-relative POSIX path with at least one folder (not the path part of a URL,
# not "$GEODEMO_SHARED/models": no word character, ':' or '/' before it), or a Windows drive path.
# Group 1 (POSIX) or 2 (Windows) is the path's last component.
_PATH = re.compile(
    r"(?<![\w.:/\\$-])(?:~|\.{1,2})?/(?:[^\s/'\"`<>|:;,()\[\]{}]+/)+([^\s/'\"`<>|:;,()\[\]{}]*)"
    r"|\b[A-Za-z]:\\(?:[^\s\\'\"<>|]+\\)+([^\s\\'\"<>|]*)"
)
# "SomethingError: " / "KeyError(" / "(TesseractNotFoundError)" - an exception class name. Each dotted
# word is matched once and tested in Python (:func:`_drop_class_name`): no backtracking, linear time.
_DOTTED_WORD = re.compile(r"(?<![\w.])[A-Za-z_][\w.]*(?::[ \t]*)?")
_CLASS_SUFFIXES = ("Error", "Exception", "Unavailable", "Warning", "Exit")
_TRACEBACK = "Traceback (most recent call last):"

_GENERIC = (  # builtin exceptions -> what a person can understand
    (MemoryError, "ran out of memory"),
    (TimeoutError, "took too long and was stopped"),
    (ConnectionError, "could not reach a server it needs"),
    (FileNotFoundError, "a file it needs is missing"),
    (PermissionError, "a file it needs could not be opened"),
    (ImportError, "a Python package it needs is not installed"),
    (KeyError, "an unknown name"),
)


def _last_component(match: re.Match[str]) -> str:
    last = match.group(1) if match.group(1) is not None else match.group(2)
    if last:
        return last
    parts = [p for p in re.split(r"[/\\]", match.group(0)) if p and p not in (".", "..", "~")]
    return parts[-1] if parts else "…"


def _path_word(match: re.Match[str]) -> str:
    name = _last_component(match)
    return f"'{name}'" if "." in name.strip(".") else "a server folder"


def _drop_class_name(match: re.Match[str]) -> str:
    """"" for an exception class name (with its module path and a following ': '), else the word itself."""
    word = match.group(0)
    dotted = word.rstrip(": \t")
    name = dotted.rstrip(".")
    *modules, last = name.split(".")
    is_class = (last[:1].isupper() and last.endswith(_CLASS_SUFFIXES)
                and all(m[:1].islower() or m[:1] == "_" for m in modules))
    return dotted[len(name):] if is_class else word


def redact_paths(text: str) -> str:
    """``text`` with every file path replaced by its last component (the resource's name).

    >>> redact_paths("checkpoint folder /srv/app/checkpoints/offline-verifier lacks config.json")
    'checkpoint folder offline-verifier lacks config.json'
    """
    return _PATH.sub(_last_component, text)


#: Longest message shown to a person (a sentence or two, never a document): longer text is cut first.
MAX_MESSAGE_CHARS = 2000


def plain_text(text: str, keep_paths: bool = False) -> str:
    """``text`` without tracebacks, exception class names or server paths (file names are kept).

    ``keep_paths=True`` keeps paths whole (the CLI shows the user's own files; only the web hides them).
    At most :data:`MAX_MESSAGE_CHARS` characters are kept, so scrubbing costs little whatever the text.
    """
    text = str(text)
    if _TRACEBACK in text:  # keep the exception's own line, drop the frames
        text = text.split(_TRACEBACK, 1)[0] + " " + next(
            (line for line in reversed(text.splitlines()) if line.strip()), "")
    if len(text) > MAX_MESSAGE_CHARS:
        text = text[: MAX_MESSAGE_CHARS - 1] + "…"
    if not keep_paths:
        text = _PATH.sub(_path_word, text)
    text = _DOTTED_WORD.sub(_drop_class_name, text)
    text = re.sub(r"\(\s*\)", "", text)
    text = re.sub(r"\s{2,}", " ", text).strip(" :;,")
    return text


def is_not_installed(exc: BaseException) -> bool:
    """Whether ``exc`` says an optional resource is absent (show "not installed", not "failed")."""
    return bool(getattr(exc, "not_installed", False))


def _detail(exc: BaseException) -> str:
    parts = [f"{type(exc).__module__}.{type(exc).__qualname__}: {exc}".removeprefix("builtins.")]
    cause = exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)
    if cause is not None and cause is not exc:
        parts.append(f"caused by {type(cause).__qualname__}: {cause}")
    return "; ".join(parts)


def describe(exc: BaseException, keep_paths: bool = False) -> tuple[str, str]:
    """``(plain words, technical detail)`` for any exception.

    The plain words are safe to show on the page; the detail (class name, message with paths, cause)
    is for logs and the ``error_details`` of a JSON result. ``keep_paths=True`` (the CLI and scripts,
    whose user owns the files) keeps paths whole; only the web hides them.
    """
    if isinstance(exc, GeodemoError):
        plain = exc.plain_words(keep_paths)
    else:
        text = plain_text(str(exc), keep_paths)
        generic = next((words for kind, words in _GENERIC if isinstance(exc, kind)), None)
        if generic and (not text or isinstance(exc, (MemoryError, ImportError))):
            plain = generic
        elif generic:
            plain = f"{generic} ({text})"
        else:
            plain = text or "an unexpected internal problem (details in the server log)"
    return plain, _detail(exc)
