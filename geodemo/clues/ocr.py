"""Tesseract OCR through ``pytesseract``: availability, script detection (OSD) and word reading."""

from __future__ import annotations

import functools
import os
import re
import shutil
from dataclasses import dataclass

from PIL import Image, ImageOps

from geodemo.clues.scripts import OSD_SCRIPTS
from geodemo.errors import ToolUnavailableError

__all__ = ["OCRWord", "TesseractUnavailable", "tesseract_languages", "prepare", "detect_script", "read_words"]


class TesseractUnavailable(ToolUnavailableError):
    """The tesseract binary (or pytesseract) is missing; the message says how to install it."""


@dataclass(frozen=True)
class OCRWord:
    """One word Tesseract read, with its confidence (0-100)."""

    text: str
    confidence: float


@functools.lru_cache(maxsize=4)
def tesseract_languages(cmd: str | None = None) -> frozenset[str]:
    """Installed traineddata names (``eng``, ``rus`` ...); raises :class:`TesseractUnavailable`."""
    try:
        import pytesseract
    except ImportError as exc:  # pragma: no cover - pytesseract is in requirements.txt
        raise TesseractUnavailable("pytesseract is not installed: pip install pytesseract") from exc
    binary = cmd or pytesseract.pytesseract.tesseract_cmd
    if shutil.which(binary) is None:
        raise TesseractUnavailable(
            f"tesseract binary {binary!r} not found on PATH; install it (Debian: apt-get install "
            "tesseract-ocr tesseract-ocr-rus ...; see scripts/setup.sh) or set clues.tesseract_cmd"
        )
    pytesseract.pytesseract.tesseract_cmd = binary
    # Tesseract's OpenMP threads cost more than they save on photo-sized inputs (a dev photo: 0.30 s
    # wall with them, 0.12 s with one) and take the cores the other stages run on: one thread each,
    # unless the environment says otherwise. Only Tesseract's processes see this.
    pytesseract.pytesseract.environ = {"OMP_THREAD_LIMIT": "1", **os.environ}
    return frozenset(pytesseract.get_languages(config=""))


def prepare(image: Image.Image, side: int) -> Image.Image:
    """Greyscale copy whose long side is ``side`` pixels (up- or down-scaled), autocontrasted."""
    grey = ImageOps.exif_transpose(image).convert("L")
    scale = side / max(grey.size)
    if abs(scale - 1.0) > 0.05:
        size = (max(1, round(grey.width * scale)), max(1, round(grey.height * scale)))
        grey = grey.resize(size, Image.Resampling.LANCZOS if scale < 1 else Image.Resampling.BICUBIC)
    return ImageOps.autocontrast(grey, cutoff=1)


_OSD_SCRIPT = re.compile(r"Script:\s*(\S+)")
_OSD_CONF = re.compile(r"Script confidence:\s*([\d.]+)")


def detect_script(image: Image.Image, timeout_s: float = 5.0) -> tuple[str, float] | None:
    """Tesseract OSD's script and confidence, or None when OSD finds too few characters."""
    import pytesseract

    try:
        osd = pytesseract.image_to_osd(image, config="--psm 0 -c min_characters_to_try=5", timeout=timeout_s)
    except (pytesseract.TesseractError, RuntimeError):  # "Too few characters", time-out
        return None
    script, conf = _OSD_SCRIPT.search(osd), _OSD_CONF.search(osd)
    if not script:
        return None
    name = OSD_SCRIPTS.get(script.group(1))
    if name is None:
        return None
    return name, float(conf.group(1)) if conf else 0.0


def read_words(
    image: Image.Image, languages: list[str], *, psm: int = 11, timeout_s: float = 5.0
) -> list[OCRWord]:
    """Words Tesseract reads with ``languages`` (e.g. ``["rus"]``), each with its confidence.

    A time-out returns what was read so far: nothing (Tesseract is killed).
    """
    import pytesseract

    lang = "+".join(languages)
    try:
        data = pytesseract.image_to_data(
            image, lang=lang, config=f"--psm {psm}", timeout=timeout_s,
            output_type=pytesseract.Output.DICT,
        )
    except RuntimeError:  # time-out
        return []
    words = []
    for text, conf in zip(data["text"], data["conf"], strict=True):
        text = (text or "").strip()
        conf = float(conf)
        if text and conf >= 0:
            words.append(OCRWord(text, conf))
    return words
