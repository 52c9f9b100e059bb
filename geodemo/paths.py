"""Where geodemo finds shared data, model weights, checkpoints and caches.

Everything outside the repository is reached through one variable, ``GEODEMO_SHARED``
(fallback: ``../shared`` beside the checkout), so no module hard-codes a path.

Lookup order for every resource: an explicit path, then the shared folder, then the embedded
default bundle in ``assets/`` (:func:`find_resource`). The bundle mirrors the shared folder's
layout (``assets/models/<model>/<file>``), so a fresh clone with no shared folder runs the
offline preset; the shared folder adds full-size photos and the benchmarks.
"""

from __future__ import annotations

import os
from pathlib import Path

from geodemo import env as geodemo_env
from geodemo.errors import MissingResourceError

REPO_ROOT = Path(__file__).resolve().parent.parent
# a checkout keeps assets/ at the top level; an installed wheel carries it as package data in
# geodemo/assets (setup.py maps the folder under the package)
_PACKAGED_ASSETS = Path(__file__).resolve().parent / "assets"
BUNDLE_DIR = _PACKAGED_ASSETS if _PACKAGED_ASSETS.is_dir() else REPO_ROOT / "assets"

__all__ = [
    "REPO_ROOT",
    "BUNDLE_DIR",
    "bundle_path",
    "find_resource",
    "MissingResourceError",
    "shared_dir",
    "shared_path",
    "require_shared",
    "checkpoints_dir",
    "cache_dir",
]


def shared_dir() -> Path:
    """Folder of shared data and weights: ``$GEODEMO_SHARED`` or ``../shared`` beside the checkout."""
    env = geodemo_env.get("GEODEMO_SHARED")
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


def bundle_path(*parts: str) -> Path:
    """A path inside the embedded default bundle ``assets/`` (it may not exist)."""
    return BUNDLE_DIR.joinpath(*parts)


def find_resource(*parts: str, explicit: str | os.PathLike | None = None, what: str | None = None,
                  hint: str | None = None) -> Path:
    """The first existing of ``explicit``, ``$GEODEMO_SHARED/<parts>`` and ``assets/<parts>``.

    An explicit path is final (a typo is reported, never silently replaced by the bundle).
    """
    if explicit is not None:
        candidates = [Path(explicit).expanduser()]
    else:
        candidates = [shared_path(*parts), bundle_path(*parts)]
    for path in candidates:
        if path.exists():
            return path
    name = what or "/".join(parts)
    looked = ", ".join(str(c) for c in candidates)
    raise MissingResourceError(
        f"{name} not found (looked in {looked})",
        hint=hint or ("set GEODEMO_SHARED to the folder that holds data/ and models/ (default: ../shared "
                      "beside the checkout), or restore the embedded default with `git checkout -- assets`"),
    )


def train_presets_dir() -> Path:
    """Folder of the training presets (``geodemo/train/presets``): one per checkpoint ``scripts/train.py`` makes."""
    return Path(__file__).resolve().parent / "train" / "presets"


def how_to_make_checkpoint(name: str | os.PathLike) -> str:
    """The command that makes the trained checkpoint ``name`` (a training preset of that name), or where to
    put one when no training preset makes it."""
    stem = Path(name).name
    if (train_presets_dir() / f"{stem}.json").is_file():
        return (f"make it with `python scripts/train.py --preset {stem}` (it is saved to checkpoints/{stem}, "
                "or $GEODEMO_CHECKPOINTS)")
    return "pass a file or folder path, or a name under checkpoints/ (or $GEODEMO_CHECKPOINTS)"


def checkpoints_dir() -> Path:
    """Folder for trained weights: ``$GEODEMO_CHECKPOINTS`` or ``checkpoints/`` in the repository."""
    env = geodemo_env.get("GEODEMO_CHECKPOINTS")
    path = Path(env).expanduser() if env else REPO_ROOT / "checkpoints"
    return path


def cache_dir(*parts: str) -> Path:
    """A cache folder (created): ``$GEODEMO_CACHE`` or ``~/.cache/geodemo``."""
    env = geodemo_env.get("GEODEMO_CACHE")
    root = Path(env).expanduser() if env else Path.home() / ".cache" / "geodemo"
    path = root.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path
