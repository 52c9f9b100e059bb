"""The three galleries a photo is compared with (GPS: a :class:`RefinedGallery`, others: a :class:`RetrievalDatabase`).

* :func:`image_gallery` - photos of geodemo datasets embedded by an image encoder (offline default:
  the 978 IM2GPS3k dev photos + 71 OSV-5M photos with ``mobilenet-v1-imagenet``);
* :func:`gps_gallery` - GeoCLIP's 100K GPS points embedded by a GeoAligner's location encoder,
  searched with the photo's GPS-space embedding (GeoCLIP-style prediction without any photo);
* :func:`text_gallery` - GeoNames cities as G3 place prompts embedded by an encoder's text tower.

Every gallery is cached under ``cache_dir("galleries")``, keyed by what produced it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from geodemo.data import load_benchmark
from geodemo.extraction.features import image_features
from geodemo.models.gps import geoclip_gallery_coords
from geodemo.models.quantize import int8_copy
from geodemo.paths import cache_dir
from geodemo.retrieval.bundle import open_gallery_bundle
from geodemo.retrieval.database import GalleryMeta, IndexConfig, RetrievalDatabase
from geodemo.retrieval.geocode import PLACE_TEMPLATE, geonames_cities, place_prompt, reverse_geocode_many
from geodemo.retrieval.refined import DEFAULT_SHORTLIST, RefinedGallery
from geodemo.storage import atomic_dir, discard_corrupt

__all__ = ["image_gallery", "gps_gallery", "text_gallery", "gallery_key"]


def gallery_key(*parts: Any) -> str:
    """A short stable hash of whatever produced a gallery."""
    blob = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha1(blob.encode()).hexdigest()[:12]


def _cached(directory: Path, builder) -> RetrievalDatabase:
    if (directory / "config.json").is_file():
        try:
            return RetrievalDatabase.load(directory)
        except Exception as exc:  # noqa: BLE001 - a damaged or outdated cache is rebuilt, never trusted
            discard_corrupt(directory, "gallery cache", exc)
    db = builder()
    with atomic_dir(directory) as tmp:  # a run killed mid-save leaves no half gallery
        db.save(tmp)
    return db


def image_gallery(
    datasets: Sequence[str | Any],
    encoder_name: str,
    index: IndexConfig | dict | None = None,
    progress: bool = True,
    use_cache: bool = True,
    use_bundle: bool = True,
) -> RetrievalDatabase:
    """A photo gallery over ``datasets`` (benchmark names or GeoDatasets) embedded by ``encoder_name``.

    The embedded default (``geodemo.retrieval.bundle``) answers when it holds these datasets and
    encoder (``use_bundle``), so nothing is encoded. Otherwise embeddings come from
    :func:`geodemo.extraction.features.image_features` (cached per dataset); unreadable photos are left
    out. Places are the reverse-geocoded ground truth.
    """
    cfg = index if isinstance(index, IndexConfig) else IndexConfig.from_dict(index)
    bundle = open_gallery_bundle() if use_bundle else None
    if bundle is not None and bundle.matches(datasets, encoder_name):
        return bundle.database(cfg)
    sets = [load_benchmark(d) if isinstance(d, str) else d for d in datasets]
    if not sets:
        raise ValueError("image_gallery needs at least one dataset")
    fingerprint = [(s.name, len(s), hashlib.sha1("|".join(s.ids()).encode()).hexdigest()[:8]) for s in sets]
    key = gallery_key("image", encoder_name, fingerprint, cfg.kind, cfg.nlist, cfg.pq_m, cfg.hnsw_m)
    directory = cache_dir("galleries") / f"image-{encoder_name}-{key}"

    def build() -> RetrievalDatabase:
        embs, metas = [], []
        for ds in sets:
            feats = image_features(encoder_name, ds, progress=progress)
            ok = np.flatnonzero(feats.valid)
            samples = [ds.samples[i] for i in ok]
            coords = np.array([[s.lat, s.lon] for s in samples], dtype=np.float64).reshape(-1, 2)
            places = [p.text for p in reverse_geocode_many(coords)] if len(coords) else []
            metas.append(
                GalleryMeta(
                    ids=[s.id for s in samples],
                    coords=coords,
                    places=places,
                    image_paths=[str(s.image_path) if s.image_path else None for s in samples],
                    groups=[s.group for s in samples],
                )
            )
            embs.append(feats.embeddings[ok])
        return RetrievalDatabase.build(
            np.concatenate(embs), GalleryMeta.concat(metas), encoder_name, cfg, progress=progress
        )

    return _cached(directory, build) if use_cache else build()


def _aligner_fingerprint(aligner: Any) -> str:
    """Hash of the aligner's weights (all of them: a G3 aligner's GPS embedding also passes a projection
    head), else of its embeddings at fixed points: changes whenever its weights do, never with the thread count."""
    if hasattr(aligner, "state_dict"):
        digest = hashlib.sha1()
        for key, value in sorted(aligner.state_dict().items()):
            digest.update(key.encode())
            digest.update(value.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
        return digest.hexdigest()[:12]
    probe = np.array([[0.0, 0.0], [48.85, 2.35], [-33.9, 151.2], [40.7, -74.0], [64.1, -21.9]])
    emb = np.asarray(aligner.embed_locations(probe), dtype=np.float32)
    return hashlib.sha1(np.round(emb, 4).tobytes()).hexdigest()[:12]


def gps_gallery(aligner: Any, progress: bool = True, batch_size: int = 512,
                shortlist: int = DEFAULT_SHORTLIST) -> RefinedGallery:
    """GeoCLIP's 100K GPS gallery in ``aligner``'s GPS space, searched exactly by re-ranking.

    The index holds the embeddings of an int8 copy of the aligner (:func:`~geodemo.models.quantize.int8_copy`,
    about 4 s instead of 12 s on a 2-core CPU; cached under ``cache_dir("galleries")``); each
    search re-embeds its shortlist with ``aligner.embed_locations``, so rows and similarities are
    the aligner's own. Query it with ``aligner.embed_image_features(image_embedding)``; its
    ``encoder_name`` is ``"gps:<aligner name>"`` so an image embedding cannot be sent to it by mistake.
    """
    name = f"gps:{getattr(aligner, 'name', type(aligner).__name__)}"
    directory = cache_dir("galleries") / f"gps-int8-{name[4:]}-{_aligner_fingerprint(aligner)}"

    def build() -> RetrievalDatabase:
        approximate = int8_copy(aligner) or aligner  # exact embeddings where int8 is unavailable
        coords = geoclip_gallery_coords().astype(np.float64)
        places, row_place = np.unique(coords, axis=0, return_inverse=True)  # 6% of the points repeat
        emb: np.ndarray | None = None  # filled in place: no list of chunks, no concatenated copy
        with torch.no_grad():  # small batches: large ones cost more in page faults than they save
            for i in tqdm(range(0, len(places), batch_size), desc="GPS gallery", disable=not progress):
                part = np.asarray(approximate.embed_locations(places[i : i + batch_size]), dtype=np.float32)
                if emb is None:
                    emb = np.empty((len(places), part.shape[1]), np.float32)
                emb[i : i + len(part)] = part
        del approximate
        meta = GalleryMeta(ids=[f"gps-{i}" for i in range(len(coords))], coords=coords)
        rows = row_place.ravel()
        # rows stream into the index a chunk at a time (the repeated places are never copied whole):
        # a fresh clone's first `locate` builds this gallery (peak 2.0 GB before, with two full copies)
        chunks = (emb[rows[i : i + 16_384]] for i in range(0, len(rows), 16_384))
        return RetrievalDatabase.build(chunks, meta, name, IndexConfig("flat"), progress=False)

    return RefinedGallery(_cached(directory, build), aligner.embed_locations, shortlist=shortlist)


def text_gallery(
    encoder: Any,
    min_population: int = 100_000,
    template: str = PLACE_TEMPLATE,
    progress: bool = True,
) -> RetrievalDatabase:
    """GeoNames cities (population >= ``min_population``) as G3 place prompts, embedded by
    ``encoder.encode_texts``; needs an encoder with a text tower."""
    if not getattr(encoder, "has_text_tower", False):
        raise ValueError(
            f"encoder {getattr(encoder, 'name', encoder)!r} has no text tower: a place-name gallery "
            "needs a CLIP-like encoder (e.g. clip-vit-l14)"
        )
    key = gallery_key("text", encoder.name, min_population, template)
    directory = cache_dir("galleries") / f"text-{encoder.name}-{key}"

    def build() -> RetrievalDatabase:
        coords, places = geonames_cities(min_population)
        prompts = [place_prompt(p, template) for p in places]
        emb = np.asarray(encoder.encode_texts(prompts), dtype=np.float32)
        meta = GalleryMeta(
            ids=[f"city-{i}" for i in range(len(places))], coords=coords, places=[p.text for p in places]
        )
        return RetrievalDatabase.build(emb, meta, encoder.name, IndexConfig("flat"), progress=progress)

    return _cached(directory, build)
