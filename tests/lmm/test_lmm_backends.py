"""Protocol tests: our Ollama and OpenAI-compatible backends against local HTTP servers.

Each server runs on 127.0.0.1 (ephemeral port, a thread) and speaks the documented wire format:
Ollama's ``GET /api/tags`` and ``POST /api/chat`` (non-streaming), and OpenAI's
``POST /v1/chat/completions``. The tests check what we send (model, messages, base64 JPEG,
sampling options, seeds, key) and how we treat replies, HTTP errors, missing models and time-outs.
"""

from __future__ import annotations

import base64
import io
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from PIL import Image

from geodemo.lmm import BackendError, LMMConfig, LMMContext, LMMStage, create_backend
from geodemo.lmm.cache import AnswerCache
from geodemo.result import Neighbour
from tests.fake_server import FakeServer, Reply


@pytest.fixture
def server() -> Iterator[FakeServer]:
    s = FakeServer()
    yield s
    s.close()


@pytest.fixture
def photo() -> Image.Image:
    img = Image.new("RGB", (1600, 900), (30, 120, 200))
    for x in range(0, 1600, 100):
        img.paste((240, 200, 40), (x, 400, x + 50, 500))
    return img


@pytest.fixture
def stage_cache(tmp_path) -> AnswerCache:
    return AnswerCache(tmp_path / "answers")


def _decode_jpeg(b64: str) -> Image.Image:
    raw = base64.b64decode(b64, validate=True)
    assert raw[:3] == b"\xff\xd8\xff"  # a JPEG
    img = Image.open(io.BytesIO(raw))
    img.load()
    return img


# ------------------------------------------------------------------------------------------ Ollama
def _tags(*names: str) -> Callable[[dict[str, Any]], Reply]:
    models = [
        {
            "name": n,
            "model": n,
            "modified_at": "2025-01-01T00:00:00Z",
            "size": 4_700_000_000,
            "digest": "sha256:" + "0" * 64,
            "details": {"format": "gguf", "family": "llama", "families": ["llama", "clip"],
                        "parameter_size": "7B", "quantization_level": "Q4_0"},
        }
        for n in names
    ]
    return lambda req: (200, {"models": models}, {})


def _chat_reply(content: str, model: str = "llava:7b") -> dict[str, Any]:
    return {
        "model": model,
        "created_at": "2025-01-01T00:00:00Z",
        "message": {"role": "assistant", "content": content},
        "done": True,
        "done_reason": "stop",
        "total_duration": 1_000_000,
        "eval_count": 12,
    }


def test_ollama_request_and_reply(server, photo):
    server.routes[("GET", "/api/tags")] = _tags("llava:7b", "llama3:8b")
    answers = iter(['{"latitude": 48.8566, "longitude": 2.3522}', "Probably Tokyo: 35.68, 139.69"])
    server.routes[("POST", "/api/chat")] = lambda req: (200, _chat_reply(next(answers)), {})
    backend = create_backend("ollama", model="llava:7b", host=server.url, max_tokens=64, image_max_side=512)
    out = backend.generate(photo, "Where was this taken?", n=2, temperature=0.7, seed=11)
    assert out == ['{"latitude": 48.8566, "longitude": 2.3522}', "Probably Tokyo: 35.68, 139.69"]
    chats = server.posts("/api/chat")
    assert len(chats) == 2
    for i, req in enumerate(chats):
        body = req["body"]
        assert body["model"] == "llava:7b" and body["stream"] is False and body["format"] == "json"
        (msg,) = body["messages"]
        assert msg["role"] == "user" and msg["content"] == "Where was this taken?"
        img = _decode_jpeg(msg["images"][0])
        assert max(img.size) == 512 and img.size[0] / img.size[1] == pytest.approx(1600 / 900, rel=0.01)
        assert body["options"]["temperature"] == 0.7
        assert body["options"]["seed"] == 11 + i  # one request per sample, seed + sample index
        assert body["options"]["num_predict"] == 64
    # /api/tags is asked once per backend, not per call
    server.routes[("POST", "/api/chat")] = lambda req: (200, _chat_reply("again"), {})
    assert backend.generate(photo, "again", n=1, seed=0) == ["again"]
    assert [r["path"] for r in server.requests].count("/api/tags") == 1


