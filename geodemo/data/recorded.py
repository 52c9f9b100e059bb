"""Recorded predictions of other systems: one reader for every format, keyed by photo id (file name).

>>> from geodemo.data.recorded import read_recorded
>>> gemini = read_recorded("gemini-2.0-flash_im2gps3k-dev.csv", name="gemini-2.0-flash")
>>> gemini.points("101220879_0a1be45b79_33_24311489@N00.jpg")[0].lat
44.9772995

Formats (detected from the columns; ``format=`` overrides):

* ``generic``: ``IMG_ID,LAT_pred,LON_pred[,location,success,model_name]`` (a G3-derived pipeline's output);
* ``geoestimation``: GeoEstimation's published CSV ``img_id,gt_lat,predicted_lat,gt_long,predicted_long,...``
  (interleaved columns, CRLF, a blank line and a summary block at the end);
* ``g3-predictions``: G3's ``im2gps3k_prediction.csv`` (``zs_{i}_latitude/longitude`` and
  ``{5,10,15}_rag_{i}_latitude/longitude`` columns), one point per prompt and sample;
* ``g3-responses``: G3's ``llm_predict_results_zs.csv`` (``response``: a list of raw answers) and
  ``{5,10,15}_llm_predict_results_rag.csv`` (``rag_response``), each answer parsed as the LMM stage parses one,
  then the retrieved neighbours' ``candidate_k_gps`` strings (``"[45.52, -122.68]"``) as points of kind
  ``retrieved`` (G3's S candidates; never an LMM answer);
* ``jsonl``: one object a line with ``id`` (or ``IMG_ID``/``image``) and ``lat``/``lon``; optional ``kind``.

A row that is not a prediction becomes a :class:`Rejection` with its reason, never a coordinate:
``success=False``, G3's ``0.0, 0.0`` failure value, values out of range or not numbers, answers that do
not parse, summary lines. ``reverse_k_gps`` of G3's RAG files is not read: in the recorded runs it repeats
``candidate_k_gps`` (the dissimilar neighbours were never computed).
"""

from __future__ import annotations

import ast
import csv
import io
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path, PurePath

from geodemo import env
from geodemo.errors import GeodemoError, MissingResourceError
from geodemo.lmm.parse import parse_coordinate

__all__ = ["FORMATS", "RecordedPoint", "Rejection", "RecordedPredictions", "RecordedFormatError",
           "read_recorded", "detect_recorded_format", "parse_source_spec", "photo_key"]

FORMATS = ("generic", "geoestimation", "g3-predictions", "g3-responses", "jsonl")
RETRIEVED = "retrieved"  # kind of the neighbours' coordinates G3's RAG files record beside the answers
_G3_PROMPT = re.compile(r"^(zs|5_rag|10_rag|15_rag)_(\d+)_latitude$")
_FALSE = {"false", "0", "no", "failed", "failure"}


class RecordedFormatError(GeodemoError, ValueError):
    """A recorded-predictions file that no supported format reads."""


@dataclass(frozen=True)
class RecordedPoint:
    """One recorded coordinate: ``kind`` names the prompt or output it came from, ``sample`` its draw."""

    lat: float
    lon: float
    kind: str = "answer"
    sample: int = 0
    raw: str | None = None  # the answer text it was parsed from, when there was one


@dataclass(frozen=True)
class Rejection:
    """A row (or one answer in a row) that gave no coordinate, and why."""

    line: int
    photo_id: str | None
    reason: str


@dataclass
class RecordedPredictions:
    """A source's recorded predictions: photo key -> points (first = the source's answer), and rejections."""

    name: str
    path: str
    format: str
    by_photo: dict[str, list[RecordedPoint]] = field(default_factory=dict)
    rejections: list[Rejection] = field(default_factory=list)
    rows: int = 0  # rows read (photos), rejected or not

    def __len__(self) -> int:
        return len(self.by_photo)

    def points(self, photo_id: str) -> list[RecordedPoint]:
        """Every recorded point of ``photo_id`` (a file name, path or stem), [] when the file has none."""
        return self.by_photo.get(photo_key(photo_id), [])

    def answers(self, photo_id: str) -> list[RecordedPoint]:
        """The model's own answers for ``photo_id`` (every point but the retrieved neighbours G3 records)."""
        return [p for p in self.points(photo_id) if p.kind != RETRIEVED]

    def answer(self, photo_id: str) -> RecordedPoint | None:
        """The source's answer for ``photo_id`` (its first answer), or None."""
        pts = self.answers(photo_id)
        return pts[0] if pts else None

    def rejected(self, photo_id: str) -> list[Rejection]:
        key = photo_key(photo_id)
        return [r for r in self.rejections if r.photo_id is not None and photo_key(r.photo_id) == key]

    def summary(self) -> str:
        return (f"{self.name}: {len(self.by_photo)} photos with a prediction, {len(self.rejections)} rejected "
                f"row(s) or answer(s), read as {self.format} from {PurePath(self.path).name}")


