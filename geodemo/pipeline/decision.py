"""The one place that turns a photo's evidence into the reported answer, ``confidence`` and ``uncertainty_km``.

**confidence** is the calibrated probability that the answer lies within ``radius_km`` (25 km,
city level) of where the photo was taken. It is a logistic function of evidence every preset has:

* ``support_25km``  share of the retrieved neighbours' similarity mass within 25 km of the answer;
* ``support_200km`` the same within 200 km (region level);
* ``reciprocal_match`` 1 when the answer is a gallery photo accepted as a reciprocal neighbour.

The weights were fitted on the IM2GPS3k dev split (the ``offline`` preset's answers with each photo's
photographer left out of the gallery, regularisation chosen by photographer-fold cross-validated
log-loss, :func:`fit_calibration`) and are stored with their provenance in
``geodemo/pipeline/calibration/<name>.json``; the faithful presets' decisions use it.

**The multi-source decision** (``decide.calibrated``, second half of this module) scores every candidate
of every source with a model fitted per source set (``calibration/decision/<set>.json``,
``scripts/calibrate_confidence.py``); its winner's P(within 25 km) is the confidence there.

**uncertainty_km** is the median great-circle distance from the answer to the other best evidence:
the next ``top`` candidates by verifier score, or, when no verifier scored them (DualGeo's rule:
the LMM's answer is final), the first ``top`` re-ranked neighbours; at least 1 km.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from geodemo.geo import haversine_km
from geodemo.result import LocationResult
from geodemo.scoring.fusion import group_folds
from geodemo.storage import write_text

__all__ = ["CALIBRATION_DIR", "FEATURES", "Calibration", "confidence_features", "confidence",
           "uncertainty_km", "load_calibration", "fit_calibration", "DecisionModel", "Evidence", "candidate_features",
           "fit_decision", "cross_validated_decisions", "load_decision", "default_choice", "own_choice", "rule_choice",
           "reciprocal_candidate",
           "source_of", "source_set_name"]

CALIBRATION_DIR = Path(__file__).with_name("calibration")
FEATURES = ("support_25km", "support_200km", "reciprocal_match")


def _support(answer: np.ndarray, coords: np.ndarray, sims: np.ndarray, radius_km: float) -> float:
    if len(coords) == 0:
        return 0.0
    w = np.clip(np.asarray(sims, dtype=np.float64), 0.0, None)
    if w.sum() <= 0:
        w = np.ones(len(coords))
    near = haversine_km(np.asarray(coords, dtype=np.float64), np.asarray(answer, dtype=np.float64)[None, :]) <= radius_km
    return float((w * near).sum() / w.sum())


def confidence_features(answer: tuple[float, float], neighbour_coords: np.ndarray,
                        neighbour_similarities: np.ndarray, reciprocal_match: bool) -> np.ndarray:
    """The evidence vector (in ``FEATURES`` order) behind the confidence of one answer."""
    a = np.asarray(answer, dtype=np.float64)
    if not np.all(np.isfinite(a)):
        return np.zeros(len(FEATURES))
    nb = np.asarray(neighbour_coords, dtype=np.float64).reshape(-1, 2)
    return np.array([
        _support(a, nb, neighbour_similarities, 25.0),
        _support(a, nb, neighbour_similarities, 200.0),
        float(bool(reciprocal_match)),
    ])


@dataclass
class Calibration:
    """Logistic map from :data:`FEATURES` to P(error < ``radius_km``), with where it came from."""

    radius_km: float
    features: list[str]
    coef: list[float]
    intercept: float
    provenance: dict[str, Any] = field(default_factory=dict)

    def probability(self, x: np.ndarray) -> float:
        if list(self.features) != list(FEATURES):
            raise ValueError(f"calibration features {self.features} do not match {list(FEATURES)}")
        z = float(self.intercept + np.dot(self.coef, np.asarray(x, dtype=np.float64)))
        return float(1.0 / (1.0 + math.exp(-z)))

    def save(self, path: str | Path) -> Path:

        return write_text(path, json.dumps(asdict(self), indent=2) + "\n")


@lru_cache(maxsize=8)
def load_calibration(name_or_path: str) -> Calibration:
    """A calibration by name (``geodemo/pipeline/calibration/<name>.json``) or JSON path."""
    path = Path(name_or_path)
    if path.suffix != ".json":
        path = CALIBRATION_DIR / f"{name_or_path}.json"
    if not path.is_file():
        known = sorted(p.stem for p in CALIBRATION_DIR.glob("*.json"))
        raise FileNotFoundError(f"no confidence calibration {name_or_path!r}; known: {', '.join(known) or 'none'}; "
                                "fit one with scripts/calibrate_confidence.py")
    data = json.loads(path.read_text())
    return Calibration(float(data["radius_km"]), list(data["features"]), [float(c) for c in data["coef"]],
                       float(data["intercept"]), dict(data.get("provenance") or {}))


def confidence(features: np.ndarray, calibration: Calibration) -> float:
    """P(the answer is within ``calibration.radius_km``) for the evidence vector ``features``."""
    return calibration.probability(features)


def uncertainty_km(answer: tuple[float, float], candidate_coords: np.ndarray, scores: np.ndarray | None,
                   best: int | None, neighbour_coords: np.ndarray, top: int = 5, floor_km: float = 1.0,
                   fallback_km: float = 50.0) -> float:
    """Median distance from ``answer`` to the next ``top`` scored candidates (or, without scores, to
    the first ``top`` neighbours), at least ``floor_km``; ``fallback_km`` when there is no other evidence."""
    a = np.asarray(answer, dtype=np.float64)
    if not np.all(np.isfinite(a)):
        return math.nan
    if scores is not None and len(scores):
        order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")[:top]
        others = np.asarray(candidate_coords, dtype=np.float64).reshape(-1, 2)[[i for i in order.tolist() if i != best]]
    else:
        others = np.asarray(neighbour_coords, dtype=np.float64).reshape(-1, 2)[:top]
    if len(others) == 0:
        return float(fallback_km)
    return float(max(np.median(haversine_km(others, a[None, :])), floor_km))


def fit_calibration(x: np.ndarray, hit: np.ndarray, folds: np.ndarray, radius_km: float = 25.0,
                    c_grid: tuple[float, ...] = (0.01, 0.1, 1.0, 10.0, 100.0),
                    provenance: dict[str, Any] | None = None) -> tuple[Calibration, dict[str, Any]]:
    """Logistic calibration of ``hit`` (answer within ``radius_km``) on evidence ``x`` (N, F).

    The inverse regularisation ``C`` is chosen by photographer-fold cross-validated log-loss (each
    fold's photos predicted by a fit on the other folds); the returned calibration is refitted on
    every photo. The report holds the chosen ``C`` and the out-of-fold log-loss, Brier score and
    expected calibration error (10 bins) of that choice, next to the base rate's.
    """
    from sklearn.linear_model import LogisticRegression

    x, y, folds = np.asarray(x, np.float64), np.asarray(hit, bool).astype(int), np.asarray(folds)

    def out_of_fold(c: float) -> np.ndarray:
        p = np.zeros(len(y))
        for k in np.unique(folds):
            train, test = folds != k, folds == k
            if len(np.unique(y[train])) < 2:
                p[test] = y[train].mean()
                continue
            p[test] = LogisticRegression(C=c, max_iter=1000).fit(x[train], y[train]).predict_proba(x[test])[:, 1]
        return np.clip(p, 1e-6, 1 - 1e-6)

    def log_loss(p: np.ndarray) -> float:
        return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))

    def ece(p: np.ndarray, bins: int = 10) -> float:
        idx = np.minimum((p * bins).astype(int), bins - 1)
        return float(sum(abs(p[idx == b].mean() - y[idx == b].mean()) * (idx == b).mean()
                         for b in range(bins) if (idx == b).any()))

    scores = {c: log_loss(out_of_fold(c)) for c in c_grid}
    best_c = min(scores, key=scores.get)
    p = out_of_fold(best_c)
    base = np.full(len(y), np.clip(y.mean(), 1e-6, 1 - 1e-6))
    model = LogisticRegression(C=best_c, max_iter=1000).fit(x, y)
    report = {"C": best_c, "cv_log_loss_by_C": {str(c): round(v, 5) for c, v in scores.items()},
              "cv_log_loss": round(log_loss(p), 5), "cv_brier": round(float(np.mean((p - y) ** 2)), 5),
              "cv_ece": round(ece(p), 5), "base_rate": round(float(y.mean()), 5),
              "base_rate_log_loss": round(log_loss(base), 5), "photos": int(len(y)),
              "folds": int(len(np.unique(folds)))}
    cal = Calibration(float(radius_km), list(FEATURES), [float(v) for v in model.coef_[0]],
                      float(model.intercept_[0]), {**(provenance or {}), "fit": report})
    return cal, report


# ============================================================================ multi-source decision
#
# Every candidate (the preset's own retrieval / cluster-centre / GPS-gallery points, an LMM's answers,
# another geolocator's recorded predictions) gets the same evidence vector; a model fitted by
# photographer folds on the dev split turns it into P(within 25 km) and P(within 750 km), and the
# candidate with the largest expected score P25 + P750 wins. Sources are compared only through these
# calibrated probabilities, never by one source's raw score against another's.

RADII_KM = (25.0, 750.0)
BASE_SOURCES = ("retrieval", "cluster-centre", "gps-gallery", "text-gallery", "geoclip")  # a preset's own candidates
DECISION_DIR = CALIBRATION_DIR / "decision"
_FAR = math.log1p(20_038.0)  # half the Earth's circumference, the largest great-circle distance


def source_of(candidate: Any) -> str:
    """The source a candidate counts for: an LMM's answers count for the model that gave them."""
    source = candidate.source if hasattr(candidate, "source") else candidate["source"]
    details = candidate.details if hasattr(candidate, "details") else candidate.get("details") or {}
    if source.startswith("lmm:"):
        return str(details.get("model") or "lmm")
    return source


def source_set_name(base: str, external: list[str] | tuple[str, ...] | set[str]) -> str:
    """``offline``, ``offline+gemini-2.0-flash``, ... : the base preset then the other sources, sorted."""
    return "+".join([base, *sorted(set(external))])


def reciprocal_candidate(candidates: list[Any], match_id: str | None) -> int | None:
    """The retrieval candidate of the accepted reciprocal-match photo ``match_id``, or None."""
    if match_id is None:
        return None
    return next((i for i, c in enumerate(candidates)
                 if c.source == "retrieval" and c.details.get("id") == match_id), None)


def rule_choice(candidates: list[Any], match_id: str | None) -> int | None:
    """Today's rule (G3's): the reciprocal-match retrieval candidate when one was accepted, else the
    verifier's argmax (first of ties); None without scores."""
    match = reciprocal_candidate(candidates, match_id)
    if match is not None:
        return match
    scores = [c.score for c in candidates]
    if not candidates or any(s is None or not math.isfinite(s) for s in scores):
        return None
    return int(np.argmax(np.asarray(scores, dtype=np.float64)))


@dataclass(frozen=True)
class Evidence:
    """What the features of a photo's candidates are computed from (a stage's context or a stored result)."""

    candidates: list[Any]  # geodemo.result.Candidate
    neighbour_coords: np.ndarray  # (K, 2)
    neighbour_similarities: np.ndarray  # (K,)
    lmm_points: np.ndarray  # (L, 2) every accepted LMM sample
    match_id: str | None  # the accepted reciprocal-match photo, if any
    rule: int | None  # today's rule's choice

    @classmethod
    def from_result(cls, result: Any, sources: set[str] | None = None) -> Evidence:
        """The evidence of a finished :class:`~geodemo.result.LocationResult` (or its dict), keeping only
        the candidates of ``sources`` (None: all); today's rule is re-applied to those candidates."""

        r = result if isinstance(result, LocationResult) else LocationResult.from_dict(result)
        cands = [c for c in r.candidates if sources is None or source_of(c) in sources]
        match_id = r.match.id if r.match is not None and r.match.accepted else None
        models = {source_of(c) for c in cands}
        lmm = np.array([[x.lat, x.lon] for x in r.lmm_records if x.accepted and (sources is None or x.model in models)],
                       dtype=np.float64).reshape(-1, 2)
        return cls(cands, np.array([[n.lat, n.lon] for n in r.neighbours], dtype=np.float64).reshape(-1, 2),
                   np.array([n.similarity for n in r.neighbours], dtype=np.float64), lmm, match_id,
                   rule_choice(cands, match_id))


def feature_names(sources: list[str]) -> list[str]:
    """The evidence vector's names for a source set (``sources``: the model's source vocabulary)."""
    per = lambda prefix: [f"{prefix}:{s}" for s in sources]  # noqa: E731
    return [*per("is"), *per("score"), "score_margin", "has_score", "log_rank", "support_25km", "support_200km",
            *per("near"), *per("present"), "sources_within_200km", "lmm_share_25km", "lmm_share_200km",
            "log_clue_prior", "reciprocal_match", "rule_choice"]


def candidate_features(ev: Evidence, sources: list[str]) -> np.ndarray:
    """(C, F) evidence of every candidate, in :func:`feature_names` order."""
    cands, m = ev.candidates, len(sources)
    if not cands:
        return np.zeros((0, len(feature_names(sources))))
    coords = np.array([[c.lat, c.lon] for c in cands], dtype=np.float64)
    src = [source_of(c) for c in cands]
    col = {s: k for k, s in enumerate(sources)}
    dist = haversine_km(coords[:, None, :], coords[None, :, :])  # (C, C)
    match = reciprocal_candidate(cands, ev.match_id)
    scores = np.array([np.nan if c.score is None else c.score for c in cands], dtype=np.float64)
    rows = []
    for i, c in enumerate(cands):
        own = col.get(src[i])
        onehot = np.zeros(m)
        score = np.zeros(m)
        if own is not None:
            onehot[own] = 1.0
        has = bool(np.isfinite(scores[i]))
        same = [j for j in range(len(cands)) if src[j] == src[i]]
        if has and own is not None:
            score[own] = scores[i]
        peers = scores[same][np.isfinite(scores[same])]
        margin = float(scores[i] - peers.max()) if has and len(peers) else 0.0
        rank = same.index(i)
        near, present = np.ones(m), np.zeros(m)
        within = 0
        for k, s in enumerate(sources):
            others = [j for j in range(len(cands)) if src[j] == s]
            present[k] = float(bool(others))
            if s == src[i]:
                near[k] = 0.0
            elif others:
                d = float(dist[i, others].min())
                near[k] = math.log1p(d) / _FAR
                within += d <= 200.0
        if len(ev.lmm_points):
            dl = haversine_km(ev.lmm_points, coords[i][None, :])
            lmm25, lmm200 = float((dl <= 25.0).mean()), float((dl <= 200.0).mean())
        else:
            lmm25 = lmm200 = 0.0
        prior = float(c.details.get("clue_prior", 1.0) or 1.0)
        recip = float(i == match)
        rows.append(np.concatenate([
            onehot, score, [margin, float(has), math.log1p(rank),
                            _support(coords[i], ev.neighbour_coords, ev.neighbour_similarities, 25.0),
                            _support(coords[i], ev.neighbour_coords, ev.neighbour_similarities, 200.0)],
            near, present, [float(within), lmm25, lmm200, math.log(max(prior, 1e-6)), recip, float(ev.rule == i)]]))
    return np.vstack(rows)


FAMILIES = ("shared", "per-source")


def _design(x: np.ndarray, family: str, m: int) -> np.ndarray:
    """The model's inputs: the features (``shared``), or every feature times the candidate's own-source
    indicator as well (``per-source``: one slope per source for each piece of evidence)."""
    if family == "shared":
        return x
    onehot = x[:, :m]
    return np.hstack([x, *(x[:, m:] * onehot[:, [k]] for k in range(m))])


@dataclass
class DecisionModel:
    """P(within each radius) of a candidate from its evidence, for one source set."""

    source_set: str
    sources: list[str]
    family: str
    radii_km: list[float]
    mean: list[float]
    scale: list[float]
    coef: list[list[float]]  # one row per radius
    intercept: list[float]
    provenance: dict[str, Any] = field(default_factory=dict)

    def probabilities(self, x: np.ndarray) -> np.ndarray:
        """(C, len(radii)) probabilities for the (C, F) evidence ``x``."""
        return self.probabilities_design(_design(np.asarray(x, np.float64), self.family, len(self.sources)))

    def probabilities_design(self, design: np.ndarray) -> np.ndarray:
        """The same for rows already expanded by the model's family."""
        z = (np.asarray(design, np.float64) - np.asarray(self.mean)) / np.asarray(self.scale)
        logits = np.clip(z @ np.asarray(self.coef).T + np.asarray(self.intercept), -50, 50)
        return 1.0 / (1.0 + np.exp(-logits))

    def choose(self, x: np.ndarray) -> tuple[int, np.ndarray]:
        """The candidate with the best expected score (sum of its probabilities) and every probability."""
        p = self.probabilities(x)
        return int(np.argmax(p.sum(axis=1))), p

    def save(self, path: str | Path) -> Path:

        return write_text(path, json.dumps(asdict(self), indent=1) + "\n")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DecisionModel:
        known = {f for f in cls.__dataclass_fields__}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"decision model has unknown key(s) {unknown}")
        model = cls(**data)
        if model.family not in FAMILIES or len(model.coef) != len(model.radii_km):
            raise ValueError(f"decision model {model.source_set!r} is malformed")
        return model