def test_ollama_model_not_pulled_is_reported_before_chatting(server, photo):
    server.routes[("GET", "/api/tags")] = _tags("llama3:8b", "moondream:latest")
    server.routes[("POST", "/api/chat")] = lambda req: (200, _chat_reply("0, 0"), {})
    backend = create_backend("ollama", model="llava:7b", host=server.url)
    with pytest.raises(BackendError, match=r"not pulled.*ollama pull llava:7b") as err:
        backend.generate(photo, "p", n=1)
    assert "llama3:8b" in str(err.value)  # says what the server has
    assert not server.posts("/api/chat")
    # an untagged name means :latest
    assert create_backend("ollama", model="moondream", host=server.url).generate(photo, "p") == ["0, 0"]


def test_ollama_404_on_chat_names_the_pull(server, photo):
    server.routes[("POST", "/api/chat")] = lambda req: (
        404, {"error": f"model \"{req['body']['model']}\" not found, try pulling it first"}, {})
    backend = create_backend("ollama", model="llava:13b", host=server.url, check_model=False, retries=3)
    with pytest.raises(BackendError, match=r"ollama pull llava:13b"):
        backend.generate(photo, "p")
    assert len(server.posts("/api/chat")) == 1  # a missing model is not retried


def test_ollama_server_errors_are_retried_a_bounded_number_of_times(server, photo):
    calls = {"n": 0}

    def flaky(req):
        calls["n"] += 1
        if calls["n"] <= 2:
            return 500, {"error": "llama runner process has terminated"}, {}
        return 200, _chat_reply("N 40.7, W 74.0"), {}

    server.routes[("POST", "/api/chat")] = flaky
    ok = create_backend("ollama", model="llava:7b", host=server.url, check_model=False, retries=2, backoff_s=0.01)
    assert ok.generate(photo, "p") == ["N 40.7, W 74.0"] and calls["n"] == 3
    calls["n"] = -10  # always failing from here on
    server.routes[("POST", "/api/chat")] = lambda req: (500, {"error": "out of memory"}, {})
    bad = create_backend("ollama", model="llava:7b", host=server.url, check_model=False, retries=1, backoff_s=0.01)
    before = len(server.posts("/api/chat"))
    with pytest.raises(BackendError, match=r"HTTP 500: out of memory.*after 2 attempts"):
        bad.generate(photo, "p")
    assert len(server.posts("/api/chat")) - before == 2


def test_ollama_time_out_and_no_server(server, photo):
    def slow(req):
        time.sleep(1.5)
        return 200, _chat_reply("1, 1"), {}

    server.routes[("POST", "/api/chat")] = slow
    backend = create_backend("ollama", model="llava:7b", host=server.url, check_model=False,
                             timeout_s=0.3, retries=0)
    t0 = time.perf_counter()
    with pytest.raises(BackendError, match=r"did not answer within 0.3 s"):
        backend.generate(photo, "p")
    assert time.perf_counter() - t0 < 1.4
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dead = create_backend("ollama", model="llava:7b", host=f"http://127.0.0.1:{port}", retries=0)
    with pytest.raises(BackendError, match=r"no Ollama server answers at http://127.0.0.1:\d+.*ollama serve"):
        dead.generate(photo, "p")


def test_ollama_host_from_environment(server, photo, monkeypatch):
    monkeypatch.setenv("OLLAMA_HOST", server.url)
    server.routes[("GET", "/api/tags")] = _tags("llava:7b")
    server.routes[("POST", "/api/chat")] = lambda req: (200, _chat_reply('{"latitude": -33.9, "longitude": 151.2}'), {})
    backend = create_backend("ollama")  # default model llava:7b, host from $OLLAMA_HOST
    assert backend.host == server.url and backend.model == "llava:7b"
    assert backend.generate(photo, "p") == ['{"latitude": -33.9, "longitude": 151.2}']


# ------------------------------------------------------------------------------------------ stage
def _neighbours(n: int, lat0: float = 45.0, lon0: float = 7.0) -> list[Neighbour]:
    return [Neighbour(rank=i, id=f"g{i}", lat=lat0 + 0.1 * i, lon=lon0 - 0.1 * i, similarity=0.9 - 0.01 * i,
                      place=f"Town {i}, Country") for i in range(n)]