def photo_key(photo_id: str) -> str:
    """The key photos are matched by: the file name without folders and without the image extension."""
    name = PurePath(str(photo_id).strip().replace("\\", "/")).name
    stem, dot, ext = name.rpartition(".")
    return stem if dot and ext.lower() in ("jpg", "jpeg", "png", "webp", "tif", "tiff", "bmp", "gif", "heic") else name


def parse_source_spec(spec: str) -> tuple[str, Path]:
    """``NAME=FILE`` -> (name, path); a bare FILE is named by its stem."""
    name, sep, path = str(spec).partition("=")
    if not sep:
        name, path = Path(spec).stem, spec
    name, path = name.strip(), path.strip()
    if not name or not path or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}", name):
        raise ValueError(f"a recorded source is NAME=FILE with NAME made of letters, digits, '.', '_' or '-', "
                         f"got {spec!r}")
    return name, Path(path)


# ------------------------------------------------------------------------------------------- values
def _coordinate(lat: object, lon: object) -> tuple[float, float] | str:
    """(lat, lon) as floats, or why they are no prediction."""
    try:
        la, lo = float(str(lat).strip()), float(str(lon).strip())
    except (TypeError, ValueError):
        return f"not a number: {str(lat)[:40]!r}, {str(lon)[:40]!r}"
    if not (math.isfinite(la) and math.isfinite(lo)):
        return "not a finite number"
    if not (-90.0 <= la <= 90.0 and -180.0 <= lo <= 180.0):
        return f"out of range: {la:g}, {lo:g}"
    if la == 0.0 and lo == 0.0:
        return "0.0, 0.0 is the failure value of G3-style files, not a prediction"
    return la, lo


def _answer_point(raw: object, kind: str, sample: int) -> RecordedPoint | str:
    """One raw model answer parsed as the LMM stage parses answers (a point, or why not)."""

    if raw is None or (isinstance(raw, float) and math.isnan(raw)):
        return "no answer (None)"
    text = str(raw)
    parsed = parse_coordinate(text)
    if not parsed.ok:
        return f"answer not read: {parsed.reason}"
    value = _coordinate(parsed.lat, parsed.lon)
    if isinstance(value, str):
        return value
    return RecordedPoint(value[0], value[1], kind, sample, text)


def _answer_list(cell: str) -> list[object]:
    """G3's ``response`` cells: a Python list literal of answers (None for a failed call)."""
    text = (cell or "").strip()
    if not text:
        return []
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return [text]
    return list(value) if isinstance(value, (list, tuple)) else [value]


# ------------------------------------------------------------------------------------------- formats
def detect_recorded_format(path: str | Path) -> str:
    """The format of a recorded-predictions file, from its extension and header."""
    p = Path(path)
    head = _read_text(p)[:65536]
    first = head.lstrip("\ufeff").lstrip()
    if p.suffix.lower() in (".jsonl", ".ndjson") or first.startswith("{"):
        return "jsonl"
    columns = {c.strip() for c in next(csv.reader(io.StringIO(first)), [])}
    if {"img_id", "predicted_lat", "predicted_long"} <= columns:
        return "geoestimation"
    if any(_G3_PROMPT.match(c) for c in columns):
        return "g3-predictions"
    if "response" in columns or "rag_response" in columns:
        return "g3-responses"
    if {"IMG_ID", "LAT_pred", "LON_pred"} <= columns:
        return "generic"
    raise RecordedFormatError(
        f"{p.name}: no recorded-predictions format has these columns ({', '.join(sorted(columns)[:12])}); "
        f"known formats: {', '.join(FORMATS)} (IMG_ID,LAT_pred,LON_pred for any other system)")


