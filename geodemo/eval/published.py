"""Published accuracies of the reference methods, printed beside ours in every benchmark table.

Values are percentages at 1 / 25 / 200 / 750 / 2500 km as the papers report them (their own full
test sets: IM2GPS3k = 2997 photos, YFCC4k = 4536). ``verified`` says whether the row was checked
against a second public copy of the paper's table while writing this file; unverified rows are
from the papers as remembered and are marked in the printed table with a dagger.
Our ``im2gps3k-dev`` split is a subset of IM2GPS3k, so those rows are the closest reference, not
a like-for-like comparison.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["PublishedResult", "PUBLISHED", "published_for", "BENCHMARK_FAMILY"]


@dataclass(frozen=True)
class PublishedResult:
    """One row of a paper's results table."""

    method: str
    venue: str
    benchmark: str  # "im2gps3k" | "yfcc4k"
    acc: tuple[float, float, float, float, float]  # percent at 1, 25, 200, 750, 2500 km
    source: str
    verified: bool = True
    note: str = ""


PUBLISHED: list[PublishedResult] = [
    PublishedResult(
        "GeoCLIP", "NeurIPS 2023", "im2gps3k", (14.11, 34.47, 50.65, 69.67, 83.82),
        "Vivanco Cepeda et al., GeoCLIP, Table 1",
    ),
    PublishedResult(
        "GeoCLIP", "NeurIPS 2023", "yfcc4k", (9.59, 19.31, 32.63, 55.0, 74.69),
        "Vivanco Cepeda et al., GeoCLIP, Table 1", verified=False,
        note="1/25/200 km checked against G3/GeoRanker tables; 750/2500 km not re-checked",
    ),
    PublishedResult(
        "PIGEON (PIGEOTTO)", "CVPR 2024", "im2gps3k", (11.3, 36.7, 53.8, 72.4, 85.3),
        "Haas et al., PIGEON, PIGEOTTO benchmark table",
    ),
    PublishedResult(
        "PIGEON (PIGEOTTO)", "CVPR 2024", "yfcc4k", (10.4, 23.7, 40.6, 62.2, 77.7),
        "Haas et al., PIGEON, PIGEOTTO benchmark table", verified=False,
        note="1/25/200 km checked against G3/GeoRanker tables; 750/2500 km not re-checked",
    ),
    PublishedResult(
        "Img2Loc (GPT-4V)", "SIGIR 2024", "im2gps3k", (17.10, 45.14, 57.87, 72.91, 84.68),
        "Zhou et al., Img2Loc, Table 1", verified=False,
    ),
    PublishedResult(
        "Img2Loc (GPT-4V)", "SIGIR 2024", "yfcc4k", (14.11, 29.57, 41.44, 59.27, 76.88),
        "Zhou et al., Img2Loc, Table 1", verified=False,
    ),
    PublishedResult(
        "G3", "NeurIPS 2024", "im2gps3k", (16.65, 40.94, 55.56, 71.24, 84.68),
        "Jia et al., G3, Table 1",
    ),
    PublishedResult(
        "G3", "NeurIPS 2024", "yfcc4k", (23.99, 35.89, 46.98, 64.26, 78.15),
        "Jia et al., G3, Table 1", verified=False,
        note="1/25/200 km checked against the GeoRanker table; 750/2500 km not re-checked",
    ),
    PublishedResult(
        "DualGeo", "ICME 2026", "im2gps3k", (17.25, 41.47, 55.76, 71.71, 85.05),
        "DualGeo (arXiv 2604.25533), main results table",
    ),
    # DualGeo's YFCC4k row could not be checked offline and is left out rather than guessed.
]

#: Which published benchmark each of our sets is drawn from.
BENCHMARK_FAMILY: dict[str, str] = {
    "im2gps3k-dev": "im2gps3k",
    "im2gps3k": "im2gps3k",
    "yfcc4k": "yfcc4k",
    "yfcc4k-meta": "yfcc4k",
}


def published_for(benchmark: str) -> list[PublishedResult]:
    """Published rows for the benchmark family of ``benchmark`` (empty for sets no paper reports)."""
    family = BENCHMARK_FAMILY.get(benchmark, benchmark)
    return [r for r in PUBLISHED if r.benchmark == family]
