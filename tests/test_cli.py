"""``python -m geodemo``: valid JSON for a real photo, clear errors, preset listing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from geodemo.cli import main

REPO = Path(__file__).resolve().parent.parent


def _run(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "geodemo", *args], capture_output=True, text=True,
                          cwd=REPO, env=env, timeout=120)


@pytest.mark.shared
def test_locate_prints_valid_json(shared, capsys):
    photo = sorted((shared / "data" / "osv5m-sample" / "images").glob("*.jpg"))[0]
    assert main(["locate", str(photo), "--preset", "offline", "--json", "--top-k", "8", "--eps-km", "30"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert -90 <= data["lat"] <= 90 and -180 <= data["lon"] <= 180
    assert data["preset"] == "offline" and len(data["neighbours"]) == 8
    assert data["clusters_after"]["eps_km"] == 30
    assert data["place"] and data["candidates"] and data["timings"]["total"] > 0
    assert data["segmentation"]["shares"] and data["clues"] is not None


@pytest.mark.shared
def test_summary_output_names_place_and_verifier(shared, capsys):
    photo = sorted((shared / "data" / "osv5m-sample" / "images").glob("*.jpg"))[0]  # clues cached above
    assert main(["locate", str(photo), "--no-lmm", "--top-k", "5"]) == 0
    out = capsys.readouterr().out
    assert "verifier" in out and "confidence" in out and "retrieval" in out


def test_unreadable_photo_exits_2_with_message(tmp_path, capsys):
    bad = tmp_path / "not-a-photo.jpg"
    bad.write_text("hello")
    assert main(["locate", str(bad), "--json"]) == 2
    captured = capsys.readouterr()
    assert "error:" in captured.err and "not-a-photo.jpg" in captured.err
    assert captured.out == ""


def test_module_entry_point_lists_presets():
    proc = _run("presets")
    assert proc.returncode == 0
    blocks = proc.stdout.strip().split("\n\n")
    names = [b.split()[0] for b in blocks[:-1]]
    assert names == sorted(names)
    assert {"dualgeo", "dualgeo-plus", "g3", "g3-plus", "offline", "g3-offline", "dualgeo-offline"} <= set(names)
    by_name = dict(zip(names, blocks, strict=False))
    assert "(faithful g3)" in by_name["g3"] and "(improves dualgeo)" in by_name["dualgeo-plus"]
    assert "(offline analogue of g3)" in by_name["g3-offline"]
    assert "(offline analogue of dualgeo)" in by_name["dualgeo-offline"]
    assert "(offline analogue of dualgeo-plus)" in by_name["dualgeo-tokens-offline"]
    stages = " ".join(by_name["g3"].split("stages:")[1].split())
    assert stages == ("load* -> encode* -> retrieve* -> lmm* -> candidates.lmm* -> candidates.retrieval* -> "
                      "verify.gps_head* -> decide.verified*")
    assert "rerank.dbscan*" in by_name["dualgeo"] and "candidates.gps_gallery" in by_name["g3-plus"]
