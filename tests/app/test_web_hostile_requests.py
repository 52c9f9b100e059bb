"""Regression tests for issue 27's web rows (N1, N2, N4, N5, N6, N11) against the real app on 127.0.0.1:
through ``gradio_client`` (``/locate``, ``/thumbnail``), through the page's own handler called as the
browser calls it (``/gradio_api/queue/join`` with its ``fn_index``), and over a raw socket (request
bodies). One app launch is shared by the module; the upload-cache test launches its own.
"""

from __future__ import annotations

import json
import socket
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest

from geodemo.paths import REPO_ROOT as REPO
from tests.hostile_files import ADVERSARIAL, icc_bomb_png

LIGHT = REPO / "tests" / "presets" / "light.json"
OSV_PHOTO = "546314506564628.jpg"


@pytest.fixture(scope="module")
def client(app_url):
    from gradio_client import Client

    return Client(app_url, verbose=False, download_files=False)


def _photo(shared: Path) -> Path:
    return shared / "data" / "osv5m-sample" / "images" / OSV_PHOTO


def _locate(client, shared: Path, *settings: Any):
    from gradio_client import handle_file

    return client.predict(handle_file(str(_photo(shared))), *settings, api_name="/locate")


def page_call(base: str, photo: Path, truth: str, settings: tuple, timeout_s: float = 120) -> list[dict]:
    """The page's Locate handler, called as the browser calls it (upload, then ``queue/join`` with its
    ``fn_index``); returns the ``status`` texts it streamed."""
    import httpx

    base = base.rstrip("/")
    with open(photo, "rb") as fh:
        uploaded = httpx.post(f"{base}/gradio_api/upload", files={"files": (photo.name, fh, "image/jpeg")},
                              timeout=60).json()[0]
    config = httpx.get(f"{base}/config", timeout=30).json()
    fn_index = next(d["id"] for d in config["dependencies"] if len(d["inputs"]) == 12)  # the page's Locate
    session = uuid.uuid4().hex
    data = [{"path": uploaded, "meta": {"_type": "gradio.FileData"}, "orig_name": photo.name}, truth, "",
            *settings, 0.5]
    join = httpx.post(f"{base}/gradio_api/queue/join", timeout=60,
                      json={"data": data, "fn_index": fn_index, "session_hash": session, "event_data": None})
    assert join.status_code == 200, join.text[:300]
    statuses: list[dict] = []
    with httpx.stream("GET", f"{base}/gradio_api/queue/data", params={"session_hash": session},
                      timeout=timeout_s) as events:
        for line in events.iter_lines():
            if not line.startswith("data:"):
                continue
            msg = json.loads(line[5:])
            if msg.get("msg") == "process_generating" or msg.get("msg") == "process_completed":
                statuses.append(msg)
            if msg.get("msg") == "process_completed":
                break
    return statuses


def _status_texts(messages: list[dict]) -> list[str]:
    texts = []
    for msg in messages:
        for item in (msg.get("output") or {}).get("data") or []:
            if isinstance(item, dict) and isinstance(item.get("value"), str) and item["value"].startswith(("⚠", "⏳")):
                texts.append(item["value"])
            elif isinstance(item, str) and item.startswith(("⚠", "⏳")):
                texts.append(item)
    return texts


# ------------------------------------------------------------------------------------ N1
def test_n1_the_lmm_allow_list_holds_on_every_route(client, app_url, shared, monkeypatch):
    from gradio_client.exceptions import AppError

    monkeypatch.setenv("GEODEMO_WEB_LMM_BACKENDS", "ollama")
    for backend in ("openai", "gguf", "transformers"):
        with pytest.raises(AppError, match="not offered here"):
            _locate(client, shared, "offline", 5, None, None, "on", backend, "", 1)
    with pytest.raises(AppError, match="'gguf', which this server does not offer"):  # the preset's own backend
        _locate(client, shared, "offline", 5, None, None, "on", "preset default", "", 1)
    page = _status_texts(page_call(app_url, _photo(shared), "", ("offline", 5, None, None, "on", "gguf", "", 1)))
    assert page and "not offered here" in page[-1], page


# ------------------------------------------------------------------------------------ N2
def test_n2_a_100kb_true_location_is_refused_at_once_and_the_server_keeps_answering(app_url, shared):
    import httpx

    settings = ("offline", 5, None, None, "off", "preset default", "", None)
    for name in ("spaces and digits", "digits dots commas", "one number, 100 KB of spaces"):
        t0 = time.monotonic()
        page = _status_texts(page_call(app_url, _photo(shared), ADVERSARIAL[name], settings))
        assert time.monotonic() - t0 < 20, name
        assert page and "true location" in page[-1] and len(page[-1]) < 200, page
    t0 = time.monotonic()
    assert httpx.get(app_url.rstrip("/") + "/gradio_api/info", timeout=30).status_code == 200
    assert time.monotonic() - t0 < 5


