"""Where geodemo finds shared data, model weights, checkpoints and caches.

Everything outside the repository is reached through one variable, ``GEODEMO_SHARED``
(fallback: ``../shared`` beside the checkout), so no module hard-codes a path.
"""

from __future__ import annotations

import os
from pathlib import Path

from geodemo.errors import MissingResourceError

REPO_ROOT = Path(__file__).resolve().parent.parent

__all__ = [
    "REPO_ROOT",
    "MissingResourceError",
    "shared_dir",
    "shared_path",
    "require_shared",
    "checkpoints_dir",
    "cache_dir",
]


def shared_dir() -> Path:
    """Folder of shared data and weights: ``$GEODEMO_SHARED`` or ``../shared`` beside the checkout."""
    env = os.environ.get("GEODEMO_SHARED")
    if env:
        return Path(env).expanduser().resolve()
    return (REPO_ROOT.parent / "shared").resolve()


def shared_path(*parts: str) -> Path:
    """A path inside the shared folder (it may not exist)."""
    return shared_dir().joinpath(*parts)


def require_shared(*parts: str, what: str | None = None) -> Path:
    """A path inside the shared folder that must exist, else a clear :class:`MissingResourceError`."""
    path = shared_path(*parts)
    if not path.exists():
        name = what or "/".join(parts)
        raise MissingResourceError(
            f"{name} not found at {path}; set GEODEMO_SHARED to the folder that holds "
            f"data/ and models/ (default: ../shared beside the checkout)"
        )
    return path


def checkpoints_dir() -> Path:
    """Folder for trained weights: ``$GEODEMO_CHECKPOINTS`` or ``checkpoints/`` in the repository."""
    env = os.environ.get("GEODEMO_CHECKPOINTS")
    path = Path(env).expanduser() if env else REPO_ROOT / "checkpoints"
    return path


def cache_dir(*parts: str) -> Path:
    """A cache folder (created): ``$GEODEMO_CACHE`` or ``~/.cache/geodemo``."""
    env = os.environ.get("GEODEMO_CACHE")
    root = Path(env).expanduser() if env else Path.home() / ".cache" / "geodemo"
    path = root.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path
