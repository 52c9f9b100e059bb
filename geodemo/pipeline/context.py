"""What one ``locate`` call carries from stage to stage."""

from __future__ import annotations

import math
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from geodemo.result import LocationResult, Neighbour

if TYPE_CHECKING:
    from geodemo.pipeline.components import Components
    from geodemo.pipeline.options import LocateOptions
    from geodemo.retrieval.verify import Verification

__all__ = ["LocateContext", "new_result"]


def new_result(preset: str) -> LocationResult:
    """An empty result: no answer yet (NaN), confidence 0."""
    return LocationResult(lat=math.nan, lon=math.nan, place=None, confidence=0.0, uncertainty_km=math.nan,
                          verifier="none", preset=preset)


@dataclass
class LocateContext:
    """The photo, the per-call options, the components and every piece of per-photo evidence.

    Stages read and write it; ``result`` is the :class:`LocationResult` the caller sees (its
    ``lat``/``lon`` hold the best answer so far). Evidence that several stages use is computed once
    here: the retrieval vector (``embedding``), the encoder's raw ``features``, the descriptor's own
    image->GPS embedding (``gps``) and the aligner's (:meth:`aligner_gps`).
    """

    result: LocationResult
    options: LocateOptions
    components: Components
    stage_names: tuple[str, ...] = ()
    source: Any = None  # what the caller passed (path, bytes, PIL image)
    budget: Any = None  # a geodemo.imageio.PhotoBudget the load stage decodes within (None: the library's limits)
    photo_id: str | None = None  # the photo's file name (recorded sources are keyed by it), None for bytes
    sources: list[str] = field(default_factory=list)  # sources beside the preset's own (LMMs, recorded)
    image: Any = None  # the decoded RGB photo
    display: bool = True  # False: skip what only the page shows (segmentation, clue reading without a prior)
    use_lmm: bool = False  # the LMM stage runs in this call (preset, or the call's lmm.enabled)
    embedding: np.ndarray | None = None  # (D,) unit retrieval vector (descriptor or encoder space)
    features: np.ndarray | None = None  # (d,) raw encoder output (what aligners take)
    gps: np.ndarray | None = None  # (g,) unit image->GPS embedding of the descriptor's own head
    views: np.ndarray | None = None  # (V, D) multi-view query embeddings
    dissimilar: list[Neighbour] = field(default_factory=list)
    top_k: int = 20  # neighbours kept after retrieval (per-call option or preset)
    verification: Verification | None = None
    _aligner_gps: np.ndarray | None = None
    background: dict[str, Future] = field(default_factory=dict)  # stage name -> its work started early

    def background_value(self, stage: str, work: Callable[[], Any]) -> Any:
        """The value of ``stage``'s work: the one started in the background (its exception re-raised
        here), else ``work()`` computed now."""
        future = self.background.pop(stage, None)
        return work() if future is None else future.result()

    def aligner_gps(self) -> np.ndarray | None:
        """The photo in the aligner's GPS space (computed once), or None without an aligner."""
        if self._aligner_gps is None:
            aligner = self.components.aligner
            feats = self.features if self.features is not None else self.embedding
            if aligner is None or feats is None:
                return None
            self._aligner_gps = np.asarray(aligner.embed_image_features(np.asarray(feats)[None, :]))[0]
        return self._aligner_gps

    @property
    def neighbour_coords(self) -> np.ndarray:
        return np.array([[n.lat, n.lon] for n in self.result.neighbours], dtype=np.float64).reshape(-1, 2)

    @property
    def neighbour_similarities(self) -> np.ndarray:
        return np.array([n.similarity for n in self.result.neighbours], dtype=np.float64)

    @property
    def candidate_coords(self) -> np.ndarray:
        return np.array([[c.lat, c.lon] for c in self.result.candidates], dtype=np.float64).reshape(-1, 2)

    def set_answer(self, lat: float, lon: float) -> None:
        """The best answer so far (each stage that has a better one overwrites it)."""
        self.result.lat, self.result.lon = float(lat), float(lon)