def _read_text(path: Path) -> str:
    if not path.is_file():
        raise MissingResourceError(f"recorded predictions file {str(path)!r} not found")
    return path.read_bytes().decode("utf-8", errors="replace")


def _rows(text: str) -> list[tuple[int, dict[str, str]]]:
    """CSV rows with their 1-based line numbers (CRLF and BOM tolerated)."""
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff"), newline=""))
    out = []
    for row in reader:
        out.append((reader.line_num, {(k or "").strip(): (v if v is not None else "") for k, v in row.items()}))
    return out


def _read_generic(text: str, out: RecordedPredictions) -> None:
    for line, row in _rows(text):
        pid = (row.get("IMG_ID") or "").strip()
        if not pid:
            if any(v.strip() for v in row.values()):
                out.rejections.append(Rejection(line, None, "row without IMG_ID (not a photo)"))
            continue
        out.rows += 1
        if "success" in row and row["success"].strip().lower() in _FALSE:
            out.rejections.append(Rejection(line, pid, f"success={row['success'].strip()}: the system failed"))
            continue
        value = _coordinate(row.get("LAT_pred"), row.get("LON_pred"))
        if isinstance(value, str):
            out.rejections.append(Rejection(line, pid, value))
            continue
        _add(out, pid, RecordedPoint(value[0], value[1], "answer", 0, row.get("location") or None))


def _is_number(text: object) -> bool:
    try:
        float(str(text).strip())
    except ValueError:
        return False
    return True


def _read_geoestimation(text: str, out: RecordedPredictions) -> None:
    for line, row in _rows(text):
        pid = (row.get("img_id") or "").strip()
        if not pid:
            continue  # the blank line before the summary
        if _is_number(pid) or not _is_number(row.get("gt_lat", "")):
            out.rejections.append(Rejection(line, None, f"summary line, not a photo: {pid[:40]!r}"))
            continue
        out.rows += 1
        value = _coordinate(row.get("predicted_lat"), row.get("predicted_long"))
        if isinstance(value, str):
            out.rejections.append(Rejection(line, pid, value))
            continue
        _add(out, pid, RecordedPoint(value[0], value[1], "answer", 0))


def _read_g3_predictions(text: str, out: RecordedPredictions) -> None:
    for line, row in _rows(text):
        pid = (row.get("IMG_ID") or "").strip()
        if not pid:
            continue
        out.rows += 1
        for col in row:
            m = _G3_PROMPT.match(col)
            if not m:
                continue
            kind = "zero-shot" if m.group(1) == "zs" else f"rag-{m.group(1).split('_')[0]}"
            sample = int(m.group(2))
            value = _coordinate(row[col], row.get(col.replace("_latitude", "_longitude")))
            if isinstance(value, str):
                out.rejections.append(Rejection(line, pid, f"{kind} sample {sample}: {value}"))
                continue
            _add(out, pid, RecordedPoint(value[0], value[1], kind, sample))


def _read_g3_responses(text: str, out: RecordedPredictions, kind: str) -> None:
    for line, row in _rows(text):
        pid = (row.get("IMG_ID") or "").strip()
        if not pid:
            continue
        out.rows += 1
        column = "rag_response" if "rag_response" in row else "response"
        for sample, raw in enumerate(_answer_list(row.get(column, ""))):
            point = _answer_point(raw, kind, sample)
            if isinstance(point, str):
                out.rejections.append(Rejection(line, pid, f"{kind} sample {sample}: {point}"))
            else:
                _add(out, pid, point)
        k = 0
        while f"candidate_{k}_gps" in row:  # G3's S retrieved candidates; reverse_k_gps (cited as dissimilar) is not
            value = _coordinate(*(_answer_list(row[f"candidate_{k}_gps"]) + [None, None])[:2])
            if isinstance(value, str):
                out.rejections.append(Rejection(line, pid, f"retrieved candidate {k}: {value}"))
            else:
                _add(out, pid, RecordedPoint(value[0], value[1], RETRIEVED, k))
            k += 1


