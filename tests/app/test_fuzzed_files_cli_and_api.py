"""Fuzz (issue 16): 200 random byte strings and mutated JPEG/PNG files fed to the CLI and the API;
(issue 27) the probe's table: PNG metadata bombs, a 16-bit 40 MP PNG, 1 x 100000 and 2 x 2 images,
100 KB and regex-hostile texts in every text field, out-of-type numbers and an oversized body.

Every input must end with a clean answer or a one-line error: no traceback, no hang over 30 s,
memory under 2 GB. The CLI part calls ``geodemo.cli.main`` in one separate process (so its peak
memory is its own), plus a few real ``python -m geodemo`` runs; the API part runs ``app.py`` as a
real server process and calls it through ``gradio_client``. Both use ``tests/presets/light.json``
(offered to the web page through ``GEODEMO_EXTRA_PRESETS``) so that decodable inputs cost little.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from app_process import served_app
from PIL import Image

from geodemo.paths import REPO_ROOT as REPO

LIGHT = REPO / "tests" / "presets" / "light.json"
N_INPUTS = 200
HANG_S = 30.0
MAX_RSS_KB = 2 * 1024 * 1024


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return len(data).to_bytes(4, "big") + kind + data + zlib.crc32(kind + data).to_bytes(4, "big")


def _mutate(seed: bytes, rng: np.random.Generator, png: bool) -> bytes:
    data = bytearray(seed)
    how = int(rng.integers(6))
    if how == 0:  # flip a few bytes anywhere
        for i in rng.integers(0, len(data), size=int(rng.integers(1, 24))):
            data[int(i)] = int(rng.integers(256))
    elif how == 1:  # truncate
        data = data[: int(rng.integers(1, len(data)))]
    elif how == 2:  # flip bytes in the header only (sizes, markers, chunk lengths)
        for i in rng.integers(0, min(len(data), 200), size=int(rng.integers(1, 6))):
            data[int(i)] = int(rng.integers(256))
    elif how == 3:  # drop or duplicate a block
        a = int(rng.integers(0, len(data)))
        b = min(len(data), a + int(rng.integers(1, 2048)))
        data = data[:a] + (data[a:b] * 2 if rng.random() < 0.5 else b"") + data[b:]
    elif how == 4:  # insert random bytes
        a = int(rng.integers(0, len(data)))
        data = data[:a] + bytearray(rng.integers(0, 256, size=int(rng.integers(1, 512)), dtype=np.uint8).tobytes()) + data[a:]
    elif png:  # a valid IHDR (right CRC) claiming a huge or odd size
        w, h = (int(x) for x in rng.choice([1, 7, 10000, 50000, 2**31 - 1, 0], size=2))
        ihdr = w.to_bytes(4, "big") + h.to_bytes(4, "big") + bytes([8, int(rng.choice([0, 2, 3, 4, 6])), 0, 0, 0])
        data = data[:8] + bytearray(_png_chunk(b"IHDR", ihdr)) + data[33:]
    else:  # JPEG: overwrite the frame size in the SOF0 marker
        i = bytes(data).find(b"\xff\xc0")
        if i > 0:
            data[i + 5 : i + 9] = int(rng.integers(0, 65536)).to_bytes(2, "big") + int(rng.integers(0, 65536)).to_bytes(2, "big")
    return bytes(data)


def make_corpus(shared: Path, folder: Path) -> list[Path]:
    """``N_INPUTS`` files: 80 random byte strings (some behind a JPEG/PNG signature), 120 mutations."""
    rng = np.random.default_rng(16)
    with Image.open(sorted((shared / "data" / "osv5m-sample" / "images").glob("*.jpg"))[0]) as im:
        small = im.convert("RGB").resize((96, 64))
    jpeg, png = io.BytesIO(), io.BytesIO()
    small.save(jpeg, format="JPEG", quality=85)
    small.save(png, format="PNG")
    seeds = {"jpg": jpeg.getvalue(), "png": png.getvalue()}
    files = []
    for k in range(N_INPUTS):
        if k < 80:
            body = rng.integers(0, 256, size=int(rng.integers(0, 4096)), dtype=np.uint8).tobytes()
            prefix = [b"", b"\xff\xd8\xff\xe0", b"\x89PNG\r\n\x1a\n"][k % 3]
            ext, data = ["bin", "jpg", "png"][k % 3], prefix + body
        else:
            ext = "jpg" if k % 2 else "png"
            data = _mutate(seeds[ext], rng, png=ext == "png")
        path = folder / f"fuzz-{k:03d}.{ext}"
        path.write_bytes(data)
        files.append(path)
    return files


# The CLI in one process: each input through main() on a worker thread, 30 s to answer.
_CLI_DRIVER = r"""
import contextlib, io, json, os, sys, threading, time
from geodemo.cli import main