def test_stage_records_cache_and_degradation(server, photo, stage_cache):
    """K prompts x N samples over Ollama: parsed and rejected records, then cache hits, then a failure."""
    server.routes[("GET", "/api/tags")] = _tags("llava:7b")

    def answer(req):
        prompt = req["body"]["messages"][0]["content"]
        seed = req["body"]["options"]["seed"]
        if "most similar photos" in prompt:
            return 200, _chat_reply(f'{{"latitude": 45.{seed}, "longitude": 7.{seed}}}'), {}
        return 200, _chat_reply("I am not sure, somewhere in Europe."), {}

    server.routes[("POST", "/api/chat")] = answer
    cfg = LMMConfig.from_dict({"backend": "ollama", "model": "llava:7b", "host": server.url,
                               "prompts": ["zero-shot", "rag-5", "rag-10"], "samples": 2, "seed": 3,
                               "temperature": 0.7, "concurrency": 2, "timeout_s": 10})
    stage = LMMStage(cfg, cache=stage_cache)
    ctx = LMMContext(neighbours=_neighbours(12), dissimilar=_neighbours(12, -30.0, 140.0))
    records = stage.run(photo, ctx)
    assert [(r.prompt_kind, r.sample) for r in records] == [
        ("zero-shot", 0), ("zero-shot", 1), ("rag-5", 0), ("rag-5", 1), ("rag-10", 0), ("rag-10", 1)]
    zs = records[:2]
    assert all(not r.accepted and r.rejection == "no coordinate found in the answer" for r in zs)
    assert all(r.raw_answer == "I am not sure, somewhere in Europe." and r.error is None for r in zs)
    rag = records[2:]
    assert [(r.lat, r.lon) for r in rag] == [(45.3, 7.3), (45.4, 7.4)] * 2  # seeds 3 and 4
    assert all(r.backend == "ollama" and r.model == "llava:7b" and not r.cached and r.latency_s >= 0 for r in rag)
    assert "(45.0000, 7.0000) Town 0, Country" in rag[0].prompt and "(45.4000" in rag[0].prompt
    assert "(45.5000" not in rag[0].prompt and "(45.5000" in records[4].prompt  # k = 5 vs k = 10
    assert "least similar" in rag[0].prompt and "(-30.0000, 140.0000)" in rag[0].prompt
    sent = len(server.posts("/api/chat"))
    assert sent == 6

    again = stage.run(photo, ctx)  # every answer now comes from the disk cache
    assert len(server.posts("/api/chat")) == sent
    assert all(r.cached for r in again)
    assert [(r.lat, r.lon, r.rejection) for r in again] == [(r.lat, r.lon, r.rejection) for r in records]

    other = photo.copy()
    other.putpixel((0, 0), (0, 0, 0))  # another photo: another key
    server.routes[("POST", "/api/chat")] = lambda req: (500, {"error": "GPU lost"}, {})
    failing = LMMStage(LMMConfig.from_dict({**cfg.backend_options, "backend": "ollama", "model": "llava:7b",
                                            "prompts": ["zero-shot"], "samples": 2, "retries": 0}),
                       cache=stage_cache)
    recs = failing.run(other, ctx)  # never raises
    assert len(recs) == 2 and all(r.error and "HTTP 500: GPU lost" in r.error and not r.accepted for r in recs)
    assert failing.run(other, ctx)[0].cached is False  # failures are not cached


def test_stage_slow_call_becomes_an_error_record(server, photo, stage_cache):
    server.routes[("GET", "/api/tags")] = _tags("llava:7b")

    def maybe_slow(req):
        if "most similar" in req["body"]["messages"][0]["content"]:
            time.sleep(2.0)
        return 200, _chat_reply("35.68, 139.69"), {}

    server.routes[("POST", "/api/chat")] = maybe_slow
    stage = LMMStage(LMMConfig.from_dict({"backend": "ollama", "host": server.url, "prompts": ["zero-shot", "rag-5"],
                                          "samples": 1, "timeout_s": 0.6, "retries": 0, "concurrency": 2}),
                     cache=stage_cache)
    t0 = time.perf_counter()
    records = stage.run(photo, LMMContext(neighbours=_neighbours(5)))
    assert time.perf_counter() - t0 < 1.9
    assert records[0].accepted and (records[0].lat, records[0].lon) == (35.68, 139.69)
    assert not records[1].accepted and "within 0.6 s" in records[1].error


# ------------------------------------------------------------------------------------------ OpenAI
def _completion(contents: list[str], model: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": model,
        "choices": [{"index": i, "message": {"role": "assistant", "content": c}, "finish_reason": "stop"}
                    for i, c in enumerate(contents)],
        "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
    }


