"""Read a coordinate out of a model's answer, or say why there is none.

G3's code turns every answer it cannot parse into ``(0, 0)``, a real point in the Gulf of
Guinea that then competes in verification. Here an answer either yields a coordinate the text
actually states, or a rejection with a reason; nothing is ever filled in.

Supported notations, tried in this order:

1. key/value pairs: JSON objects (also inside code fences or prose, truncated ones too),
   ``latitude: 48.85, longitude: 2.35``, ``lat=48.85 lng=2.35``;
2. coordinate pairs: ``48.8566, 2.3522``, ``(48, 2)``, hemisphere letters or words before or
   after the number (``48.85 N 2.35 E``, ``S33.9, E151.2``, ``48.85° north``), degrees-minutes-seconds
   with ``°`` ``'`` ``"`` and their typographic variants (``48°51′24″N 2°21′08″E``).

Plain numbers pair only across a comma or semicolon, and never when glued to letters, units
("1.2 km"), dates ("2019-05-12"), times ("10:30") or version strings ("3.2.1"). Values outside
[-90, 90] x [-180, 180], NaN and infinity are rejected, not wrapped.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass

__all__ = ["ParsedAnswer", "parse_coordinate"]


@dataclass(frozen=True)
class ParsedAnswer:
    """Outcome of parsing one answer: a coordinate and how it was read, or a rejection reason."""

    lat: float | None
    lon: float | None
    method: str | None = None  # json | key-value | pair | hemisphere | dms
    reason: str | None = None  # why nothing was kept (None when a coordinate was read)

    @property
    def ok(self) -> bool:
        return self.lat is not None and self.lon is not None


def _reject(reason: str) -> ParsedAnswer:
    return ParsedAnswer(None, None, None, reason)


# --------------------------------------------------------------------------------------------
# Normalisation
# --------------------------------------------------------------------------------------------
_TRANSLATE = str.maketrans(
    {
        "\u2212": "-",  # minus sign
        "\u2012": "-",
        "\u2013": "-",  # en dash used as a minus
        "\u00ba": "°",  # masculine ordinal indicator
        "\u02da": "°",  # ring above
        "\u2218": "°",
        "\u2032": "'",  # prime
        "\u2019": "'",
        "\u2018": "'",
        "\u00b4": "'",
        "\u2033": '"',  # double prime
        "\u201c": '"',
        "\u201d": '"',
        "\u00a0": " ",
        "\u202f": " ",
    }
)


def _normalise(text: str) -> str:
    text = text.translate(_TRANSLATE)
    return text.replace("''", '"')  # two primes = seconds


# --------------------------------------------------------------------------------------------
# One coordinate component: sign, degrees, minutes, seconds, hemisphere
# --------------------------------------------------------------------------------------------
_HEMI_WORD = r"(?:north|south|east|west)"
_HEMI = rf"(?:(?<![A-Za-z])[NSEW](?![A-Za-z])|(?i:\b{_HEMI_WORD}\b))"
_NUM = r"\d+(?:\.\d+)?"
_UNITS = (
    r"(?:km|kms|kilomet(?:er|re)s?|m|meters?|metres?|mi|miles?|ft|feet|%|percent|kg|g|cm|mm|"
    r"years?|yrs?|hours?|hrs?|h|min|minutes?|sec|seconds?|s|people|x|times)"
)

_COMPONENT = re.compile(
    rf"""
    (?<![\w.:/\-+])                         # not glued to a word, a number, a date or a time
    (?:(?P<pre>{_HEMI})\s*)?                # hemisphere before: N 48.85, S33
    (?P<sign>[-+])?\s?
    (?P<deg>{_NUM})(?!\.\d)(?![\d])
    (?:
        (?P<degsym>\s?(?:°|\bdeg(?:rees?)?\b))
        (?:\s*(?P<min>{_NUM})\s?')?
        (?:\s*(?P<sec>{_NUM})\s?")?
    |
        \s?(?P<min2>{_NUM})\s?'(?:\s*(?P<sec2>{_NUM})\s?")?   # 48 51' 24" without a degree sign
    )?
    (?:\s*(?P<post>{_HEMI}))?               # hemisphere after: 48.85 N, 2.35°E
    """,
    re.VERBOSE,
)
_AFTER_PLAIN_BAD = re.compile(rf"\s?(?:{_UNITS})(?![A-Za-z])|[A-Za-z_:/]|\.\d|\d", re.IGNORECASE)
_BEFORE_PLAIN_BAD = re.compile(r"\b(?:v|version|release|rev|python|no|number)\.?\s*$", re.IGNORECASE)
_SEP_PLAIN = re.compile(r"\s*[,;]\s*(?:and\s+)?$|\s*,?\s+and\s+$", re.IGNORECASE)
_SEP_MARKED = re.compile(r"[\s,;/|]*(?:and\s+)?[\s,;/|]*$", re.IGNORECASE)


@dataclass(frozen=True)
class _Component:
    value: float  # signed decimal degrees (hemisphere applied)
    axis: str | None  # "lat" (N/S), "lon" (E/W) or None
    marked: bool  # had a hemisphere, degree sign or minutes
    kind: str  # dms | hemisphere | plain
    start: int
    end: int
    error: str | None = None


def _hemi_letter(token: str | None) -> str | None:
    if not token:
        return None
    return token.strip()[0].upper()


def _component_from_match(m: re.Match[str], text: str) -> _Component | None:
    pre, post = _hemi_letter(m.group("pre")), _hemi_letter(m.group("post"))
    if pre and post:
        if pre == post or {pre, post} <= {"N", "S"} or {pre, post} <= {"E", "W"}:
            return None  # "N 48 N" / "N 48 S": contradictory or doubled, not a coordinate
        post = None  # "N 48.85 E 2.35": the second letter belongs to the next number
        end = m.start("post")
    else:
        end = m.end()
    hemi = pre or post
    minutes = m.group("min") or m.group("min2")
    seconds = m.group("sec") or m.group("sec2")
    marked = bool(hemi or m.group("degsym") or minutes)
    if not marked:
        after = text[m.end() :]
        if _AFTER_PLAIN_BAD.match(after) or _BEFORE_PLAIN_BAD.search(text[: m.start()]):
            return None  # "1.2 km", "3.2.1", "10:30", "5x", "version 3.11"
    deg = float(m.group("deg"))
    mins = float(minutes) if minutes else 0.0
    secs = float(seconds) if seconds else 0.0
    start = m.start()
    error = None
    if mins >= 60 or secs >= 60:
        error = f"minutes/seconds must be below 60 in {text[start:end].strip()!r}"
    value = deg + mins / 60.0 + secs / 3600.0
    sign = -1.0 if m.group("sign") == "-" else 1.0
    axis = None
    if hemi:
        axis = "lat" if hemi in "NS" else "lon"
        if sign < 0 and hemi in "SW":
            error = error or f"both a minus sign and hemisphere {hemi} in {text[start:end].strip()!r}"
        sign = -1.0 if hemi in "SW" else 1.0
    kind = "dms" if (m.group("degsym") or minutes) else "hemisphere" if hemi else "plain"
    return _Component(sign * value, axis, marked, kind, start, end, error)


def _components(text: str) -> list[_Component]:
    out = []
    pos = 0
    while True:
        m = _COMPONENT.search(text, pos)
        if m is None:
            return out
        comp = _component_from_match(m, text)
        if comp is not None:
            out.append(comp)
            pos = max(comp.end, m.start() + 1)
        else:
            pos = m.end() if m.end() > m.start() else m.start() + 1


def _range_error(lat: float, lon: float) -> str | None:
    if not (math.isfinite(lat) and math.isfinite(lon)):
        return f"not a finite number: {lat}, {lon}"
    if abs(lat) > 90.0:
        return f"latitude {lat:g} outside [-90, 90]"
    if abs(lon) > 180.0:
        return f"longitude {lon:g} outside [-180, 180]"
    return None


def _pair(a: _Component, b: _Component, between: str) -> tuple[float, float, str] | str | None:
    """Coordinates from two neighbouring components, an error string, or None (not a pair)."""
    if a.marked or b.marked:
        if not _SEP_MARKED.match(between):
            return None
    elif not _SEP_PLAIN.match(between):
        return None
    if a.axis and b.axis and a.axis == b.axis:
        return None  # two latitudes: not a lat/lon pair
    if a.error or b.error:
        return a.error or b.error
    if a.axis == "lon" or b.axis == "lat":
        lat, lon = b.value, a.value  # "2.35 E, 48.85 N"
    else:
        lat, lon = a.value, b.value
    err = _range_error(lat, lon)
    if err:
        return err
    kinds = {a.kind, b.kind}
    method = "dms" if "dms" in kinds else "hemisphere" if "hemisphere" in kinds else "pair"
    return lat, lon, method


def _find_pair(text: str) -> ParsedAnswer | str | None:
    comps = _components(text)
    first_error: str | None = None
    for a, b in zip(comps, comps[1:], strict=False):
        got = _pair(a, b, text[a.end : b.start])
        if isinstance(got, tuple):
            return ParsedAnswer(*got)
        if isinstance(got, str) and first_error is None:
            first_error = got
    return first_error


# --------------------------------------------------------------------------------------------
# Key/value answers (JSON and prose)
# --------------------------------------------------------------------------------------------
_LAT_KEYS = ("latitude", "lat")
_LON_KEYS = ("longitude", "lon", "lng", "long")
_KV = re.compile(
    r"""["']?\b(?P<key>latitude|longitude|lat|lon|lng|long)\b["']?\s*(?:[:=]|\bis\b)\s*
        (?P<value>"[^"\n]{0,40}"|'[^'\n]{0,40}'
        |[^,;}\n]{1,40}?(?=\s*(?:[,;}\n]|$|\b(?:and|lat|lon|lng|long|latitude|longitude)\b)))""",
    re.IGNORECASE | re.VERBOSE,
)
_JSON_NUMBER = re.compile(r"^\s*[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?\s*$")


def _json_objects(text: str) -> list[dict]:
    """Every JSON object in ``text`` (balanced braces), innermost-first order kept by position."""
    out = []
    for start in [i for i, ch in enumerate(text) if ch == "{"]:
        depth = 0
        for j in range(start, len(text)):
            if text[j] == "{":
                depth += 1
            elif text[j] == "}":
                depth -= 1
                if depth == 0:
                    try:
                        obj = json.loads(text[start : j + 1])
                    except ValueError:
                        break
                    if isinstance(obj, dict):
                        out.append(obj)
                    break
    return out


def _scalar(value: object, axis: str) -> float | str | None:
    """A number from a JSON value or a short text value; a string is an error; None: no number."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if not isinstance(value, str):
        return None
    raw = value.strip().strip("\"'").strip()
    if _JSON_NUMBER.match(raw):
        return float(raw)
    if raw.lower() in {"nan", "inf", "-inf", "infinity", "-infinity"}:
        return f"not a finite number: {raw}"
    comps = _components(raw)
    if not comps:
        return None
    c = comps[0]  # "approximately 48.85 N" -> the first number the value states
    if c.error:
        return c.error
    if c.axis and c.axis != axis:
        return f"{axis} value {raw!r} carries the wrong hemisphere"
    return c.value