preset, files = sys.argv[1], sys.argv[2:]
for path in files:
    out, err, box = io.StringIO(), io.StringIO(), {}

    def run():
        try:
            box["rc"] = main(["locate", path, "--preset", preset])
        except BaseException as exc:  # an escaped exception is a failure the test reports
            box["escaped"] = f"{type(exc).__name__}: {exc}"

    t0 = time.monotonic()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        worker = threading.Thread(target=run, daemon=True)
        worker.start()
        worker.join(30.0)
    row = {"file": os.path.basename(path), "s": round(time.monotonic() - t0, 2), "rc": box.get("rc"),
           "escaped": box.get("escaped"), "hang": worker.is_alive(), "out": out.getvalue()[-300:],
           "err": err.getvalue()[-600:]}
    print("ROW " + json.dumps(row), flush=True)
    if worker.is_alive():
        break
# VmHWM: this process's own peak (ru_maxrss would include the parent's pages it was forked with)
print("PEAK_KB", open("/proc/self/status").read().split("VmHWM:")[1].split()[0], flush=True)
os._exit(0)
"""


def _env(**extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", **extra}


def _check_cli_answer(rc: int | None, out: str, err: str, name: str) -> None:
    assert rc in (0, 1, 2), f"{name}: exit status {rc}"
    assert "Traceback" not in out + err, f"{name}: {err[-600:]}"
    if rc == 0:
        assert out.strip(), f"{name}: no answer printed"
    else:
        lines = [line for line in err.splitlines() if line.strip()]
        assert out == "" and len(lines) == 1 and lines[0].startswith("error: "), f"{name}: {err[-600:]}"


@pytest.fixture(scope="module")
def corpus(shared, tmp_path_factory) -> list[Path]:
    return make_corpus(shared, tmp_path_factory.mktemp("fuzz"))


def make_probe_files(folder: Path) -> list[Path]:
    """The probe's image table (issue 27): metadata bombs, 16-bit 40 MP, slivers, a 2 x 2 dot."""
    from tests.hostile_files import gray16_png, icc_bomb_png, text_bomb_png

    files = {"icc-bomb.png": icc_bomb_png(), "ztxt-bomb.png": text_bomb_png()}
    for name, data in files.items():
        (folder / name).write_bytes(data)
    paths = [folder / name for name in files]
    paths.append(gray16_png(folder / "gray16-40mp.png", 6300, 6300))  # 39.7 MP, inside the web budget
    for name, mode, size in (("sliver-1x100000.png", "RGB", (1, 100_000)), ("sliver-100000x1.png", "I;16", (100_000, 1)),
                             ("dot-2x2.png", "RGB", (2, 2))):
        Image.new(mode, size, 120).save(folder / name)
        paths.append(folder / name)
    return paths


@pytest.fixture(scope="module")
def probe_files(tmp_path_factory) -> list[Path]:
    return make_probe_files(tmp_path_factory.mktemp("probe"))


