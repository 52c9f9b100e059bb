"""geodemo.errors: one hierarchy, and plain words without class names, paths or tracebacks."""

from __future__ import annotations

import re
import socket
import traceback

import pytest

from geodemo.errors import (
    BackendUnavailableError,
    GeodemoError,
    ModelUnavailableError,
    describe,
    is_not_installed,
    plain_text,
)

CLASS_NAME = re.compile(r"\b[A-Z]\w*(Error|Exception)\b")


def _assert_plain(text: str, *forbidden: str) -> None:
    assert text and "Traceback" not in text
    assert not CLASS_NAME.search(text), text
    for f in forbidden:
        assert f not in text, (f, text)


def test_historical_import_places_are_the_one_hierarchy():
    from geodemo.clues.gate import GateUnavailable
    from geodemo.clues.ocr import TesseractUnavailable
    from geodemo.geo import InvalidCoordinateError
    from geodemo.imageio import ImageError, MissingImageError
    from geodemo.lmm.backends import BackendError
    from geodemo.models.base import ModelUnavailableError as M2
    from geodemo.paths import MissingResourceError
    from geodemo.pipeline.locator import InvalidOptionError
    from geodemo.retrieval.builder import BuildMismatchError
    from geodemo.retrieval.database import EncoderMismatchError

    for cls in (InvalidCoordinateError, ImageError, MissingImageError, BackendError, M2, MissingResourceError,
                EncoderMismatchError, InvalidOptionError, BuildMismatchError, GateUnavailable, TesseractUnavailable):
        assert issubclass(cls, GeodemoError), cls
    assert M2 is ModelUnavailableError
    assert issubclass(MissingResourceError, FileNotFoundError) and issubclass(EncoderMismatchError, ValueError)


def test_missing_weights_in_plain_words(tmp_path):
    from geodemo.models.tflite import find_weights

    with pytest.raises(ModelUnavailableError) as info:
        find_weights("mobilenet-v1-imagenet", "model.tflite", tmp_path / "nowhere", "mobilenet-imagenet")
    plain, detail = describe(info.value)
    _assert_plain(plain, str(tmp_path))
    assert "mobilenet-v1-imagenet" in plain and "model.tflite" in plain
    assert str(tmp_path) in detail and "ModelUnavailableError" in detail  # the detail keeps what was hidden
    assert is_not_installed(info.value)


def test_unreadable_photo_in_plain_words(tmp_path):
    from geodemo.imageio import load_image

    bad = tmp_path / "deep" / "folder" / "not-a-photo.jpg"
    bad.parent.mkdir(parents=True)
    bad.write_text("hello")
    with pytest.raises(GeodemoError) as info:
        load_image(bad)
    plain, _ = describe(info.value)
    _assert_plain(plain, str(bad.parent))
    assert not is_not_installed(info.value)


def test_builtin_exceptions_and_tracebacks():
    try:
        {}["gallery"]
    except KeyError as exc:
        plain, detail = describe(exc)
    _assert_plain(plain)
    assert "gallery" in plain and detail.startswith("KeyError")
    try:
        raise ValueError("crop must be in (0, 1], got 2")
    except ValueError as exc:
        text = "".join(traceback.format_exception(exc))
    cleaned = plain_text(text)
    _assert_plain(cleaned)
    assert describe(MemoryError())[0] == "ran out of memory"
    assert describe(RuntimeError("/srv/app/x/y failed"))[0] == "a server folder failed"


def test_unreachable_ollama_is_not_installed():
    from geodemo.lmm.backends import create_backend

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    backend = create_backend("ollama", model="llava:7b", host=f"http://127.0.0.1:{port}", retries=0)
    with pytest.raises(BackendUnavailableError) as info:
        backend.available_models()
    assert is_not_installed(info.value)
    _assert_plain(describe(info.value)[0])


def test_record_failure_separates_not_installed_from_failed():
    import math

    from geodemo.errors import MissingResourceError
    from geodemo.pipeline.failures import record_failure
    from geodemo.result import LocationResult

    r = LocationResult(math.nan, math.nan, None, 0.0, math.nan, "none", "offline")
    record_failure(r, "verification", MissingResourceError("no checkpoint in /srv/x/ckpt", hint="train it"))
    record_failure(r, "clues", ValueError("bad crop 2.0"))
    assert set(r.unavailable) == {"verification"} and "train it" in r.unavailable["verification"]
    assert r.errors == {"clues": "bad crop 2.0"}
    assert "MissingResourceError" in r.error_details["verification"] and "/srv/x/ckpt" in r.error_details["verification"]
    assert "/srv/x" not in r.unavailable["verification"]
    assert r.to_dict()["error_details"]["clues"].startswith("ValueError")


def test_a_missing_verifier_is_not_installed_not_a_failure(monkeypatch, tmp_path):
    """The offline preset on the embedded default, asked for a checkpoint nobody trained."""
    from geodemo.data import load_examples
    from geodemo.pipeline import GeoLocator
    from geodemo.viz.page import errors_markdown

    monkeypatch.setenv("GEODEMO_CHECKPOINTS", str(tmp_path))
    locator = GeoLocator.from_preset("offline", segmenter=None, clues={"enabled": False},
                                     verifier={"aligner": "no-such-verifier"}, gallery={"progress": False})
    result = locator.locate(load_examples().samples[0].image_path)
    assert result.errors == {} and "aligner" not in result.verifier  # verified without the missing checkpoint
    assert "no-such-verifier" in result.unavailable["verify"]
    assert "MissingResourceError" in result.error_details["verify"]
    page = errors_markdown(result)
    assert "not installed" in page and "failed" not in page and str(tmp_path) not in page
    _assert_plain(page)
