"""Safe photo reading: any source and any mode in, an upright RGB ``PIL.Image`` out.

``load_image`` checks the file size and the pixel count from the file header *before* decoding
(a 30000x30000 PNG header is refused without allocating its 2.7 GB), decodes no larger than the
working size (a JPEG is decoded at 1/2, 1/4 or 1/8 scale by PIL's draft mode; other formats are
reduced right after decoding, so nothing downstream holds more than ``working_side`` pixels on the
long side), turns truncated files and non-images into a readable :class:`ImageError`, applies the
EXIF orientation and converts every mode (palette, alpha, 16-bit, CMYK, float) to 8-bit RGB.
:class:`PhotoBudget` is the one size/pixel budget for a photo however it arrives (the web app
applies it to uploads, pasted images, ``data:`` URLs and API calls alike). ``read_exif_gps`` reads
the GPS position a camera wrote.
"""

from __future__ import annotations

import io
import logging
import math
import struct
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from geodemo import env
from geodemo.errors import ImageError

__all__ = [
    "ImageError",
    "MissingImageError",
    "ImageSource",
    "DEFAULT_MAX_PIXELS",
    "DEFAULT_WORKING_SIDE",
    "PhotoBudget",
    "max_image_pixels",
    "working_side",
    "load_image",
    "to_rgb",
    "read_exif_gps",
]

ImageSource = str | Path | bytes | bytearray | memoryview | Image.Image | IO[bytes]

#: Largest photo accepted, in pixels (~100 MP); override with ``GEODEMO_MAX_IMAGE_PIXELS``.
DEFAULT_MAX_PIXELS = 100_000_000
#: Long side (pixels) a photo is reduced to while decoding; ``GEODEMO_WORKING_SIDE`` (0 = full size).
#: Every model works far below it (MobileNet 224, DeepLab 513, OCR <= 1600).
DEFAULT_WORKING_SIDE = 2048

_GPS_IFD = 0x8825
_GPS_LAT_REF, _GPS_LAT, _GPS_LON_REF, _GPS_LON = 1, 2, 3, 4


class MissingImageError(ImageError, FileNotFoundError):
    """The photo file does not exist."""


def _env_int(name: str, default: int) -> int:
    return env.get_int(name, default)


def max_image_pixels() -> int:
    """Pixel limit in force: ``$GEODEMO_MAX_IMAGE_PIXELS`` or :data:`DEFAULT_MAX_PIXELS`."""
    return _env_int("GEODEMO_MAX_IMAGE_PIXELS", DEFAULT_MAX_PIXELS)


def working_side() -> int:
    """Long side photos are reduced to when decoded: ``$GEODEMO_WORKING_SIDE`` or :data:`DEFAULT_WORKING_SIDE`."""
    return _env_int("GEODEMO_WORKING_SIDE", DEFAULT_WORKING_SIDE)


@dataclass(frozen=True)
class PhotoBudget:
    """What one photo may cost: file bytes, header pixels and the decoded working size."""

    max_bytes: int | None  # None = no byte limit
    max_pixels: int
    working_side: int  # 0 = keep the full size

    @classmethod
    def for_web(cls) -> PhotoBudget:
        """The web app's budget, for uploads, pasted images, data URLs and API calls alike.

        ``$GEODEMO_MAX_UPLOAD_MB`` (default 40) and ``$GEODEMO_WEB_MAX_PIXELS`` (default 40 MP,
        never above the library's ``GEODEMO_MAX_IMAGE_PIXELS``).
        """
        return cls(
            max_bytes=_env_int("GEODEMO_MAX_UPLOAD_MB", 40) * 1024 * 1024,
            max_pixels=min(_env_int("GEODEMO_WEB_MAX_PIXELS", 40_000_000), max_image_pixels()),
            working_side=working_side(),
        )

    def check_bytes(self, size: int, name: str = "the photo") -> None:
        """:class:`ImageError` when ``size`` bytes exceed the budget."""
        if self.max_bytes is not None and size > self.max_bytes:
            raise ImageError(f"{name} is {size / 2**20:.1f} MB, over the {self.max_bytes / 2**20:.0f} MB limit")

    def load(self, source: ImageSource, name: str | None = None) -> Image.Image:
        """:func:`load_image` under this budget."""
        return load_image(source, max_pixels=self.max_pixels, max_side=self.working_side,
                          max_bytes=self.max_bytes, name=name)


