"""Rows for the app's tables, read from a :class:`~geodemo.result.LocationResult`."""

from __future__ import annotations

from geodemo.pipeline.decision import source_of
from geodemo.result import LocationResult, SegmentationResult

__all__ = [
    "LMM_COLUMNS",
    "CANDIDATE_COLUMNS",
    "SHARE_COLUMNS",
    "lmm_rows",
    "candidate_rows",
    "share_rows",
    "timing_text",
]

LMM_COLUMNS = ["prompt kind", "sample", "raw answer", "parsed coordinate / rejection", "latency s"]
CANDIDATE_COLUMNS = ["source", "lat", "lon", "verifier score", "retrieval similarity", "P(<25 km)", "P(<750 km)"]
SHARE_COLUMNS = ["class", "share %"]


def _clip(text: str | None, limit: int = 240) -> str:
    text = (text or "").strip().replace("\n", " ")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def lmm_rows(result: LocationResult, answer_chars: int = 240) -> list[list]:
    """One row per LMM answer: kind, sample, raw answer, parsed coordinate or why it was rejected."""
    rows = []
    for r in result.lmm_records:
        if r.accepted:
            outcome = f"{r.lat:.4f}, {r.lon:.4f}"
        elif r.error:
            outcome = f"error: {r.error}"
        else:
            outcome = f"rejected: {r.rejection or 'no coordinate found'}"
        rows.append([r.prompt_kind, r.sample, _clip(r.raw_answer, answer_chars), outcome, round(r.latency_s, 2)])
    return rows


def candidate_rows(result: LocationResult) -> list[list]:
    """One row per candidate (its source: a recorded LMM's answers under the model's name); best expected
    score first when the calibrated decision scored them, else best verifier score first (unscored last)."""
    def expected(c) -> float | None:
        p = [v for k, v in c.details.items() if k.startswith("p_") and k.endswith("km")]
        return sum(p) if p else None

    cands = sorted(result.candidates, key=lambda c: (expected(c) is None, -(expected(c) or 0.0),
                                                     c.score is None, -(c.score or 0.0)))
    return [
        [
            source_of(c) if c.source == "lmm:recorded" else c.source,
            round(c.lat, 4),
            round(c.lon, 4),
            None if c.score is None else round(c.score, 4),
            None if c.retrieval_similarity is None else round(c.retrieval_similarity, 4),
            c.details.get("p_25km"),
            c.details.get("p_750km"),
        ]
        for c in cands
    ]


def share_rows(segmentation: SegmentationResult | None, top: int = 10) -> list[list]:
    """The segmentation's largest classes as (name, percent) rows."""
    if segmentation is None:
        return []
    items = list(segmentation.shares.items())[:top]
    return [[name, round(100.0 * share, 1)] for name, share in items]


def timing_text(result: LocationResult) -> str:
    """Stage timings as one line, e.g. "encode 0.21 s · retrieve 0.03 s · total 0.31 s"."""
    if not result.timings:
        return ""
    parts = [f"{stage} {sec:.2f} s" for stage, sec in result.timings.items()]
    if "total" not in result.timings:
        parts.append(f"total {sum(result.timings.values()):.2f} s")
    return " · ".join(parts)
