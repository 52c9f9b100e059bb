"""Test settings: no hub access, a cache inside the checkout, and the shared folder fixture."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("GEODEMO_CACHE", str(REPO_ROOT / ".cache" / "tests"))

from geodemo.paths import shared_dir  # noqa: E402

# Test modules live in one folder per package (tests/models, tests/web, ... as in geodemo/). A few
# import helpers from another by module name (``from test_lmm_backends import FakeServer``); pytest
# puts a folder on sys.path only when it collects a file there, so every folder is put there now.
# Helper modules beside this file (app_process, g3_reference, ...) are importable as ``tests.<name>``
# and, this folder being on sys.path as well, by their bare name.
for _folder in sorted(p for p in Path(__file__).parent.iterdir() if p.is_dir() and any(p.glob("test_*.py"))):
    if str(_folder) not in sys.path:
        sys.path.append(str(_folder))

SHARED_SKIP = "shared data folder not found at {}: set GEODEMO_SHARED (see README)"


def _shared_folder() -> Path:
    path = shared_dir()
    if not (path / "data").is_dir():
        pytest.skip(SHARED_SKIP.format(path))
    return path


@pytest.fixture(scope="session")
def shared() -> Path:
    """The shared data/weights folder, or a skip that says how to provide it."""
    return _shared_folder()


def pytest_collection_modifyitems(config, items):
    """A test that uses the ``shared`` fixture is marked ``shared`` (``-m "not shared"`` leaves them out)."""
    for item in items:
        if "shared" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.shared)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Skips for want of the shared folder all point at the fixture, so the summary folds them into one
    line ("SKIPPED [100] tests/conftest.py: shared data folder not found ..."), not one per test."""
    outcome = yield
    report = outcome.get_result()
    if report.skipped and isinstance(report.longrepr, tuple) and "set GEODEMO_SHARED" in str(report.longrepr[2]):
        report.longrepr = (__file__, _shared_folder.__code__.co_firstlineno, report.longrepr[2])


def _one_thread(get_threads, set_threads):
    """Run the fixture's tests with one thread of a library, then restore its count."""
    before = get_threads()
    set_threads(1)
    yield
    set_threads(before)


@pytest.fixture(scope="module")
def one_faiss_thread():
    """FAISS's OpenMP threads spin-wait when the 2 cores are shared: one thread is 10x faster here."""
    import faiss

    yield from _one_thread(faiss.omp_get_max_threads, faiss.omp_set_num_threads)


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny models: one intra-op thread is faster than two fighting over a busy 2-core machine."""
    import torch

    yield from _one_thread(torch.get_num_threads, torch.set_num_threads)


@pytest.fixture(scope="module")
def app_url(shared) -> str:
    """The real app (app.py) served on a free port of 127.0.0.1 for one test module."""
    import socket

    import app

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    demo = app.build_demo()
    demo.queue(default_concurrency_limit=2)
    _, url, _ = demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True,
                            quiet=True, **app.launch_options())
    yield url
    demo.close()
