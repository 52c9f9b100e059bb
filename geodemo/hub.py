"""Published weights fetched on demand from the Hugging Face hub.

A preset's ``"hub"`` entry names the published file its checkpoint is::

    "hub": {"repo": "Jia-py/G3-checkpoint", "filename": "g3.pth", "revision": "main", "sha256": "..."}

When no local checkpoint is found, :func:`fetch` takes the file from geodemo's cache
(``cache_dir("hub")``), else downloads it with ``huggingface_hub`` when the hub
(:func:`~geodemo.models.loading.hub_endpoint`, ``HF_ENDPOINT`` for a mirror) is reachable, and checks its
SHA-256 against the one the preset records (or, with none recorded, the one the hub gave for the file: its
ETag); otherwise it fails with the usual "not installed: how to add it".
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from geodemo.errors import MissingResourceError, ModelUnavailableError
from geodemo.models.loading import hub_endpoint, hub_offline, hub_reachable
from geodemo.paths import cache_dir
from geodemo.storage import sha256_file

__all__ = ["PublishedFile", "hub_cache", "hub_sha256", "cached", "fetch", "availability"]

log = logging.getLogger(__name__)
_SHA256 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class PublishedFile:
    """One file of a hub repository, pinned by revision and checked by SHA-256 (when recorded)."""

    repo: str
    filename: str
    revision: str = "main"
    sha256: str | None = None
    repo_type: str = "model"

    @classmethod
    def from_dict(cls, spec: dict[str, Any] | PublishedFile) -> PublishedFile:
        if isinstance(spec, PublishedFile):
            return spec
        if not isinstance(spec, dict) or not spec.get("repo") or not spec.get("filename"):
            raise ValueError(f"a \"hub\" entry names at least a repo and a filename, got {spec!r}")
        unknown = set(spec) - {"repo", "filename", "revision", "sha256", "repo_type", "note"}
        if unknown:
            raise ValueError(f"unknown key(s) {sorted(unknown)} in a \"hub\" entry; known: repo, filename, "
                             "revision, sha256, repo_type, note")
        return cls(str(spec["repo"]), str(spec["filename"]), str(spec.get("revision") or "main"),
                   (str(spec["sha256"]).lower() if spec.get("sha256") else None), str(spec.get("repo_type", "model")))

    @property
    def label(self) -> str:
        return f"{self.repo}/{self.filename}@{self.revision}"


def hub_cache() -> Path:
    """geodemo's own cache of published files (``$GEODEMO_CACHE/hub``), in the hub's cache layout."""

    return cache_dir("hub")


def _download(f: PublishedFile, local_only: bool) -> Path:
    from huggingface_hub import hf_hub_download


    return Path(hf_hub_download(f.repo, f.filename, revision=f.revision, repo_type=f.repo_type,
                                cache_dir=hub_cache(), local_files_only=local_only, endpoint=hub_endpoint()))


def hub_sha256(path: Path) -> str | None:
    """The SHA-256 the hub gave for a downloaded file, when it gave one.

    The hub's ETag of a large (LFS/Xet) file is its SHA-256, and ``huggingface_hub`` names the cached
    blob after that ETag, so the cache itself keeps what the hub said the file is (a small git file's ETag
    is a git hash instead, and None is returned)."""
    name = Path(path).resolve().name
    return name if _SHA256.fullmatch(name) else None


def _checked(f: PublishedFile, path: Path) -> Path:
    """``path`` when its SHA-256 is the one the preset records, or (with none recorded) the one the hub
    gave; else the file is removed and refused."""
    digest = sha256_file(path)
    expected, whose = (f.sha256, "the preset records") if f.sha256 else (hub_sha256(path), "the hub gave")
    if expected is None:
        log.warning("%s has no recorded sha256 and the hub gave none; the file fetched has %s", f.label, digest)
        return path
    if digest != expected:
        target = path.resolve()
        for p in {path, target}:
            p.unlink(missing_ok=True)
        raise ModelUnavailableError(
            f"{f.label}: the file fetched has sha256 {digest}, not the {expected} {whose}; it was "
            "removed", hint="check the preset's \"hub\" revision and sha256, or pass a local checkpoint")
    return path


def cached(spec: dict[str, Any] | PublishedFile) -> Path | None:
    """The published file from geodemo's cache (checked), or None when it is not there."""
    f = PublishedFile.from_dict(spec)
    try:
        path = _download(f, local_only=True)
    except Exception:  # noqa: BLE001 - not cached (or a cache the hub client cannot read)
        return None
    return _checked(f, path)


def fetch(spec: dict[str, Any] | PublishedFile, what: str, how: str) -> Path:
    """The published file: from the cache, else downloaded when the hub is reachable (SHA-256 checked).

    ``what`` names it for people ("G3's trained weights"); ``how`` says how to supply it by hand.
    """

    f = PublishedFile.from_dict(spec)
    path = cached(f)
    if path is not None:
        return path
    if not hub_reachable():
        why = "offline (HF_HUB_OFFLINE=1)" if hub_offline() else f"the hub ({hub_endpoint()}) is not reachable"
        raise MissingResourceError(f"{what} not installed: not in the cache and {why}",
                                   hint=f"{how}, or run once with internet so {f.label} is downloaded")
    try:
        path = _download(f, local_only=False)
    except Exception as exc:  # noqa: BLE001 - every hub failure becomes one clear error
        raise MissingResourceError(f"{what} not installed: downloading {f.label} failed ({exc})",
                                   hint=how) from exc
    log.info("downloaded %s into %s", f.label, hub_cache())
    return _checked(f, path)


def availability(spec: dict[str, Any] | PublishedFile) -> str | None:
    """``"cached"`` or ``"downloadable"`` (the hub answers), else None; nothing is downloaded."""

    if cached(spec) is not None:
        return "cached"
    return "downloadable" if hub_reachable() else None
