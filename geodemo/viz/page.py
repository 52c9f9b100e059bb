"""The web page's rendering of a :class:`~geodemo.result.LocationResult`, partial or final.

:class:`PageRenderer` turns the successive results of one request into named updates of the
page's outputs (:data:`OUTPUT_NAMES`): the segmentation overlay and class shares, the map panels
(:func:`geodemo.viz.maps.map_panel`, shared with the failure explorer), the LMM and candidate
tables, and the Markdown lines (progress, prediction, truth and error, failed stages). Nothing here
runs a model or touches Gradio; ``app.py`` maps the names to its components.
"""

from __future__ import annotations

import math
from typing import Any

from PIL import Image

from geodemo.models.segmentation import render_overlay
from geodemo.redact import redact, redact_paths
from geodemo.result import LocationResult
from geodemo.retrieval.geocode import reverse_geocode
from geodemo.viz.explain import decision_sentence, error_report
from geodemo.viz.maps import map_panel
from geodemo.viz.tables import candidate_rows, lmm_rows, timing_text

__all__ = ["MAP_HEIGHT", "OUTPUT_NAMES", "PageRenderer", "blank_outputs", "errors_markdown", "has_prediction",
           "match_markdown", "overlay_image", "place_of", "prediction_markdown", "shares_label", "status_markdown",
           "truth_markdown"]

MAP_HEIGHT = 420

OUTPUT_NAMES = (
    "status", "overlay", "shares", "seg_state", "neighbour_map", "before_map", "after_map",
    "lmm_table", "candidates_table", "result_map", "prediction", "error_line", "explanation",
    "errors", "timings", "result_json",
)  # fmt: skip


def place_of(lat: float, lon: float) -> str | None:
    try:
        return reverse_geocode(lat, lon).text
    except Exception:  # noqa: BLE001 - names are a nicety
        return None


def overlay_image(image: Image.Image | None, label_map: Any, opacity: float) -> Image.Image | None:
    """The photo with its segmentation blended at ``opacity`` (the photo alone without a label map)."""
    if image is None:
        return None
    if label_map is None:
        return image
    return render_overlay(image, label_map, float(opacity))


def shares_label(result: LocationResult) -> dict[str, float] | None:
    seg = result.segmentation
    return dict(list(seg.shares.items())[:10]) if seg is not None else None


def status_markdown(stages: list[str], result: LocationResult | None, running: str | None) -> str:
    """Progress line: finished stages with their timings, then the running one."""
    parts = []
    for stage in stages:
        sec = result.timings.get(stage) if result is not None else None
        failed = result is not None and stage in result.errors
        mark = "⚠️" if failed else "✅"
        parts.append(f"{mark} {stage}" + (f" ({sec:.2f} s)" if sec is not None else ""))
    if running:
        parts.append(f"⏳ {running}")
    return " · ".join(parts) if parts else ""


def errors_markdown(result: LocationResult) -> str:
    """Stages that failed, then optional parts that are not installed (how to add them)."""
    parts = []
    if result.errors:
        lines = [f"- **{stage}** failed: {redact_paths(message)}" for stage, message in result.errors.items()]
        parts.append("#### Stages that failed (the rest still ran)\n" + "\n".join(lines))
    unavailable = result.unavailable
    if unavailable:
        lines = [f"- **{stage}**: not installed: {redact_paths(how)}" for stage, how in unavailable.items()]
        parts.append("#### Optional parts not installed (the answer did without them)\n" + "\n".join(lines))
    return "\n\n".join(parts)


def has_prediction(result: LocationResult) -> bool:
    """Whether the pipeline produced a final coordinate (it leaves NaN when every stage failed)."""
    return math.isfinite(result.lat) and math.isfinite(result.lon)


def prediction_markdown(result: LocationResult) -> str:
    if not has_prediction(result):
        return "### ❓ No location could be predicted\nSee the stages that failed below."
    place = result.place or place_of(result.lat, result.lon) or "unknown place"
    radius = f"±{result.uncertainty_km:,.0f} km" if math.isfinite(result.uncertainty_km) else "unknown"
    text = (
        f"### 📍 {place}\n"
        f"**{result.lat:.4f}, {result.lon:.4f}** · confidence {result.confidence:.2f} · "
        f"uncertainty {radius} · chosen by `{result.verifier}` · preset `{result.preset}`"
    )
    decided = decision_sentence(result)
    return text + (f"\n\n{decided}" if decided else "") + match_markdown(result)