# ------------------------------------------------------------------------------------ N4
def test_n4_a_png_bomb_gets_the_photo_error_with_its_reason(client, tmp_path):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    bomb = tmp_path / "icc-bomb.png"
    bomb.write_bytes(icc_bomb_png())
    with pytest.raises(AppError) as info:
        client.predict(handle_file(str(bomb)), "offline", 5, None, None, "off", "preset default", "", None,
                       api_name="/locate")
    message = str(info.value)
    assert "cannot be used as a photo" in message and "too large" in message, message


# ------------------------------------------------------------------------------------ N5
@pytest.mark.parametrize("top_k", [1.5, True, "five", "NaN", [3], {"n": 3}], ids=repr)
def test_n5_numbers_that_must_be_whole_are_refused_in_words_never_rounded(app_url, shared, top_k):
    """Raw API calls (``/gradio_api/call/locate``), so that a bare JSON ``NaN`` can be sent as the probe did."""
    import httpx

    base = app_url.rstrip("/")
    with open(_photo(shared), "rb") as fh:
        uploaded = httpx.post(f"{base}/gradio_api/upload", files={"files": (OSV_PHOTO, fh, "image/jpeg")},
                              timeout=60).json()[0]
    number = "NaN" if top_k == "NaN" else json.dumps(top_k)
    body = json.dumps({"data": [{"path": uploaded, "meta": {"_type": "gradio.FileData"}}, "offline", "<top-k>",
                                None, None, "off", "preset default", "", None]}).replace('"<top-k>"', number)
    call = httpx.post(f"{base}/gradio_api/call/locate", content=body, timeout=60,
                      headers={"Content-Type": "application/json"})
    assert call.status_code == 200, call.text[:300]
    events = httpx.get(f"{base}/gradio_api/call/locate/{call.json()['event_id']}", timeout=120).text
    assert "event: error" in events and "top-k neighbours must be a whole number from 1 to 200" in events, events


def test_n5_a_thumbnail_of_a_preset_that_cannot_load_says_why(client, tmp_path, monkeypatch):
    from gradio_client.exceptions import AppError

    broken = json.loads(LIGHT.read_text())
    broken["name"] = "broken-gallery"
    broken["gallery"] = {"path": str(tmp_path / "no-such-database"), "index": {"kind": "flat"}}
    preset = tmp_path / "broken-gallery.json"
    preset.write_text(json.dumps(broken))
    monkeypatch.setenv("GEODEMO_EXTRA_PRESETS", str(preset))
    with pytest.raises(AppError) as info:
        client.predict("123", "broken-gallery", api_name="/thumbnail")
    message = str(info.value)
    assert message.startswith("the thumbnail failed: ") and str(tmp_path) not in message, message


# ------------------------------------------------------------------------------------ N6
def _content_length(head: str) -> int:
    for line in head.split("\r\n"):
        if line.lower().startswith("content-length:"):
            return int(line.split(":", 1)[1])
    return 0


def test_n6_a_request_body_is_refused_from_its_declared_length_before_it_is_read(app_url):
    import httpx

    url = urlparse(app_url)
    with socket.create_connection((url.hostname, url.port), timeout=10) as sock:
        sock.sendall(b"POST /gradio_api/call/locate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 314572800\r\n\r\n" + b'{"data": ["data:image/png;base64,AAAA')
        t0 = time.monotonic()
        answer = ""  # the 300 MB are never sent: the answer must not wait for them
        while "\r\n\r\n" not in answer or len(answer.split("\r\n\r\n", 1)[1]) < _content_length(answer):
            chunk = sock.recv(4096)  # headers and body may come in two packets
            if not chunk:
                break
            answer += chunk.decode("latin-1")
    assert time.monotonic() - t0 < 5
    assert answer.startswith("HTTP/1.1 413"), answer[:200]
    assert "300.0 MB, over the" in answer and "limit for one request" in answer
    assert httpx.get(app_url.rstrip("/") + "/gradio_api/info", timeout=30).status_code == 200


# ------------------------------------------------------------------------------------ N11
def test_n11_uploads_leave_gradios_cache_after_their_time_limit(shared, monkeypatch, tmp_path):
    import httpx
    import numpy as np
    from PIL import Image

    import app

    photo = tmp_path / "fresh.jpg"  # a photo of its own: the examples' files are kept in the cache on purpose
    Image.fromarray(np.random.default_rng().integers(0, 256, (64, 96, 3), dtype=np.uint8)).save(photo)

    monkeypatch.setenv("GEODEMO_UPLOAD_MAX_AGE_S", "2")
    demo = app.build_demo()
    assert demo.delete_cache == (1, 2)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    _, url, _ = demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True,
                            **app.launch_options())
    try:
        with open(photo, "rb") as fh:
            path = Path(httpx.post(url.rstrip("/") + "/gradio_api/upload", timeout=60,
                                   files={"files": (photo.name, fh, "image/jpeg")}).json()[0])
        assert path.is_file()
        deadline = time.monotonic() + 20
        while path.exists() and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not path.exists(), "the upload is still in Gradio's cache"
    finally:
        demo.close()
