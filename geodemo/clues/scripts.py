"""Which writing systems a piece of text uses, from Unicode character names (pure functions)."""

from __future__ import annotations

import unicodedata
from collections import Counter

__all__ = ["char_script", "script_counts", "dominant_script", "OSD_SCRIPTS"]

# First word(s) of a Unicode character name -> our script name.
_NAME_PREFIX = (
    ("LATIN", "Latin"),
    ("CYRILLIC", "Cyrillic"),
    ("GREEK", "Greek"),
    ("HEBREW", "Hebrew"),
    ("ARABIC", "Arabic"),
    ("DEVANAGARI", "Devanagari"),
    ("CJK UNIFIED IDEOGRAPH", "Han"),
    ("CJK COMPATIBILITY IDEOGRAPH", "Han"),
    ("HIRAGANA", "Japanese"),
    ("KATAKANA", "Japanese"),
    ("HANGUL", "Hangul"),
    ("THAI", "Thai"),
)

# Tesseract OSD script names -> ours.
OSD_SCRIPTS = {
    "Latin": "Latin",
    "Cyrillic": "Cyrillic",
    "Greek": "Greek",
    "Hebrew": "Hebrew",
    "Arabic": "Arabic",
    "Devanagari": "Devanagari",
    "Han": "Han",
    "HanS": "Han",
    "HanT": "Han",
    "Japanese": "Japanese",
    "Katakana": "Japanese",
    "Hiragana": "Japanese",
    "Hangul": "Hangul",
    "Korean": "Hangul",
    "Thai": "Thai",
}


def char_script(ch: str) -> str | None:
    """Script of one letter or combining mark (None for digits, punctuation, untracked scripts)."""
    category = unicodedata.category(ch)
    if category == "Lm" or not (ch.isalpha() or category.startswith("M")):  # Lm: length marks etc.
        return None
    name = unicodedata.name(ch, "")
    for prefix, script in _NAME_PREFIX:
        if name.startswith(prefix):
            return script
    return None


def script_counts(text: str) -> Counter:
    """Number of letters of each script in ``text``."""
    return Counter(s for s in map(char_script, text) if s is not None)


def dominant_script(text: str) -> str | None:
    """The script of most letters; kana anywhere makes Han text Japanese."""
    counts = script_counts(text)
    if not counts:
        return None
    if counts.get("Japanese") and counts.get("Han"):
        counts["Japanese"] += counts.pop("Han")
    return counts.most_common(1)[0][0]
