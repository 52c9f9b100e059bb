"""Dataset loaders on the real shared sets and on every supported format, including broken ones."""

from __future__ import annotations

import csv
import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from geodemo.data import (
    FORMATS,
    GeoDataset,
    TarImageStore,
    detect_format,
    detect_lat_lon_swap,
    list_benchmarks,
    load_benchmark,
    load_csv,
    load_exif_folder,
)
from geodemo.paths import MissingResourceError


def raw_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def jpeg(color=(120, 80, 40), size=(48, 32), exif=None) -> bytes:
    buf = io.BytesIO()
    kwargs = {"exif": exif} if exif is not None else {}
    Image.new("RGB", size, color).save(buf, format="JPEG", **kwargs)
    return buf.getvalue()


# ---- the real shared sets --------------------------------------------------------------------


def test_registry_names():
    assert {"im2gps3k-dev", "osv5m-sample", "yfcc4k-meta", "im2gps-meta"} <= set(list_benchmarks())
    with pytest.raises(KeyError, match="unknown benchmark 'nope'; known benchmarks: im2gps3k-dev"):
        load_benchmark("nope")


def test_all_978_dev_photos_load(shared: Path):
    dev = load_benchmark("im2gps3k-dev")
    assert len(dev) == 978 and dev.format == "im2gps" and not dev.lat_lon_swapped
    raw = raw_rows(shared / "data" / "im2gps3k-dev" / "im2gps3k_dev.csv")
    assert [s.id for s in dev] == [r["IMG_ID"] for r in raw]
    np.testing.assert_allclose(dev.coords(), [[float(r["LAT"]), float(r["LON"])] for r in raw])
    assert [s.group for s in dev] == [r["AUTHOR"] for r in raw]
    assert dev[0].meta["S365_Label"] == raw[0]["S365_Label"]
    loaded = errors = 0
    for _sample, image, error in dev.iter_images(progress=False):
        if error is None:
            assert image.mode == "RGB"
            loaded += 1
        else:
            errors += 1
    assert (loaded, errors) == (978, 0)


def test_all_71_osv_photos_load(shared: Path):
    osv = load_benchmark("osv5m-sample")
    assert len(osv) == 71 and osv.format == "osv5m"
    raw = raw_rows(shared / "data" / "osv5m-sample" / "osv5m_sample.csv")
    np.testing.assert_allclose(osv.coords(), [[float(r["latitude"]), float(r["longitude"])] for r in raw])
    assert osv[0].image_path.name == f"{raw[0]['id']}.jpg"
    assert osv[0].meta["country"] == raw[0]["country"]
    results = list(osv.iter_images(progress=False))
    assert sum(err is None for _, _, err in results) == 71


def test_yfcc4k_meta_has_4536_rows_with_decoded_text(shared: Path):
    yfcc = load_benchmark("yfcc4k-meta")
    assert len(yfcc) == 4536 and yfcc.format == "yfcc-flickr" and not yfcc.lat_lon_swapped
    raw = raw_rows(shared / "data" / "benchmark-meta" / "yfcc4k_flickr_meta.csv")
    np.testing.assert_allclose(yfcc.coords(), [[float(r["lat"]), float(r["lon"])] for r in raw])
    assert yfcc[0].group == raw[0]["OwnerNSID"]
    assert "+" in raw[0]["Title"] and "+" not in yfcc[0].meta["Title"]  # '+'-encoded spaces decoded
    assert yfcc[0].image_path is None
    _, image, error = next(yfcc.iter_images(progress=False))
    assert image is None and "no image" in error


def test_im2gps_237_rows_with_the_swapped_header_detected(shared: Path):
    im2gps = load_benchmark("im2gps-meta")
    assert len(im2gps) == 237 and im2gps.lat_lon_swapped
    raw = raw_rows(shared / "data" / "benchmark-meta" / "im2gps_places365.csv")
    # The file's LON column holds latitudes: after detection our lat is that column.
    np.testing.assert_allclose(im2gps.coords(), [[float(r["LON"]), float(r["LAT"])] for r in raw])
    assert np.abs(im2gps.coords()[:, 0]).max() <= 90
    first = im2gps[0]  # 104123223_...: -16.66, 145.56 is Queensland, Australia
    import reverse_geocode

    assert reverse_geocode.get((first.lat, first.lon))["country_code"] == "AU"


