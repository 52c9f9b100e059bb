"""``pip install .`` gives a geodemo that stands alone: the embedded default travels as package data and
the ``geodemo`` console script locates a bundled example with no checkout and no shared folder.

To stay fast and offline the fresh virtual environment reuses the test interpreter's installed
dependencies through a ``.pth`` line (``pip install --no-deps``); geodemo itself is built from a copy
of the working tree into that environment's own site-packages, and run from an unrelated folder.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = "407208447_31f07104c1_153_7132415@N03.jpg"


def _source_copy(dest: Path) -> Path:
    """The working tree's files (tracked, and new ones git does not ignore), copied to ``dest``."""
    out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO_ROOT,
                         capture_output=True, check=True).stdout
    for name in filter(None, out.decode().split("\0")):
        src = REPO_ROOT / name
        if src.is_file() and not name.startswith("tests/"):
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    return dest


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    root = tmp_path_factory.mktemp("package")
    src = _source_copy(root / "src")
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    purelib = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                  capture_output=True, text=True, check=True).stdout.strip())
    (purelib / "_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    pip = subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", str(src)],
                         capture_output=True, text=True, cwd=root)
    assert pip.returncode == 0, pip.stderr[-3000:]
    return venv, purelib, root


def _env(root: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "GEODEMO_CHECKPOINTS")}
    env.update(GEODEMO_SHARED=str(root / "no-shared-folder"), HF_HUB_OFFLINE="1")
    return env  # GEODEMO_CACHE stays the tests' cache: the GPS gallery is not encoded again


def test_wheel_carries_the_embedded_default_as_package_data(installed):
    venv, purelib, root = installed
    assets = purelib / "geodemo" / "assets"
    for part in (f"examples/{EXAMPLE}", "gallery/views.npy", "checkpoints/offline-verifier/model.safetensors",
                 "models/mobilenet-imagenet/mobilenet_v1_1.0_224_quant_embedding_extractor.tflite",
                 "ne_110m_countries.geojson"):
        assert (assets / part).is_file(), part
    where = subprocess.run([str(venv / "bin" / "python"), "-c",
                            "import geodemo, geodemo.paths as p; print(geodemo.__file__); print(p.BUNDLE_DIR)"],
                           capture_output=True, text=True, cwd=root, env=_env(root), check=True).stdout.split()
    assert where == [str(purelib / "geodemo" / "__init__.py"), str(assets)]


@pytest.mark.slow  # pip install into a fresh environment: about 15 s and up
def test_console_script_locates_a_bundled_example_alone(installed):
    venv, purelib, root = installed
    script = venv / "bin" / "geodemo"
    photo = purelib / "geodemo" / "assets" / "examples" / EXAMPLE
    out = subprocess.run([str(script), "locate", "--no-progress", str(photo)], capture_output=True, text=True,
                         cwd=root, env=_env(root), timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "preset offline" in out.stdout and "verifier" in out.stdout
    presets = subprocess.run([str(script), "presets"], capture_output=True, text=True, cwd=root, env=_env(root),
                             timeout=300)
    assert presets.returncode == 0 and "geoclip  (faithful geoclip)" in presets.stdout
    assert "geoclip-plus  (improves geoclip)" in presets.stdout
    for command in ("index", "evaluate", "train", "space-deploy"):
        assert command in subprocess.run([str(script), "--help"], capture_output=True, text=True, cwd=root,
                                         env=_env(root)).stdout


def test_evaluate_and_train_commands_run_the_checkouts_scripts(capsys):
    from geodemo.cli import main

    for command, option in (("evaluate", "--benchmark"), ("train", "--preset")):
        with pytest.raises(SystemExit) as done:
            main([command, "--help"])
        assert done.value.code == 0
        assert option in capsys.readouterr().out
