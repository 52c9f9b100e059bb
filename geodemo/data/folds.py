"""Photographer folds shared by training, fusion fitting and ablations (same photographers held out)."""

from __future__ import annotations

import hashlib

__all__ = ["group_fold"]


def group_fold(key: str, num_folds: int, seed: int = 0) -> int:
    """Stable fold of a photographer key (sha1 of seed and key), independent of row order."""
    digest = hashlib.sha1(f"{seed}|{key}".encode()).digest()
    return int.from_bytes(digest[:8], "little") % num_folds
