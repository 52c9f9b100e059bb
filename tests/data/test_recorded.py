"""One reader of recorded predictions: every format of the real peer files, every trap they keep."""

from __future__ import annotations

import csv
import json

import pytest

from geodemo.data.recorded import (
    RecordedFormatError,
    detect_recorded_format,
    parse_source_spec,
    photo_key,
    read_recorded,
    recorded_from_env,
    recorded_section,
)
from geodemo.paths import REPO_ROOT


@pytest.fixture(scope="module")
def peers(shared):
    return shared / "data" / "peer-predictions"


def _rows(path):
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def test_gemini_failures_never_become_coordinates(peers):
    path = peers / "gemini-2.0-flash_im2gps3k-dev.csv"
    rows = _rows(path)
    rec = read_recorded(path, name="gemini-2.0-flash")
    assert rec.format == "generic" and rec.rows == len(rows) == 938
    failed = [r["IMG_ID"] for r in rows if r["success"] == "False"]
    zero = [r["IMG_ID"] for r in rows if float(r["LAT_pred"]) == 0.0 and float(r["LON_pred"]) == 0.0]
    assert len(failed) == 55 and set(failed) < set(zero)  # every failure carries 0.0, 0.0 ...
    assert len(zero) == 56  # ... and one row marked success=True carries it too
    for pid in zero:
        assert rec.points(pid) == [] and rec.answer(pid) is None
        assert rec.rejected(pid)
    assert len(rec) == 938 - 56
    assert all((p.lat, p.lon) != (0.0, 0.0) for pts in rec.by_photo.values() for p in pts)
    first = rows[0]
    assert rec.answer(first["IMG_ID"]).lat == pytest.approx(float(first["LAT_pred"]))


def test_geoestimation_summary_block_is_not_a_photo(peers):
    path = peers / "geoestimation-isns_im2gps3k-dev.csv"
    assert b"\r\n" in path.read_bytes()[:2000]  # CRLF as published
    rec = read_recorded(path)
    assert rec.format == "geoestimation" and rec.rows == 978 and len(rec) == 978
    summary = [r for r in rec.rejections if r.photo_id is None]
    assert len(summary) == 2 and all("summary" in r.reason for r in summary)
    assert rec.answer("street acc (1km)") is None and rec.answer("0.105439") is None
    # the interleaved columns: predicted_lat is the third column, predicted_long the fifth
    row = _rows(path)[0]
    got = rec.answer(row["img_id"])
    assert (got.lat, got.lon) == (pytest.approx(float(row["predicted_lat"])), pytest.approx(float(row["predicted_long"])))


def test_g3_prediction_columns_keep_prompt_and_sample_and_drop_the_zero_failure_value(peers):
    path = peers / "g3-gpt4o_im2gps3k_prediction_dev-sample.csv"
    rec = read_recorded(path)
    assert rec.format == "g3-predictions"
    kinds = {p.kind for pts in rec.by_photo.values() for p in pts}
    assert kinds <= {"zero-shot", "rag-5", "rag-10", "rag-15"} and "zero-shot" in kinds
    zeros = sum(1 for r in _rows(path) for k, v in r.items()
                if k.endswith("_latitude") and float(v) == 0.0 and float(r[k.replace("_latitude", "_longitude")]) == 0.0)
    assert zeros > 0 and sum("0.0, 0.0" in r.reason for r in rec.rejections) == zeros
    assert all((p.lat, p.lon) != (0.0, 0.0) for pts in rec.by_photo.values() for p in pts)


def test_g3_raw_responses_are_parsed_like_live_answers_and_refusals_are_rejected(peers):
    rec = read_recorded(peers / "g3-gpt4o_llm_predict_results_zs_dev-sample.csv")
    assert rec.format == "g3-responses" and rec.rows == 8
    assert rec.points("101220879_0a1be45b79_33_24311489@N00.jpg")[0].lat == pytest.approx(43.0731)
    # a photo whose ten answers are None or refusals has no point, and says why
    pid = "104146945_2722f724b3_19_14542551@N00.jpg"
    assert rec.points(pid) == []
    reasons = [r.reason for r in rec.rejected(pid)]
    assert len(reasons) == 10 and any("None" in r for r in reasons) and any("not read" in r for r in reasons)


def test_g3_rag_files_read_the_answers_not_the_cited_neighbours(peers):
    path = peers / "g3-gpt4o_5_llm_predict_results_rag_dev-sample.csv"
    rows = _rows(path)
    # the trap: reverse_k_gps equals candidate_k_gps, and both are coordinate strings "[lat, lon]"
    assert all(r[f"reverse_{k}_gps"] == r[f"candidate_{k}_gps"] for r in rows for k in range(5))
    assert rows[0]["candidate_0_gps"].startswith("[")
    rec = read_recorded(path)
    assert rec.format == "g3-responses" and rec.rows == len(rows)
    for r in rows:
        answers = rec.answers(r["IMG_ID"])
        assert all(p.kind == "rag-5" and p.raw is not None for p in answers)
        assert len(answers) + sum("rag-5" in x.reason for x in rec.rejected(r["IMG_ID"])) == 10  # one per answer
        retrieved = [p for p in rec.points(r["IMG_ID"]) if p.kind == "retrieved"]
        assert len(retrieved) == 20  # candidate_0..19_gps, read once; the reverse columns are not read
        assert (retrieved[0].lat, retrieved[0].lon) == tuple(json.loads(r["candidate_0_gps"]))
        assert rec.answer(r["IMG_ID"]) in (answers[0] if answers else None, None)


