"""Safe image reading: every broken or unusual input gives RGB or a clear ImageError, never a crash."""

from __future__ import annotations

import io
import resource
import struct
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from geodemo.imageio import ImageError, MissingImageError, load_image, read_exif_gps, to_rgb


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_header_only(width: int, height: int) -> bytes:
    """A valid PNG signature + IHDR claiming ``width x height`` RGB, with an empty image stream."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", zlib.compress(b""))
        + _png_chunk(b"IEND", b"")
    )


def jpeg_bytes(image: Image.Image, **kwargs) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=95, **kwargs)
    return buf.getvalue()


def gps_exif(lat_ref: str, lat: tuple, lon_ref: str, lon: tuple) -> Image.Exif:
    exif = Image.Exif()
    exif[0x8825] = {1: lat_ref, 2: lat, 3: lon_ref, 4: lon}
    return exif


@pytest.fixture
def photo() -> Image.Image:
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 256, (96, 128, 3), dtype=np.uint8), "RGB")


# ---- broken inputs ---------------------------------------------------------------------------


def test_truncated_jpeg_is_a_clear_error(tmp_path: Path, photo):
    data = jpeg_bytes(photo)
    path = tmp_path / "cut.jpg"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match="truncated"):
        load_image(path)


def test_text_file_named_jpg_is_a_clear_error(tmp_path: Path):
    path = tmp_path / "notes.jpg"
    path.write_text("this is not a photo, just text\n" * 10)
    with pytest.raises(ImageError, match="not an image"):
        load_image(path)
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    with pytest.raises(ImageError):
        load_image(empty)


def test_huge_header_is_refused_without_allocating(tmp_path: Path):
    path = tmp_path / "bomb.png"
    path.write_bytes(png_header_only(30000, 30000))  # 900 MP, 2.7 GB once decoded
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    start = time.perf_counter()
    with pytest.raises(ImageError, match="too large|limit"):
        load_image(path)
    assert time.perf_counter() - start < 2.0
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mib < 200, f"refusing the bomb grew memory by {grown_mib:.0f} MiB"


def test_our_pixel_limit_applies_before_decoding(photo):
    data = jpeg_bytes(photo)
    with pytest.raises(ImageError, match=r"128x96 = 12,288 pixels, over the 10,000-pixel limit"):
        load_image(data, max_pixels=10_000)
    assert load_image(data, max_pixels=12_288).size == (128, 96)


def test_missing_file_is_both_image_error_and_file_not_found(tmp_path: Path):
    with pytest.raises(MissingImageError, match="not found") as info:
        load_image(tmp_path / "nope.jpg")
    assert isinstance(info.value, FileNotFoundError) and isinstance(info.value, ValueError)


# ---- modes -> RGB ----------------------------------------------------------------------------


def test_png_with_alpha_is_composited_on_white(tmp_path: Path):
    rgba = np.zeros((4, 4, 4), dtype=np.uint8)
    rgba[:, :2] = (200, 10, 10, 255)  # opaque red
    rgba[:, 2:] = (0, 0, 255, 0)  # fully transparent blue
    path = tmp_path / "alpha.png"
    Image.fromarray(rgba, "RGBA").save(path)
    out = load_image(path)
    assert out.mode == "RGB"
    arr = np.asarray(out)
    assert arr[0, 0].tolist() == [200, 10, 10]
    assert arr[0, 3].tolist() == [255, 255, 255]


def test_16bit_tiff_is_rescaled_not_clipped(tmp_path: Path):
    values = np.array([[0, 257, 32896, 65535]], dtype=np.uint16)  # 0, 1, 128, 255 in 8-bit terms
    path = tmp_path / "deep.tif"
    Image.fromarray(values).save(path, format="TIFF")
    assert Image.open(path).mode.startswith("I;16")
    out = load_image(path)
    assert out.mode == "RGB"
    assert np.asarray(out)[0, :, 0].tolist() == [0, 1, 128, 255]


def test_palette_png_with_and_without_transparency(tmp_path: Path):
    pal = Image.new("P", (2, 1))
    pal.putpalette([255, 0, 0, 0, 255, 0] + [0] * 762)
    pal.putpixel((0, 0), 0)
    pal.putpixel((1, 0), 1)
    plain = tmp_path / "pal.png"
    pal.save(plain)
    assert np.asarray(load_image(plain)).tolist() == [[[255, 0, 0], [0, 255, 0]]]
    see_through = tmp_path / "pal_t.png"
    pal.save(see_through, transparency=1)
    assert np.asarray(load_image(see_through)).tolist() == [[[255, 0, 0], [255, 255, 255]]]


def test_cmyk_and_grayscale_become_rgb(tmp_path: Path):
    cmyk = Image.new("CMYK", (8, 8), (0, 255, 255, 0))  # pure red in CMYK
    path = tmp_path / "cmyk.tif"
    cmyk.save(path)
    r, g, b = np.asarray(load_image(path))[0, 0]
    assert r > 240 and g < 15 and b < 15
    jpg = tmp_path / "cmyk.jpg"
    cmyk.save(jpg, quality=95)
    r, g, b = np.asarray(load_image(jpg)).mean(axis=(0, 1))
    assert r > 200 and g < 60 and b < 60
    gray = load_image(Image.new("L", (3, 3), 77))
    assert gray.mode == "RGB" and np.asarray(gray)[1, 1].tolist() == [77, 77, 77]
    binary = to_rgb(Image.new("1", (2, 2), 1))
    assert np.asarray(binary)[0, 0].tolist() == [255, 255, 255]


def test_exif_orientation_is_applied(tmp_path: Path):
    arr = np.zeros((20, 40, 3), dtype=np.uint8)
    arr[:, :20] = (255, 0, 0)  # left half red
    arr[:, 20:] = (0, 0, 255)  # right half blue
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: display needs a 90 degree clockwise turn
    path = tmp_path / "sideways.jpg"
    Image.fromarray(arr).save(path, exif=exif, quality=95)
    out = load_image(path)
    assert out.size == (20, 40)  # width and height swapped
    top, bottom = np.asarray(out)[5, 10], np.asarray(out)[35, 10]
    assert top[0] > 200 and top[2] < 60  # the left (red) half is now on top
    assert bottom[2] > 200 and bottom[0] < 60
    assert load_image(path, exif_transpose=False).size == (40, 20)


def test_sources_path_bytes_fileobj_and_pil_agree(tmp_path: Path, photo):
    data = jpeg_bytes(photo)
    path = tmp_path / "p.jpg"
    path.write_bytes(data)
    a = np.asarray(load_image(path))
    assert np.array_equal(a, np.asarray(load_image(str(path))))
    assert np.array_equal(a, np.asarray(load_image(data)))
    assert np.array_equal(a, np.asarray(load_image(io.BytesIO(data))))
    assert np.array_equal(a, np.asarray(load_image(Image.open(path))))
    with pytest.raises(TypeError):
        load_image(12345)  # type: ignore[arg-type]


# ---- EXIF GPS --------------------------------------------------------------------------------


def test_read_exif_gps_signs_and_absence(tmp_path: Path, photo):
    sydney = jpeg_bytes(photo, exif=gps_exif("S", (33.0, 51.0, 54.0), "E", (151.0, 12.0, 36.0)))
    lat, lon = read_exif_gps(sydney)
    assert lat == pytest.approx(-(33 + 51 / 60 + 54 / 3600)) and lon == pytest.approx(151 + 12 / 60 + 36 / 3600)
    quito = tmp_path / "quito.jpg"
    quito.write_bytes(jpeg_bytes(photo, exif=gps_exif("S", (0.0, 13.0, 12.0), "W", (78.0, 31.0, 12.0))))
    lat, lon = read_exif_gps(quito)
    assert lat == pytest.approx(-0.22) and lon == pytest.approx(-78.52)
    assert read_exif_gps(jpeg_bytes(photo)) is None  # no GPS block
    null_island = jpeg_bytes(photo, exif=gps_exif("N", (0.0, 0.0, 0.0), "E", (0.0, 0.0, 0.0)))
    assert read_exif_gps(null_island) is None  # (0, 0) is a camera placeholder, not a position
    assert read_exif_gps(b"not an image") is None
    assert read_exif_gps(tmp_path / "missing.jpg") is None


def test_shared_photos_load_as_rgb(shared: Path):
    folder = shared / "data" / "osv5m-sample" / "images"
    for path in sorted(folder.glob("*.jpg"))[:5]:
        image = load_image(path)
        assert image.mode == "RGB" and min(image.size) > 32