def test_missing_shared_folder_is_a_clear_error(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("GEODEMO_SHARED", str(tmp_path))
    with pytest.raises(MissingResourceError, match="GEODEMO_SHARED"):
        load_benchmark("im2gps3k-dev")


# ---- formats ---------------------------------------------------------------------------------


def test_swap_detection_from_value_ranges():
    assert detect_lat_lon_swap(np.array([120.0, -75.0]), np.array([45.0, 10.0]))
    assert not detect_lat_lon_swap(np.array([45.0, 10.0]), np.array([120.0, -75.0]))
    assert not detect_lat_lon_swap(np.array([45.0, 10.0]), np.array([50.0, -75.0]))  # undecidable: trusted
    # One garbage row (both out of range) must not flip the decision either way.
    assert detect_lat_lon_swap(np.array([120.0, -75.0, 200.0]), np.array([45.0, 10.0, 95.0]))
    assert not detect_lat_lon_swap(np.array([45.0, 10.0, 200.0]), np.array([120.0, -75.0, 95.0]))


def test_im2gps_csv_with_folder_broken_and_missing_images(tmp_path: Path):
    images = tmp_path / "images"
    images.mkdir()
    (images / "a.jpg").write_bytes(jpeg())
    (images / "b.jpg").write_text("not a jpeg")
    (images / "c.jpg").write_bytes(jpeg()[:200])  # truncated
    (tmp_path / "set.csv").write_text(
        "IMG_ID,AUTHOR,LON,LAT\n"  # swapped labels, as some public copies have
        "a.jpg,u1,48.85,2.35\n"
        "b.jpg,u1,40.7,-74.0\n"
        "c.jpg,u2,-33.9,151.2\n"
        "d.jpg,u2,35.7,139.7\n"  # no file
        "e.jpg,u3,,10\n"  # missing coordinate
        "f.jpg,u3,95,200\n"  # impossible either way
        "a.jpg,u4,1,2\n"  # duplicate id
    )
    ds = load_csv(tmp_path / "set.csv")
    assert ds.format == "im2gps" and ds.lat_lon_swapped
    assert ds.ids() == ["a.jpg", "b.jpg", "c.jpg", "d.jpg"]
    np.testing.assert_allclose(ds.coords()[0], [48.85, 2.35])
    reasons = [s.reason for s in ds.skipped]
    assert any("non-numeric" in r for r in reasons)
    assert any("out of range" in r for r in reasons)
    assert any("duplicate" in r for r in reasons)
    outcome = {s.id: (img is not None, err) for s, img, err in ds.iter_images(progress=False)}
    assert outcome["a.jpg"] == (True, None)
    assert "not an image" in outcome["b.jpg"][1]
    assert "truncated" in outcome["c.jpg"][1]
    assert "not found" in outcome["d.jpg"][1]


def test_duplicate_ids_keep_the_first_usable_row(tmp_path: Path):
    (tmp_path / "dup.csv").write_text("IMG_ID,LAT,LON\nx.jpg,,\nx.jpg,10,20\nx.jpg,30,40\n")
    ds = load_csv(tmp_path / "dup.csv")
    assert ds.ids() == ["x.jpg"] and ds.coords().tolist() == [[10.0, 20.0]]
    assert [(s.where, s.reason) for s in ds.skipped] == [
        ("row 2 (x.jpg)", "missing or non-numeric coordinates"),
        ("row 4 (x.jpg)", "duplicate id"),
    ]


def test_osv5m_and_generic_formats(tmp_path: Path):
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "123.jpg").write_bytes(jpeg())
    (tmp_path / "osv.csv").write_text("id,latitude,longitude,city,country\n123,43.6,1.44,Toulouse,FR\n")
    osv = load_csv(tmp_path / "osv.csv")
    assert osv.format == "osv5m" and osv[0].image_path == tmp_path / "images" / "123.jpg"
    assert osv.open_image(osv[0]).size == (48, 32)
    (tmp_path / "mine.csv").write_text("filename,lng,lat,photographer\n123.jpg,1.44,43.6,me\n")
    mine = load_csv(tmp_path / "mine.csv")
    assert mine.format == "generic" and mine[0].group == "me"
    np.testing.assert_allclose(mine.coords(), [[43.6, 1.44]])
    (tmp_path / "bad.csv").write_text("foo,bar\n1,2\n")
    with pytest.raises(ValueError, match="unrecognised CSV columns"):
        load_csv(tmp_path / "bad.csv")
    with pytest.raises(ValueError, match="unknown CSV format"):
        load_csv(tmp_path / "osv.csv", format="nope")
    with pytest.raises(ValueError, match="lacks columns"):
        load_csv(tmp_path / "osv.csv", format="im2gps")


YFCC_ROW = [
    "7", "4572998878.jpg", "cefea4", "78969707@N00", "jk", "2010-05-01 16:28:20.0", "1272843440", "Panasonic",
    "Matt+and+Diana", "", "diana,matt", "", "-71.047843", "42.33719", "16", "http://p", "http://u", "CC", "http://l",
    "3373", "4", "658b", "a077", "jpg", "0",
]