def test_the_format_can_be_named_and_a_wrong_one_is_refused(peers):
    path = peers / "gemini-2.0-flash_im2gps3k-dev.csv"
    assert detect_recorded_format(path) == "generic"
    with pytest.raises(RecordedFormatError):
        read_recorded(path, format="geoestimation")
    with pytest.raises(RecordedFormatError, match="unknown recorded format"):
        read_recorded(path, format="xml")


def test_jsonl_and_generic_files_written_by_hand(tmp_path):
    jl = tmp_path / "mine.jsonl"
    jl.write_text("\n".join([
        json.dumps({"id": "a.jpg", "lat": 48.85, "lon": 2.35}),
        json.dumps({"id": "b.jpg", "lat": 91.0, "lon": 0.5}),
        json.dumps({"id": "c.jpg", "lat": 0.0, "lon": 0.0}),
        json.dumps({"id": "d.jpg", "lat": 10, "lon": 10, "success": False}),
        "not json",
        json.dumps({"lat": 1, "lon": 2}),
    ]) + "\n")
    rec = read_recorded(jl, name="mine")
    assert rec.format == "jsonl" and list(rec.by_photo) == ["a"]
    assert {r.photo_id for r in rec.rejections} == {"b.jpg", "c.jpg", "d.jpg", None}
    gen = tmp_path / "g.csv"
    gen.write_text("IMG_ID,LAT_pred,LON_pred\nx.jpg,nan,3\ny.jpg,-33.9,151.2\nz.jpg,abc,1\n")
    rec = read_recorded(gen)
    assert rec.answer("y").lon == pytest.approx(151.2) and rec.answer("photos/y.JPG") is not None
    assert len(rec.rejections) == 2
    empty = tmp_path / "e.csv"
    empty.write_text("IMG_ID,LAT_pred,LON_pred\n")
    with pytest.raises(RecordedFormatError, match="no photo rows"):
        read_recorded(empty)
    other = tmp_path / "o.csv"
    other.write_text("a,b\n1,2\n")
    with pytest.raises(RecordedFormatError, match="IMG_ID,LAT_pred,LON_pred"):
        read_recorded(other)


def test_source_specs_and_the_server_environment(tmp_path):
    assert parse_source_spec("gemini-2.0-flash=/x/y.csv") == ("gemini-2.0-flash", tmp_path.__class__("/x/y.csv"))
    with pytest.raises(ValueError):
        parse_source_spec("bad name=/x.csv")
    assert photo_key("dir/123_abc@N00.jpg") == photo_key("123_abc@N00") == "123_abc@N00"
    section = recorded_section("g=a.csv", ["i=b.csv", "j=c.csv"])
    assert section == {"lmm": {"g": "a.csv"}, "candidates": {"i": "b.csv", "j": "c.csv"}}
    with pytest.raises(ValueError, match="own name"):
        recorded_section("g=a.csv", ["g=b.csv"])
    env = {"GEODEMO_RECORDED_LMM": "g=a.csv", "GEODEMO_RECORDED_CANDIDATES": "i=b.csv; j=c.csv"}
    assert recorded_from_env(env) == section
    assert recorded_from_env({}) == {}


def test_evaluate_scores_a_peer_on_exactly_our_photos_beside_the_published_rows(peers, tmp_path, capsys):
    import sys

    sys.path.insert(0, str(REPO_ROOT / "scripts"))
    import evaluate

    runs = tmp_path / "runs"
    for name, file in (("gemini-2.0-flash", "gemini-2.0-flash_im2gps3k-dev.csv"),
                       ("geoestimation-isns", "geoestimation-isns_im2gps3k-dev.csv")):
        code = evaluate.main(["--benchmark", "im2gps3k-dev", "--predictor", "recorded", "--predictions",
                              f"{name}={peers / file}", "--out", str(runs / name), "--no-progress"])
        assert code == 0
    out = capsys.readouterr().out
    # every dev photo is scored; a missing or failed row is a miss (the peer-predictions README's figures)
    assert "| **recorded:gemini-2.0-flash** (recorded) | 978 | 15.13 | 36.81 | 50.82 | 69.53 | 78.43 |" in out
    assert "| **recorded:geoestimation-isns** (recorded) | 978 | 11.45 | 26.79 | 35.48 | 50.82 | 67.59 |" in out
    assert "G3, NeurIPS 2024 | paper (im2gps3k)" in out
    png = (runs / "curves.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000


def test_evaluate_refuses_a_recorded_predictor_without_its_file(capsys):
    import sys

    sys.path.insert(0, str(REPO_ROOT / "scripts"))
    import evaluate

    with pytest.raises(SystemExit):
        evaluate.parse_args(["--benchmark", "im2gps3k-dev", "--predictor", "recorded"])
    assert "--predictions" in capsys.readouterr().err


def test_the_server_names_recorded_sources_only_for_the_roles_a_preset_can_use(monkeypatch):
    from geodemo.pipeline.presets import recorded_for

    monkeypatch.delenv("GEODEMO_RECORDED_LMM", raising=False)
    monkeypatch.delenv("GEODEMO_RECORDED_CANDIDATES", raising=False)
    assert recorded_for("offline") == {}
    monkeypatch.setenv("GEODEMO_RECORDED_LMM", "vlm=/srv/vlm.csv")
    monkeypatch.setenv("GEODEMO_RECORDED_CANDIDATES", "peer=/srv/peer.csv")
    both = {"lmm": {"vlm": "/srv/vlm.csv"}, "candidates": {"peer": "/srv/peer.csv"}}
    assert recorded_for("offline") == {"recorded": both}
    assert recorded_for("g3-offline") == {"recorded": {"lmm": both["lmm"]}}  # no candidates.recorded stage
    assert recorded_for("geoclip") == {}  # neither an LMM nor a recorded-candidates stage
