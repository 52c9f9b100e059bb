"""Every file geodemo writes goes through here: atomic writes and defensive reads.

A write goes to a hidden temporary file in the target's folder and is renamed over the target
only once complete (``os.replace`` is atomic on one file system), so a run killed mid-write leaves
either the old file or the new one, never half of it. A read of something geodemo wrote earlier
(a cache entry, a shard, a marker) that turns out unreadable reports it once, deletes it and
returns ``None``: the caller rebuilds the entry instead of failing on every later run.

>>> from geodemo.storage import write_json, read_json
>>> write_json(path, {"a": 1})
>>> read_json(path, "clue cache")         # None when missing or corrupt (corrupt: logged, deleted)
"""

from __future__ import annotations

import glob
import hashlib
import json
import logging
import os
import shutil
import tempfile
import threading
import time
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import numpy as np

__all__ = [
    "atomic_path",
    "atomic_open",
    "atomic_dir",
    "write_bytes",
    "write_text",
    "write_json",
    "save_npz",
    "save_npy",
    "read_json",
    "read_text",
    "load_npz",
    "discard_corrupt",
    "drop_torn_tail",
    "remove_stale_temps",
    "sha256_file",
]

log = logging.getLogger("geodemo.storage")
_reported: set[str] = set()
_reported_lock = threading.Lock()
_UMASK = os.umask(0o022)
os.umask(_UMASK)  # read once: the mode a plain open() would give a new file


def _temp_name(path: Path) -> Path:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes it private; outputs are shared like any file
    finally:
        os.close(fd)
    return Path(tmp)


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; when the block ends without error it replaces ``path``.

    For writers that want a file name (``faiss.write_index``, ``safetensors.save_file``, a package
    that assembles a file). On error the temporary file is removed and ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_name(path)
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@contextmanager
def atomic_open(path: str | Path, mode: str = "w", encoding: str | None = "utf-8", **kwargs: Any) -> Iterator[IO]:
    """``open(path, mode)`` whose content appears at ``path`` only once the block succeeds."""
    if "b" in mode:
        encoding = None
    with atomic_path(path) as tmp, open(tmp, mode, encoding=encoding, **kwargs) as fh:
        yield fh


