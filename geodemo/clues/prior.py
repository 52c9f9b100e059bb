"""Turn identified languages / scripts into a country prior, and apply it to candidate coordinates."""

from __future__ import annotations

import math

import numpy as np

from geodemo.clues.tables import LANGUAGES, script_countries
from geodemo.geo import validate_coords
from geodemo.result import ClueReport

__all__ = ["country_weights", "clue_prior", "countries_of"]


def _normalised(weights: dict[str, float]) -> dict[str, float]:
    # Square root: photo density across countries is far less skewed than population.
    rooted = {c: math.sqrt(w) for c, w in weights.items() if w > 0}
    top = max(rooted.values(), default=0.0)
    return {c: w / top for c, w in rooted.items()} if top > 0 else {}


def country_weights(
    languages: list[tuple[str, float]], script: str | None = None, script_confidence: float = 0.0
) -> tuple[dict[str, float], float]:
    """Country -> multiplicative weight, and the weight of every other country (the floor).

    Each language contributes its countries (``tables.LANGUAGES``, relative to its largest
    country) with strength ``probability x home share``; without a known language a non-Latin
    script contributes its countries with strength ``0.9 x script_confidence``. A country's weight is
    ``floor + (1 - floor) x share``, so the best country gets 1.0, unlisted ones ``floor``.
    ``({}, 1.0)`` means no clue.
    """
    mix: dict[str, float] = {}
    strength = 0.0
    for code, prob in languages:
        row = LANGUAGES.get(code)
        if row is None or prob <= 0:
            continue
        s = prob * row.home
        strength += s
        for country, share in _normalised(row.countries).items():
            mix[country] = mix.get(country, 0.0) + s * share
    if not mix and script is not None and script_confidence > 0:
        strength = 0.9 * min(1.0, script_confidence)
        mix = {c: strength * share for c, share in _normalised(script_countries(script)).items()}
    if not mix or strength <= 0:
        return {}, 1.0
    strength = min(strength, 0.95)
    top = max(mix.values())
    floor = 1.0 - strength
    return {c: floor + (1.0 - floor) * v / top for c, v in mix.items()}, floor


def countries_of(coords: np.ndarray) -> list[str]:
    """ISO alpha-2 country of each coordinate (nearest GeoNames city, offline ``reverse_geocode``)."""
    import reverse_geocode

    coords = validate_coords(coords)
    if len(coords) == 0:
        return []
    found = reverse_geocode.search([(float(a), float(b)) for a, b in coords])
    return [row.get("country_code", "") for row in found]


def clue_prior(report: ClueReport | None, coords: np.ndarray) -> np.ndarray:
    """Multiplicative prior weight of each coordinate ``(M, 2)`` under the clues of ``report``.

    Exactly 1.0 everywhere when there is no clue (no report, no countries, floor 1.0).
    """
    coords = np.asarray(coords, dtype=np.float64).reshape(-1, 2)
    ones = np.ones(len(coords), dtype=np.float64)
    if report is None or (not report.countries and report.floor >= 1.0):
        return ones
    codes = countries_of(coords)
    return np.array([report.countries.get(c, report.floor) for c in codes], dtype=np.float64)