def _describe(source: Any) -> str:
    if isinstance(source, (str, Path)):
        return str(source)
    if isinstance(source, (bytes, bytearray, memoryview)):
        return f"<{len(source)} bytes>"
    return f"<{type(source).__name__}>"


def _open(source: ImageSource, max_pixels: int, max_bytes: int | None = None, name: str | None = None
          ) -> Image.Image:
    """Open lazily (header only) and enforce the byte and pixel limits before any decoding."""
    if isinstance(source, Image.Image):
        return source
    name = name or _describe(source)
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file():
            raise MissingImageError(f"image file not found: {name}")
        if max_bytes is not None:
            PhotoBudget(max_bytes, max_pixels, 0).check_bytes(path.stat().st_size, name)
        fp: Any = path
    elif isinstance(source, (bytes, bytearray, memoryview)):
        if max_bytes is not None:
            PhotoBudget(max_bytes, max_pixels, 0).check_bytes(len(source), name)
        fp = io.BytesIO(bytes(source))
    elif hasattr(source, "read"):
        fp = source
    else:
        raise TypeError(f"load_image expects a path, bytes, a file object or a PIL image, got {type(source)}")
    try:
        with warnings.catch_warnings():
            # PIL's own bomb check warns/raises at 1x/2x its limit; ours below is the one that counts.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(fp)
    except Image.DecompressionBombError as exc:
        raise ImageError(f"{name} is too large to decode safely ({exc}); limit is {max_pixels} pixels") from exc
    except UnidentifiedImageError as exc:
        raise ImageError(
            f"{name} is not an image PIL can read (unknown or corrupt format); "
            "expected JPEG, PNG, TIFF, WebP, BMP or GIF"
        ) from exc
    except OSError as exc:
        raise ImageError(f"cannot open {name}: its header is damaged or truncated ({exc})") from exc
    except ValueError as exc:  # PIL's own safety limits on metadata (a text or ICC chunk that inflates too far)
        raise ImageError(f"{name} carries a metadata block (text or colour profile) too large to read safely "
                         f"({exc}); save the photo again without it") from exc
    except (SyntaxError, EOFError, IndexError, TypeError, ZeroDivisionError, struct.error) as exc:
        raise ImageError(f"cannot open {name}: its header is malformed ({exc})") from exc
    width, height = image.size
    if width <= 0 or height <= 0:
        raise ImageError(f"{name} has an empty size {width}x{height}")
    if width * height > max_pixels:
        raise ImageError(
            f"{name} is {width}x{height} = {width * height:,} pixels, over the {max_pixels:,}-pixel limit "
            "(decompression-bomb guard); downscale it or raise GEODEMO_MAX_IMAGE_PIXELS"
        )
    return image


#: Modes ``Image.reduce`` averages in place, without a full-size copy.
_DIRECT_REDUCE = frozenset({"L", "RGB", "I", "F", "CMYK", "YCbCr", "LAB", "HSV", "RGBX"})
#: Pixels converted at once by the strip-wise conversions (a few MB of arrays whatever the photo's size).
_STRIP_PIXELS = 2_000_000


def _value_range(mode: str, lo: float, hi: float) -> tuple[float, float]:
    """``(offset, full scale)`` that map a single-channel image of ``mode`` with values ``lo..hi`` onto 0..255.

    16-bit modes use 0..65535; otherwise the range is guessed: 0..1 (float), 0..255, 0..65535, else min..max.
    """
    if mode.startswith("I;16"):
        return 0.0, 65535.0
    if not (math.isfinite(lo) and math.isfinite(hi)):
        lo, hi = 0.0, 0.0
    if lo >= 0 and hi <= 1.0 and mode == "F":
        return 0.0, 1.0
    if lo >= 0 and hi <= 255:
        return 0.0, 255.0
    if lo >= 0 and hi <= 65535:
        return 0.0, 65535.0
    return lo, max(hi - lo, 1e-12)  # arbitrary range (32-bit integers, negative floats): stretch min..max


