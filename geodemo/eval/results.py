"""Each photo's full :class:`~geodemo.result.LocationResult`, stored beside ``predictions.csv``.

``evaluate(..., explain=True)`` keeps, in ``<out_dir>/results/``, one JSON file per photo
(``{"id", "group", "truth", "error", "result"}``) and a small JPEG thumbnail of the photo, both
written atomically (a temporary file renamed into place), so an interrupted run leaves only
whole files and resumes where it stopped. Attribution (:mod:`geodemo.eval.attribution`) and the
app's failure explorer read them back without running a model again.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from geodemo.result import LocationResult, to_jsonable
from geodemo.storage import read_json, write_bytes, write_json

__all__ = ["RESULTS_DIR", "StoredResult", "ResultStore", "file_key"]

RESULTS_DIR = "results"
THUMBNAIL_PX = 256
_SAFE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,150}")


def file_key(photo_id: str) -> str:
    """A file name stem for ``photo_id``: the id itself when it is a safe name, else a slug plus a hash."""
    if _SAFE_ID.fullmatch(photo_id):
        return photo_id
    slug = re.sub(r"[^A-Za-z0-9._@-]+", "_", photo_id).strip("._")[:80] or "photo"
    return f"{slug}-{hashlib.sha1(photo_id.encode('utf-8')).hexdigest()[:12]}"


@dataclass
class StoredResult:
    """One photo as the harness recorded it: the result (None when the predictor failed) and its truth."""

    id: str
    truth: tuple[float, float]
    result: LocationResult | None
    group: str | None = None
    error: str = ""  # why there is no result ("" when there is one)
    thumbnail: Path | None = None  # the photo's JPEG thumbnail, when stored


class ResultStore:
    """The ``results/`` folder of one evaluation run.

    The run that writes it (``read_only=False``) deletes a damaged file it meets, so that a resumed
    run redoes that photo; readers (the failure explorer, attribution without writing) pass
    ``read_only=True`` and only skip it: they never change a runs folder.
    """

    def __init__(self, run_dir: str | Path, read_only: bool = False):
        self.dir = Path(run_dir) / RESULTS_DIR
        self.read_only = read_only

    def exists(self) -> bool:
        return self.dir.is_dir()

    def clear(self) -> None:
        """Remove every stored result (a fresh run)."""
        if self.dir.is_dir():
            shutil.rmtree(self.dir)

    def json_path(self, photo_id: str) -> Path:
        return self.dir / f"{file_key(photo_id)}.json"

    def thumbnail_path(self, photo_id: str) -> Path:
        return self.dir / f"{file_key(photo_id)}.jpg"

    def has(self, photo_id: str) -> bool:
        """Whether the photo's result and thumbnail are stored and readable (a resumed run redoes the photo
        otherwise; the writer deletes a damaged result)."""
        stored = self.load(photo_id)
        return stored is not None and stored.thumbnail is not None and _decodes(stored.thumbnail)

    def save(
        self,
        photo_id: str,
        truth: tuple[float, float],
        result: LocationResult | None,
        *,
        group: str | None = None,
        error: str = "",
        image: Image.Image | None = None,
    ) -> Path:
        """Store one photo's result (and a thumbnail of ``image``); returns the JSON file."""
        self.dir.mkdir(parents=True, exist_ok=True)
        if image is not None:
            thumb = image.convert("RGB")
            thumb.thumbnail((THUMBNAIL_PX, THUMBNAIL_PX))
            buf = io.BytesIO()
            thumb.save(buf, format="JPEG", quality=75)
            write_bytes(self.thumbnail_path(photo_id), buf.getvalue())
        record = {
            "id": photo_id,
            "group": group,
            "truth": [float(truth[0]), float(truth[1])],
            "error": error,
            "result": None if result is None else result.to_dict(),
        }
        path = self.json_path(photo_id)
        write_json(path, to_jsonable(record), allow_nan=False)
        return path

    def load(self, photo_id: str) -> StoredResult | None:
        """The stored photo, or None when it is missing or unreadable."""
        return self._read(self.json_path(photo_id))

    def __iter__(self) -> Iterator[StoredResult]:
        if not self.dir.is_dir():
            return
        for path in sorted(self.dir.glob("*.json")):
            stored = self._read(path)
            if stored is not None:
                yield stored

    def _read(self, path: Path) -> StoredResult | None:
        parsed: list[tuple[str, tuple[float, float], LocationResult | None]] = []

        def check(record: Any) -> None:
            truth = (float(record["truth"][0]), float(record["truth"][1]))
            result = None if record.get("result") is None else LocationResult.from_dict(record["result"])
            parsed.append((str(record["id"]), truth, result))

        if self.read_only:
            try:
                record = json.loads(path.read_text(encoding="utf-8"))
                check(record)
            except (OSError, ValueError, TypeError, KeyError, IndexError):
                return None  # missing or damaged: skipped, left as it is
        else:
            record = read_json(path, "stored result", validate=check)  # damaged: reported once, deleted
        if record is None:
            return None
        photo_id, truth, result = parsed[0]
        thumb = self.thumbnail_path(photo_id)
        return StoredResult(
            id=photo_id, truth=truth, result=result, group=record.get("group") or None,
            error=str(record.get("error") or ""), thumbnail=thumb if thumb.is_file() else None,
        )


def _decodes(path: Path) -> bool:
    """Whether the image file at ``path`` decodes whole (a torn thumbnail does not)."""
    try:
        with Image.open(path) as im:
            im.load()
        return True
    except (OSError, ValueError, SyntaxError):
        return False
