"""The models, galleries and indexes a preset names, loaded lazily once per locator.

:class:`Components` is what stages ask for (``ctx.components.encoder``, ``.gallery``, ``.aligner``
...). Any of them can be injected (``Components(config, encoder=fake, gallery=db)``), so stage
logic is tested with fakes and no weights. Required components (the encoder or descriptor, the
gallery) raise a clear error; optional ones return None and remember why in ``failures``.
"""

from __future__ import annotations

import importlib
import inspect
import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from geodemo.data import load_benchmark
from geodemo.data.dataset import GeoDataset
from geodemo.data.recorded import read_recorded
from geodemo.hub import fetch
from geodemo.lmm import LMMStage
from geodemo.models.aligners import load_aligner
from geodemo.models.descriptors import _resolve_checkpoint, load_descriptor
from geodemo.models.loading import resolve_device
from geodemo.models.registry import get_spec, shared_model
from geodemo.paths import MissingResourceError, cache_dir
from geodemo.retrieval.builder import PhotoSource, build_database
from geodemo.retrieval.database import IndexConfig, RetrievalDatabase
from geodemo.retrieval.galleries import gallery_key, gps_gallery, image_gallery, text_gallery
from geodemo.retrieval.multiview import ViewBank

__all__ = ["Components", "INJECTABLE"]

INJECTABLE = ("encoder", "segmenter", "descriptor", "gallery", "aligner", "lmm", "view_bank", "gps_gallery",
              "text_gallery", "geoclip_gallery")