def _read_jsonl(text: str, out: RecordedPredictions) -> None:
    for line, raw in enumerate(text.lstrip("\ufeff").splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
        except json.JSONDecodeError as exc:
            out.rejections.append(Rejection(line, None, f"not JSON: {exc.msg}"))
            continue
        if not isinstance(obj, dict):
            out.rejections.append(Rejection(line, None, "not a JSON object"))
            continue
        pid = str(next((obj[k] for k in ("id", "IMG_ID", "image", "img_id") if obj.get(k) is not None), "")).strip()
        if not pid:
            out.rejections.append(Rejection(line, None, "no photo id (id, IMG_ID or image)"))
            continue
        out.rows += 1
        if str(obj.get("success", True)).strip().lower() in _FALSE:
            out.rejections.append(Rejection(line, pid, "success=false: the system failed"))
            continue
        value = _coordinate(obj.get("lat", obj.get("latitude")), obj.get("lon", obj.get("longitude")))
        if isinstance(value, str):
            out.rejections.append(Rejection(line, pid, value))
            continue
        _add(out, pid, RecordedPoint(value[0], value[1], str(obj.get("kind") or "answer"),
                                     int(obj.get("sample") or 0)))


def _add(out: RecordedPredictions, pid: str, point: RecordedPoint) -> None:
    out.by_photo.setdefault(photo_key(pid), []).append(point)


def read_recorded(path: str | Path, name: str | None = None, format: str = "auto") -> RecordedPredictions:
    """Read a recorded-predictions file (see the module docstring for the formats and what is rejected)."""
    p = Path(path)
    fmt = detect_recorded_format(p) if format in (None, "", "auto") else format
    if fmt not in FORMATS:
        raise RecordedFormatError(f"unknown recorded format {fmt!r}; known: {', '.join(FORMATS)}")
    text = _read_text(p)
    out = RecordedPredictions(name or p.stem, str(p), fmt)
    if fmt == "generic":
        _read_generic(text, out)
    elif fmt == "geoestimation":
        _read_geoestimation(text, out)
    elif fmt == "g3-predictions":
        _read_g3_predictions(text, out)
    elif fmt == "g3-responses":
        match = re.match(r"^.*?(\d+)_llm_predict_results_rag", p.name)
        kind = f"rag-{match.group(1)}" if match else ("rag" if "rag" in p.name else "zero-shot")
        _read_g3_responses(text, out, kind)
    else:
        _read_jsonl(text, out)
    if out.rows == 0:
        raise RecordedFormatError(f"{p.name}: read as {fmt}, but it holds no photo rows")
    return out


def recorded_section(lmm: str | None = None, candidates: list[str] | tuple[str, ...] = ()) -> dict[str, dict[str, str]]:
    """A preset's ``recorded`` section from ``NAME=FILE`` specs (``--recorded-lmm``, ``--recorded-candidates``);
    empty when none is given. Names must differ."""
    section: dict[str, dict[str, str]] = {}
    names: list[str] = []
    if lmm:
        name, path = parse_source_spec(lmm)
        section["lmm"] = {name: str(path)}
        names.append(name)
    for spec in candidates or ():
        name, path = parse_source_spec(spec)
        section.setdefault("candidates", {})[name] = str(path)
        names.append(name)
    if len(set(names)) != len(names):
        raise ValueError(f"each recorded source needs its own name, got {names}")
    return section


#: Environment variables through which a server names its recorded sources (a web user never names a file).
RECORDED_ENV = {"lmm": "GEODEMO_RECORDED_LMM", "candidates": "GEODEMO_RECORDED_CANDIDATES"}


def recorded_from_env(environ: dict[str, str] | None = None) -> dict[str, dict[str, str]]:
    """The ``recorded`` section the server's environment names: ``GEODEMO_RECORDED_LMM=NAME=FILE`` and
    ``GEODEMO_RECORDED_CANDIDATES=NAME=FILE[;NAME=FILE...]``."""
    read = env.get if environ is None else (lambda name: (environ.get(name) or "").strip() or None)
    lmm = read(RECORDED_ENV["lmm"]) or None
    candidates = [s.strip() for s in (read(RECORDED_ENV["candidates"]) or "").split(";") if s.strip()]
    return recorded_section(lmm, candidates)
