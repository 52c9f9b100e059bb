"""``GeoLocator``: photo -> encoders -> retrieval -> re-ranking/clustering -> LMM -> verification.

>>> from geodemo.pipeline import GeoLocator
>>> locator = GeoLocator.from_preset("offline")
>>> result = locator.locate("photo.jpg")          # LocationResult
>>> result.lat, result.lon, result.place, result.verifier

Models, galleries and indexes load lazily, once per locator, and are reused by every call.
Optional stages (segmentation, clues, GPS/text galleries, LMM) that fail are recorded in
``LocationResult.errors[stage]`` and the rest still runs; the encoder and the image gallery
are required and fail with a clear message.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from geodemo.geo import haversine_km
from geodemo.pipeline.presets import load_preset
from geodemo.result import Candidate, LocationResult, Neighbour, RetrievalMatch
from geodemo.retrieval.database import IndexConfig, RetrievalDatabase
from geodemo.retrieval.geocode import reverse_geocode
from geodemo.retrieval.rerank import cluster_neighbours, retrieval_order
from geodemo.retrieval.verify import (
    AlignerVerifier,
    SupportVerifier,
    TextVerifier,
    Verification,
    VerifyInput,
)

__all__ = ["GeoLocator", "LocateOptions", "STAGES"]

STAGES = (
    "load",
    "segmentation",
    "encode",
    "retrieval",
    "rerank",
    "clues",
    "lmm",
    "candidates",
    "verification",
)


@dataclass
class LocateOptions:
    """Per-call settings; ``None`` keeps the preset's value."""

    top_k: int | None = None
    eps_km: float | None = None
    min_samples: int | None = None
    use_lmm: bool | None = None
    lmm_backend: str | None = None
    lmm_model: str | None = None
    lmm_samples: int | None = None
    exclude_ids: set[str] = field(default_factory=set)
    exclude_groups: set[str] = field(default_factory=set)


def _err(exc: BaseException) -> str:
    from geodemo.errors import describe

    return describe(exc)[0]  # plain words: no class name, no server path


def record_failure(result: LocationResult, stage: str, exc: BaseException, note: str = "") -> None:
    """Record a stage's exception: plain words under ``errors`` (or ``unavailable`` when an optional
    resource is simply not installed), the technical detail under ``error_details``."""
    from geodemo.errors import describe, is_not_installed

    plain, detail = describe(exc)
    result.error_details[stage] = detail
    (result.unavailable if is_not_installed(exc) else result.errors)[stage] = plain + note


class _State:
    """Everything one ``locate`` call has found so far."""

    def __init__(self, preset: str):
        self.result = LocationResult(
            lat=math.nan, lon=math.nan, place=None, confidence=0.0, uncertainty_km=math.nan,
            verifier="none", preset=preset,
        )
        self.image: Any = None
        self.embedding: np.ndarray | None = None
        self.views: np.ndarray | None = None  # (V, D) multi-view query embeddings
        self.dissimilar: list[Neighbour] = []
        self.verification: Verification | None = None