class Components:
    """Lazy, thread-safe, injectable holder of a preset's components."""

    def __init__(self, config: dict[str, Any], **injected: Any):
        unknown = sorted(set(injected) - set(INJECTABLE))
        if unknown:
            raise TypeError(f"unknown component(s) {unknown}; injectable: {', '.join(INJECTABLE)}")
        self.config = config
        self._cache: dict[str, Any] = dict(injected)
        self.failures: dict[str, BaseException] = {}  # optional components that could not be loaded
        self._lock = threading.Lock()  # guards _key_locks
        self._key_locks: dict[str, threading.RLock] = {}  # one per component: the app may locate from
        # several threads, and a component built in the background must not hold up the others

    # ------------------------------------------------------------------ helpers
    def section(self, key: str) -> dict[str, Any]:
        return dict(self.config.get(key) or {})

    def _device(self) -> str:
        return resolve_device(self.config.get("device", "auto"))

    def _device_overrides(self, model_name: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        spec = get_spec(model_name)
        if "device" in spec.config and self.config.get("device", "auto"):
            out["device"] = self._device()
        if self.config.get("weights") == "random":  # with_random_weights: untrained, real architecture
            module, func = spec.loader.split(":")
            if "random_init" in inspect.signature(getattr(importlib.import_module(module), func)).parameters:
                out.update(random_init=True, seed=int(self.config.get("seed", 0)))
        return out

    def get(self, key: str, build: Callable[[], Any]) -> Any:
        """The component ``key``, built once by ``build`` (errors propagate)."""
        if key not in self._cache:
            with self._lock:
                lock = self._key_locks.setdefault(key, threading.RLock())
            with lock:
                if key not in self._cache:
                    self._cache[key] = build()
        return self._cache[key]

    def optional(self, key: str, build: Callable[[], Any]) -> Any:
        """A component whose failure is remembered in ``failures`` (and reported) instead of raised."""
        if key in self.failures:
            return None
        try:
            return self.get(key, build)
        except Exception as exc:  # noqa: BLE001 - optional component: remembered, reported by its stage
            self.failures[key] = exc
            return None

    # ------------------------------------------------------------------ models
    @property
    def encoder(self) -> Any:
        """The preset's image encoder (required by presets that name one)."""
        name = self.config.get("encoder") or (self.config.get("descriptor") or {}).get("encoder")
        if not name:
            raise ValueError("this preset names no encoder")
        return self.get("encoder", lambda: shared_model(name, **self._device_overrides(name)))

    @property
    def segmenter(self) -> Any:
        """The preset's segmenter, or None when it names none (errors propagate to the stage)."""
        name = self.config.get("segmenter")
        if not name and "segmenter" not in self._cache:
            return None
        if name and (self.config.get("descriptor") or {}).get("segmenter") == name:
            # the descriptor's own segmenter (same weights): one segmentation per photo serves both
            return self.get("segmenter", lambda: self.descriptor.segmenter)
        return self.get("segmenter", lambda: shared_model(name, **self._device_overrides(name)))

    @property
    def has_segmenter(self) -> bool:
        """True when a segmenter is injected or named by the preset."""
        if "segmenter" in self._cache:
            return self._cache["segmenter"] is not None
        return bool(self.config.get("segmenter"))

    @property
    def descriptor(self) -> Any:
        """The preset's retrieval descriptor (``"descriptor"`` section), or None when it has none."""
        spec = self.config.get("descriptor")
        if not spec and "descriptor" not in self._cache:
            return None

        def build() -> Any:
            try:
                ready = self._published_checkpoint(dict(spec))
            except MissingResourceError as unpublished:
                try:  # a missing encoder is reported first, as without a "hub" entry
                    return load_descriptor(dict(spec), device=self._device())
                except MissingResourceError:  # the checkpoint: say how to get the published one
                    raise unpublished from None
            return load_descriptor(ready, device=self._device())

        return self.get("descriptor", build)

    def _published_checkpoint(self, spec: dict[str, Any]) -> dict[str, Any]:
        """``spec`` with its checkpoint taken from the preset's ``"hub"`` entry (:mod:`geodemo.hub`) when
        no local file or folder of that name exists (random weights read no checkpoint)."""
        hub, name = self.config.get("hub"), spec.get("checkpoint")
        if not hub or spec.get("weights", "pretrained") == "random":
            return spec
        try:
            if name:
                _resolve_checkpoint(name)
                return spec
        except MissingResourceError:
            pass
        preset = self.config.get("name", "this preset")
        path = fetch(hub, f"{preset}'s published weights",
                     how=f"put them in the checkpoints folder as {name or hub['filename']} (GEODEMO_CHECKPOINTS), "
                         "or set descriptor.checkpoint")
        return {**spec, "checkpoint": str(path)}

    @property
    def retrieval_name(self) -> str:
        """The identity of the vectors the gallery must hold: the descriptor's name, else the encoder's."""
        if self.config.get("descriptor") or "descriptor" in self._cache:
            return str(self.descriptor.name)
        if "encoder" in self._cache:
            return str(getattr(self._cache["encoder"], "name", self.config.get("encoder")))
        return str(self.config["encoder"])

    @property
    def feature_encoder_name(self) -> str:
        """The encoder whose raw features aligners take (the descriptor's encoder, else the preset's)."""
        spec = self.config.get("descriptor") or {}
        return str(spec.get("encoder") or self.config.get("encoder"))

    @property
    def feature_spaces(self) -> set[str]:
        """The encoder's name and the space its features share with another's (a registry config's
        ``features_of``: GeoCLIP's transformers backbone gives clip-vit-l14's projections)."""
        name = self.feature_encoder_name
        try:
            same = get_spec(name).config.get("features_of")
        except KeyError:
            same = None
        return {name, *([same] if same else [])}

    @property
    def gallery(self) -> RetrievalDatabase:
        """The image gallery: a saved database (``gallery.path``) or built from ``gallery.datasets``."""
        cfg = self.section("gallery")

        def build() -> RetrievalDatabase:
            if cfg.get("path"):
                db = RetrievalDatabase.load(cfg["path"])
            elif self.config.get("descriptor"):
                db = self._descriptor_gallery(cfg)
            else:
                db = image_gallery(cfg.get("datasets", []), self.config["encoder"],
                                   IndexConfig.from_dict(cfg.get("index")), progress=cfg.get("progress", True))
            name = self.retrieval_name
            if db.encoder_name != name:
                db._check_encoder(name)  # raises a clear EncoderMismatchError
            if self.config.get("descriptor"):
                db.check_descriptor(name)  # another model or checkpoint: DescriptorMismatchError
            return db

        return self.get("gallery", build)

    def _descriptor_gallery(self, cfg: dict[str, Any]) -> RetrievalDatabase:
        """A database of the descriptor's vectors over ``gallery.datasets``, built once with
        :func:`geodemo.retrieval.builder.build_database` and cached by what produced it."""
        names = [str(d) for d in cfg.get("datasets", [])]
        if not names:
            raise ValueError("the preset's gallery names neither a path nor datasets")
        index = IndexConfig.from_dict(cfg.get("index"))
        descriptor = self.descriptor
        folder = cache_dir("galleries") / f"descriptor-{gallery_key('descriptor', descriptor.name, names, index.kind)}"
        if not (folder / "config.json").is_file():
            sets = [load_benchmark(n) for n in names]
            dataset = GeoDataset("+".join(names), [s for d in sets for s in d.samples])
            build_database(PhotoSource(dataset), descriptor, folder, index=index, progress=cfg.get("progress", True))
        return RetrievalDatabase.load(folder)

    @property
    def aligner(self) -> Any:
        """The preset's GeoAligner (``verifier.aligner``), or None when none is named or it cannot load."""
        if "aligner" in self._cache:
            return self._cache["aligner"]
        name = self.section("verifier").get("aligner")
        if not name:
            return None

        def build() -> Any:
            aligner = load_aligner(name, device=self._device())
            if aligner.encoder_name not in self.feature_spaces:
                raise ValueError(
                    f"aligner {name!r} takes {aligner.encoder_name!r} features but this preset encodes "
                    f"with {self.feature_encoder_name!r}"
                )
            return aligner

        return self.optional("aligner", build)

    @property
    def aligner_label(self) -> str:
        """The checkpoint asked for (e.g. a fold's folder name), as verifiers report it."""
        name = self.section("verifier").get("aligner")
        if name:
            return Path(str(name)).name
        return str(getattr(self.aligner, "name", "aligner"))

    def view_bank(self, crop: float, progress: bool | None = None) -> Any:
        """The gallery's multi-view embeddings, or None when they cannot be built."""
        def build() -> Any:
            meta = self.gallery.meta
            paths = meta.image_paths or [None] * len(meta)
            show = self.section("gallery").get("progress", True) if progress is None else progress
            return ViewBank.build(self.encoder, paths, meta.ids, meta.groups or [None] * len(meta),
                                  crop=float(crop), progress=show)

        return self.optional("view_bank", build)

    def gps_gallery(self) -> RetrievalDatabase | None:
        """GeoCLIP's GPS gallery embedded by the aligner, or None (no aligner, or it failed)."""
        if "gps_gallery" in self._cache:
            return self._cache["gps_gallery"]
        aligner = self.aligner
        if aligner is None:
            return None
        return self.optional("gps_gallery", lambda: gps_gallery(aligner, progress=False))

    def text_gallery(self, min_population: int) -> RetrievalDatabase | None:
        """GeoNames place prompts embedded by the encoder's text tower, or None."""
        if "text_gallery" in self._cache:
            return self._cache["text_gallery"]
        show = self.section("gallery").get("progress", True)
        return self.optional("text_gallery", lambda: text_gallery(self.encoder, min_population=min_population,
                                                                  progress=show))

    def recorded(self, role: str) -> list[Any]:
        """The recorded sources of ``role`` (``"lmm"`` or ``"candidates"``) the preset's ``recorded``
        section names (``{"NAME": "FILE"}``), each read once (:func:`geodemo.data.recorded.read_recorded`);
        a file that cannot be read raises its clear error."""
        if role not in ("lmm", "candidates"):
            raise ValueError(f"recorded sources are 'lmm' or 'candidates', not {role!r}")
        files = dict(self.section("recorded").get(role) or {})
        if role == "lmm" and len(files) > 1:
            raise ValueError(f"one recorded LMM at a time, got {sorted(files)}")

        def build() -> list[Any]:
            return [read_recorded(path, name=name) for name, path in files.items()]

        return self.get(f"recorded:{role}", build) if files else []

    def lmm_stage(self, cfg: dict[str, Any]) -> Any:
        """An :class:`~geodemo.lmm.LMMStage` for the (per-call) LMM settings ``cfg``; an injected
        ``lmm`` component is used whatever the settings."""
        if "lmm" in self._cache:
            return self._cache["lmm"]
        key = "lmm:" + json.dumps(cfg, sort_keys=True, default=str)

        def build() -> Any:
            return LMMStage.from_config(cfg)

        return self.get(key, build)