def match_markdown(result: LocationResult) -> str:
    """One line on the re-ranked top photo match and whether it was trusted (reciprocal neighbour)."""
    m = result.match
    if m is None:
        return ""
    verdict = (f"a reciprocal neighbour (the photo would be among its {m.k} nearest gallery photos): "
               "its place was taken" if m.accepted else
               f"not a reciprocal neighbour ({m.reciprocal_rank} gallery photos are closer to it): "
               "the verifier decided")
    return f"\n\nTop photo match `{m.id}` (similarity {m.similarity:.2f}) is {verdict}."


def truth_markdown(result: LocationResult, truth: tuple[float, float] | None, source: str) -> tuple[str, str]:
    """(error line, explanation) for a known truth; ("", "") without one."""
    if truth is None:
        return "", "No true location known (no EXIF GPS in the photo, no example): no error to show."
    if not has_prediction(result):
        return f"**True location** ({source}): {truth[0]:.4f}, {truth[1]:.4f} — no prediction to compare.", ""
    report = error_report(result, truth, place_of=place_of)
    line = f"**True location** ({source}): {truth[0]:.4f}, {truth[1]:.4f} — **{report.error_line}**"
    if not report.explanation:
        return line, f"The prediction is within {report.error_km:,.1f} km: no failure to explain."
    return line, "#### Why it went wrong\n" + "\n".join(f"- {s}" for s in report.explanation)


class PageRenderer:
    """Turns successive results of one request into component updates, re-drawing only what changed.

    One instance per request (never shared), so concurrent users cannot see each other's state.
    """

    def __init__(self, image: Image.Image, truth: tuple[float, float] | None, opacity: float):
        self.image = image
        self.truth = truth
        self.opacity = opacity
        self._seen: dict[str, Any] = {}

    def _changed(self, key: str, value: Any) -> bool:
        if self._seen.get(key, object()) == value:
            return False
        self._seen[key] = value
        return True

    def render(self, result: LocationResult, final: bool) -> dict[str, Any]:
        """Updates keyed by output name; maps only when their inputs changed."""
        out: dict[str, Any] = {}
        seg = result.segmentation
        if seg is not None and self._changed("seg", id(seg)):
            out["overlay"] = overlay_image(self.image, seg.label_map, self.opacity)
            out["shares"] = shares_label(result)
            out["seg_state"] = {"image": self.image, "label_map": seg.label_map}
        n_key = (len(result.neighbours), id(result.clusters_before))
        if result.neighbours and self._changed("neighbours", n_key):
            out["neighbour_map"] = map_panel("neighbours", result, self.truth, MAP_HEIGHT)
        if result.clusters_before is not None and self._changed("before", id(result.clusters_before)):
            out["before_map"] = map_panel("before", result, self.truth, MAP_HEIGHT)
        if result.clusters_after is not None and self._changed("after", id(result.clusters_after)):
            out["after_map"] = map_panel("after", result, self.truth, MAP_HEIGHT)
        if self._changed("lmm", len(result.lmm_records)):
            out["lmm_table"] = redact(lmm_rows(result))
        if (result.candidates or final) and self._changed("candidates", (len(result.candidates), final)):
            out["candidates_table"] = candidate_rows(result)
            out["result_map"] = map_panel("result", result, self.truth if final else None, MAP_HEIGHT,
                                          show_prediction=final)
        out["errors"] = errors_markdown(result)
        out["timings"] = timing_text(result)
        return out


def blank_outputs() -> dict[str, Any]:
    """Every output emptied (a new request starts from a clean page)."""
    blank: dict[str, Any] = dict.fromkeys(OUTPUT_NAMES, "")
    blank.update(overlay=None, shares=None, seg_state=None, lmm_table=[], candidates_table=[], result_json=None)
    return blank