class GeoLocator:
    """The whole pipeline behind one object, configured by a preset (see ``geodemo/pipeline/presets``)."""

    def __init__(self, config: dict[str, Any]):
        self.config = config
        self.preset = str(config.get("name", "custom"))
        self.name = f"geolocator:{self.preset}"  # the harness's Predictor name
        self._cache: dict[str, Any] = {}
        self._failures: dict[str, BaseException] = {}  # optional components that could not be loaded
        self._lock = threading.RLock()  # the app may call locate from several threads

    @classmethod
    def from_preset(cls, name: str = "offline", **overrides: Any) -> GeoLocator:
        """A locator for a built-in preset ("g3" | "dualgeo" | "offline") or a preset JSON path.

        ``overrides`` are deep-merged into the preset, e.g. ``segmenter=None`` or
        ``rerank={"eps_km": 25}``.
        """
        return cls(load_preset(name, **overrides))

    # ------------------------------------------------------------------ components (lazy, cached)
    def _section(self, key: str) -> dict[str, Any]:
        return dict(self.config.get(key) or {})

    def _device_overrides(self, model_name: str) -> dict[str, Any]:
        from geodemo.models.registry import get_spec

        device = self.config.get("device", "auto")
        if "device" in get_spec(model_name).config and device:
            from geodemo.models.loading import resolve_device

            return {"device": resolve_device(device)}
        return {}

    def _component(self, key: str, build) -> Any:
        if key not in self._cache:
            with self._lock:
                if key not in self._cache:
                    self._cache[key] = build()
        return self._cache[key]

    def _optional(self, key: str, build) -> Any:
        """A component whose failure is remembered (and reported) instead of raised."""
        if key in self._failures:
            return None
        try:
            return self._component(key, build)
        except Exception as exc:  # noqa: BLE001 - optional stage: record and go on
            self._failures[key] = exc
            return None

    @property
    def encoder(self) -> Any:
        """The preset's image encoder (required)."""
        from geodemo.models.features import shared_model

        name = self.config["encoder"]
        return self._component("encoder", lambda: shared_model(name, **self._device_overrides(name)))

    @property
    def segmenter(self) -> Any:
        from geodemo.models.features import shared_model

        name = self.config.get("segmenter")
        if not name:
            return None
        return self._component("segmenter", lambda: shared_model(name, **self._device_overrides(name)))

    @property
    def gallery(self) -> RetrievalDatabase:
        """The image gallery: a saved database (``gallery.path``) or built from ``gallery.datasets``."""
        from geodemo.retrieval.galleries import image_gallery

        cfg = self._section("gallery")

        def build() -> RetrievalDatabase:
            if cfg.get("path"):
                db = RetrievalDatabase.load(cfg["path"])
            else:
                db = image_gallery(
                    cfg.get("datasets", []), self.config["encoder"], IndexConfig.from_dict(cfg.get("index")),
                    progress=cfg.get("progress", True),
                )
            if db.encoder_name != self.config["encoder"]:
                db._check_encoder(self.config["encoder"])  # raises a clear EncoderMismatchError
            return db

        return self._component("gallery", build)

    @property
    def aligner(self) -> Any:
        """The preset's GeoAligner, or None when it is not configured or cannot be loaded."""
        name = self._section("verifier").get("aligner")
        if not name:
            return None

        def build() -> Any:
            from geodemo.models.aligners import load_aligner
            from geodemo.models.loading import resolve_device

            aligner = load_aligner(name, device=resolve_device(self.config.get("device", "auto")))
            if aligner.encoder_name != self.config["encoder"]:
                raise ValueError(
                    f"aligner {name!r} takes {aligner.encoder_name!r} features but this preset encodes "
                    f"with {self.config['encoder']!r}"
                )
            return aligner

        return self._optional("aligner", build)

    def view_bank(self) -> Any:
        """The gallery's multi-view embeddings (``multiview`` section), or None when disabled or unavailable."""
        cfg = self._section("multiview")
        if not cfg.get("enabled"):
            return None
        from geodemo.retrieval.multiview import ViewBank

        def build() -> Any:
            meta = self.gallery.meta
            paths = meta.image_paths or [None] * len(meta)
            return ViewBank.build(self.encoder, paths, meta.ids, meta.groups or [None] * len(meta),
                                  crop=float(cfg.get("crop", 0.6)), progress=self._section("gallery").get("progress", True))

        return self._optional("multiview", build)

    def _gps_gallery(self) -> RetrievalDatabase | None:
        if not self._section("gps_gallery").get("enabled") or self.aligner is None:
            return None
        from geodemo.retrieval.galleries import gps_gallery

        return self._optional("gps_gallery", lambda: gps_gallery(self.aligner, progress=False))

    def _text_gallery(self) -> RetrievalDatabase | None:
        cfg = self._section("text_gallery")
        if not cfg.get("enabled") or not getattr(self.encoder, "has_text_tower", False):
            return None
        from geodemo.retrieval.galleries import text_gallery

        return self._optional(
            "text_gallery",
            lambda: text_gallery(self.encoder, min_population=int(cfg.get("min_population", 100_000)),
                                 progress=self._section("gallery").get("progress", True)),
        )

    def _lmm_stage(self, cfg: dict[str, Any]) -> Any:
        key = "lmm:" + json.dumps(cfg, sort_keys=True, default=str)

        def build() -> Any:
            from geodemo.lmm import LMMStage

            return LMMStage.from_config(cfg)

        return self._component(key, build)

    def _verifiers(self, radius_km: float) -> list[Any]:
        cfg = self._section("verifier")
        out: list[Any] = []
        for kind in cfg.get("order", ["aligner", "text", "support"]):
            if kind == "aligner" and self.aligner is not None:
                label = Path(str(cfg.get("aligner"))).name  # the checkpoint asked for, e.g. a fold
                out.append(AlignerVerifier(self.aligner, label=label))
            elif kind == "text" and getattr(self.encoder, "has_text_tower", False):
                out.append(TextVerifier(self.encoder))
            elif kind == "support":
                out.append(SupportVerifier(float(cfg.get("support_radius_km", radius_km))))
        if not out or not isinstance(out[-1], SupportVerifier):
            out.append(SupportVerifier(float(cfg.get("support_radius_km", radius_km))))
        return out

    # ------------------------------------------------------------------ stages
    def _settings(self, options: LocateOptions) -> dict[str, Any]:
        ret, rr, lmm = self._section("retrieval"), self._section("rerank"), self._section("lmm")
        if options.lmm_backend is not None:
            lmm["backend"] = options.lmm_backend
        if options.lmm_model is not None:
            lmm["model"] = options.lmm_model
        if options.lmm_samples is not None:
            lmm["samples"] = int(options.lmm_samples)
        use_lmm = bool(lmm.get("enabled", False)) if options.use_lmm is None else bool(options.use_lmm)
        mv = self._section("multiview")
        return {
            "top_k": int(options.top_k if options.top_k is not None else ret.get("top_k", 20)),
            "multiview": bool(mv.get("enabled", False)),
            "shortlist": int(mv.get("shortlist", 100)),
            "reciprocal_k": int(mv.get("reciprocal_k", 0)),
            "k_dissimilar": int(ret.get("k_dissimilar", 0)),
            "eps_km": float(options.eps_km if options.eps_km is not None else rr.get("eps_km", 50.0)),
            "min_samples": int(options.min_samples if options.min_samples is not None else rr.get("min_samples", 2)),
            "rerank": bool(rr.get("enabled", True)),
            "weighted_centre": bool(rr.get("weighted_centre", False)),
            "use_lmm": use_lmm,
            "lmm": {k: v for k, v in lmm.items() if k != "enabled"},
        }

    def _stage_load(self, st: _State, image: Any) -> None:
        from geodemo.imageio import load_image, read_exif_gps

        st.image = load_image(image)
        try:
            st.result.exif_gps = read_exif_gps(image)  # shown to the user, never used to predict
        except Exception:  # noqa: BLE001 - EXIF is informative only
            st.result.exif_gps = None

    def _stage_segmentation(self, st: _State) -> None:
        if not self.config.get("segmenter"):
            return
        try:
            st.result.segmentation = self.segmenter.segment(st.image)
        except Exception as exc:  # noqa: BLE001 - optional stage
            record_failure(st.result, "segmentation", exc)

    def _stage_encode(
        self, st: _State, s: dict[str, Any], embedding: np.ndarray | None = None, views: np.ndarray | None = None
    ) -> None:
        if s["multiview"] and views is None and self.view_bank() is not None:
            from geodemo.retrieval.multiview import query_views

            views = self.encoder.encode_images(query_views(st.image, float(self._section("multiview").get("crop", 0.6))))
        if views is not None:
            st.views = np.asarray(views, dtype=np.float32)
            if embedding is None:
                embedding = st.views[0]  # the whole-photo view is the global embedding
        if embedding is None:
            embedding = self.encoder.encode_images([st.image])[0]
        st.embedding = np.asarray(embedding, dtype=np.float32)

    def _stage_retrieval(self, st: _State, options: LocateOptions, s: dict[str, Any]) -> None:
        db = self.gallery
        k = max(s["top_k"], s["shortlist"]) if st.views is not None else s["top_k"]
        hit = db.search(
            st.embedding[None, :], k=k, k_dissimilar=s["k_dissimilar"],
            encoder_name=self.config["encoder"],
            exclude_ids=set(options.exclude_ids), exclude_groups=set(options.exclude_groups),
        )[0]
        st.result.neighbours = db.neighbours(hit.indices, hit.similarities)
        st.dissimilar = db.neighbours(hit.dissimilar_indices, hit.dissimilar_similarities)
        if st.result.neighbours:
            top = st.result.neighbours[0]
            st.result.lat, st.result.lon = top.lat, top.lon  # provisional answer: retrieval top-1

    def _multiview_rerank(self, st: _State, options: LocateOptions, s: dict[str, Any]) -> None:
        """Re-score the shortlist with the multi-view similarity, keep the top ``top_k``, and test
        whether the new top-1 is a reciprocal neighbour (``geodemo.retrieval.multiview``)."""
        from geodemo.retrieval.multiview import multiview_similarities, reciprocal_rank

        bank, nb = self.view_bank(), st.result.neighbours
        rows = [bank.row_of(n.id) for n in nb]
        usable = [i for i, r in enumerate(rows) if r is not None and bank.valid[r]]
        sims = np.array([n.similarity for n in nb], dtype=np.float64)
        if usable:
            sims[usable] = multiview_similarities(st.views, bank.embeddings[[rows[i] for i in usable]])
        order = np.argsort(-sims, kind="stable")[: s["top_k"]]
        st.result.neighbours = [replace(nb[i], similarity=float(sims[i])) for i in order]
        top, row = st.result.neighbours[0], rows[int(order[0])]
        if s["reciprocal_k"] > 0 and row is not None:
            keep = bank.keep_mask(set(options.exclude_ids), set(options.exclude_groups))
            rank = reciprocal_rank(bank, row, top.similarity, keep)
            st.result.match = RetrievalMatch(0, top.id, top.similarity, rank, s["reciprocal_k"])

    def _stage_rerank(self, st: _State, options: LocateOptions, s: dict[str, Any]) -> None:
        if st.views is not None and st.result.neighbours and self.view_bank() is not None:
            try:
                self._multiview_rerank(st, options, s)
            except Exception as exc:  # noqa: BLE001 - keep the global-descriptor order
                record_failure(st.result, "multiview", exc)
                st.result.neighbours = st.result.neighbours[: s["top_k"]]
        else:
            if s["multiview"] and "multiview" in self._failures:
                record_failure(st.result, "multiview", self._failures["multiview"])
            st.result.neighbours = st.result.neighbours[: s["top_k"]]
        nb = st.result.neighbours
        if not nb:
            return
        coords = np.array([[n.lat, n.lon] for n in nb])
        sims = np.array([n.similarity for n in nb])
        after = cluster_neighbours(coords, sims, s["eps_km"], s["min_samples"], s["weighted_centre"])
        st.result.clusters_before = retrieval_order(after)
        st.result.clusters_after = after if s["rerank"] else retrieval_order(after)
        first = nb[st.result.clusters_after.order[0]]
        st.result.lat, st.result.lon = first.lat, first.lon

    def _stage_clues(self, st: _State) -> None:
        cfg = self._section("clues")
        if not cfg.get("enabled"):
            return
        try:
            from geodemo.clues import read_clues

            st.result.clues = read_clues(st.image, {k: v for k, v in cfg.items() if k != "apply_prior"})
        except Exception as exc:  # noqa: BLE001 - optional stage
            record_failure(st.result, "clues", exc)

    def _description(self, st: _State) -> str:
        parts = []
        if st.result.segmentation is not None:
            try:
                from geodemo.models.segmentation import describe_segmentation

                parts.append("Scene: " + describe_segmentation(st.result.segmentation))
            except Exception:  # noqa: BLE001
                pass
        if st.result.clues is not None and getattr(st.result.clues, "summary", ""):
            parts.append("Text clues: " + st.result.clues.summary)
        return ". ".join(parts)

    def _stage_lmm(self, st: _State, s: dict[str, Any]) -> None:
        if not s["use_lmm"]:
            return
        try:
            from geodemo.lmm import LMMContext

            clustering = st.result.clusters_after
            main = clustering.main if clustering is not None else None
            nb = st.result.neighbours
            context = LMMContext(
                neighbours=list(nb),
                dissimilar=list(st.dissimilar),
                main_cluster=[nb[i] for i in clustering.order if main is None or i in main.members]
                if clustering is not None else list(nb),
                description=self._description(st),
                clues=st.result.clues,
            )
            st.result.lmm_records = list(self._lmm_stage(s["lmm"]).run(st.image, context))
            failed = [r.error for r in st.result.lmm_records if r.error]
            if failed and len(failed) == len(st.result.lmm_records):
                from geodemo.lmm.backends import backend_status

                how = backend_status(s["lmm"].get("backend", ""))
                if how:  # the backend is not installed or not running here
                    st.result.unavailable["lmm"] = how
                else:
                    st.result.errors["lmm"] = f"every LMM call failed; first error: {failed[0]}"
                st.result.error_details["lmm"] = failed[0]
        except Exception as exc:  # noqa: BLE001 - optional stage
            record_failure(st.result, "lmm", exc)

    def _stage_candidates(self, st: _State, s: dict[str, Any]) -> None:
        cfg = self._section("candidates")
        out: list[Candidate] = []
        clustering = st.result.clusters_after
        if cfg.get("cluster_centre", True) and clustering is not None and clustering.main is not None:
            m = clustering.main
            out.append(Candidate(m.centre_lat, m.centre_lon, "cluster-centre", retrieval_similarity=m.similarity_mass,
                                 details={"support": m.support, "radius_km": m.radius_km, "label": m.label}))
        order = clustering.order if clustering is not None else range(len(st.result.neighbours))
        for i in list(order)[: int(cfg.get("retrieval_top", s["top_k"]))]:
            n = st.result.neighbours[i]
            out.append(Candidate(n.lat, n.lon, "retrieval", retrieval_similarity=n.similarity,
                                 details={"id": n.id, "rank": n.rank, "place": n.place}))
        gps = self._gps_gallery()
        if gps is not None:
            try:
                photo = AlignerVerifier(self.aligner).photo_embedding(st.embedding)
                hit = gps.search(photo[None, :], k=int(self._section("gps_gallery").get("top_k", 5)))[0]
                for n in gps.neighbours(hit.indices, hit.similarities, source="gps-gallery"):
                    out.append(Candidate(n.lat, n.lon, "gps-gallery", retrieval_similarity=n.similarity,
                                         details={"id": n.id}))
            except Exception as exc:  # noqa: BLE001 - optional stage
                record_failure(st.result, "gps-gallery", exc)
        elif self._section("gps_gallery").get("enabled") and "gps_gallery" in self._failures:
            record_failure(st.result, "gps-gallery", self._failures["gps_gallery"])
        text = self._text_gallery()
        if text is not None:
            try:
                hit = text.search(st.embedding[None, :], k=int(self._section("text_gallery").get("top_k", 5)),
                                  encoder_name=self.config["encoder"])[0]
                for n in text.neighbours(hit.indices, hit.similarities, source="text-gallery"):
                    out.append(Candidate(n.lat, n.lon, "text-gallery", retrieval_similarity=n.similarity,
                                         details={"place": n.place}))
            except Exception as exc:  # noqa: BLE001
                record_failure(st.result, "text-gallery", exc)
        for r in st.result.lmm_records:
            if r.accepted:
                out.append(Candidate(float(r.lat), float(r.lon), f"lmm:{r.prompt_kind}",
                                     details={"sample": r.sample, "model": r.model}))
        st.result.candidates = out

    def _stage_verification(self, st: _State, s: dict[str, Any]) -> None:
        cands = st.result.candidates
        if not cands:
            st.result.errors["verification"] = "no candidates: the gallery returned no neighbour"
            return
        coords = np.array([[c.lat, c.lon] for c in cands])
        nb = st.result.neighbours
        inp = VerifyInput(
            image_embedding=st.embedding,
            neighbour_coords=np.array([[n.lat, n.lon] for n in nb]).reshape(-1, 2),
            neighbour_similarities=np.array([n.similarity for n in nb]),
        )
        ver = None
        notes = []
        for verifier in self._verifiers(s["eps_km"]):
            try:
                ver = verifier.verify(coords, inp)
                break
            except Exception as exc:  # noqa: BLE001 - fall back to the next verifier
                notes.append(f"{verifier.name}: {_err(exc)}")
        if "aligner" in self._failures and "aligner" in self._section("verifier").get("order", []):
            record_failure(st.result, "verification", self._failures["aligner"],
                           f"; verified by {ver.verifier if ver else 'nothing'} instead")
            if "verification" in st.result.errors:  # a real failure: keep the fallbacks' notes with it
                notes.insert(0, st.result.errors.pop("verification"))
        if notes:
            st.result.errors["verification"] = "; ".join(notes)
        if ver is None:
            return
        fusion = self._section("fusion")
        if (fusion.get("enabled", False) and fusion.get("weights") and self.aligner is not None
                and ver.verifier.startswith("aligner")):
            try:  # geodemo.scoring: log-linear fusion of all evidence, weights fitted on the dev split
                from geodemo.retrieval.verify import softmax_confidence
                from geodemo.scoring.apply import fused_scores

                fs, _ = fused_scores(coords, inp.neighbour_coords, inp.neighbour_similarities, st.embedding,
                                     self.aligner, self._gps_gallery(), st.result.clues, fusion)
                b = int(np.argmax(fs))
                ver = replace(ver, verifier=f"fusion:{fusion['weights']}({ver.verifier})", scores=fs, best=b,
                              confidence=softmax_confidence(fs, b, 1.0))
            except Exception as exc:  # noqa: BLE001 - keep the aligner's verification
                record_failure(st.result, "fusion", exc)
        for c, sc in zip(cands, ver.scores, strict=True):
            c.details["verifier_score"] = float(sc)  # before the clue prior and the match acceptance
        scores = ver.scores
        cfg = self._section("clues")
        if cfg.get("apply_prior") and st.result.clues is not None:
            try:
                from geodemo.clues import clue_prior

                prior = clue_prior(st.result.clues, coords)
                for c, p in zip(cands, prior, strict=True):
                    c.details["clue_prior"] = float(p)
                scores = scores - scores.min() + 1e-6 if scores.min() <= 0 else scores
                scores = scores * prior
                best = int(np.argmax(scores))
                ver = replace(ver, scores=scores, best=best, confidence=float(scores[best] / scores.sum()))
            except Exception as exc:  # noqa: BLE001
                record_failure(st.result, "clues", exc)
        for c, sc in zip(cands, ver.scores, strict=True):
            c.score = float(sc)
        match = st.result.match
        if match is not None and match.accepted:  # a reciprocal neighbour: trust the photo match
            i = next((i for i, c in enumerate(cands) if c.source == "retrieval" and c.details.get("id") == match.id), None)
            if i is not None:
                from geodemo.retrieval.verify import softmax_confidence

                ver = replace(ver, verifier=f"reciprocal-match(k={match.k})", best=i,
                              confidence=softmax_confidence(ver.scores, i, 1.0))
        best = cands[ver.best]
        st.verification = ver
        st.result.lat, st.result.lon = best.lat, best.lon
        st.result.verifier = ver.verifier
        st.result.confidence = float(ver.confidence)
        top = np.argsort(-ver.scores, kind="stable")[: int(self._section("verifier").get("uncertainty_top", 5))]
        others = [i for i in top.tolist() if i != ver.best]
        if others:
            d = haversine_km(coords[others], np.array([best.lat, best.lon])[None, :])
            st.result.uncertainty_km = float(max(np.median(d), 1.0))
        else:
            st.result.uncertainty_km = float(s["eps_km"])

    def _finish(self, st: _State) -> None:
        if math.isfinite(st.result.lat):
            try:
                st.result.place = reverse_geocode(st.result.lat, st.result.lon).text
            except Exception as exc:  # noqa: BLE001
                record_failure(st.result, "geocode", exc)

    # ------------------------------------------------------------------ public entry points
    def warmup(self) -> GeoLocator:
        """Load every configured component now (models, galleries, indexes), not on the first call."""
        import sklearn.cluster  # noqa: F401 - DBSCAN's first import costs seconds

        _ = self.encoder, self.gallery
        if self.config.get("segmenter"):
            try:
                _ = self.segmenter
            except Exception:  # noqa: BLE001 - reported by the segmentation stage
                pass
        _ = self.aligner
        self.view_bank()
        self._gps_gallery()
        self._text_gallery()
        return self

    def iter_locate(
        self, image: Any, options: LocateOptions | None = None, *, _embedding: np.ndarray | None = None,
        _views: np.ndarray | None = None, _display: bool = True,
    ) -> Iterator[tuple[str, LocationResult]]:
        """Run the pipeline, yielding ``(stage_name, partial LocationResult)`` after each stage.

        The partial result is the same object throughout; its ``lat``/``lon`` hold the best
        answer so far (retrieval top-1, then the re-ranked top-1, then the verified point).
        """
        options = options or LocateOptions()
        s = self._settings(options)
        st = _State(self.preset)
        timings = st.result.timings

        def timed(stage: str, fn, *args) -> None:
            t0 = time.perf_counter()
            fn(*args)
            timings[stage] = time.perf_counter() - t0

        timed("load", self._stage_load, st, image)
        yield "load", st.result
        if _display or s["use_lmm"]:
            timed("segmentation", self._stage_segmentation, st)
            yield "segmentation", st.result
        timed("encode", self._stage_encode, st, s, _embedding, _views)
        yield "encode", st.result
        timed("retrieval", self._stage_retrieval, st, options, s)
        yield "retrieval", st.result
        timed("rerank", self._stage_rerank, st, options, s)
        yield "rerank", st.result
        if _display or s["use_lmm"] or self._section("clues").get("apply_prior"):
            timed("clues", self._stage_clues, st)
            yield "clues", st.result
        timed("lmm", self._stage_lmm, st, s)
        yield "lmm", st.result
        timed("candidates", self._stage_candidates, st, s)
        yield "candidates", st.result
        timed("verification", self._stage_verification, st, s)
        self._finish(st)
        timings["total"] = sum(v for k, v in timings.items() if k != "total")
        yield "verification", st.result

    def locate(self, image: Any, options: LocateOptions | None = None) -> LocationResult:
        """Locate one photo (path, bytes or PIL image); see :meth:`iter_locate` for the stages."""
        *_, (_, result) = self.iter_locate(image, options)
        return result

    def locate_query(self, query: Any, options: LocateOptions | None = None, display: bool = False,
                     embedding: np.ndarray | None = None, views: np.ndarray | None = None) -> LocationResult:
        """Locate a :class:`geodemo.eval.QueryPhoto`, leaving its own photo and photographer out."""
        opts = replace(options or LocateOptions())
        opts.exclude_ids = set(opts.exclude_ids) | {str(query.id)}
        if query.group:
            opts.exclude_groups = set(opts.exclude_groups) | {str(query.group)}
        *_, (_, result) = self.iter_locate(query.image, opts, _embedding=embedding, _views=views, _display=display)
        return result

    def predict(self, batch: list[Any]) -> np.ndarray:
        """Harness entry (contract A ``Predictor``): ``(N, 2)`` [lat, lon] for a batch of QueryPhotos.

        Each photo's own id and every photo of its photographer (``group``) are excluded from the
        gallery (leave-one-photographer-out). Display-only stages (segmentation, clues without a
        prior) are skipped; a photo that cannot be placed gets NaN.
        """
        if not batch:
            return np.zeros((0, 2))
        embeddings = self.encoder.encode_images([q.image for q in batch])
        out = np.full((len(batch), 2), np.nan)
        for i, (q, emb) in enumerate(zip(batch, embeddings, strict=True)):
            r = self.locate_query(q, embedding=emb)
            out[i] = (r.lat, r.lon)
        return out
