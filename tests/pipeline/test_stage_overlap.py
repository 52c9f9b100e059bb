"""Clue reading (OCR) overlaps segmentation, encoding and retrieval without changing any result.

Real components: MobileNet retrieval over the OSV-5M sample with multi-view re-ranking, DeepLab
segmentation, the text gate and Tesseract, on real dev photos (one with a poster, one without text).
"""

from __future__ import annotations

import shutil
import threading

import pytest

import geodemo.pipeline.components as components
import geodemo.pipeline.stages.clues as clue_stage
from geodemo.pipeline import GeoLocator

pytestmark = [
    pytest.mark.shared,
    pytest.mark.skipif(shutil.which("tesseract") is None, reason="tesseract binary not installed"),
]

PHOTOS = ["1041241079_904c456418_1430_7132415@N03.jpg",  # a poster: the gate lets it through, OCR reads it
          "1021054395_ca7cfe55b3_1061_7132415@N03.jpg"]  # a sea lion on sand: no text


@pytest.fixture(scope="module")
def locator(shared):
    loc = GeoLocator.from_preset("offline", gallery={"datasets": ["osv5m-sample"], "progress": False},
                                 clues={"enabled": True, "cache": False, "timeout_s": 120})  # no time-outs on a busy CPU
    return loc.warmup()


def _comparable(result) -> dict:
    out = result.to_dict()
    out.pop("timings")  # wall times differ from run to run
    return out


def test_results_are_identical_with_and_without_overlap(locator, shared, monkeypatch):
    threads: list[str] = []
    read_clues = clue_stage.read_clues

    def reading(*args, **kwargs):  # the real reader, noting which thread runs it
        threads.append(threading.current_thread().name)
        return read_clues(*args, **kwargs)

    monkeypatch.setattr(clue_stage, "read_clues", reading)
    paths = [shared / "data/im2gps3k-dev/images" / name for name in PHOTOS]

    locator.overlap = True
    overlapped = [locator.locate(p) for p in paths]
    assert len(threads) == 2 and all(t.startswith("geodemo-stage") for t in threads)

    threads.clear()
    locator.overlap = False
    try:
        in_turn = [locator.locate(p) for p in paths]
    finally:
        locator.overlap = True
    assert threads == [threading.main_thread().name] * 2

    assert "TORTURA" in overlapped[0].clues.text and overlapped[1].clues.gated_out
    for a, b in zip(overlapped, in_turn, strict=True):
        assert a.stages == b.stages and list(a.timings) == list(b.timings)
        assert _comparable(a) == _comparable(b)


def test_a_failing_background_stage_is_recorded_where_it_stands(locator, shared, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("OCR exploded")

    monkeypatch.setattr(clue_stage, "read_clues", broken)
    path = shared / "data/im2gps3k-dev/images" / PHOTOS[0]
    results = []
    for overlap in (True, False):
        locator.overlap = overlap
        results.append(locator.locate(path))
    locator.overlap = True
    assert all("clues" in r.errors and r.clues is None and r.lat == r.lat for r in results)
    assert _comparable(results[0]) == _comparable(results[1])


def test_a_first_call_without_warm_up_prepares_later_stages_beside_the_earlier_ones(locator, shared, monkeypatch):
    built: list[str] = []
    gps_gallery = components.gps_gallery

    def building(*args, **kwargs):  # the real GPS gallery, noting which thread builds it
        built.append(threading.current_thread().name)
        return gps_gallery(*args, **kwargs)

    monkeypatch.setattr(components, "gps_gallery", building)
    cold = GeoLocator.from_preset("offline", gallery={"datasets": ["osv5m-sample"], "progress": False},
                                  clues={"enabled": True, "cache": False, "timeout_s": 120})
    path = shared / "data/im2gps3k-dev/images" / PHOTOS[0]
    first = cold.locate(path)
    assert len(built) == 1 and built[0].startswith("geodemo-stage")  # built once, in the pool
    assert "candidates.gps_gallery" not in first.errors
    assert any(c.source == "gps-gallery" for c in first.candidates)
    assert _comparable(first) == _comparable(locator.locate(path))  # same answer as a warmed-up locator
    cold.locate(path)
    assert len(built) == 1  # prepared once per locator