def _scale_to_uint8(arr: np.ndarray, offset: float, full_scale: float) -> np.ndarray:
    """``(arr - offset) / full_scale`` onto 0..255 (NaN and infinities become 0), in float32."""
    values = np.nan_to_num(np.array(arr, dtype=np.float32), copy=False, nan=0.0, posinf=0.0, neginf=0.0)
    if offset:
        values -= offset
    values *= 255.0 / full_scale
    np.round(values, out=values)
    return np.clip(values, 0, 255, out=values).astype(np.uint8)


def _gray8(image: Image.Image, value_range: tuple[float, float]) -> Image.Image:
    """A 32-bit, 16-bit or float image as 8-bit grey, scaled a strip of rows at a time (no full-size array)."""
    width, height = image.size
    out = Image.new("L", image.size)
    rows = max(1, _STRIP_PIXELS // max(width, 1))
    for top in range(0, height, rows):
        strip = np.asarray(image.crop((0, top, width, min(height, top + rows))))
        out.paste(Image.fromarray(_scale_to_uint8(strip, *value_range), mode="L"), (0, top))
    return out


def _extrema(image: Image.Image) -> tuple[float, float]:
    """The value range of a single-channel numeric image, read without copying it."""
    try:
        lo, hi = image.getextrema()
        return float(lo), float(hi)
    except (ValueError, TypeError):
        return 0.0, 0.0


_NUMERIC_MODES = ("I", "I;16", "I;16L", "I;16B", "I;16N", "F")


def to_rgb(image: Image.Image, background: tuple[int, int, int] = (255, 255, 255),
           value_range: tuple[float, float] | None = None) -> Image.Image:
    """Convert any PIL mode to 8-bit RGB: alpha is composited on ``background``, 16-bit is rescaled.

    ``value_range`` (offset, full scale) fixes how a 32-bit or float image maps onto 0..255 (a strip of a
    larger image must use the whole image's range); by default it is guessed from this image's values.
    """
    mode = image.mode
    if mode == "RGB":
        return image
    if mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
        mode = image.mode
    if mode in _NUMERIC_MODES:
        return _gray8(image, value_range or _value_range(mode, *_extrema(image))).convert("RGB")
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, background + (255,))
        canvas.alpha_composite(rgba)
        return canvas.convert("RGB")
    return image.convert("RGB")  # L, 1, CMYK, YCbCr, LAB, HSV