def test_openai_request_and_reply(server, photo, monkeypatch):
    monkeypatch.setenv("GEODEMO_TEST_KEY", "sk-test-123")
    server.routes[("POST", "/v1/chat/completions")] = lambda req: (
        200, _completion([f"answer {i}" for i in range(req["body"].get("n", 1))], req["body"]["model"]), {})
    backend = create_backend("openai", model="my-vlm", base_url=server.url + "/v1", api_key_env="GEODEMO_TEST_KEY",
                             max_tokens=50, retries=0)
    assert backend.generate(photo, "Where?", n=3, temperature=1.2, seed=5) == ["answer 0", "answer 1", "answer 2"]
    (req,) = server.posts("/v1/chat/completions")
    assert req["headers"]["authorization"] == "Bearer sk-test-123"
    body = req["body"]
    assert body["model"] == "my-vlm" and body["n"] == 3 and body["temperature"] == 1.2
    assert body["seed"] == 5 and body["max_tokens"] == 50
    (msg,) = body["messages"]
    text, image = msg["content"]
    assert text == {"type": "text", "text": "Where?"}
    assert image["type"] == "image_url" and image["image_url"]["url"].startswith("data:image/jpeg;base64,")
    assert _decode_jpeg(image["image_url"]["url"].split(",", 1)[1]).size == (1024, 576)


def test_openai_server_ignoring_n_is_asked_again(server, photo):
    server.routes[("POST", "/v1/chat/completions")] = lambda req: (
        200, _completion([f"seed {req['body'].get('seed')}"], "m"), {})
    backend = create_backend("openai-compatible", model="m", base_url=server.url + "/v1", retries=0)
    assert backend.generate(photo, "p", n=3, seed=10) == ["seed 10", "seed 11", "seed 12"]
    assert [r["body"].get("n", 1) for r in server.posts("/v1/chat/completions")] == [3, 2, 1]


def test_openai_errors(server, photo):
    url = server.url + "/v1"
    server.routes[("POST", "/v1/chat/completions")] = lambda req: (
        404, {"error": {"message": "The model `nope` does not exist", "type": "invalid_request_error"}}, {})
    with pytest.raises(BackendError, match=r"model 'nope' not found at .*set lmm.model"):
        create_backend("openai", model="nope", base_url=url, retries=0).generate(photo, "p")
    server.routes[("POST", "/v1/chat/completions")] = lambda req: (
        401, {"error": {"message": "Incorrect API key provided"}}, {})
    with pytest.raises(BackendError, match=r"refused the API key from \$OPENAI_API_KEY"):
        create_backend("openai", model="m", base_url=url, retries=0).generate(photo, "p")

    calls = {"n": 0}

    def flaky(req):
        calls["n"] += 1
        if calls["n"] == 1:
            return 503, {"error": {"message": "overloaded"}}, {"retry-after-ms": "10"}
        return 200, _completion(["48.85, 2.35"], "m"), {}

    server.routes[("POST", "/v1/chat/completions")] = flaky
    assert create_backend("openai", model="m", base_url=url, retries=1).generate(photo, "p") == ["48.85, 2.35"]
    assert calls["n"] == 2

    def slow(req):
        time.sleep(1.5)
        return 200, _completion(["1, 1"], "m"), {}

    server.routes[("POST", "/v1/chat/completions")] = slow
    with pytest.raises(BackendError, match=r"did not answer within 0.3 s"):
        create_backend("openai", model="m", base_url=url, retries=0, timeout_s=0.3).generate(photo, "p")


def test_openai_needs_a_key_for_the_hosted_api(monkeypatch, photo):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with pytest.raises(BackendError, match=r"set the environment variable OPENAI_API_KEY"):
        create_backend("openai", model="gpt-4o-mini").generate(photo, "p")


def test_unknown_backend_and_prompt_kind_are_named():
    with pytest.raises(ValueError, match=r"unknown LMM backend 'llava'.*ollama"):
        create_backend("llava")
    with pytest.raises(ValueError, match=r"unknown LMM prompt kind 'rag'"):
        LMMConfig.from_dict({"backend": "ollama", "prompts": ["rag"]})


