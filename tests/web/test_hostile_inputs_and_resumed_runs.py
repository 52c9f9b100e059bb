"""Regression tests for issue 27 ("hardening, round 2"), the rows reached through the library, the CLI,
the scripts and the files geodemo writes; the web rows are in ``tests/app/test_web_hostile_requests.py``.

Each test names the behaviour it protects and its row (N1 ... N14). Real components throughout: real
PNG/TIFF files decoded by PIL in a separate process (its own peak memory), the real harness and
explorer on real files, the real CLI and ``scripts/evaluate.py``, a real HTTP server for Ollama.
"""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from geodemo.paths import REPO_ROOT as REPO
from tests.fake_server import FakeServer
from tests.hostile_files import ADVERSARIAL, gray16_png, icc_bomb_png, text_bomb_png

LIGHT = REPO / "tests" / "presets" / "light.json"


def _env(**extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", **extra}


_PEAKS = r"""
import os, sys
from geodemo.imageio import load_image
def kb(key): return int(open("/proc/self/status").read().split(key + ":")[1].split()[0])
for path in sys.argv[1:]:  # each photo in a fresh fork: its own peak, without paying for the imports again
    pid = os.fork()
    if pid == 0:
        before = kb("VmRSS")
        image = load_image(path)
        print(path, image.size[0], image.size[1], image.mode, kb("VmHWM") - before, flush=True)
        os._exit(0)
    os.waitpid(pid, 0)
"""


def _decode_peaks_kb(paths: list[Path]) -> dict[Path, tuple[tuple[int, int], int]]:
    """Each photo's decoded size and the peak memory (kB) ``load_image`` added to decode it."""
    out = subprocess.run([sys.executable, "-c", _PEAKS, *map(str, paths)], capture_output=True, text=True,
                         env=_env(), timeout=300)
    assert out.returncode == 0, out.stderr[-1500:]
    peaks = {}
    for line in out.stdout.splitlines():
        path, w, h, mode, peak = line.rsplit(" ", 4)
        assert mode == "RGB", line
        peaks[Path(path)] = ((int(w), int(h)), int(peak))
    assert len(peaks) == len(paths), out.stderr[-1500:]
    return peaks


def _mode_files(folder: Path, width: int, height: int) -> dict[str, Path]:
    """The same ``width`` x ``height`` picture (smooth bands) in each mode the probe named, compressible."""
    x = np.broadcast_to((np.arange(width) // 300 * 17 % 256).astype(np.uint8), (height, width))
    y = np.broadcast_to((np.arange(height) // 300 * 29 % 256).astype(np.uint8)[:, None], (height, width))
    bands = np.ascontiguousarray(x)
    rgb = Image.fromarray(np.stack([bands, y, 255 - bands], -1))
    files = {"8-bit RGB": folder / "rgb.png", "16-bit grey": folder / "i16.png", "float": folder / "float.tif",
             "palette": folder / "palette.png", "CMYK": folder / "cmyk.tif", "LA": folder / "la.png",
             "32-bit int": folder / "i32.tif"}
    rgb.save(files["8-bit RGB"], compress_level=1)
    gray16_png(files["16-bit grey"], width, height)
    Image.fromarray((bands / 255.0).astype(np.float32)).save(files["float"], compression="tiff_deflate")
    rgb.quantize(32).save(files["palette"], compress_level=1)
    rgb.convert("CMYK").save(files["CMYK"], compression="tiff_deflate")
    rgb.convert("LA").save(files["LA"], compress_level=1)
    Image.fromarray(bands.astype(np.int32) * 70000).save(files["32-bit int"], compression="tiff_deflate")
    return files


def test_n3_every_image_mode_decodes_at_the_working_size_in_the_memory_of_an_8bit_photo(tmp_path):
    files = _mode_files(tmp_path, 4200, 3000)  # 12.6 MP: reduced by 2 to the 2048 working side
    peaks = _decode_peaks_kb(list(files.values()))
    size, reference = peaks[files.pop("8-bit RGB")]
    assert max(size) == 2048
    over = {}
    for kind, path in files.items():
        got_size, peak = peaks[path]
        assert got_size == size, kind
        if peak > 1.3 * reference:
            over[kind] = f"{peak / 1024:.0f} MB"
    assert over == {}, f"8-bit RGB photo: {reference / 1024:.0f} MB; over 1.3x that: {over}"


def test_n3_a_sliver_image_decodes_to_the_working_size():
    from geodemo.imageio import load_image

    buf = io.BytesIO()
    Image.new("I;16", (1, 100_000), 4000).save(buf, format="PNG")
    image = load_image(buf.getvalue())
    assert image.mode == "RGB" and max(image.size) <= 2048 and image.getpixel((0, 0)) == (16, 16, 16)


def test_n3_32bit_strips_share_the_whole_images_value_range():
    from geodemo.imageio import load_image

    values = np.zeros((4096, 600), dtype=np.int32)
    values[:, 300:] = 1_000_000  # right half bright: every strip must scale against the same maximum
    buf = io.BytesIO()
    Image.fromarray(values).save(buf, format="TIFF")
    rgb = np.asarray(load_image(buf.getvalue()))
    assert rgb[:, :100].max() == 0 and rgb[:, -100:].min() == 255


# ------------------------------------------------------------------------------------ N4: PNG metadata bombs
@pytest.mark.parametrize("make", [icc_bomb_png, text_bomb_png], ids=["iCCP 200 MB", "zTXt 200 MB"])
def test_n4_a_png_whose_metadata_inflates_to_200mb_is_a_photo_error_with_its_reason(make):
    from geodemo.errors import describe
    from geodemo.imageio import ImageError, load_image

    data = make()
    assert len(data) < 1_000_000
    try:
        image = load_image(data, name="bomb.png")
    except ImageError as exc:
        words = describe(exc)[0]
        assert "bomb.png" in words and ("too large" in words or "metadata" in words), words
        return
    assert image.size == (64, 64)  # PIL may skip a chunk it does not read: then the photo itself is fine


# ------------------------------------------------------------------------------------ N2: linear text handling


@pytest.mark.parametrize("name", list(ADVERSARIAL))
def test_n2_100kb_of_adversarial_text_is_handled_in_under_50ms(name):
    from geodemo.errors import plain_text
    from geodemo.web.policy import RequestError, check_text, parse_truth, validate_request

    text = ADVERSARIAL[name]
    assert len(text) >= 99_000
    validate_request("offline", [None, None, None, "off", None, None, None])  # imports done before timing
    for fn in (parse_truth, lambda t: validate_request("offline", [None, None, None, "off", None, t, None]),
               lambda t: check_text("LMM model", t), plain_text):
        t0 = time.perf_counter()
        try:
            out = fn(text)
        except RequestError as exc:
            assert len(str(exc)) < 200 and text[:50] not in str(exc)  # the text is not echoed back
        else:
            assert len(out) <= 2000
        assert time.perf_counter() - t0 < 0.05, f"{name}: {(time.perf_counter() - t0) * 1000:.0f} ms"


def test_n2_true_location_parser_accepts_the_documented_forms_only():
    from geodemo.web.policy import RequestError, parse_truth

    assert parse_truth(" 48.8584, 2.2945 ") == (48.8584, 2.2945)
    assert parse_truth("(-33.9; 151.2)") == (-33.9, 151.2) and parse_truth("10 20") == (10.0, 20.0)
    for bad in ("Paris", "1e3, 2", "1,2,3", "+1, 2", "٣, 4", "1. , 2", "--1, 2", "91, 0"):
        with pytest.raises(RequestError):
            parse_truth(bad)


# ------------------------------------------------------------------------------------ N1: the allow-list holds
def test_n1_web_lmm_backend_allow_list_is_enforced_on_the_resolved_request(monkeypatch):
    from geodemo.web.policy import RequestError, available_backends, validate_request

    monkeypatch.setenv("GEODEMO_WEB_LMM_BACKENDS", "ollama")
    for backend in ("openai", "gguf", "transformers", "openai-compatible"):
        with pytest.raises(RequestError, match="not offered here"):
            validate_request("offline", [None, None, None, "on", backend, None, None])
    assert set(available_backends()) <= {"preset default", "ollama"}
    # the preset's own backend counts too, once "preset default" is expanded (offline: gguf)
    with pytest.raises(RequestError, match="'gguf', which this server does not offer"):
        validate_request("offline", [None, None, None, "on", "preset default", None, None])
    assert validate_request("offline", [None, None, None, "off", "preset default", None, None])[1].get("lmm", "enabled") is False
    assert validate_request("g3", [None, None, None, "on", "ollama", None, None])[1].get("lmm", "backend") == "ollama"
    monkeypatch.setenv("GEODEMO_WEB_LMM_BACKENDS", "gguf")
    with pytest.raises(RequestError, match="'ollama', which this server does not offer"):  # g3's LMM is on by default
        validate_request("g3", [None, None, None, "preset default", None, None, None])


# ------------------------------------------------------------------------------------ N10: CLI paths, LMM time-out
def test_n10_the_cli_shows_the_users_own_paths(tmp_path, capsys, shared):
    from geodemo.cli import main

    photo = sorted((shared / "data" / "osv5m-sample" / "images").glob("*.jpg"))[0]
    missing = tmp_path / "my presets" / "nope.json"
    assert main(["locate", str(photo), "--preset", str(missing)]) == 2
    err = capsys.readouterr().err
    assert str(missing) in err and "a server folder" not in err and err.startswith("error: ")
    assert main(["locate", str(tmp_path / "holiday" / "IMG_1.jpg")]) == 2
    assert str(tmp_path / "holiday" / "IMG_1.jpg") in capsys.readouterr().err


class _SilentServer:
    """Accepts connections and never answers (an LMM server that hangs)."""

    def __init__(self) -> None:
        import socket

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.held: list[Any] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                self.held.append(self.sock.accept()[0])
            except OSError:
                return


def test_n10_an_lmm_time_out_is_a_failed_stage_not_a_missing_backend(shared, tmp_path, monkeypatch):
    from geodemo.pipeline import GeoLocator, LocateOptions

    server = _SilentServer()
    monkeypatch.setenv("OPENAI_API_KEY", "sk-set-on-purpose")
    monkeypatch.setenv("OPENAI_BASE_URL", server.url + "/v1")
    cfg = json.loads(LIGHT.read_text())
    cfg["lmm"].update(backend="openai", model="a-vision-model", timeout_s=1.5, retries=0)
    preset = tmp_path / "light-openai.json"
    preset.write_text(json.dumps(cfg))
    photo = sorted((shared / "data" / "osv5m-sample" / "images").glob("*.jpg"))[0]
    result = GeoLocator.from_preset(str(preset)).locate(str(photo), LocateOptions({"lmm": {"enabled": True}}))
    assert "lmm" in result.errors and "lmm" not in result.unavailable, (result.errors, result.unavailable)
    assert "within" in result.errors["lmm"] and "OPENAI_API_KEY" not in result.errors["lmm"]
    assert all(not r.not_installed for r in result.lmm_records)


# ------------------------------------------------------------------------------------ N12: host and model of the preset
def _fake_ollama(models: list[str]) -> FakeServer:
    """``/api/tags`` listing ``models``; its ``requests`` are the probes that asked."""
    server = FakeServer()
    server.routes[("GET", "/api/tags")] = lambda request: (200, {"models": [{"name": m, "model": m} for m in models]}, {})
    return server


@pytest.mark.parametrize("preset", ["g3", "g3-plus", "dualgeo", "dualgeo-plus"])
def test_n12_the_ollama_host_comes_from_the_environment(preset, monkeypatch):
    from geodemo.lmm.backends import create_backend
    from geodemo.pipeline import load_preset

    monkeypatch.setenv("OLLAMA_HOST", "http://gpu-box.internal:4242")
    lmm = load_preset(preset)["lmm"]
    backend = create_backend(lmm["backend"], **{k: v for k, v in lmm.items() if k != "backend"})
    assert backend.host == "http://gpu-box.internal:4242"


def test_n12_the_availability_probe_checks_the_model_the_preset_uses(monkeypatch):
    from geodemo.lmm.backends import backend_status
    from geodemo.pipeline import load_preset

    server = _fake_ollama(["llava:7b"])
    try:
        monkeypatch.setenv("OLLAMA_HOST", server.url)
        assert backend_status("ollama") is None  # the default model is there
        model = load_preset("dualgeo")["lmm"]["model"]
        assert model == "llava:13b"
        how = backend_status("ollama", model=model)
        assert how is not None and "ollama pull llava:13b" in how
        assert backend_status("ollama", model="llava:7b", host=server.url, timeout_s=9) is None
        assert len(server.requests) == 3
    finally:
        server.close()


# ------------------------------------------------------------------------------------ N9: slivers have no text
@pytest.mark.parametrize("size", [(1, 2048), (2, 100_000), (100_000, 1), (2, 2)])
def test_n9_an_image_under_3px_a_side_gives_no_opencv_text(size):
    from geodemo.clues.gate import text_score
    from geodemo.clues.reader import read_clues

    image = Image.new("RGB", size, (200, 120, 40))
    assert text_score(image) == 0
    report = read_clues(image)
    assert report.text == "" and "OpenCV" not in (report.skipped or "")


# ------------------------------------------------------------------------------------ N7, N8: explained runs
def _explained_run(tmp_path: Path) -> tuple[Any, Path]:
    """(the hand-built locator, its explained run folder written by the real harness: 4 photos)."""
    from test_explorer import RESULTS, StoredLocator, make_run

    run = make_run(tmp_path / "runs")
    assert _rows(run) == list(RESULTS)
    return StoredLocator(RESULTS), run


def _rows(run: Path) -> list[str]:
    with open(run / "predictions.csv", newline="", encoding="utf-8") as fh:
        return [row["id"] for row in csv.DictReader(fh)]


def _resume(run: Path, locator: Any) -> None:
    from test_explorer import RESULTS

    from geodemo.data.dataset import GeoDataset, GeoSample
    from geodemo.eval import evaluate

    images = run.parent.parent.parent / "runs-images"  # where make_run put the photos
    samples = [GeoSample(i, 48.8566, 2.3522, images / f"{i}.jpg", f"g{k}", {}) for k, i in enumerate(RESULTS)]
    evaluate(locator, GeoDataset("hand-built-set", samples), run, progress=False, explain=True)


def test_n7_a_resumed_explain_run_never_duplicates_a_row(tmp_path):
    from geodemo.eval.results import ResultStore

    locator, run = _explained_run(tmp_path)
    store = ResultStore(run)
    torn = store.json_path("far-off")
    torn.write_bytes(torn.read_bytes()[:40])  # a results file cut mid-write
    _resume(run, locator)
    assert sorted(_rows(run)) == sorted(set(_rows(run))) and len(_rows(run)) == 4
    assert store.load("far-off") is not None


def test_n8_a_torn_thumbnail_is_made_again_by_a_resumed_run(tmp_path):
    from geodemo.eval.results import ResultStore

    locator, run = _explained_run(tmp_path)
    thumb = ResultStore(run).thumbnail_path("good")
    thumb.write_bytes(thumb.read_bytes()[:200])
    _resume(run, locator)
    with Image.open(thumb) as im:
        im.load()
    assert len(_rows(run)) == 4


def test_n8_the_explorer_never_writes_to_a_runs_folder(tmp_path):
    from geodemo.eval.results import ResultStore
    from geodemo.viz.explorer import failure_rows, open_run, photo_view

    _, run = _explained_run(tmp_path)
    torn = ResultStore(run).json_path("good")
    torn.write_bytes(torn.read_bytes()[:40])

    def snapshot() -> dict[str, bytes]:
        return {str(p.relative_to(run)): p.read_bytes() for p in sorted(run.rglob("*")) if p.is_file()}

    before = snapshot()
    view = open_run("hand-built-set/offline", tmp_path / "runs")
    _, listed = failure_rows(view)
    shown = photo_view(view, "good")
    assert snapshot() == before  # nothing deleted, nothing written
    assert "good" not in listed and view.by_id["good"]["cause"] == "not a failure"  # its answer was right
    assert "from predictions.csv" in shown.header and "stage error" not in shown.explanation


# ------------------------------------------------------------------------------------ N13, N14: runs that cannot load
def test_n13_n14_a_run_whose_preset_cannot_load_stops_before_the_first_photo(shared, tmp_path):
    out = tmp_path / "run"
    empty = tmp_path / "no-checkpoints"
    empty.mkdir()
    cmd = [sys.executable, str(REPO / "scripts" / "evaluate.py"), "--benchmark", "osv5m-sample", "--predictor",
           "geolocator", "--preset", "dualgeo-offline", "--limit", "3", "--out", str(out), "--no-progress"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=REPO,
                          env=_env(GEODEMO_CHECKPOINTS=str(empty)))
    assert done.returncode != 0, done.stdout[-1500:]
    assert not (out / "predictions.csv").exists() and not (out / "table.md").exists()
    err = done.stderr.strip().splitlines()
    assert err and err[-1].startswith("error: ") and "Traceback" not in done.stderr, done.stderr[-1500:]
    assert "dualgeo-offline" in err[-1] and "python scripts/train.py --preset dualgeo-offline" in err[-1]
    assert str(empty) in err[-1]  # the user's own path, not "a server folder"


def test_n14_every_missing_trained_checkpoint_names_the_command_that_makes_it(tmp_path, monkeypatch):
    from geodemo.errors import MissingResourceError
    from geodemo.models.aligners import load_aligner
    from geodemo.models.descriptors import _resolve_checkpoint
    from geodemo.paths import train_presets_dir

    monkeypatch.setenv("GEODEMO_CHECKPOINTS", str(tmp_path))
    names = sorted(p.stem for p in train_presets_dir().glob("*.json"))
    assert {"g3", "g3-offline", "dualgeo", "dualgeo-offline", "offline-verifier"} <= set(names)
    for name in names:
        for load, value in ((_resolve_checkpoint, name), (load_aligner, str(tmp_path / "gone" / name))):
            with pytest.raises(MissingResourceError, match=rf"`python scripts/train.py --preset {name}`"):
                load(value)
