"""The fusion rule: one weighted log-linear score over a photo's candidates, fitted by grouped CV.

    score(c) = sum_f w_f * feature_f(c)        (features: ``geodemo.scoring.features.FEATURES``)
    answer   = argmax_c score(c)

The weights are those of a conditional-logit model: for each training photo, the candidates form a
softmax ``p(c) = exp(score(c)) / sum exp(score)`` and the fit minimises the cross-entropy to a soft
target that favours candidates near the truth, ``q(c) ~ exp(-(d(c, truth) - min d) / tau_km)``,
plus an L2 penalty (convex; L-BFGS). Features are standardised for the fit and the weights mapped
back, so a saved weight multiplies the raw feature. Weights are fitted on the dev split only, by
K-fold cross-validation over photographers (``group_folds``) so that a photo's own photographer
never contributes to the weights that score it.
"""

from __future__ import annotations

import datetime as _dt
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from geodemo.data.folds import group_fold
from geodemo.paths import MissingResourceError
from geodemo.storage import write_text

__all__ = [
    "FusionWeights",
    "fit_fusion",
    "group_folds",
    "cross_validated_choices",
    "cross_entropy",
    "load_weights",
    "WEIGHTS_DIR",
]

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"


@dataclass
class FusionWeights:
    """Weights of the log-linear rule, with how they were fitted (saved as JSON)."""

    features: list[str]
    weights: list[float]
    meta: dict[str, Any] = field(default_factory=dict)

    def score(self, features: np.ndarray, names: list[str] | tuple[str, ...] | None = None) -> np.ndarray:
        """Scores ``(M,)`` of candidate features ``(M, F)`` whose columns are ``names`` (default: ours)."""
        x = np.asarray(features, dtype=np.float64)
        names = list(names) if names is not None else self.features
        w = np.zeros(len(names))
        for name, weight in zip(self.features, self.weights, strict=True):
            if name in names:
                w[names.index(name)] = weight
        return x @ w

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    def save(self, path: str | Path) -> Path:
        return write_text(path, self.to_json() + "\n")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FusionWeights:
        if len(data["features"]) != len(data["weights"]):
            raise ValueError("fusion weights: 'features' and 'weights' differ in length")
        return cls(list(data["features"]), [float(w) for w in data["weights"]], dict(data.get("meta", {})))


def load_weights(name_or_path: str | Path) -> FusionWeights:
    """Weights by name (``"offline"`` -> ``geodemo/scoring/weights/offline.json``) or JSON path."""
    path = Path(name_or_path)
    if not path.suffix:
        path = WEIGHTS_DIR / f"{name_or_path}.json"
    if not path.is_file():
        raise MissingResourceError(
            f"fusion weights {str(name_or_path)!r} not found at {path}; fit them with "
            "`python scripts/ablate.py --benchmark im2gps3k-dev --save-weights offline`"
        )
    return FusionWeights.from_dict(json.loads(path.read_text()))


def group_folds(groups: list[str | None], ids: list[str], num_folds: int, seed: int = 0) -> np.ndarray:
    """Fold of each photo: a stable hash of its photographer (its id when there is none).

    Uses :func:`geodemo.data.folds.group_fold`, as the trainer does, so fusion folds and fold verifiers
    hold out the same photographers.
    """
    keys = [g if g else f"id:{i}" for g, i in zip(groups, ids, strict=True)]
    return np.array([group_fold(k, num_folds, seed) for k in keys])


def _soft_targets(distances_km: np.ndarray, tau_km: float) -> np.ndarray:
    d = np.asarray(distances_km, dtype=np.float64)
    q = np.exp(-(d - d.min()) / tau_km)
    return q / q.sum()


