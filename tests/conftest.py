"""Test settings: no hub access, a cache inside the checkout, and the shared folder fixture."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("GEODEMO_CACHE", str(REPO_ROOT / ".cache" / "tests"))

from geodemo.paths import shared_dir  # noqa: E402


@pytest.fixture(scope="session")
def shared() -> Path:
    """The shared data/weights folder, or a skip that says how to provide it."""
    path = shared_dir()
    if not (path / "data").is_dir():
        pytest.skip(f"shared data folder not found at {path}: set GEODEMO_SHARED (see README)")
    return path