@lru_cache(maxsize=32)
def load_decision(source_set: str) -> DecisionModel | None:
    """The decision model fitted for ``source_set`` (``calibration/decision/<set>.json``), or None."""
    path = Path(source_set) if source_set.endswith(".json") else DECISION_DIR / f"{source_set}.json"
    if not path.is_file():
        return None
    return DecisionModel.from_dict(json.loads(path.read_text()))


def own_choice(ev: Evidence, base: set[str]) -> int | None:
    """Today's rule among the preset's own candidates (sources in ``base``) only: the preset's own answer."""
    own = [i for i, c in enumerate(ev.candidates) if source_of(c) in base]
    pick = rule_choice([ev.candidates[i] for i in own], ev.match_id)
    return None if pick is None else own[pick]


def default_choice(ev: Evidence, base: set[str]) -> int | None:
    """The rule used when no model was fitted for a source set. Each source puts forward one answer (the
    preset's own by today's rule among its candidates, every other source its first candidate); the answer
    that most other sources' candidates lie within 200 km of wins, ties going to the preset's own answer.
    No score of one source is ranked against another's."""
    cands = ev.candidates
    if not cands:
        return None
    src = [source_of(c) for c in cands]
    own_pick = own_choice(ev, base)
    answers = ([own_pick] if own_pick is not None else []) + [src.index(s) for s in dict.fromkeys(src) if s not in base]
    if not answers:
        return ev.rule
    coords = np.array([[c.lat, c.lon] for c in cands])
    group = ["own" if s in base else s for s in src]  # the preset's own candidates are one source
    support = []
    for i in answers:
        d = haversine_km(coords, coords[i][None, :])
        support.append(len({group[j] for j in range(len(cands)) if d[j] <= 200.0 and group[j] != group[i]}))
    return answers[int(np.argmax(support))]  # first of ties: the preset's own answer comes first


