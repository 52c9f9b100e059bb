"""Text clues: OCR of signs in the photo, the language they are written in, and a country prior.

    report = read_clues(image)          # ClueReport: text, scripts, language, countries, summary
    weights = clue_prior(report, coords)  # (M,) multiplicative weights; exactly 1.0 without a clue
"""

from geodemo.clues.prior import clue_prior, countries_of, country_weights
from geodemo.clues.reader import ClueConfig, read_clues

__all__ = ["read_clues", "clue_prior", "ClueConfig", "country_weights", "countries_of"]