@pytest.mark.parametrize("header", ["numbered", "none-tab"])
def test_yfcc_numbered_copy(tmp_path: Path, header: str):
    path = tmp_path / "yfcc4k.txt"
    if header == "numbered":
        path.write_text(",".join(str(i) for i in range(25)) + "\n" + ",".join(f'"{v}"' for v in YFCC_ROW) + "\n")
    else:
        path.write_text("\t".join(YFCC_ROW) + "\n")
    ds = load_csv(path)
    assert ds.format == "yfcc-numbered" and len(ds) == 1
    s = ds[0]
    assert (s.id, s.group, s.lat, s.lon) == ("4572998878.jpg", "78969707@N00", 42.33719, -71.047843)
    assert s.meta["8"] == "Matt and Diana"


def test_mp16pro_from_folder_and_from_tar(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("GEODEMO_CACHE", str(tmp_path / "cache"))
    header = "IMG_ID,LAT,LON,neighbourhood,city,county,state,region,country,country_code,continent\n"
    rows = [
        "01/aa/1.jpg,48.85,2.35,,Paris,,Ile-de-France,,France,fr,Europe",
        "02/bb/2.jpg,-33.9,151.2,,Sydney,,NSW,,Australia,au,Oceania",
        "03/cc/3.jpg,35.7,139.7,,Tokyo,,Tokyo,,Japan,jp,Asia",
    ]
    (tmp_path / "MP16_Pro.csv").write_text(header + "\n".join(rows) + "\n")
    colors = {"01/aa/1.jpg": (255, 0, 0), "02/bb/2.jpg": (0, 255, 0)}  # 3.jpg is missing everywhere
    folder = tmp_path / "folder"
    for name, color in colors.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(jpeg(color))
    tar_path = tmp_path / "mp16.tar"
    with tarfile.open(tar_path, "w") as tar:
        for name in colors:
            tar.add(folder / name, arcname=name)

    for images in (folder, tar_path):
        ds = load_csv(tmp_path / "MP16_Pro.csv", images_dir=images)
        assert ds.format == "mp16pro" and len(ds) == 3
        assert ds[0].meta["country_code"] == "fr" and ds[2].meta["city"] == "Tokyo"
        got = {s.id: (img, err) for s, img, err in ds.iter_images(progress=False)}
        for name, color in colors.items():
            mean = np.asarray(got[name][0]).reshape(-1, 3).mean(0)
            assert np.abs(mean - color).max() < 10
        assert got["03/cc/3.jpg"][0] is None and got["03/cc/3.jpg"][1]

    slim = load_csv(tmp_path / "MP16_Pro.csv", images_dir=tar_path, meta_columns=["city"])
    assert slim[1].meta == {"city": "Sydney", "tar_member": "02/bb/2.jpg"}

    store = TarImageStore(tar_path)
    index = json.loads(store.index_path.read_text())  # the member index is JSON, never a pickle
    assert store.index_path.is_relative_to(tmp_path / "cache")
    assert set(index["members"]) == set(colors) and "01/aa/1.jpg" in store
    assert store.read("./01/aa/1.jpg") == (folder / "01/aa/1.jpg").read_bytes()
    assert TarImageStore(tar_path).members == store.members  # second open reuses the index


def test_exif_folder(tmp_path: Path):
    exif = Image.Exif()
    exif[0x8825] = {1: "N", 2: (48.0, 51.0, 24.0), 3: "E", 4: (2.0, 21.0, 0.0)}
    (tmp_path / "trip").mkdir()
    (tmp_path / "trip" / "paris.jpg").write_bytes(jpeg(exif=exif))
    (tmp_path / "nogps.jpg").write_bytes(jpeg())
    (tmp_path / "fake.jpg").write_text("text")
    (tmp_path / "readme.txt").write_text("ignored")
    ds = load_exif_folder(tmp_path)
    assert isinstance(ds, GeoDataset) and ds.ids() == ["trip/paris.jpg"]
    assert ds[0].group == "trip"
    np.testing.assert_allclose(ds.coords(), [[48 + 51 / 60 + 24 / 3600, 2.35]])
    assert sorted(s.where for s in ds.skipped) == ["fake.jpg", "nogps.jpg"]
    with pytest.raises(FileNotFoundError):
        load_exif_folder(tmp_path / "nowhere")


def test_every_registered_format_is_detectable():
    for fmt in FORMATS.values():
        assert detect_format(list(fmt.required)).name == fmt.name