def fit_fusion(
    features: list[np.ndarray],
    distances_km: list[np.ndarray],
    names: list[str] | tuple[str, ...],
    *,
    l2: float = 1e-2,
    tau_km: float = 3000.0,
    nonnegative: tuple[str, ...] = ("clue",),
    meta: dict[str, Any] | None = None,
) -> FusionWeights:
    """Fit the weights on photos given as per-photo candidate features ``(M_i, F)`` and the
    candidates' distances to that photo's truth ``(M_i,)``.

    ``nonnegative`` features keep a weight >= 0: the clue prior may shrink to no effect but never
    invert (favour countries whose language the photo does NOT show); on the dev split only a few
    photos carry a clue, so its sign would otherwise be noise. ``tau_km`` (default 3000, chosen on
    the dev split among 50/300/1000/3000 by the cross-validated ablation) sets how sharply the target
    prefers the nearest candidates.
    """
    from scipy.optimize import minimize

    keep = [i for i, x in enumerate(features) if len(x) > 1]
    if not keep:
        raise ValueError("fit_fusion needs photos with at least two candidates")
    xs = [np.asarray(features[i], dtype=np.float64) for i in keep]
    qs = [_soft_targets(distances_km[i], tau_km) for i in keep]
    allx = np.concatenate(xs)
    mu, sd = allx.mean(0), allx.std(0)
    sd[sd < 1e-9] = 1.0  # a constant feature gets no weight
    zs = [(x - mu) / sd for x in xs]
    n = len(zs)

    def objective(w: np.ndarray) -> tuple[float, np.ndarray]:
        loss, grad = 0.5 * l2 * float(w @ w), l2 * w
        for z, q in zip(zs, qs, strict=True):
            s = z @ w
            s = s - s.max()
            p = np.exp(s)
            p /= p.sum()
            loss -= float(q @ np.log(p + 1e-300)) / n
            grad = grad + z.T @ (p - q) / n
        return loss, grad

    w0 = np.zeros(allx.shape[1])
    bounds = [(0.0, None) if name in nonnegative else (None, None) for name in names]
    res = minimize(objective, w0, jac=True, method="L-BFGS-B", bounds=bounds)
    w = res.x / sd
    w[allx.std(0) < 1e-9] = 0.0
    info = {
        "rule": "score = sum_f w_f * feature_f; answer = argmax over candidates",
        "objective": f"conditional logit, soft target exp(-d/{tau_km:g} km), L2 {l2:g} on standardised features",
        "nonnegative": list(nonnegative),
        "photos": n,
        "loss": float(res.fun),
        "fitted": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        **(meta or {}),
    }
    return FusionWeights(list(names), [float(v) for v in w], info)


def cross_validated_choices(
    features: list[np.ndarray],
    distances_km: list[np.ndarray],
    folds: np.ndarray,
    names: list[str] | tuple[str, ...],
    **fit_kwargs: Any,
) -> tuple[np.ndarray, list[FusionWeights]]:
    """Index of the chosen candidate of every photo, each scored by weights fitted on the other
    folds (out-of-fold), and the per-fold weights."""
    folds = np.asarray(folds)
    choice = np.zeros(len(features), dtype=int)
    fitted = []
    for k in np.unique(folds):
        train = [i for i in range(len(features)) if folds[i] != k]
        w = fit_fusion([features[i] for i in train], [distances_km[i] for i in train], names,
                       meta={"held_out_fold": int(k)}, **fit_kwargs)
        fitted.append(w)
        for i in np.flatnonzero(folds == k):
            if len(features[i]):
                choice[i] = int(np.argmax(w.score(features[i], names)))
    return choice, fitted


def cross_entropy(
    weights: FusionWeights | None,
    features: list[np.ndarray],
    distances_km: list[np.ndarray],
    names: list[str] | tuple[str, ...],
    tau_km: float = 3000.0,
) -> float:
    """Mean cross-entropy between the soft near-truth targets and the rule's softmax over each photo's
    candidates (``weights=None``: the uniform rule, the chance level)."""
    losses = []
    for x, d in zip(features, distances_km, strict=True):
        if len(x) < 2:
            continue
        q = _soft_targets(d, tau_km)
        s = np.zeros(len(x)) if weights is None else weights.score(x, names)
        s = s - s.max()
        logp = s - np.log(np.exp(s).sum())
        losses.append(-float(q @ logp))
    return float(np.mean(losses)) if losses else float("nan")
