"""The default preset by reachability: the strongest preset whose weights can be had here.

``GEODEMO_PRESETS`` orders the candidates (default ``geoclip-plus,offline``); :func:`choose_preset`
takes the first whose weights are local, in a cache or downloadable now (the hub answers), and says
why each stronger one was passed over ("geoclip-plus: CLIP ViT-L/14 (openai/clip-vit-large-patch14)
is not cached and the hub is offline"). ``GEODEMO_PRESET`` names one preset outright. Nothing is
downloaded here: :func:`preset_missing` only looks.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from geodemo import env
from geodemo.errors import describe
from geodemo.hub import PublishedFile, availability
from geodemo.models.descriptors import _resolve_checkpoint
from geodemo.models.loading import hub_offline, hub_reachable
from geodemo.models.registry import get_spec
from geodemo.paths import MissingResourceError
from geodemo.pipeline.presets import load_preset

__all__ = ["DEFAULT_ORDER", "PresetChoice", "preset_order", "model_missing", "preset_missing", "choose_preset"]

DEFAULT_ORDER = ("geoclip-plus", "offline")


@dataclass(frozen=True)
class PresetChoice:
    """The preset that answers, and ``(preset, why not)`` for each one before it in the order."""

    preset: str
    passed_over: list[tuple[str, str]] = field(default_factory=list)
    forced: bool = False  # GEODEMO_PRESET named it

    @property
    def explanation(self) -> str:
        """One line for the page and the CLI."""
        if self.forced:
            return f"preset {self.preset} (set by GEODEMO_PRESET)"
        if not self.passed_over:
            return f"preset {self.preset}: the strongest preset whose weights are here"
        why = "; ".join(f"{name}: {reason}" for name, reason in self.passed_over)
        return f"preset {self.preset} answers because a stronger one cannot run here ({why})"


def preset_order(value: str | None = None) -> list[str]:
    """Preset names from ``value`` or ``GEODEMO_PRESETS`` (comma separated), else :data:`DEFAULT_ORDER`."""
    raw = (env.get("GEODEMO_PRESETS", "") or "") if value is None else value
    names = [n.strip() for n in raw.split(",") if n.strip()]
    return names or list(DEFAULT_ORDER)


def _hub_files(cfg: dict[str, Any]) -> tuple[str, str] | None:
    """``(repo, file)`` a hub-family model's config reads, or None (packaged or bundled weights)."""
    if cfg.get("hf_hub"):
        parts = str(cfg["hf_hub"]).strip("/").split("/")
        return "/".join(parts[:2]), "/".join(parts[2:]) or "open_clip_model.safetensors"
    pretrained = cfg.get("pretrained")
    if isinstance(pretrained, str) and pretrained.count("/") == 1 and not Path(pretrained).expanduser().exists():
        return pretrained, "config.json"
    return None


def model_missing(name: str) -> str | None:
    """None when registered model ``name``'s weights are local, in the Hugging Face cache or
    downloadable now; else why not, in a few words."""
    cfg = get_spec(name).config
    label = cfg.get("label") or name
    if cfg.get("local_dir"):
        return None if Path(cfg["local_dir"]).expanduser().exists() else f"{label}: its local folder is missing"
    files = _hub_files(cfg)
    if files is None:
        return None
    repo, filename = files
    from huggingface_hub import try_to_load_from_cache

    if isinstance(try_to_load_from_cache(repo, filename), str) or hub_reachable():
        return None
    why = "offline (HF_HUB_OFFLINE=1)" if hub_offline() else "the hub is not reachable"
    return f"{label} ({repo}) is not cached and {why}"


def _checkpoint_missing(config: dict[str, Any], spec: dict[str, Any]) -> str | None:
    if not spec.get("checkpoint") or spec.get("weights") == "random":
        return None
    try:
        _resolve_checkpoint(spec["checkpoint"])
        return None
    except MissingResourceError:
        pass
    if config.get("hub"):
        if availability(config["hub"]) is not None:
            return None
        return f"its published weights ({PublishedFile.from_dict(config['hub']).label}) are neither cached nor reachable"
    return f"its checkpoint {spec['checkpoint']!r} is not installed"


def preset_missing(name_or_config: str | dict[str, Any]) -> str | None:
    """None when the preset's required weights can be had (local, cached or downloadable); else why not.

    Required: the encoder or the descriptor (its encoder, segmenter and checkpoint) and a packaged
    aligner; optional stages (segmentation, LMM, clues) are not asked for.
    """
    config = load_preset(name_or_config) if isinstance(name_or_config, str) else name_or_config
    if config.get("weights") == "random":
        return None
    spec = dict(config.get("descriptor") or {})
    models = [m for m in (config.get("encoder"), spec.get("encoder"), spec.get("segmenter")) if m]
    if spec.get("weights") != "random":
        for model in models:
            why = model_missing(model)
            if why:
                return why
    if (config.get("verifier") or {}).get("aligner") == "geoclip" and importlib.util.find_spec("geoclip") is None:
        return "the geoclip package is not installed (pip install --no-deps geoclip==1.2.0)"
    return _checkpoint_missing(config, spec)


def choose_preset(order: list[str] | str | None = None) -> PresetChoice:
    """``GEODEMO_PRESET`` when set, else the first preset of ``order`` (:func:`preset_order`) that
    :func:`preset_missing` finds ready; the last one answers when none is (its failure is then clear)."""
    forced = env.get("GEODEMO_PRESET", "") or ""
    if forced and order is None:
        return PresetChoice(forced, forced=True)
    names = preset_order(order) if not isinstance(order, list) else order
    passed: list[tuple[str, str]] = []
    for name in names[:-1]:
        try:
            why = preset_missing(name)
        except Exception as exc:  # noqa: BLE001 - an unknown or broken preset is passed over, with its reason
            why = describe(exc)[0]
        if why is None:
            return PresetChoice(name, passed)
        passed.append((name, why))
    return PresetChoice(names[-1], passed)
