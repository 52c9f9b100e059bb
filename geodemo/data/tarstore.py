"""Random access to photos inside uncompressed tars (MP16-Pro ships its images as tar shards).

The member index (name -> byte offset and size) is built once with one pass over the archive and
stored as JSON under :func:`geodemo.paths.cache_dir`, keyed by the archive's path, size and mtime.
Reading a photo is then one ``seek`` + ``read``; no pickle, no extraction to disk.
"""

from __future__ import annotations

import hashlib
import tarfile
from pathlib import Path

from tqdm.auto import tqdm

from geodemo.imageio import MissingImageError
from geodemo.paths import cache_dir
from geodemo.storage import read_json, write_json

__all__ = ["TarImageStore", "TarShardStore", "build_tar_index", "open_tar_store"]

_INDEX_VERSION = 1


def build_tar_index(tar_path: str | Path, progress: bool = True) -> dict[str, list[int]]:
    """``{member name: [data offset, size]}`` for every regular file in an uncompressed tar."""
    members: dict[str, list[int]] = {}
    with tarfile.open(tar_path, mode="r:") as tar:  # "r:" refuses compressed tars (no random access)
        for info in tqdm(tar, desc=f"indexing {Path(tar_path).name}", unit="file", disable=not progress):
            if info.isfile():
                members[info.name] = [info.offset_data, info.size]
    return members


class TarImageStore:
    """Reads members of one tar by name through a cached JSON index."""

    def __init__(self, tar_path: str | Path, index_path: str | Path | None = None, progress: bool = True):
        self.tar_path = Path(tar_path)
        if not self.tar_path.is_file():
            raise FileNotFoundError(f"image archive not found: {self.tar_path}")
        self.index_path = Path(index_path) if index_path else self._default_index_path()
        self.members = self._load_or_build(progress)

    def _default_index_path(self) -> Path:
        stat = self.tar_path.stat()
        key = f"{self.tar_path.resolve()}|{stat.st_size}|{int(stat.st_mtime)}|v{_INDEX_VERSION}"
        digest = hashlib.sha1(key.encode()).hexdigest()[:16]
        return cache_dir("tar-index") / f"{self.tar_path.stem}-{digest}.json"

    def _load_or_build(self, progress: bool) -> dict[str, list[int]]:
        data = read_json(self.index_path, "tar index", validate=lambda d: d["members"].items())
        if data is not None:
            if data.get("version") == _INDEX_VERSION and data.get("size") == self.tar_path.stat().st_size:
                return {k: list(v) for k, v in data["members"].items()}
        members = build_tar_index(self.tar_path, progress=progress)
        self.index_path.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "version": _INDEX_VERSION,
            "tar": str(self.tar_path.resolve()),
            "size": self.tar_path.stat().st_size,
            "members": members,
        }
        write_json(self.index_path, payload)
        return members

    def __len__(self) -> int:
        return len(self.members)

    def __contains__(self, name: str) -> bool:
        return self._lookup(name) is not None

    def names(self) -> list[str]:
        return list(self.members)

    def _lookup(self, name: str) -> list[int] | None:
        entry = self.members.get(name)
        if entry is None:  # tars made with "tar -C dir ." prefix members with "./"
            entry = self.members.get(f"./{name}") or self.members.get(name.removeprefix("./"))
        return entry

    def read(self, name: str) -> bytes:
        """The bytes of member ``name`` (a :class:`MissingImageError` names the archive otherwise)."""
        entry = self._lookup(name)
        if entry is None:
            raise MissingImageError(f"{name!r} is not in archive {self.tar_path} ({len(self.members)} members)")
        offset, size = entry
        with open(self.tar_path, "rb") as fh:
            fh.seek(offset)
            data = fh.read(size)
        if len(data) != size:
            raise MissingImageError(f"archive {self.tar_path} is truncated: {name!r} is cut short")
        return data


class TarShardStore:
    """Members of every ``.tar`` in a folder (MP16-Pro's shards) read by name, like one archive."""

    def __init__(self, folder: str | Path, progress: bool = True):
        self.folder = Path(folder)
        self.stores = [TarImageStore(p, progress=progress) for p in sorted(self.folder.glob("*.tar"))]
        if not self.stores:
            raise FileNotFoundError(f"no .tar shards in {self.folder}")
        self._where: dict[str, int] = {}
        for i, store in enumerate(self.stores):
            for name in store.members:
                self._where.setdefault(name.removeprefix("./"), i)

    def __len__(self) -> int:
        return len(self._where)

    def __contains__(self, name: str) -> bool:
        return name.removeprefix("./") in self._where

    def names(self) -> list[str]:
        return list(self._where)

    def read(self, name: str) -> bytes:
        """The bytes of member ``name`` from whichever shard holds it."""
        shard = self._where.get(name.removeprefix("./"))
        if shard is None:
            raise MissingImageError(f"{name!r} is in none of the {len(self.stores)} tar shards in {self.folder}")
        return self.stores[shard].read(name)


def open_tar_store(images: Path) -> TarImageStore | TarShardStore | None:
    """The archive behind ``images``: one ``.tar`` file, a folder holding only ``.tar`` shards, or None
    (a plain photo folder)."""
    if images.is_file():
        return TarImageStore(images)
    if images.is_dir() and any(images.glob("*.tar")) and not any(
        p.suffix.lower() in {".jpg", ".jpeg", ".png", ".webp"} for p in images.iterdir()
    ):
        return TarShardStore(images)
    return None
