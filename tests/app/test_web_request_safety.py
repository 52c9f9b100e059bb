"""Regression tests for issue 16's web rows (D3, D4, D5, memory, OPENAI_API_KEY) against the real
app on 127.0.0.1 through ``gradio_client`` (D4 through Gradio's raw ``/gradio_api/call`` route,
the way a ``data:`` URL reaches it). One app launch is shared by the module.
"""

from __future__ import annotations

import base64
import io
import re
import uuid
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from tests.fake_server import FakeServer

OSV_PHOTO = "546314506564628.jpg"
SETTINGS = ("offline", 8, None, None, "off", "preset default", "", None)  # preset, top-k, eps, min samples, LMM ...
_ABS_PATH = re.compile(r"(?<![\w.:/])/(?:[\w.@+~-]+/)+[\w.@+~-]*")


@pytest.fixture(scope="module")
def client(app_url):
    from gradio_client import Client

    return Client(app_url, verbose=False, download_files=False)


def _photo(shared: Path):
    from gradio_client import handle_file

    return handle_file(str(shared / "data" / "osv5m-sample" / "images" / OSV_PHOTO))


def _strings(value: Any):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield str(k)
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


# ------------------------------------------------------------------------------------ D3
@pytest.mark.parametrize("backend, model", [("preset default", "/etc/passwd"), ("gguf", "/etc/shadow"),
                                            ("transformers", "/root"), ("ollama", "../../etc/passwd")])
def test_d3_the_page_cannot_make_the_server_open_a_file(client, shared, backend, model):
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError) as info:
        client.predict(_photo(shared), "offline", None, None, None, "on", backend, model, None, api_name="/locate")
    message = str(info.value)
    assert "may not choose this LMM model" in message and "/etc" not in message and "/root" not in message


def test_d3_presets_and_numbers_come_from_the_server_lists(client, shared):
    from gradio_client.exceptions import AppError

    for preset in ("/etc/passwd", "../../geodemo/pipeline/presets/offline.json"):
        with pytest.raises(AppError):
            client.predict(_photo(shared), preset, None, None, None, "off", "preset default", "", None,
                           api_name="/locate")
    with pytest.raises(AppError, match="200"):  # Gradio's bound or ours, whichever answers first
        client.predict(_photo(shared), "offline", 100000, None, None, "off", "preset default", "", None,
                       api_name="/locate")


# ------------------------------------------------------------------------------------ OPENAI_API_KEY
def _openai_server() -> FakeServer:
    """A local OpenAI-compatible ``/v1/chat/completions`` answering "39.2, 9.1" to every sample."""
    server = FakeServer()
    server.routes[("POST", "/v1/chat/completions")] = lambda request: (200, {
        "id": "x", "object": "chat.completion", "created": 0, "model": request["body"].get("model"),
        "choices": [{"index": i, "message": {"role": "assistant", "content": "39.2, 9.1"}, "finish_reason": "stop"}
                    for i in range(int(request["body"].get("n", 1)))],
    }, {})
    return server


def _models_asked(server: FakeServer) -> list[str]:
    return [r["body"].get("model") for r in server.posts("/v1/chat/completions")]


def test_openai_key_on_the_server_is_spent_only_on_the_servers_model(client, shared, monkeypatch):
    from gradio_client.exceptions import AppError

    server = _openai_server()
    monkeypatch.setenv("OPENAI_API_KEY", "sk-server-side")
    monkeypatch.setenv("OPENAI_BASE_URL", server.url + "/v1")
    server_model = f"server-model-{uuid.uuid4().hex[:8]}"  # a new name: no answer of it is in the LMM cache
    monkeypatch.setenv("OPENAI_MODEL", server_model)
    try:
        with pytest.raises(AppError, match="model is set on the server"):
            client.predict(_photo(shared), "offline", 5, None, None, "on", "openai", "gpt-4-32k", 1,
                           api_name="/locate")
        assert "gpt-4-32k" not in _models_asked(server)
        result = client.predict(_photo(shared), "offline", 5, None, None, "on", "openai", "", 1, api_name="/locate")
        assert _models_asked(server) and set(_models_asked(server)) == {server_model}
        assert {r["model"] for r in result["lmm_records"]} == {server_model}
    finally:
        server.close()


