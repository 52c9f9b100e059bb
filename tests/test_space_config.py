"""The Space's configuration stays in step: README front matter, requirements.txt, packages.txt."""

from __future__ import annotations

import re
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def _front_matter() -> dict[str, str]:
    text = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    block = re.match(r"^---\n(.*?)\n---\n", text, re.DOTALL)
    assert block, "README.md has no front matter"
    return {k.strip(): v.strip().strip('"') for k, v in (line.split(":", 1) for line in block.group(1).splitlines())}


def _pins() -> dict[str, str]:
    lines = (REPO_ROOT / "requirements.txt").read_text().splitlines()
    return dict(line.split("==", 1) for line in lines if "==" in line and not line.startswith("#"))


def test_front_matter_matches_requirements_and_the_tested_python():
    meta = _front_matter()
    assert meta["sdk"] == "gradio" and meta["sdk_version"] == _pins()["gradio"]
    assert (REPO_ROOT / meta["app_file"]).is_file()
    assert meta["python_version"] == f"{sys.version_info.major}.{sys.version_info.minor}"


def test_packages_txt_is_what_setup_installs():
    packages = [p.strip() for p in (REPO_ROOT / "packages.txt").read_text().splitlines() if p.strip()]
    setup = (REPO_ROOT / "scripts" / "setup.sh").read_text()
    assert packages and all(re.search(rf"\b{re.escape(p)}\b", setup) for p in packages)