def test_fuzz_cli_probe_inputs(probe_files, tmp_path):
    # the light preset over the embedded default's gallery, so the probe runs on a fresh clone too
    preset = tmp_path / "light-embedded.json"
    preset.write_text(json.dumps({**json.loads(LIGHT.read_text()), "name": "light-embedded", "gallery": {
        "datasets": ["im2gps3k-dev", "osv5m-sample"], "path": None, "index": {"kind": "flat"}}}))
    proc = subprocess.run([sys.executable, "-c", _CLI_DRIVER, str(preset), *map(str, probe_files)],
                          capture_output=True, text=True, env=_env(), cwd=REPO, timeout=600)
    rows = [json.loads(line[4:]) for line in proc.stdout.splitlines() if line.startswith("ROW ")]
    assert len(rows) == len(probe_files), proc.stderr[-2000:]
    for row in rows:
        assert not row["hang"] and row["escaped"] is None, row
        _check_cli_answer(row["rc"], row["out"], row["err"], row["file"])
        assert "OpenCV" not in row["out"] + row["err"], row
    peak_kb = int(proc.stdout.split("PEAK_KB")[1].split()[0])
    assert peak_kb < MAX_RSS_KB, f"the CLI process peaked at {peak_kb / 1e6:.2f} GB"
    by_name = {r["file"]: r for r in rows}
    assert by_name["gray16-40mp.png"]["rc"] == 0  # a real photo, decoded at the working size


def test_fuzz_cli(corpus):
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", _CLI_DRIVER, str(LIGHT), *map(str, corpus)], capture_output=True,
                          text=True, env=_env(), cwd=REPO, timeout=900)
    rows = [json.loads(line[4:]) for line in proc.stdout.splitlines() if line.startswith("ROW ")]
    assert len(rows) == len(corpus), proc.stderr[-2000:]
    for row in rows:
        assert not row["hang"], f"{row['file']} hung over {HANG_S:g} s"
        assert row["escaped"] is None, f"{row['file']}: {row['escaped']}"
        _check_cli_answer(row["rc"], row["out"], row["err"], row["file"])
    peak_kb = int(proc.stdout.split("PEAK_KB")[1].split()[0])
    assert peak_kb < MAX_RSS_KB, f"the CLI process peaked at {peak_kb / 1e6:.2f} GB"
    located = sum(r["rc"] == 0 for r in rows)
    print(f"fuzz CLI: {len(rows)} inputs, {located} located, {len(rows) - located} refused, "
          f"slowest {max(r['s'] for r in rows):.1f} s, peak {peak_kb / 1e6:.2f} GB, {time.monotonic() - t0:.0f} s")
    assert 0 < located < len(rows)  # the corpus reaches both the decoder's refusals and the pipeline

    for path in (corpus[1], corpus[81]):  # real processes: random bytes behind a JPEG signature, a mutated JPEG
        run = subprocess.run([sys.executable, "-m", "geodemo", "locate", str(path), "--preset", str(LIGHT)],
                             capture_output=True, text=True, env=_env(), cwd=REPO, timeout=120)
        _check_cli_answer(run.returncode, run.stdout, run.stderr, path.name)