def _from_mapping(obj: dict, method: str) -> ParsedAnswer | str | None:
    lowered = {str(k).strip().lower(): v for k, v in obj.items()}
    lat_v = next((lowered[k] for k in _LAT_KEYS if k in lowered), None)
    lon_v = next((lowered[k] for k in _LON_KEYS if k in lowered), None)
    if lat_v is None and lon_v is None:
        for value in obj.values():  # {"answer": {"latitude": ..}} or {"location": {...}}
            if isinstance(value, dict):
                got = _from_mapping(value, method)
                if got is not None:
                    return got
        return None
    if lat_v is None or lon_v is None:
        return "latitude without longitude" if lon_v is None else "longitude without latitude"
    lat, lon = _scalar(lat_v, "lat"), _scalar(lon_v, "lon")
    for v, name in ((lat, "latitude"), (lon, "longitude")):
        if isinstance(v, str):
            return v
        if v is None:
            return f"{name} value is not a number"
    err = _range_error(lat, lon)
    if err:
        return err
    return ParsedAnswer(lat, lon, method)


def _from_key_values(text: str) -> ParsedAnswer | str | None:
    found: dict[str, str] = {}
    for m in _KV.finditer(text):
        key = m.group("key").lower()
        axis = "lat" if key in _LAT_KEYS else "lon"
        value = m.group("value")
        if axis not in found and re.search(r"\d|nan|inf", value, re.IGNORECASE):
            found[axis] = value
    if not found:
        return None
    return _from_mapping({"lat" if k == "lat" else "lon": v for k, v in found.items()}, "key-value")


# --------------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------------
def parse_coordinate(text: str | None) -> ParsedAnswer:
    """The coordinate an answer states, or a rejection with the reason (never a made-up point)."""
    if text is None or not str(text).strip():
        return _reject("empty answer")
    text = _normalise(str(text))
    errors: list[str] = []
    for obj in _json_objects(text):
        got = _from_mapping(obj, "json")
        if isinstance(got, ParsedAnswer):
            return got
        if isinstance(got, str):
            errors.append(got)
    for finder in (_from_key_values, _find_pair):
        got = finder(text)
        if isinstance(got, ParsedAnswer):
            return got
        if isinstance(got, str):
            errors.append(got)
    if errors:
        return _reject(errors[0])
    return _reject("no coordinate found in the answer")
