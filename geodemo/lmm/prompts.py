"""Prompts for geo-diversification, in G3's structure with our own wording.

Kinds (a preset lists the ones it runs, K prompts x N samples each):

* ``zero-shot``        expert role, always a best guess, answer only as JSON;
* ``rag-<k>``          the same plus the coordinates of the k most similar and the k most
                       dissimilar retrieved photos (G3 uses k = 5, 10, 15);
* ``dualgeo-cluster``  DualGeo's variant: the members of the re-ranked main cluster, best first.

Wording: ``"ours"`` (above) or ``"g3"``: G3's own text (``llm_predict.py``, ``get_response`` and
``get_response_rag``, character for character, coordinates as ``str`` of a list of ``"[lat, lon]"``
strings) for chat models that see the photo; G3's code has no other rendering, so text-only and
completion backends get ours. DualGeo's ``lmms.py`` leaves its prompts as ``"your prompts"``
placeholders: its presets use G3's wording for the re-ranked neighbours (``rag-15``).

Each prompt has three renderings, chosen by what the backend can do: a chat prompt about the
attached photo (vision models), a chat prompt about a text description of the photo (text-only
chat models: they are told they cannot see it), and a completion prompt for base models that ends
with the JSON prefix ``{"latitude":`` so the continuation is a coordinate.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from geodemo.result import Neighbour

__all__ = ["Prompt", "ANSWER_PREFIX", "DEFAULT_PROMPTS", "WORDINGS", "build_prompt", "build_prompts",
           "prompt_kinds_valid"]

ANSWER_PREFIX = '{"latitude":'
DEFAULT_PROMPTS = ("zero-shot", "rag-5", "rag-10", "rag-15")
_RAG = re.compile(r"^rag-(\d+)$")
WORDINGS = ("ours", "g3")

# G3's llm_predict.py, as its triple-quoted strings send them (their source indentation included)
_G3_INDENT = "\n" + " " * 16
_G3_JSON = 'Your answer should be in the following JSON format without any other information: {"latitude": float,"longitude": float}.'
_G3_ZERO_SHOT = _G3_INDENT.join([
    "Suppose you are an expert in geo-localization, you have the ability to give two number GPS coordination given an image.",
    "Please give me the location of the given image.",
    "Remember, you must have an answer, just output your best guess, don't answer me that you can't give a location.",
    _G3_JSON, _G3_JSON])
_G3_RAG = _G3_INDENT.join([
    "Suppose you are an expert in geo-localization, Please analyze this image and give me a guess of the location.",
    "Your answer must be to the coordinates level in (latitude, longitude) format.",
    "For your reference, these are coordinates of some similar images: {similar}, and these are coordinates of "
    "some dissimilar images: {dissimilar}.",
    "Remember, you must have an answer, just output your best guess, don't answer me that you can't give an location.",
    _G3_JSON, _G3_JSON]) + _G3_INDENT

_ROLE = (
    "You are an expert in photo geolocation. You read architecture, vegetation, road markings, "
    "signs, vehicles, climate and landscape to tell where on Earth a photo was taken."
)
_ANSWER_RULE = (
    "Always give your best guess, even when you are unsure; never refuse. Answer only with JSON of the "
    'form {"latitude": <float>, "longitude": <float>} in decimal degrees, and nothing else.'
)
_RAG_CAVEAT = (
    "These references come from an automatic image search and can be wrong: use them as hints, "
    "and trust what you can tell about the photo itself."
)


@dataclass(frozen=True)
class Prompt:
    """One prompt to send: its kind, its full text and the prefix a completion model continues."""

    kind: str
    text: str
    answer_prefix: str = ""  # prepended to each raw completion before parsing (completion prompts only)


def prompt_kinds_valid(kinds: list[str] | tuple[str, ...]) -> list[str]:
    """The kinds as given, or a ``ValueError`` naming the unknown one."""
    for kind in kinds:
        if kind not in ("zero-shot", "dualgeo-cluster") and not _RAG.match(kind):
            raise ValueError(f"unknown LMM prompt kind {kind!r}; use zero-shot, rag-<k> (e.g. rag-10) or dualgeo-cluster")
    return list(kinds)


def _coord(n: Neighbour, with_place: bool) -> str:
    text = f"({n.lat:.4f}, {n.lon:.4f})"
    if with_place and n.place:
        text += f" {n.place}"
    return text


def _listing(items: list[Neighbour], with_place: bool) -> str:
    return "\n".join(f"- {_coord(n, with_place)}" for n in items)


def _json_lines(items: list[Neighbour]) -> str:
    return "\n".join(f'{{"latitude": {n.lat:.4f}, "longitude": {n.lon:.4f}}}' for n in items)


def _evidence(kind: str, neighbours: list[Neighbour], dissimilar: list[Neighbour], cluster: list[Neighbour],
              cluster_max: int) -> tuple[list[Neighbour], list[Neighbour]] | None:
    """(similar-or-cluster references, dissimilar references) for a kind, or None if it has none."""
    if kind == "zero-shot":
        return [], []
    if kind == "dualgeo-cluster":
        members = cluster[:cluster_max]
        return (members, []) if members else None
    k = int(_RAG.match(kind).group(1))
    similar = neighbours[:k]
    return (similar, dissimilar[:k]) if similar else None


def build_prompt(
    kind: str,
    *,
    neighbours: list[Neighbour] | None = None,
    dissimilar: list[Neighbour] | None = None,
    main_cluster: list[Neighbour] | None = None,
    description: str = "",
    sees_image: bool = True,
    completion: bool = False,
    cluster_max: int = 15,
    wording: str = "ours",
) -> Prompt | None:
    """The prompt of one kind, or ``None`` when its evidence is missing (no neighbours for RAG)."""
    prompt_kinds_valid([kind])
    got = _evidence(kind, neighbours or [], dissimilar or [], main_cluster or [], cluster_max)
    if got is None:
        return None
    refs, far = got
    if wording == "g3" and sees_image and not completion and kind != "dualgeo-cluster":
        if kind == "zero-shot":
            return Prompt(kind, _G3_ZERO_SHOT)
        listed = [str([f"[{n.lat}, {n.lon}]" for n in group]) for group in (refs, far)]
        return Prompt(kind, _G3_RAG.replace("{similar}", listed[0]).replace("{dissimilar}", listed[1]))
    description = description.strip() or "no description is available"
    if completion:
        return Prompt(kind, _completion_text(kind, refs, far, description), ANSWER_PREFIX)
    parts = [_ROLE]
    if sees_image:
        parts.append("Estimate where the attached photo was taken.")
    else:
        parts.append(
            "You cannot see the photo. Automatic tools described it as follows: "
            f"{description}. Estimate where the photo was taken from this description."
        )
    if kind == "dualgeo-cluster":
        parts.append(
            "The most similar photos in a geotagged database form one geographic cluster; its members, "
            "most similar first, were taken at:\n" + _listing(refs, with_place=True)
        )
        parts.append(_RAG_CAVEAT)
    elif refs:
        parts.append(f"For reference, the {len(refs)} most similar photos in a geotagged database were taken at:\n"
                     + _listing(refs, with_place=True))
        if far:
            parts.append(f"The {len(far)} least similar ones were taken at:\n" + _listing(far, with_place=False))
        parts.append(_RAG_CAVEAT)
    parts.append(_ANSWER_RULE)
    return Prompt(kind, "\n\n".join(parts))


def _completion_text(kind: str, refs: list[Neighbour], far: list[Neighbour], description: str) -> str:
    """A document a base language model continues with a coordinate (no claim that it saw the photo)."""
    lines = [
        "Photo geolocation record.",
        f"Description of the photo by automatic tools (the photo itself is not shown): {description}.",
    ]
    if kind == "dualgeo-cluster":
        lines.append("Cluster of the most similar geotagged photos:")
        lines.append(_json_lines(refs))
    elif refs:
        # base models lean on what they read last: the dissimilar list first, the similar one last
        if far:
            lines.append("Locations of dissimilar photos (unlikely):")
            lines.append(_json_lines(far))
        lines.append("Locations of the most similar geotagged photos:")
        lines.append(_json_lines(refs))
    lines.append("Best estimate of where this photo was taken:")
    return "\n".join(lines) + "\n" + ANSWER_PREFIX


def build_prompts(
    kinds: list[str] | tuple[str, ...],
    *,
    neighbours: list[Neighbour] | None = None,
    dissimilar: list[Neighbour] | None = None,
    main_cluster: list[Neighbour] | None = None,
    description: str = "",
    sees_image: bool = True,
    completion: bool = False,
    cluster_max: int = 15,
    wording: str = "ours",
) -> list[Prompt]:
    """Prompts for every kind that has its evidence, in the order given."""
    out = []
    for kind in prompt_kinds_valid(kinds):
        p = build_prompt(kind, neighbours=neighbours, dissimilar=dissimilar, main_cluster=main_cluster,
                         description=description, sees_image=sees_image, completion=completion,
                         cluster_max=cluster_max, wording=wording)
        if p is not None:
            out.append(p)
    return out