# ------------------------------------------------------------------------------------ D4
def test_d4_a_data_url_has_the_same_size_budget_as_an_upload(app_url, shared):
    import httpx

    buf = io.BytesIO()
    with Image.open(shared / "data" / "osv5m-sample" / "images" / OSV_PHOTO) as im:
        im.save(buf, format="PNG")
    big = buf.getvalue() + b"\0" * (int(40.5 * 2**20) - len(buf.getvalue()))  # 40.5 MB (decoders ignore what follows IEND)
    base = app_url.rstrip("/")
    upload = httpx.post(f"{base}/gradio_api/upload", files={"files": ("big.png", big, "image/png")}, timeout=120)
    assert upload.status_code == 413  # Gradio's own upload route refuses it ...
    # (a data URL whose request body is over the body limit never gets this far: issue 27's N6 test)
    url = "data:image/png;base64," + base64.b64encode(big).decode()
    call = httpx.post(f"{base}/gradio_api/call/locate", timeout=120, json={"data": [
        {"url": url, "meta": {"_type": "gradio.FileData"}, "orig_name": "big.png"}, *SETTINGS]})
    assert call.status_code == 200, call.text[:300]
    events = httpx.get(f"{base}/gradio_api/call/locate/{call.json()['event_id']}", timeout=600).text
    assert "event: error" in events and "over the 40 MB limit" in events, events[:500]  # ... and so does the API


# ------------------------------------------------------------------------------------ D5
def test_d5_answers_carry_no_server_paths_and_thumbnails_are_served_by_id(client, app_url, shared, tmp_path):
    from gradio_client import Client
    from gradio_client.exceptions import AppError

    result = client.predict(_photo(shared), *SETTINGS, api_name="/locate")
    assert result["neighbours"] and all("image_path" not in n for n in result["neighbours"])
    leaks = [s for s in _strings(result) if _ABS_PATH.search(s) or str(shared) in s or "/tmp/gradio" in s]
    assert leaks == []
    fetcher = Client(app_url, verbose=False, download_files=str(tmp_path))
    thumb = fetcher.predict(result["neighbours"][0]["id"], "offline", api_name="/thumbnail")
    with Image.open(thumb) as im:
        assert max(im.size) <= 256 and im.size[0] > 8
    for bad in ("no-such-photo", "../../../etc/passwd", str(shared / "data" / "osv5m-sample" / "images" / OSV_PHOTO)):
        with pytest.raises(AppError, match="no gallery photo with id"):
            client.predict(bad, "offline", api_name="/thumbnail")


def test_d5_messages_name_resources_not_paths():
    from geodemo.redact import public_dict, redact_paths
    from geodemo.result import LocationResult, Neighbour

    r = LocationResult(lat=1.0, lon=2.0, place=None, confidence=0.5, uncertainty_km=10.0, verifier="support",
                       preset="offline", neighbours=[Neighbour(0, "123", 1.0, 2.0, 0.9, image_path="/srv/x/123.jpg")],
                       errors={"verification": "checkpoint folder /srv/app/checkpoints/offline-verifier lacks config.json",
                               "lmm": "cannot open /tmp/gradio/0a1b2c/photo.jpg (see http://127.0.0.1:11434/api/chat)"})
    out = public_dict(r)
    assert out["neighbours"][0] == {k: v for k, v in r.neighbours[0].to_dict().items() if k != "image_path"}
    assert out["errors"] == {"verification": "checkpoint folder offline-verifier lacks config.json",
                             "lmm": "cannot open photo.jpg (see http://127.0.0.1:11434/api/chat)"}
    assert redact_paths("ratio 1/2, ~/x/y.txt, ../shared/data/a.jpg") == "ratio 1/2, y.txt, a.jpg"


# ------------------------------------------------------------------------------------ memory
def test_memory_a_web_photo_over_the_pixel_budget_is_refused_before_decoding(client, tmp_path):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    big = tmp_path / "huge.png"  # 50 MP: under the library's 100 MP, over the web's 40 MP budget
    Image.new("RGB", (7100, 7100), (90, 140, 60)).save(big, compress_level=9)
    assert big.stat().st_size < 2_000_000
    with pytest.raises(AppError, match="over the 40,000,000-pixel limit"):
        client.predict(handle_file(str(big)), *SETTINGS, api_name="/locate")