def source_vocabulary(evidences: list[Evidence], external: list[str]) -> list[str]:
    """The sources a model for these photos knows: the preset's own kinds seen, then the other sources."""
    seen = {source_of(c) for ev in evidences for c in ev.candidates}
    return [s for s in BASE_SOURCES if s in seen] + sorted(set(external))


def _stack(evidences: list[Evidence], truths: np.ndarray, sources: list[str], family: str,
           features: list[np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Design rows of every candidate, its photo's index and its great-circle error (``features``: each
    photo's :func:`candidate_features`, when already computed)."""
    xs, idx, err = [], [], []
    for p, ev in enumerate(evidences):
        if not ev.candidates:
            continue
        x = features[p] if features is not None else candidate_features(ev, sources)
        xs.append(_design(x, family, len(sources)))
        coords = np.array([[c.lat, c.lon] for c in ev.candidates], dtype=np.float64)
        err.append(haversine_km(coords, np.asarray(truths[p], np.float64)[None, :]))
        idx.append(np.full(len(ev.candidates), p))
    width = len(_design(np.zeros((1, len(feature_names(sources)))), family, len(sources))[0])
    if not xs:
        return np.zeros((0, width)), np.zeros(0, int), np.zeros(0)
    return np.vstack(xs), np.concatenate(idx), np.concatenate(err)


def _fit_heads(x: np.ndarray, err: np.ndarray, c: float, radii: tuple[float, ...]) -> tuple[list, list, list, list]:
    """Standardisation and one logistic regression per radius (a constant where every label is the same).
    Newton-Cholesky on one BLAS thread: many rows, few columns (on a busy 2-core machine, threads that
    spin-wait made each fit several times slower)."""
    from sklearn.linear_model import LogisticRegression
    from threadpoolctl import threadpool_limits

    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale[scale < 1e-9] = 1.0
    z = (x - mean) / scale
    coef, intercept = [], []
    for radius in radii:
        y = (err < radius).astype(int)
        if y.min() == y.max():
            rate = np.clip(y.mean(), 1e-4, 1 - 1e-4)
            coef.append([0.0] * x.shape[1])
            intercept.append(float(np.log(rate / (1 - rate))))
            continue
        with threadpool_limits(1):
            lr = LogisticRegression(C=c, solver="newton-cholesky", max_iter=200).fit(z, y)
        coef.append([float(v) for v in lr.coef_[0]])
        intercept.append(float(lr.intercept_[0]))
    return mean.tolist(), scale.tolist(), coef, intercept


def _log_loss(p: np.ndarray, err: np.ndarray, radii: tuple[float, ...]) -> float:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    losses = [-np.mean(np.where(err < r, np.log(p[:, k]), np.log(1 - p[:, k]))) for k, r in enumerate(radii)]
    return float(np.mean(losses))


def _model(source_set: str, sources: list[str], family: str, radii: tuple[float, ...], fitted: tuple,
           provenance: dict[str, Any] | None = None) -> DecisionModel:
    mean, scale, coef, intercept = fitted
    return DecisionModel(source_set, list(sources), family, list(radii), mean, scale, coef, intercept,
                         dict(provenance or {}))


def _select(evidences: list[Evidence], truths: np.ndarray, folds: np.ndarray, sources: list[str],
            families: tuple[str, ...], c_grid: tuple[float, ...], radii: tuple[float, ...],
            features: list[np.ndarray]) -> tuple[str, float, dict[str, float]]:
    """Family and C with the lowest candidate log-loss over ``folds`` (each fold predicted by the others)."""
    losses: dict[str, float] = {}
    for family in families:
        x, idx, err = _stack(evidences, truths, sources, family, features)
        photo_fold = folds[idx]
        for c in c_grid:
            p = np.zeros((len(x), len(radii)))
            for k in np.unique(folds):
                train, test = photo_fold != k, photo_fold == k
                if not test.any() or not train.any():
                    continue
                m = _model("cv", sources, family, radii, _fit_heads(x[train], err[train], c, radii))
                p[test] = m.probabilities_design(x[test])
            losses[f"{family}|{c:g}"] = _log_loss(p, err, radii)
    best = min(losses, key=losses.get)
    family, c = best.split("|")
    return family, float(c), losses


def fit_decision(evidences: list[Evidence], truths: np.ndarray, groups: list[str], ids: list[str],
                 sources: list[str], source_set: str, num_folds: int = 5, families: tuple[str, ...] = FAMILIES,
                 c_grid: tuple[float, ...] = (0.03, 0.3, 3.0), radii: tuple[float, ...] = RADII_KM,
                 provenance: dict[str, Any] | None = None, features: list[np.ndarray] | None = None
                 ) -> tuple[DecisionModel, dict[str, Any]]:
    """The decision model of one source set, fitted on every photo; family and C chosen by
    photographer-fold candidate log-loss (``num_folds`` folds of ``groups``)."""

    truths = np.asarray(truths, np.float64)
    features = features if features is not None else [candidate_features(ev, sources) for ev in evidences]
    folds = group_folds(list(groups), list(ids), num_folds, seed=1)
    family, c, losses = _select(evidences, truths, folds, sources, families, c_grid, radii, features)
    x, _, err = _stack(evidences, truths, sources, family, features)
    report = {"family": family, "C": c, "cv_log_loss": {k: round(v, 5) for k, v in losses.items()},
              "photos": len(evidences), "candidates": int(len(x)), "folds": num_folds,
              "features": feature_names(sources)}
    model = _model(source_set, sources, family, radii, _fit_heads(x, err, c, radii),
                   {**(provenance or {}), "fit": report})
    return model, report


def cross_validated_decisions(evidences: list[Evidence], truths: np.ndarray, groups: list[str], ids: list[str],
                              sources: list[str], num_folds: int = 5, **fit_options: Any) -> dict[str, Any]:
    """Each photo decided by a model fitted (family and C chosen inside) on the other folds' photographers.

    Returns ``choice`` (candidate index per photo, -1 without candidates), ``p`` (its probabilities),
    ``fold`` and ``training_groups`` (per fold: the photographers its model saw), so a table built from
    it never applies a calibration to its own photographers' rows.
    """

    truths = np.asarray(truths, np.float64)
    features = [candidate_features(ev, sources) for ev in evidences]
    folds = group_folds(list(groups), list(ids), num_folds)
    choice = np.full(len(evidences), -1)
    probs = np.full((len(evidences), len(fit_options.get("radii", RADII_KM))), np.nan)
    training_groups: dict[int, set[str]] = {}
    for k in np.unique(folds):
        train = [i for i in range(len(evidences)) if folds[i] != k]
        training_groups[int(k)] = {groups[i] for i in train}
        model, _ = fit_decision([evidences[i] for i in train], truths[train], [groups[i] for i in train],
                                [ids[i] for i in train], sources, "cv", max(2, num_folds - 1),
                                features=[features[i] for i in train], **fit_options)
        for i in np.flatnonzero(folds == k):
            if evidences[i].candidates:
                choice[i], p = model.choose(features[i])
                probs[i] = p[choice[i]]
    return {"choice": choice, "p": probs, "fold": folds, "training_groups": training_groups, "features": features}
