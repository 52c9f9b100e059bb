"""``python app.py`` as a separate process on a free local port (tests and benchmarks that need the real server)."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["AppDidNotStart", "free_port", "served_app"]


class AppDidNotStart(RuntimeError):
    """``app.py`` exited or did not serve in time; the message ends with its log."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def served_app(cwd: Path, env: dict[str, str], log_path: Path, start_timeout_s: float
               ) -> Iterator[tuple[str, subprocess.Popen]]:
    """Start ``app.py`` in ``cwd`` (output to ``log_path``), wait until it serves, yield ``(url, process)``;
    stop it afterwards (terminate, then kill if it has not exited in 30 s)."""
    port = free_port()
    env = {**env, "GEODEMO_HOST": "127.0.0.1", "GEODEMO_PORT": str(port)}
    url = f"http://127.0.0.1:{port}/"
    with open(log_path, "w") as log:
        proc = subprocess.Popen([sys.executable, "app.py"], cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            t0 = time.perf_counter()
            while True:
                if proc.poll() is not None:
                    raise AppDidNotStart(f"app.py exited: {Path(log_path).read_text()[-2000:]}")
                try:
                    urllib.request.urlopen(url, timeout=2)
                    break
                except OSError:
                    if time.perf_counter() - t0 > start_timeout_s:
                        raise AppDidNotStart(f"app.py did not serve in {start_timeout_s:g} s: "
                                             f"{Path(log_path).read_text()[-2000:]}") from None
                    time.sleep(1)
            yield url, proc
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
