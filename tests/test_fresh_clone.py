"""A fresh clone works anywhere: the committed repository, cloned into a temporary folder with no
shared folder beside it, ``GEODEMO_SHARED`` unset and ``HF_HUB_OFFLINE=1``, locates a bundled
example through the CLI, ``scripts/evaluate.py``, the app's API (gradio_client) and the page (Playwright).

Only what is committed is tested (``git clone`` of HEAD), so a file missing from the embedded
default fails here even when it exists in the working tree.
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from app_process import served_app

REPO_ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = Path("/usr/bin/chromium")
EXAMPLE = "407208447_31f07104c1_153_7132415@N03.jpg"  # Kotor, Montenegro (IM2GPS3k dev)
SCREENSHOT_DIR = REPO_ROOT / ".cache" / "screenshots"
START_TIMEOUT_S = 600  # cold start on a busy 2-core machine

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")


def _env(cache: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GEODEMO_")}
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", GEODEMO_CACHE=str(cache), PYTHONUNBUFFERED="1")
    return env


@pytest.fixture(scope="module")
def clone():
    """(clone folder, environment): HEAD cloned where no ``../shared`` exists, with a fresh cache."""
    root = Path(tempfile.mkdtemp(prefix="geodemo-fresh-"))
    dest = root / "geodemo"
    subprocess.run(["git", "clone", "--quiet", str(REPO_ROOT), str(dest)], check=True, timeout=300)
    assert not (root / "shared").exists()
    yield dest, _env(root / "cache")
    shutil.rmtree(root, ignore_errors=True)


def _truth(clone_dir: Path, name: str) -> tuple[float, float]:
    with open(clone_dir / "assets" / "examples" / "examples.csv", newline="") as f:
        row = next(r for r in csv.DictReader(f) if r["image"] == name)
    return float(row["lat"]), float(row["lon"])


def _km(a: tuple[float, float], b: tuple[float, float]) -> float:
    import numpy as np

    from geodemo.geo import haversine_km

    return float(haversine_km(np.asarray(a), np.asarray(b)))


@pytest.mark.slow  # a fresh process on a clone: about 15 s
def test_cli_locates_a_bundled_example(clone):
    dest, env = clone
    where = subprocess.run([sys.executable, "-c", "import geodemo.paths as p; print(p.REPO_ROOT, p.shared_dir())"],
                           cwd=dest, env=env, capture_output=True, text=True, check=True).stdout.split()
    assert Path(where[0]) == dest and not Path(where[1]).exists()  # the clone's code, no shared folder
    t0 = time.perf_counter()
    run = subprocess.run([sys.executable, "-m", "geodemo", "locate", f"assets/examples/{EXAMPLE}", "--json"],
                         cwd=dest, env=env, capture_output=True, text=True, timeout=START_TIMEOUT_S)
    seconds = time.perf_counter() - t0
    assert run.returncode == 0, run.stderr[-2000:]
    result = json.loads(run.stdout)
    assert result["errors"] == {}, result["errors"]
    assert math.isfinite(result["lat"]) and math.isfinite(result["lon"])
    assert result["verifier"] != "none" and len(result["neighbours"]) == 20
    assert _km((result["lat"], result["lon"]), _truth(dest, EXAMPLE)) < 25  # the photo is in the gallery
    assert "Traceback" not in run.stderr
    print(f"fresh clone, fresh cache: CLI answered in {seconds:.1f} s")


def test_evaluate_script_scores_a_csv_and_folder(clone, tmp_path):
    dest, env = clone
    run = subprocess.run(
        [sys.executable, "scripts/evaluate.py", "--benchmark-csv", "assets/examples/examples.csv",
         "--images", "assets/examples", "--predictor", "geolocator", "--preset", "offline", "--limit", "3",
         "--no-progress", "--out", str(tmp_path / "run")],
        cwd=dest, env=env, capture_output=True, text=True, timeout=START_TIMEOUT_S)
    assert run.returncode == 0, run.stderr[-2000:]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    metrics = summary.get("metrics", summary)
    assert metrics["n"] == 3 and metrics["n_failed"] == 0
    assert "%|" not in run.stderr  # --no-progress: no progress bar anywhere


@pytest.fixture(scope="module")
def app_url(clone):
    """``python app.py`` of the clone (it warms up before serving), on a free local port."""
    dest, env = clone
    t0 = time.perf_counter()
    with served_app(dest, env, dest.parent / "app.log", START_TIMEOUT_S) as (url, _):
        print(f"fresh clone: app.py served after {time.perf_counter() - t0:.1f} s")
        yield url


def test_app_api_locates_a_bundled_example(clone, app_url):
    from gradio_client import Client, handle_file

    dest, _ = clone
    result = Client(app_url, verbose=False).predict(handle_file(str(dest / "assets" / "examples" / EXAMPLE)),
                                                   api_name="/locate")
    assert result["errors"] == {}, result["errors"]
    assert _km((result["lat"], result["lon"]), _truth(dest, EXAMPLE)) < 25


@pytest.mark.browser
@pytest.mark.skipif(not CHROMIUM.exists(), reason=f"Debian chromium not found at {CHROMIUM} (apt install chromium)")
def test_page_locates_a_dropped_bundled_example(clone, app_url):
    from playwright.sync_api import expect, sync_playwright

    dest, _ = clone
    user_dir = tempfile.mkdtemp(prefix="geodemo-chromium-")
    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            user_dir, executable_path=str(CHROMIUM), headless=True, viewport={"width": 1400, "height": 4200},
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        try:
            page = context.new_page()
            page.goto(app_url)
            page.wait_for_selector("#locate", timeout=60_000)
            page.locator("#photo input[type=file]").set_input_files(str(dest / "assets" / "examples" / EXAMPLE))
            page.wait_for_selector("#photo img", timeout=30_000)
            page.click("#locate")
            # recognised by file name: scored against its truth with its own photo and photographer left out
            page.wait_for_selector("#error-line :text('Error')", timeout=300_000)
            expect(page.frame_locator("#neighbour-map iframe").locator("path.gd-neighbour")).to_have_count(
                20, timeout=30_000)
            error_line = page.locator("#error-line").inner_text()
            assert "42.5101, 18.6651" in error_line, error_line
            assert re.search(r"Error [\d,]+(\.\d)? km", error_line)
            text = page.locator("body").inner_text()
            assert "Stages that failed" not in text
            for leak in ("Traceback", "Error:", str(dest), "/work/", "/tmp/"):
                assert leak not in text, leak
            SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
            shot = SCREENSHOT_DIR / "fresh_clone_example.png"
            page.screenshot(path=str(shot), full_page=True)
            print(f"screenshot: {shot}")
        finally:
            context.close()
            shutil.rmtree(user_dir, ignore_errors=True)