@contextmanager
def atomic_dir(folder: str | Path) -> Iterator[Path]:
    """Yield an empty temporary folder beside ``folder``; on success it replaces ``folder`` as a whole."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.", suffix=".tmp"))
    try:
        yield tmp
        old = None
        if folder.exists():
            old = folder.with_name(f".{folder.name}.old-{os.getpid()}")
            shutil.rmtree(old, ignore_errors=True)
            folder.rename(old)
        tmp.rename(folder)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def remove_stale_temps(path: str | Path, older_than_s: float = 3600.0) -> int:
    """Delete the temporary files :func:`atomic_path` left beside ``path`` in runs that were killed
    (older than ``older_than_s``, so a write in progress elsewhere is never touched); returns how many."""
    path = Path(path)
    removed = 0
    now = time.time()
    for tmp in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        try:
            if now - tmp.stat().st_mtime > older_than_s:
                tmp.unlink()
                removed += 1
        except OSError:
            pass
    return removed


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in chunks (weights and galleries can be large)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def write_bytes(path: str | Path, data: bytes) -> Path:
    with atomic_open(path, "wb") as fh:
        fh.write(data)
    return Path(path)


def write_text(path: str | Path, text: str) -> Path:
    with atomic_open(path, "w") as fh:
        fh.write(text)
    return Path(path)


def write_json(path: str | Path, obj: Any, **dumps_kwargs: Any) -> Path:
    """``json.dumps(obj, **dumps_kwargs)`` written atomically."""
    return write_text(path, json.dumps(obj, **dumps_kwargs))


def save_npz(path: str | Path, compressed: bool = False, **arrays: np.ndarray) -> Path:
    """``np.savez`` (or ``savez_compressed``) written atomically; the file keeps its exact name."""
    with atomic_open(path, "wb") as fh:
        (np.savez_compressed if compressed else np.savez)(fh, **arrays)
    return Path(path)


def save_npy(path: str | Path, array: np.ndarray) -> Path:
    """``np.save`` (no pickles) written atomically; the file keeps its exact name."""
    with atomic_open(path, "wb") as fh:
        np.save(fh, np.ascontiguousarray(array), allow_pickle=False)
    return Path(path)


# ------------------------------------------------------------------------------------------ reads
def discard_corrupt(path: str | Path, what: str, exc: BaseException | str, stat: os.stat_result | None = None) -> None:
    """Report an unreadable file once (log warning), then delete it so that it is rebuilt.

    ``stat`` is the file's ``os.stat`` taken before reading: the file is only deleted when it is
    still that file (another process may have replaced it with a good copy meanwhile).
    """
    path = Path(path)
    key = str(path)
    with _reported_lock:
        first = key not in _reported
        _reported.add(key)
    if first:
        reason = exc if isinstance(exc, str) else f"{type(exc).__name__}: {exc}"
        log.warning("%s %s is unreadable (%s); deleted, it will be rebuilt", what, path.name, reason)
    try:
        if stat is not None:
            now = path.stat()
            if (now.st_ino, now.st_mtime_ns, now.st_size) != (stat.st_ino, stat.st_mtime_ns, stat.st_size):
                return
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    except OSError:
        pass


def _stat(path: Path) -> os.stat_result | None:
    try:
        return path.stat()
    except OSError:
        return None


def read_text(path: str | Path, what: str, validate: Callable[[str], Any] | None = None) -> str | None:
    """The file's text, ``None`` when missing; undecodable (or failing ``validate``) -> discarded, ``None``."""
    path = Path(path)
    stat = _stat(path)
    if stat is None:
        return None
    try:
        text = path.read_text(encoding="utf-8")
        if validate is not None:
            validate(text)
        return text
    except FileNotFoundError:
        return None
    except (OSError, ValueError, TypeError, LookupError) as exc:
        discard_corrupt(path, what, exc, stat)
        return None


def read_json(path: str | Path, what: str, validate: Callable[[Any], Any] | None = None) -> Any | None:
    """Parsed JSON, ``None`` when missing; corrupt or failing ``validate(obj)`` -> discarded, ``None``.

    ``validate`` raises (ValueError, TypeError, KeyError, IndexError) for content of the wrong shape, e.g. an
    entry written by another version.
    """
    parsed: list[Any] = []

    def check(text: str) -> None:
        obj = json.loads(text)
        if validate is not None:
            validate(obj)
        parsed.append(obj)

    return parsed[0] if read_text(path, what, check) is not None else None


def load_npz(path: str | Path, what: str, required: tuple[str, ...] = ()) -> dict[str, np.ndarray] | None:
    """Every array of an ``.npz`` read into memory (no pickles), ``None`` when missing.

    A truncated or damaged archive, or one that lacks a ``required`` array, is reported once,
    deleted and ``None`` is returned.
    """
    path = Path(path)
    stat = _stat(path)
    if stat is None:
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
        missing = [k for k in required if k not in arrays]
        if missing:
            raise KeyError(f"lacks {', '.join(missing)}")
        return arrays
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        discard_corrupt(path, what, exc, stat)
        return None


def drop_torn_tail(path: str | Path, what: str) -> bool:
    """Cut a file that rows are appended to back to its last complete line.

    A process killed mid-write leaves a last line without its newline; appending to it would glue
    the next row onto it. Returns True when a torn line was dropped (reported once).
    """
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError:
        return False
    if size == 0:
        return False
    with open(path, "rb+") as fh:
        fh.seek(size - 1)
        if fh.read(1) == b"\n":
            return False
        keep, pos, block = 0, size, 1 << 16
        while pos > 0:  # find the last newline from the end
            start = max(0, pos - block)
            fh.seek(start)
            chunk = fh.read(pos - start)
            i = chunk.rfind(b"\n")
            if i >= 0:
                keep = start + i + 1
                break
            pos = start
        fh.truncate(keep)
    log.warning("%s %s ended in a torn line (a run killed mid-write); dropped it, that row is redone",
                what, path.name)
    return True
