"""Why a prediction was right or wrong, in plain language, built from the result alone.

:func:`error_report` compares a :class:`~geodemo.result.LocationResult` with the true location
(EXIF GPS or an example's ground truth): great-circle error, the accuracy bands it falls in
(1, 25, 200, 750, 2500 km, strict ``<`` as in the evaluation protocol) and, when the error is
large, sentences that trace the failure through the stages: where the neighbours were, how far the
main cluster was, whether a better candidate (or the LMM) lost verification, which stage failed.
The first sentence names the cause with the same words as the benchmark's cause table
(:func:`geodemo.eval.attribution.attribute`, failures from 750 km on).
Pure functions: no model runs here, only the recorded result is read.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from geodemo.eval.attribution import FAILURE_KM, Attribution, attribute
from geodemo.eval.metrics import SCALE_NAMES, THRESHOLDS_KM
from geodemo.geo import haversine_km
from geodemo.result import LocationResult, Neighbour

__all__ = [
    "ACCURACY_BANDS_KM",
    "BAND_NAMES",
    "ErrorReport",
    "accuracy_bands",
    "cause_sentence",
    "error_report",
    "explain_failure",
]

ACCURACY_BANDS_KM: tuple[float, ...] = THRESHOLDS_KM  # the evaluation protocol's thresholds
BAND_NAMES: dict[float, str] = SCALE_NAMES
LARGE_ERROR_KM = 200.0  # errors from here on get a failure explanation (outside the "region" band)

PlaceFn = Callable[[float, float], str | None]


@dataclass
class ErrorReport:
    """The prediction against the truth: error, bands met, and the explanation sentences."""

    error_km: float
    truth: tuple[float, float]
    bands: dict[float, bool]  # threshold km -> error < threshold
    explanation: list[str] = field(default_factory=list)  # empty when the error is small
    attribution: Attribution | None = None  # the stage that lost the truth (as in attribution.csv)

    @property
    def level(self) -> str:
        """The finest band met ("street" ... "continent"), or "beyond continent"."""
        for km in ACCURACY_BANDS_KM:
            if self.bands.get(km):
                return BAND_NAMES[km]
        return "beyond continent"

    @property
    def error_line(self) -> str:
        """One line: error, bands met and missed, e.g. "Error 312 km: within 750 km (country) ..."."""
        met = [f"{km:g} km" for km in ACCURACY_BANDS_KM if self.bands[km]]
        missed = [f"{km:g} km" for km in ACCURACY_BANDS_KM if not self.bands[km]]
        text = f"Error {_km(self.error_km)} ({self.level} level)"
        if met:
            text += f"; within {', '.join(met)}"
        if missed:
            text += f"; not within {', '.join(missed)}"
        return text

    @property
    def text(self) -> str:
        """The explanation as one paragraph ("" when the error is small)."""
        return " ".join(self.explanation)


def accuracy_bands(error_km: float) -> dict[float, bool]:
    """Which accuracy bands an error falls in: ``{1.0: False, 25.0: True, ...}`` (strict ``<``)."""
    return {km: bool(error_km < km) for km in ACCURACY_BANDS_KM}


def error_report(
    result: LocationResult,
    truth: tuple[float, float] | Sequence[float],
    *,
    large_km: float = LARGE_ERROR_KM,
    failure_km: float = FAILURE_KM,
    place_of: PlaceFn | None = None,
) -> ErrorReport:
    """Error, accuracy bands, the cause (failures from ``failure_km``) and, for errors >= ``large_km``,
    the failure explanation, whose first sentence is the cause.

    ``place_of(lat, lon) -> "City, Country"`` names places (e.g. the app's reverse geocoder);
    without it, neighbours' own ``place`` texts are used and points are given as coordinates.
    """
    t = (float(truth[0]), float(truth[1]))
    err = _dist(result.lat, result.lon, t)
    cause = attribute(result, t, threshold_km=failure_km)
    explanation = explain_failure(result, t, place_of=place_of, attribution=cause) if err >= large_km else []
    return ErrorReport(error_km=err, truth=t, bands=accuracy_bands(err), explanation=explanation, attribution=cause)


def cause_sentence(attribution: Attribution) -> str:
    """The cause in the cause table's words, e.g. "Lost at re-ranking (failures from 750 km on): ..."."""
    if not attribution.failed:
        return (f"Not a failure at the benchmark's {attribution.threshold_km:g} km threshold, "
                "so it is not in the cause table.")
    return f"Lost at **{attribution.cause}** (failures from {attribution.threshold_km:g} km on): {attribution.detail}"


def explain_failure(
    result: LocationResult,
    truth: tuple[float, float] | Sequence[float],
    *,
    place_of: PlaceFn | None = None,
    attribution: Attribution | None = None,
) -> list[str]:
    """Sentences that trace a wrong prediction through the recorded stages: the cause first (as
    :func:`geodemo.eval.attribution.attribute` words it; computed at 750 km unless given), then the
    evidence stage by stage."""
    t = (float(truth[0]), float(truth[1]))
    err = _dist(result.lat, result.lon, t)
    out: list[str] = [cause_sentence(attribution or attribute(result, t, threshold_km=FAILURE_KM))]
    truth_place = place_of(*t) if place_of else None
    pred_place = result.place or (place_of(result.lat, result.lon) if place_of else None)
    out.append(
        f"The prediction{_in(pred_place)} is {_km(err)} from the true location{_in(truth_place)}."
    )
    out.extend(_explain_neighbours(result.neighbours, t, place_of))
    out.extend(_explain_clusters(result, t, place_of))
    out.extend(_explain_candidates(result, t, err))
    out.extend(_explain_lmm(result, t, err))
    if decision_sentence(result):
        out.append(decision_sentence(result))
    if result.uncertainty_km and math.isfinite(result.uncertainty_km):
        inside = err <= result.uncertainty_km
        out.append(
            f"The prediction's own uncertainty radius ({_km(result.uncertainty_km)}) "
            + ("did contain the truth, so the result was flagged as unsure." if inside
               else "did not contain the truth: the pipeline was confidently wrong.")
        )
    if result.clues is not None and result.clues.summary:
        out.append(f"Text clues read in the photo: {result.clues.summary}.")
    for stage, message in result.errors.items():
        out.append(f"The {stage} stage failed ({_clip(message)}), so it could not help.")
    return out


# --- the stages -------------------------------------------------------------------------------


def _explain_neighbours(neighbours: list[Neighbour], truth: tuple[float, float], place_of: PlaceFn | None) -> list[str]:
    if not neighbours:
        return ["Retrieval returned no neighbours, so there was nothing to cluster or to show the LMM."]
    out = []
    top = neighbours[: min(5, len(neighbours))]
    places = [_country(n.place) or _country(place_of(n.lat, n.lon) if place_of else None) for n in top]
    known = [p for p in places if p]
    if known and len(known) == len(top):
        counts = Counter(known)
        where, count = counts.most_common(1)[0]
        if count == len(top):
            out.append(f"The {len(top)} nearest neighbours were all in {where}.")
        else:
            spread = ", ".join(f"{name} ({c})" for name, c in counts.most_common(3))
            out.append(f"The {len(top)} nearest neighbours were spread over {spread}.")
    dists = np.array([_dist(n.lat, n.lon, truth) for n in neighbours])
    near = np.flatnonzero(dists < LARGE_ERROR_KM)
    if near.size == 0:
        out.append(
            f"None of the {len(neighbours)} neighbours was within {LARGE_ERROR_KM:g} km of the truth "
            f"(closest: {_km(float(dists.min()))}): the gallery had no matching photo of this area."
        )
    else:
        best = int(near[0])
        out.append(
            f"{near.size} of the {len(neighbours)} neighbours were within {LARGE_ERROR_KM:g} km of the "
            f"truth (the first at rank {best + 1}), but they were outvoted."
        )
    return out


def _explain_clusters(result: LocationResult, truth: tuple[float, float], place_of: PlaceFn | None) -> list[str]:
    clustering = result.clusters_after or result.clusters_before
    if clustering is None:
        return []
    main = clustering.main
    if main is None:
        return [
            f"DBSCAN found no cluster among the neighbours (eps {clustering.eps_km:g} km, "
            f"min {clustering.min_samples} photos): they were scattered, so there was no consensus."
        ]
    d_main = _dist(main.centre_lat, main.centre_lon, truth)
    centre_place = place_of(main.centre_lat, main.centre_lon) if place_of else None
    where = f" in {centre_place}" if centre_place else ""
    out = [f"The main cluster ({main.support} photos{where}) was {_km(d_main)} from the truth."]
    others = [c for c in clustering.clusters if not c.is_main]
    if others:
        closest = min(others, key=lambda c: _dist(c.centre_lat, c.centre_lon, truth))
        d_other = _dist(closest.centre_lat, closest.centre_lon, truth)
        if d_other < d_main and d_other < LARGE_ERROR_KM:
            out.append(
                f"A smaller cluster of {closest.support} photos lay {_km(d_other)} from the truth "
                f"but had less support than the main one ({closest.support} vs {main.support})."
            )
    return out


def decision_sentence(result: LocationResult) -> str:
    """Which source's candidate won and with what probability ("" when no multi-source decision ran)."""
    d = result.decision or {}
    if not d.get("source"):
        return ""
    if d.get("calibration"):
        probs = ", ".join(f"P(within {k[2:-2]} km) {v:.2f}" for k, v in d.items() if k.startswith("p_"))
        return (f"The answer came from **{d['source']}**, the candidate with the best expected score under the "
                f"decision calibrated for `{d['calibration']}` ({probs}).")
    return f"The answer came from **{d['source']}**, chosen by {d.get('rule') or 'the default rule'}."


def _explain_candidates(result: LocationResult, truth: tuple[float, float], err: float) -> list[str]:
    if not result.candidates:
        return []
    dists = [_dist(c.lat, c.lon, truth) for c in result.candidates]
    i = int(np.argmin(dists))
    best, d_best = result.candidates[i], dists[i]
    if d_best >= 0.5 * err:
        return [f"No candidate was much closer: the best of {len(result.candidates)} was {_km(d_best)} away."]
    chosen = [
        c.score for c in result.candidates
        if c.score is not None and _dist(c.lat, c.lon, (result.lat, result.lon)) < 1.0
    ]
    if best.score is None:
        detail = " (it was not scored)"
    elif chosen:
        detail = f" (verifier score {best.score:.3f} vs {max(chosen):.3f} for the chosen point)"
    else:
        detail = f" (verifier score {best.score:.3f})"
    source = best.details.get("model", best.source) if best.source == "lmm:recorded" else best.source
    return [f"A candidate from {source} was only {_km(d_best)} from the truth but lost verification{detail}."]


def _explain_lmm(result: LocationResult, truth: tuple[float, float], err: float) -> list[str]:
    records = result.lmm_records
    if not records:
        return [] if "lmm" in result.errors else ["The LMM stage was off, so no model reasoning was added."]
    accepted = [r for r in records if r.accepted]
    if not accepted:
        failures = Counter(r.error and "backend errors" or (r.rejection or "unusable") for r in records)
        why = ", ".join(f"{k} ({v})" for k, v in failures.most_common(3))
        return [f"None of the LMM's {len(records)} answers gave a usable coordinate: {why}."]
    d = np.array([_dist(r.lat, r.lon, truth) for r in accepted])
    median = float(np.median(d))
    if median < err:
        return [f"The LMM's answers were closer (median {_km(median)}, best {_km(float(d.min()))}) "
                "but lost verification."]
    return [f"The LMM's {len(accepted)} answers did not help either (median {_km(median)} from the truth)."]


# --- small helpers -----------------------------------------------------------------------------


def _dist(lat: float, lon: float, truth: tuple[float, float]) -> float:
    return float(haversine_km(np.array([lat, lon], dtype=float), np.array(truth, dtype=float)))


def _km(value: float) -> str:
    return f"{value:,.0f} km" if value >= 10 else f"{value:.1f} km"


def _clip(text: str, limit: int = 160) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _in(place: str | None) -> str:
    return f" (in {place})" if place else ""


def _country(place: str | None) -> str | None:
    """Last comma-separated part of a place text ("Paris, Ile-de-France, France" -> "France")."""
    if not place:
        return None
    part = place.rsplit(",", 1)[-1].strip()
    return part or None
