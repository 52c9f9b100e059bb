"""Rows for the app's tables, read from a :class:`~geodemo.result.LocationResult`."""

from __future__ import annotations

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
CANDIDATE_COLUMNS = ["source", "lat", "lon", "verifier score", "retrieval similarity"]
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
    """One row per candidate, best verifier score first (unscored last)."""
    cands = sorted(result.candidates, key=lambda c: (c.score is None, -(c.score or 0.0)))
    return [
        [
            c.source,
            round(c.lat, 4),
            round(c.lon, 4),
            None if c.score is None else round(c.score, 4),
            None if c.retrieval_similarity is None else round(c.retrieval_similarity, 4),
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
