"""The app's API through ``gradio_client``: the real pipeline returns LocationResult JSON.

One in-thread app launch on a free 127.0.0.1 port is shared by the module.
"""

from __future__ import annotations

import pytest

OSV_PHOTO = "546314506564628.jpg"  # Sardinia street view (OSV-5M sample)
DEV_PHOTO = "101220879_0a1be45b79_33_24311489@N00.jpg"  # Chicago area (IM2GPS3k dev)
# preset, top_k, eps_km, min_samples, LMM on/off, backend, model, answers per prompt
SETTINGS = ("offline", 10, 50.0, 2, "off", "preset default", "", None)


@pytest.fixture(scope="module")
def client(app_url):
    from gradio_client import Client

    return Client(app_url, verbose=False, download_files=False)


def _photo(shared, name: str):
    from gradio_client import handle_file

    folder = "osv5m-sample" if name[0].isdigit() and "_" not in name else "im2gps3k-dev"
    return handle_file(str(shared / "data" / folder / "images" / name))


def test_locate_endpoint_returns_the_location_result(client, shared):
    info = client.view_api(print_info=False, return_format="dict")
    assert "/locate" in info["named_endpoints"]

    result = client.predict(_photo(shared, OSV_PHOTO), *SETTINGS, api_name="/locate")
    assert isinstance(result, dict) and result["preset"] == "offline"
    assert -90 <= result["lat"] <= 90 and -180 <= result["lon"] <= 180
    assert isinstance(result["place"], str) and result["place"]
    assert len(result["neighbours"]) == 10  # top_k from the request, not the preset's 20
    assert all({"lat", "lon", "similarity", "id"} <= set(n) for n in result["neighbours"])
    assert result["clusters_before"]["eps_km"] == 50.0
    assert result["candidates"] and result["timings"]["total"] > 0
    assert result["lmm_records"] == []  # LMM off
    assert result["segmentation"]["shares"]  # label map and overlay stay server-side
    assert "label_map" not in result["segmentation"]


def test_concurrent_requests_do_not_share_state(client, shared):
    """Two photos submitted at once each get their own answer, equal to a call made alone."""
    alone = client.predict(_photo(shared, DEV_PHOTO), *SETTINGS, api_name="/locate")
    job_a = client.submit(_photo(shared, DEV_PHOTO), *SETTINGS, api_name="/locate")
    job_b = client.submit(_photo(shared, OSV_PHOTO), *SETTINGS, api_name="/locate")
    a, b = job_a.result(timeout=240), job_b.result(timeout=240)
    assert (a["lat"], a["lon"]) == (alone["lat"], alone["lon"])
    assert [n["id"] for n in a["neighbours"]] == [n["id"] for n in alone["neighbours"]]
    assert [n["id"] for n in a["neighbours"]] != [n["id"] for n in b["neighbours"]]
    # Each answer belongs to its own photo: the API asks for no exclusion, so each photo's
    # nearest gallery entry is the photo itself.
    assert a["neighbours"][0]["id"] == DEV_PHOTO
    assert b["neighbours"][0]["id"] == OSV_PHOTO.removesuffix(".jpg")


def test_non_image_is_a_readable_api_error(client, tmp_path):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    fake = tmp_path / "notes.jpg"
    fake.write_text("not a photo\n" * 50)
    with pytest.raises(AppError, match="cannot be used as a photo"):
        client.predict(handle_file(str(fake)), *SETTINGS, api_name="/locate")


def test_exif_gps_of_an_upload_is_the_truth(shared, tmp_path):
    """In-process handler run: a photo carrying EXIF GPS gets an error line against that point."""
    from geodemo.web.handlers import locate_stream

    photo = _exif_photo(shared, tmp_path / "street.jpg")  # not a benchmark file name: the truth comes from EXIF only
    updates = list(locate_stream(str(photo), "", "", SETTINGS[0], SETTINGS[1:], 0.5))
    final = updates[-1]
    assert "EXIF GPS" in final["error_line"] and "39.5591, 8.8889" in final["error_line"]
    assert "Error" in final["error_line"] and final["result_json"]["neighbours"]
    stages = [u["status"] for u in updates if "status" in u]
    assert any("segment (" in s for s in stages) and "done in" in stages[-1]


def _exif_photo(shared, dest):
    from PIL import Image

    exif = Image.Exif()
    exif[0x8825] = {1: "N", 2: (39.0, 33.0, 32.76), 3: "E", 4: (8.0, 53.0, 19.97)}  # 39.5591, 8.8889
    with Image.open(shared / "data" / "osv5m-sample" / "images" / OSV_PHOTO) as im:
        im.save(dest, exif=exif)
    return dest


def test_the_api_answer_carries_the_exif_gps_the_load_stage_read(client, shared, tmp_path):
    """The upload is decoded and its EXIF read by the pipeline's load stage alone; the answer carries it."""
    from gradio_client import handle_file

    photo = _exif_photo(shared, tmp_path / "street.jpg")
    result = client.predict(handle_file(str(photo)), *SETTINGS, api_name="/locate")
    assert result["exif_gps"] == pytest.approx([39.5591, 8.8889], abs=1e-3)
    assert result["stages"][0] == "load" and result["neighbours"]


def test_page_settings_map_to_locate_options(monkeypatch):
    from geodemo.web.policy import RequestError, parse_example_key, parse_truth, validate_request

    preset, opts = validate_request("offline", [None, "", 3.0, "on", "preset default", "  ", 2.0], {"x.jpg"}, {"author"})
    assert preset == "offline" and opts.values.get("retrieval") is None  # empty = the preset's value
    assert opts.section("rerank") == {"min_samples": 3} and opts.get("rerank", "eps_km") is None
    assert opts.get("lmm", "enabled") is True and opts.get("lmm", "backend") is None and opts.get("lmm", "model") is None
    assert opts.get("lmm", "samples") == 2 and opts.exclude_ids == {"x.jpg"} and opts.exclude_groups == {"author"}
    assert validate_request("g3", [20, 25.0, None, "preset default", "ollama", "", None])[1].get("lmm", "enabled") is None
    monkeypatch.setenv("GEODEMO_LMM_MODELS", "llava:7b")
    assert validate_request(None, [None, None, None, "off", "ollama", "llava:7b", None])[1].get("lmm", "model") == "llava:7b"
    for bad in ((0, None, None), (201, None, None), (None, -5, None), (None, float("nan"), None), (None, None, 2.5)):
        with pytest.raises(RequestError, match="must be"):
            validate_request("offline", [*bad, None, None, None, None])
    assert parse_truth(" 48.8584, 2.2945 ") == (48.8584, 2.2945)
    assert parse_truth("(-33.9, 151.2)") == (-33.9, 151.2) and parse_truth("") is None
    for bad in ("Paris", "91, 0", "10, 200"):
        with pytest.raises(ValueError):
            parse_truth(bad)
    assert parse_example_key("im2gps3k-dev|1_a_2_3@N00.jpg|3@N00") == ({"1_a_2_3@N00.jpg"}, {"3@N00"})
    assert parse_example_key("osv5m-sample|123|") == ({"123"}, set())
    assert parse_example_key("") == (set(), set())
