"""Published weights fetched on demand (:mod:`geodemo.hub`) from a local server that answers as the hub does.

The server (127.0.0.1, an ephemeral port, ``HF_ENDPOINT``) serves ``/<repo>/resolve/<revision>/<file>``
with the hub's headers (``X-Repo-Commit``, ``ETag``, ``Content-Length``); ``huggingface_hub`` itself
downloads from it. ``HF_HUB_OFFLINE`` is unset only inside these tests; nothing leaves the machine.
The file is a G3 state dict laid out as G3's training script saves it: G3's heads and location
encoder at their real shapes (random weights), CLIP towers of the real architecture made tiny.
"""

from __future__ import annotations

import hashlib
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch

import geodemo  # noqa: F401  (torchvision guard before transformers)
from geodemo.errors import MissingResourceError, ModelUnavailableError, describe
from geodemo.hub import PublishedFile, availability, fetch
from geodemo.models import loading
from geodemo.models.g3 import G3Model, load_g3_checkpoint

REPO, FILENAME, COMMIT = "Jia-py/G3-checkpoint", "g3.pth", "a" * 40


class FakeHub:
    """A hub answering HEAD and GET for the files it holds; ``requests`` records every path asked."""

    def __init__(self, files: dict[str, bytes]):
        self.files, self.requests = files, []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def _answer(self, body: bool) -> None:
                hub.requests.append((self.command, self.path))
                data = hub.files.get(self.path.split("?")[0])
                if data is None:
                    self.send_response(404)
                    self.send_header("X-Error-Code", "EntryNotFound")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("X-Repo-Commit", COMMIT)
                self.send_header("ETag", f'"{hashlib.sha256(data).hexdigest()}"')
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Content-Type", "application/octet-stream")
                self.end_headers()
                if body:
                    self.wfile.write(data)

            def do_HEAD(self):  # noqa: N802
                self._answer(False)

            def do_GET(self):  # noqa: N802
                self._answer(True)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _g3_bytes(tmp: Path) -> tuple[bytes, dict[str, torch.Tensor]]:
    from transformers import CLIPConfig

    cfg = CLIPConfig(
        vision_config=dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=1,
                           patch_size=14, image_size=28),
        text_config=dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=1,
                         vocab_size=100, max_position_embeddings=16, bos_token_id=0, eos_token_id=1, pad_token_id=1),
        projection_dim=768,
    )
    torch.manual_seed(3)
    state = G3Model(cfg).state_dict()
    path = tmp / "g3.pth"
    torch.save(state, path)  # as G3's training script saves it
    return path.read_bytes(), state


@pytest.fixture(scope="module")
def g3_file(tmp_path_factory):
    return _g3_bytes(tmp_path_factory.mktemp("published"))


@pytest.fixture
def online_hub(g3_file, tmp_path, monkeypatch):
    """The fake hub at HF_ENDPOINT, HF_HUB_OFFLINE unset (inside this test only), an empty cache."""
    import huggingface_hub.constants as hf_constants

    data, _ = g3_file
    hub = FakeHub({f"/{REPO}/resolve/{COMMIT}/{FILENAME}": data, f"/{REPO}/resolve/main/{FILENAME}": data})
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("GEODEMO_CACHE", str(tmp_path / "cache"))
    loading._probe.cache_clear()
    yield hub
    hub.close()
    loading._probe.cache_clear()


def _spec(data: bytes, **kw) -> dict:
    return {"repo": REPO, "filename": FILENAME, "revision": "main", "sha256": hashlib.sha256(data).hexdigest(), **kw}


def test_downloads_checks_and_loads_the_published_checkpoint(online_hub, g3_file, tmp_path, monkeypatch):
    data, state = g3_file
    spec = _spec(data)
    assert availability(spec) == "downloadable"
    path = fetch(spec, "G3's published weights", how="put g3.pth in checkpoints/")
    assert path.read_bytes() == data
    assert (tmp_path / "cache" / "hub") in path.parents  # geodemo's cache, not the user's HF cache
    assert any(method == "GET" for method, _ in online_hub.requests)
    model = load_g3_checkpoint(path)
    own = model.state_dict()
    assert all(torch.equal(own[k], v) for k, v in state.items())
    assert own["location_encoder.LocEnc0.capsule.1.weight"].shape == (1024, 512)  # G3's real head shapes

    # the server gone and offline again: the cached copy answers, checked, without a request
    online_hub.close()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    loading._probe.cache_clear()
    asked = len(online_hub.requests)
    assert availability(spec) == "cached"
    assert fetch(spec, "G3's published weights", how="-").read_bytes() == data
    assert len(online_hub.requests) == asked


def test_a_wrong_sha256_is_refused_and_the_file_removed(online_hub, g3_file):
    data, _ = g3_file
    spec = _spec(data, sha256="0" * 64)
    with pytest.raises(ModelUnavailableError, match="sha256") as err:
        fetch(spec, "G3's published weights", how="-")
    assert "not the 0000" in str(err.value)
    assert not list((Path(loading.os.environ["GEODEMO_CACHE"]) / "hub").rglob(FILENAME))


def test_unreachable_hub_says_not_installed_and_how(g3_file, tmp_path, monkeypatch):
    data, _ = g3_file
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setenv("GEODEMO_CACHE", str(tmp_path / "cache"))
    loading._probe.cache_clear()
    try:
        assert availability(_spec(data)) is None
        with pytest.raises(MissingResourceError) as err:
            fetch(_spec(data), "G3's published weights", how="put g3.pth in the checkpoints folder")
    finally:
        loading._probe.cache_clear()
    words, _ = describe(err.value)
    assert "not installed" in words and "checkpoints folder" in words and "not reachable" in words


def test_g3_preset_takes_its_checkpoint_from_the_hub(online_hub, g3_file, tmp_path, monkeypatch):
    """With no local checkpoints/g3, the g3 preset's descriptor checkpoint is the published file."""
    from geodemo.pipeline import load_preset
    from geodemo.pipeline.components import Components

    data, _ = g3_file
    monkeypatch.setenv("GEODEMO_CHECKPOINTS", str(tmp_path / "no-checkpoints"))
    config = load_preset("g3", hub=_spec(data))
    assert PublishedFile.from_dict(load_preset("g3")["hub"]).repo == REPO
    spec = Components(config)._published_checkpoint(dict(config["descriptor"]))
    assert Path(spec["checkpoint"]).read_bytes() == data
    # a local checkpoint wins, and random weights read none: no download either way
    (tmp_path / "no-checkpoints" / "g3").mkdir(parents=True)
    asked = len(online_hub.requests)
    assert Components(config)._published_checkpoint(dict(config["descriptor"]))["checkpoint"] == "g3"
    assert Components(config)._published_checkpoint({**config["descriptor"], "weights": "random"})["checkpoint"] == "g3"
    assert len(online_hub.requests) == asked


def test_with_no_recorded_sha256_the_hubs_own_is_checked(online_hub, g3_file):
    """A preset that pins no sha256 still gets a checked file: the hub's ETag of a large file is its SHA-256,
    and a cached copy that no longer matches it is refused and removed, not loaded."""
    from geodemo.hub import hub_sha256

    data, _ = g3_file
    spec = {**_spec(data), "sha256": None}
    path = fetch(spec, "G3's published weights", how="-")
    assert hub_sha256(path) == hashlib.sha256(data).hexdigest()
    blob = path.resolve()
    blob.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))  # the cached copy damaged on disk
    with pytest.raises(ModelUnavailableError, match="the hub gave"):
        fetch(spec, "G3's published weights", how="-")
    assert not blob.exists()
