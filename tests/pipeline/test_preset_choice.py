"""The default preset by reachability (:mod:`geodemo.pipeline.choice`), and what the CLI says about it."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from geodemo.cli import main
from geodemo.models import loading
from geodemo.paths import REPO_ROOT
from geodemo.pipeline.choice import DEFAULT_ORDER, choose_preset, preset_missing, preset_order

PHOTO = REPO_ROOT / "assets" / "examples" / "101220879_0a1be45b79_33_24311489@N00.jpg"


@pytest.fixture
def empty_hf_cache(tmp_path, monkeypatch):
    import huggingface_hub.constants as hf_constants

    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.delenv("GEODEMO_PRESET", raising=False)
    monkeypatch.delenv("GEODEMO_PRESETS", raising=False)
    return tmp_path / "hf"


def _cache_clip(root: Path) -> None:
    """openai/clip-vit-large-patch14 in the hub cache's layout (only its config: nothing is loaded)."""
    repo = root / "models--openai--clip-vit-large-patch14"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("b" * 40)
    snap = repo / "snapshots" / ("b" * 40)
    snap.mkdir(parents=True)
    (snap / "config.json").write_text("{}")


def test_offline_without_clip_falls_back_and_says_why(empty_hf_cache):
    assert preset_order() == list(DEFAULT_ORDER) == ["geoclip-plus", "offline"]
    choice = choose_preset()
    assert choice.preset == "offline"
    assert choice.passed_over[0][0] == "geoclip-plus"
    assert "CLIP ViT-L/14" in choice.explanation and "offline" in choice.explanation
    assert preset_missing("offline") is None


def test_cached_clip_makes_geoclip_plus_the_default(empty_hf_cache):
    _cache_clip(empty_hf_cache)
    assert preset_missing("geoclip") is None
    choice = choose_preset()
    assert choice.preset == "geoclip-plus" and not choice.passed_over


def test_a_reachable_hub_makes_it_downloadable(empty_hf_cache, monkeypatch):
    with socket.socket() as server:  # something answering a TCP connect at HF_ENDPOINT
        server.bind(("127.0.0.1", 0))
        server.listen()
        monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{server.getsockname()[1]}")
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
        loading._probe.cache_clear()
        try:
            assert choose_preset().preset == "geoclip-plus"
        finally:
            loading._probe.cache_clear()


def test_order_and_override_from_the_environment(empty_hf_cache, monkeypatch):
    monkeypatch.setenv("GEODEMO_PRESETS", "g3, geoclip, offline")
    choice = choose_preset()
    assert choice.preset == "offline" and [n for n, _ in choice.passed_over] == ["g3", "geoclip"]
    monkeypatch.setenv("GEODEMO_PRESETS", "no-such-preset,offline")
    choice = choose_preset()
    assert choice.preset == "offline" and "no-such-preset" in choice.passed_over[0][1]
    monkeypatch.setenv("GEODEMO_PRESET", "g3")
    assert choose_preset().preset == "g3" and choose_preset().forced


def test_cli_default_says_which_preset_answered_and_why(empty_hf_cache, capsys):
    assert main(["locate", str(PHOTO), "--no-progress"]) == 0
    out, err = capsys.readouterr()
    assert "preset offline" in out
    assert "geoclip-plus" in err and "CLIP ViT-L/14" in err


def test_page_says_which_preset_answers_and_why():
    import app

    dropdown = next(c for c in app.demo.config["components"] if c.get("props", {}).get("elem_id") == "preset")
    assert dropdown["props"]["value"] == app.DEFAULT_PRESET == "offline"  # the tests run offline
    assert "geoclip-plus" in dropdown["props"]["info"] and "CLIP ViT-L/14" in dropdown["props"]["info"]