def _reduce(image: Image.Image, factor: int) -> Image.Image:
    """``image.reduce(factor)`` for every mode, in about the memory of the decoded image itself.

    Modes ``reduce`` refuses (16-bit, palette, 1-bit) or copies first (alpha modes, premultiplied at full
    size) are converted to 8-bit RGB and reduced one strip of rows at a time, so no full-size converted
    copy ever exists; 32-bit and float strips share the whole image's value range.
    """
    if image.mode in _DIRECT_REDUCE:
        return image.reduce(factor)
    width, height = image.size
    value_range = _value_range(image.mode, *_extrema(image)) if image.mode in _NUMERIC_MODES else None
    rows = factor * max(1, _STRIP_PIXELS // (width * factor))
    out = Image.new("RGB", (-(-width // factor), -(-height // factor)))
    for top in range(0, height, rows):
        strip = image.crop((0, top, width, min(height, top + rows)))
        out.paste(to_rgb(strip, value_range=value_range).reduce(factor), (0, top // factor))
    return out


def _shrink(image: Image.Image, side: int) -> Image.Image:
    """``image`` with its long side at most ``side`` (box-reduced by an integer factor, then resampled)."""
    if not side or max(image.size) <= side:
        return image
    factor = max(image.size) // side
    if factor >= 2:
        image = _reduce(image, factor)
    if max(image.size) > side:
        if image.mode not in ("RGB", "RGBA", "L", "LA"):
            image = to_rgb(image)  # at most twice the working side: a bounded copy
        image = image.copy()
        image.thumbnail((side, side), Image.Resampling.LANCZOS)
    return image


def load_image(
    source: ImageSource,
    *,
    max_pixels: int | None = None,
    max_side: int | None = None,
    max_bytes: int | None = None,
    exif_transpose: bool = True,
    name: str | None = None,
    draft: tuple[int, int] | None = None,
) -> Image.Image:
    """Read a photo as an upright RGB image, or raise :class:`ImageError` with a readable reason.

    ``source`` is a path, raw bytes, a binary file object or a PIL image. The byte limit
    (``max_bytes``, default none) and the pixel limit (``max_pixels``, default
    :func:`max_image_pixels`) are checked before decoding; the photo is decoded no larger than
    ``max_side`` on its long side (default :func:`working_side`, 0 = full size). ``name`` is how
    error messages call the photo (default: the path or ``<N bytes>``). ``draft`` instead lets a JPEG
    decode at the smallest DCT scale (1/2, 1/4, 1/8) that keeps at least that size (batch extraction).
    """
    limit = max_image_pixels() if max_pixels is None else int(max_pixels)
    side = working_side() if max_side is None else int(max_side)
    name = name or _describe(source)
    image = _open(source, limit, max_bytes, name)
    transpose = _orientation_fix(image, name) if exif_transpose else None
    if draft is not None and image.format == "JPEG":
        image.draft(None, draft)
    elif side and max(image.size) > side and image.format == "JPEG":
        scale = side / max(image.size)  # decode at 1/2, 1/4 or 1/8 scale, never below the working size
        image.draft(None, (max(1, math.ceil(image.size[0] * scale)), max(1, math.ceil(image.size[1] * scale))))
    try:
        image.load()
        image = _shrink(image, side)
    except OSError as exc:  # truncated data, broken compression stream
        raise ImageError(f"{name} is damaged or truncated and cannot be decoded: {exc}") from exc
    except (ValueError, SyntaxError, EOFError, IndexError, TypeError, ZeroDivisionError, struct.error) as exc:
        raise ImageError(f"{name} could not be decoded: {exc}") from exc
    if transpose is not None:
        image = image.transpose(transpose)
    return to_rgb(image)


_ORIENTATION = {  # EXIF orientation -> the transposition that makes the photo upright (as ImageOps)
    2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def _orientation_fix(image: Image.Image, name: str) -> Image.Transpose | None:
    """The transposition the EXIF orientation tag asks for (read from the header, before decoding)."""
    try:
        return _ORIENTATION.get(int(image.getexif().get(0x0112, 1)))
    except Exception as exc:  # noqa: BLE001 - a broken EXIF block must not lose the photo
        logging.getLogger(__name__).debug("ignoring unreadable EXIF orientation in %s: %s", name, exc)
        return None


def _rational(value: Any) -> float:
    if isinstance(value, tuple) and len(value) == 2:  # (numerator, denominator)
        num, den = value
        return float(num) / float(den) if den else math.nan
    return float(value)


def _dms_to_degrees(dms: Any, ref: Any) -> float:
    parts = [_rational(v) for v in dms] if isinstance(dms, (tuple, list)) else [_rational(dms)]
    parts += [0.0] * (3 - len(parts))
    degrees = parts[0] + parts[1] / 60.0 + parts[2] / 3600.0
    if isinstance(ref, bytes):
        ref = ref.decode("ascii", "ignore")
    if str(ref).strip().upper()[:1] in ("S", "W"):
        degrees = -degrees
    return degrees


def read_exif_gps(source: ImageSource) -> tuple[float, float] | None:
    """The ``(lat, lon)`` stored in the photo's EXIF GPS block, or ``None`` when absent or invalid.

    Only the header is read (no pixel decoding). ``(0, 0)`` is treated as a camera placeholder
    and returns ``None``, as do out-of-range or unparsable values.
    """
    try:
        image = _open(source, max_pixels=2**62)
        gps = image.getexif().get_ifd(_GPS_IFD)
    except (ImageError, OSError, SyntaxError, ValueError):
        return None
    if not gps or _GPS_LAT not in gps or _GPS_LON not in gps:
        return None
    try:
        lat = _dms_to_degrees(gps[_GPS_LAT], gps.get(_GPS_LAT_REF, "N"))
        lon = _dms_to_degrees(gps[_GPS_LON], gps.get(_GPS_LON_REF, "E"))
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    if not (math.isfinite(lat) and math.isfinite(lon)) or abs(lat) > 90 or abs(lon) > 180:
        return None
    if lat == 0.0 and lon == 0.0:
        return None
    return lat, lon