# ------------------------------------------------------------------------------------------ prompts
def test_prompts_follow_what_the_backend_can_see():
    from geodemo.lmm import build_prompts
    from geodemo.result import ClueReport

    nb, far, cluster = _neighbours(15), _neighbours(15, -30.0, 140.0), _neighbours(3, 10.0, 10.0)
    kinds = ["zero-shot", "rag-5", "rag-15", "dualgeo-cluster"]
    vision = build_prompts(kinds, neighbours=nb, dissimilar=far, main_cluster=cluster, description="sky 40%")
    assert [p.kind for p in vision] == kinds and all(p.answer_prefix == "" for p in vision)
    assert all("attached photo" in p.text and "sky 40%" not in p.text for p in vision)
    assert all('{"latitude": <float>, "longitude": <float>}' in p.text for p in vision)
    assert vision[2].text.count("\n- (") == 30  # 15 similar + 15 dissimilar
    assert "(10.2000, 9.8000) Town 2, Country" in vision[3].text and "(45.0000" not in vision[3].text

    text_only = build_prompts(kinds, neighbours=nb, dissimilar=far, main_cluster=cluster,
                              description="sky 40%, road 20%", sees_image=False)
    assert all("cannot see the photo" in p.text and "sky 40%, road 20%" in p.text for p in text_only)
    assert all("attached" not in p.text for p in text_only)

    completion = build_prompts(["zero-shot", "rag-5"], neighbours=nb, description="sea 50%", sees_image=False,
                               completion=True)
    assert all(p.text.endswith('{"latitude":') and p.answer_prefix == '{"latitude":' for p in completion)
    assert "sea 50%" in completion[0].text and "(the photo itself is not shown)" in completion[0].text

    # no neighbours: the RAG and cluster prompts are left out, never sent with an empty list
    assert [p.kind for p in build_prompts(kinds)] == ["zero-shot"]

    stage = LMMStage(LMMConfig.from_dict({"backend": "gguf", "prompts": ["zero-shot"], "samples": 1}))
    ctx = LMMContext(description="Scene: sky 40%", clues=ClueReport(text="Ulica", summary="reads Cyrillic text"))
    (p,) = stage.prompts_for(ctx)
    assert "Scene: sky 40%. Text clues: reads Cyrillic text" in p.text and p.text.endswith('{"latitude":')


@pytest.mark.parametrize("backend", ["openai", "ollama"])
def test_two_servers_with_one_model_name_do_not_share_cached_answers(photo, stage_cache, monkeypatch, backend):
    """The answer cache keys on the server: a second server serving its own "same-vlm" is asked, not
    answered from the first server's entries, and no cache file holds the API key."""
    monkeypatch.setenv("GEODEMO_TEST_KEY", "sk-secret-456")
    servers = [FakeServer(), FakeServer()]
    try:
        for lat, s in zip((10, 20), servers, strict=True):
            reply = f'{{"latitude": {lat}.5, "longitude": 5.5}}'
            s.routes[("GET", "/api/tags")] = _tags("same-vlm")
            s.routes[("POST", "/api/chat")] = lambda req, reply=reply: (200, _chat_reply(reply, "same-vlm"), {})
            s.routes[("POST", "/v1/chat/completions")] = lambda req, reply=reply: (
                200, _completion([reply] * req["body"].get("n", 1), "same-vlm"), {})

        def ask(s: FakeServer) -> list:
            where = {"base_url": s.url + "/v1", "api_key_env": "GEODEMO_TEST_KEY"} if backend == "openai" else {
                "host": s.url}
            cfg = LMMConfig.from_dict({"backend": backend, "model": "same-vlm", **where, "prompts": ["zero-shot"],
                                       "samples": 1, "seed": 1, "retries": 0, "timeout_s": 10})
            return LMMStage(cfg, cache=stage_cache).run(photo, LMMContext())

        first, second = ask(servers[0]), ask(servers[1])
        assert [(r.lat, r.cached) for r in first] == [(10.5, False)]
        assert [(r.lat, r.cached) for r in second] == [(20.5, False)]  # its own server's answer, asked
        assert [(r.lat, r.cached) for r in ask(servers[0])] == [(10.5, True)]  # each server keeps its entries
        assert [(r.lat, r.cached) for r in ask(servers[1])] == [(20.5, True)]
        chat = "/v1/chat/completions" if backend == "openai" else "/api/chat"
        assert [len(s.posts(chat)) for s in servers] == [1, 1]
        entries = list(stage_cache.root.rglob("*.json"))
        assert len(entries) == 2 and not any("sk-secret-456" in p.read_text() for p in entries)
    finally:
        for s in servers:
            s.close()


def test_endpoint_identity_keeps_the_server_and_drops_credentials():
    from geodemo.lmm.backends.base import endpoint_identity

    assert endpoint_identity("http://User:pw@GPU-Box:8000/v1/?token=x#f") == "http://gpu-box:8000/v1"
    assert endpoint_identity("gpu-box:11434") == endpoint_identity("http://gpu-box:11434/")
    assert endpoint_identity("http://a:8000/v1") != endpoint_identity("http://b:8000/v1")