def _peak_rss_kb(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(status.split("VmHWM:")[1].split()[0])


@pytest.fixture(scope="module")
def light_server(tmp_path_factory):
    """``python app.py`` serving the light preset, shared by the API fuzz tests: (url, process)."""
    env = _env(GEODEMO_PRESET="light", GEODEMO_EXTRA_PRESETS=str(LIGHT))
    log = tmp_path_factory.mktemp("server") / "server.log"
    with served_app(REPO, env, log, start_timeout_s=300) as served:
        yield served


def _check_api_refusal(message: str, name: str, tmp_root: Path) -> None:
    assert message.strip() and message.strip() != "None", f"{name}: an error without words"
    assert "Traceback" not in message and "\n" not in message.strip(), f"{name}: {message[:600]}"
    assert str(tmp_root) not in message and "/tmp/gradio" not in message, f"{name}: {message}"


@pytest.mark.slow  # 200 inputs through the served app: about 15 s
def test_fuzz_api(corpus, tmp_path, light_server):
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError

    url, server = light_server
    # One client (one session, one event stream) per job in flight: two jobs in one gradio_client 2.7.2
    # session race the stream's close (a quick refusal closes it under the other job: CancelledError).
    clients = [Client(url, verbose=False, download_files=False) for _ in range(2)]
    t0 = time.monotonic()
    located = refused = 0
    for pair in zip(corpus[0::2], corpus[1::2], strict=True):  # two in flight: the app's concurrency limit
        jobs = [(path, time.monotonic(), client.submit(handle_file(str(path)), "light", None, None, None, "off",
                                                       "preset default", "", None, api_name="/locate"))
                for path, client in zip(pair, clients, strict=True)]
        for path, start, job in jobs:
            try:
                answer = job.result(timeout=HANG_S)
                assert isinstance(answer, dict) and "lat" in answer, f"{path.name}: {str(answer)[:300]}"
                located += 1
            except AppError as exc:
                _check_api_refusal(str(exc), path.name, tmp_path.parent)
                refused += 1
            assert time.monotonic() - start < HANG_S, f"{path.name} took over {HANG_S:g} s"
    for client in clients:
        client.close()
    peak_kb = _peak_rss_kb(server.pid)
    print(f"fuzz API: {located} located, {refused} refused, {time.monotonic() - t0:.0f} s, "
          f"server peak {peak_kb / 1e6:.2f} GB")
    assert peak_kb < MAX_RSS_KB, f"the app server peaked at {peak_kb / 1e6:.2f} GB"
    assert server.poll() is None  # still serving


#: Out-of-type values for each number field and long or regex-hostile texts for each text field (issue 27).
BAD_NUMBERS = [1.5, True, "five", [3], {"n": 3}, -1e308, 10**30]
LONG_TEXTS = [" 1" * 50_000 + "x", "a." * 50_000, "(" * 100_000, "A" * 100_000 + "Error: ", " /a" * 33_000]


def test_fuzz_api_probe_inputs(probe_files, tmp_path, light_server):
    """The probe's table through ``/locate`` and ``/thumbnail``: every input answered in words within 30 s,
    the server's peak under 2 GB, and it keeps serving."""
    import socket
    from urllib.parse import urlparse

    import httpx
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError

    url, server = light_server
    client = Client(url, verbose=False, download_files=False)
    ok_photo = handle_file(str(probe_files[2]))  # the 16-bit 40 MP PNG
    base = ["light", None, None, None, "off", "preset default", "", None]
    calls: list[tuple[str, list, str]] = [(p.name, [handle_file(str(p)), *base], "/locate") for p in probe_files]
    for i, field in ((1, "top_k"), (3, "min_samples"), (7, "lmm_samples")):
        calls += [(f"{field}={v!r}"[:40], [ok_photo, *base[:i], v, *base[i + 1:]], "/locate") for v in BAD_NUMBERS]
    for text in LONG_TEXTS:
        for i, field in ((0, "preset"), (4, "lmm_mode"), (5, "lmm_backend"), (6, "lmm_model")):
            calls.append((f"{field}={text[:12]!r}...", [ok_photo, *base[:i], text, *base[i + 1:]], "/locate"))
        calls.append((f"thumbnail {text[:12]!r}...", [text, "light"], "/thumbnail"))
    t0 = time.monotonic()
    answered = refused = 0
    for name, args, api in calls:
        start = time.monotonic()
        try:
            client.submit(*args, api_name=api).result(timeout=HANG_S)
            answered += 1
        except AppError as exc:
            _check_api_refusal(str(exc), name, tmp_path.parent)
            refused += 1
        assert time.monotonic() - start < HANG_S, f"{name} took over {HANG_S:g} s"
    target = urlparse(url)
    with socket.create_connection((target.hostname, target.port), timeout=10) as sock:  # an oversized body
        sock.sendall(b"POST /gradio_api/call/locate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 314572800\r\n\r\n{")
        assert sock.recv(4096).startswith(b"HTTP/1.1 413")
    assert httpx.get(url.rstrip("/") + "/gradio_api/info", timeout=30).status_code == 200
    peak_kb = _peak_rss_kb(server.pid)
    print(f"fuzz API probe inputs: {answered} answered, {refused} refused, {time.monotonic() - t0:.0f} s, "
          f"server peak {peak_kb / 1e6:.2f} GB")
    assert peak_kb < MAX_RSS_KB, f"the app server peaked at {peak_kb / 1e6:.2f} GB"
    assert server.poll() is None and refused >= len(calls) - len(probe_files)
