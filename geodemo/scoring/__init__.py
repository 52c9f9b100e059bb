"""Fusion of evidence: one documented log-linear scoring rule over a photo's candidates.

    cs = gather_candidates(result, embedding, aligner, gps_db, clues)   # candidates + features
    weights = load_weights("offline")                                   # fitted on the dev split
    best = cs.coords[np.argmax(weights.score(cs.features))]

Features and the rule are documented in ``geodemo.scoring.features`` and ``geodemo.scoring.fusion``;
``scripts/ablate.py --save-weights offline`` fits the weights by photographer-grouped cross-validation.
"""

from geodemo.scoring.evidence import CandidateSet, gather_candidates
from geodemo.scoring.features import FEATURES, Evidence, candidate_features
from geodemo.scoring.fusion import (
    FusionWeights,
    cross_entropy,
    cross_validated_choices,
    fit_fusion,
    group_folds,
    load_weights,
)

__all__ = [
    "FEATURES",
    "Evidence",
    "CandidateSet",
    "FusionWeights",
    "candidate_features",
    "gather_candidates",
    "fit_fusion",
    "cross_validated_choices",
    "cross_entropy",
    "group_folds",
    "load_weights",
]
