"""Hostile files and texts the robustness tests feed to the library, the CLI and the app: PNGs
whose metadata inflates to hundreds of MB, a 16-bit grey PNG of any pixel size, 100 KB texts that a
backtracking parser would take quadratic time over (issue 27's probe)."""

from __future__ import annotations

import io
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

__all__ = ["ADVERSARIAL", "gray16_png", "icc_bomb_png", "png_chunk", "png_with_chunk", "text_bomb_png", "zlib_bomb"]


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return len(data).to_bytes(4, "big") + kind + data + zlib.crc32(kind + data).to_bytes(4, "big")


def zlib_bomb(size: int) -> bytes:
    """``size`` zero bytes, deflated (a few hundred KB for 200 MB), built without holding them."""
    comp, block = zlib.compressobj(9), bytes(1 << 20)
    parts = [comp.compress(block) for _ in range(size >> 20)]
    return b"".join(parts) + comp.flush()


def png_with_chunk(kind: bytes, data: bytes, side: int = 64) -> bytes:
    """A valid ``side`` x ``side`` PNG with one extra chunk before its pixels."""
    buf = io.BytesIO()
    Image.new("RGB", (side, side), (90, 140, 60)).save(buf, format="PNG")
    png = buf.getvalue()
    return png[:33] + png_chunk(kind, data) + png[33:]  # right after IHDR


def icc_bomb_png(inflated: int = 200 * 2**20) -> bytes:
    """A 64 x 64 PNG whose ``iCCP`` colour profile inflates to ``inflated`` bytes (the probe's N4 file)."""
    return png_with_chunk(b"iCCP", b"bomb\0\0" + zlib_bomb(inflated))


def text_bomb_png(inflated: int = 200 * 2**20) -> bytes:
    """A 64 x 64 PNG whose compressed text chunk (``zTXt``) inflates to ``inflated`` bytes."""
    return png_with_chunk(b"zTXt", b"Comment\0\0" + zlib_bomb(inflated))


def gray16_png(path: Path, width: int, height: int) -> Path:
    """A 16-bit grey PNG (PIL mode ``I;16``) of smooth bands: tiny on disk, ``width * height`` pixels."""
    x = (np.arange(width, dtype=np.uint32) * 37 // max(width // 64, 1)).astype(np.uint16)
    Image.fromarray(np.broadcast_to(x, (height, width)).copy()).save(path, compress_level=1)
    return path


# ------------------------------------------------------------------------------------ N3: every mode, same memory


ADVERSARIAL = {
    "spaces and digits": " 1" * 50_000 + "x",
    "one number, 100 KB of spaces": "1" + " " * 99_997 + "1x",  # the probe's N2 text (quadratic in the old regex)
    "digits dots commas": "1.1," * 25_000 + "a",
    "parentheses": "(" * 100_000,
    "dotted words": "a." * 50_000,
    "class-like": "A" * 100_000,
    "paths": " /a" * 33_000,
    "separators": "1;" * 50_000,
}
