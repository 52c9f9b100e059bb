"""``python app.py`` as a separate process on a free local port, for tests that need the real server
(:mod:`geodemo.web.process`; a server that does not start fails the test with its log)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from geodemo.web.process import AppDidNotStart, free_port
from geodemo.web.process import served_app as _served_app

__all__ = ["free_port", "served_app"]


@contextmanager
def served_app(cwd: Path, env: dict[str, str], log_path: Path, start_timeout_s: float
               ) -> Iterator[tuple[str, subprocess.Popen]]:
    """:func:`geodemo.web.process.served_app`; ``pytest.fail`` with the app's log when it does not start."""
    try:
        with _served_app(cwd, env, log_path, start_timeout_s) as served:
            yield served
    except AppDidNotStart as exc:
        pytest.fail(str(exc))
