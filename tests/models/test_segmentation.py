"""Segmentation: ADE20K classes and palette, overlays, descriptions, SegFormer (tiny, random) and the
real DeepLabV3-MobileNetV2 ADE20K model on the 71 OSV-5M street views."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

import geodemo  # noqa: F401
from geodemo.models import Segmenter, create_model
from geodemo.models.segmentation import (
    ADE20K_CLASSES,
    ADE20K_PALETTE,
    class_shares,
    colorize,
    describe_segmentation,
    make_result,
    render_overlay,
)

SKY, ROAD, TREE, BUILDING = 3, 7, 5, 2

# A tiny SegFormer of the real architecture (MiT encoder + all-MLP decoder), 150 ADE20K labels.
TINY_SEGFORMER = {
    "depths": [1, 1, 1, 1],
    "hidden_sizes": [8, 16, 24, 32],
    "num_attention_heads": [1, 1, 2, 2],
    "decoder_hidden_size": 16,
    "num_labels": 150,
}


def _read_labels_txt(path) -> list[str]:
    """The shared labels.txt: tab-separated except its first line (spaces)."""
    names = []
    for i, line in enumerate(path.read_text().splitlines()):
        idx, name = line.split(None, 1) if i == 0 else line.split("\t", 1)
        assert int(idx) == i
        names.append(name.strip())
    return names


def test_ade20k_classes_match_the_deeplab_label_file(shared):
    labels = _read_labels_txt(shared / "models" / "deeplabv3-mnv2-ade20k" / "labels.txt")
    assert len(labels) == len(ADE20K_CLASSES) == 151
    assert len(set(ADE20K_CLASSES)) == 151
    assert ADE20K_CLASSES[0] == "other" and labels[0] == "others"
    # labels.txt keeps only the first word of each ADE20K name ("swimming" for "swimming pool")
    for ours, theirs in zip(ADE20K_CLASSES[1:], labels[1:], strict=True):
        assert ours.split()[0] == theirs
    assert (ADE20K_CLASSES[SKY], ADE20K_CLASSES[ROAD], ADE20K_CLASSES[150]) == ("sky", "road", "flag")


def test_palette_is_fixed_and_distinct():
    assert ADE20K_PALETTE.shape == (151, 3) and ADE20K_PALETTE.dtype == np.uint8
    assert len({tuple(c) for c in ADE20K_PALETTE}) == 151
    assert not ADE20K_PALETTE.flags.writeable
    assert tuple(ADE20K_PALETTE[0]) == (0, 0, 0)
    # sky is blue-dominant, tree green-dominant
    assert ADE20K_PALETTE[SKY].argmax() == 2 and ADE20K_PALETTE[TREE].argmax() == 1


def _two_class_map(h: int = 40, w: int = 60) -> np.ndarray:
    lm = np.full((h, w), ROAD, dtype=np.uint8)
    lm[: 3 * h // 4] = SKY  # 75% sky on top, 25% road below
    return lm


def test_class_shares_and_description():
    lm = _two_class_map()
    lm[0, :6] = 0  # 6 "other" pixels
    shares = class_shares(lm)
    assert list(shares) == ["sky", "road", "other"]
    assert shares["sky"] == pytest.approx((30 * 60 - 6) / 2400)
    assert shares["road"] == pytest.approx(0.25)
    assert sum(shares.values()) == pytest.approx(1.0)
    photo = Image.new("RGB", (60, 40), (200, 100, 50))
    result = make_result("handmade", photo, lm)
    text = describe_segmentation(result)
    assert text == "sky 75%, road 25%"  # "other" is not a description
    assert describe_segmentation(result, top=1) == "sky 75%"
    assert result.to_dict()["shares"]["road"] == pytest.approx(0.25)
    assert "label_map" not in result.to_dict()


def test_render_overlay_blends_photo_and_palette():
    photo = Image.new("RGB", (60, 40), (200, 100, 50))
    lm = _two_class_map()
    assert np.array_equal(np.asarray(render_overlay(photo, lm, 0.0)), np.asarray(photo))
    assert np.array_equal(np.asarray(render_overlay(photo, lm, 1.0)), np.asarray(colorize(lm)))
    half = np.asarray(render_overlay(photo, lm, 0.5)).astype(int)
    expected_sky = (np.array([200, 100, 50]) + ADE20K_PALETTE[SKY].astype(int)) / 2
    assert np.abs(half[0, 0] - expected_sky).max() <= 1
    # a label map at another resolution is resized (nearest) to the photo
    small = _two_class_map(8, 12)
    over = render_overlay(photo, small, 1.0)
    assert over.size == photo.size
    assert tuple(np.asarray(over)[-1, -1]) == tuple(ADE20K_PALETTE[ROAD])
    with pytest.raises(ValueError, match="opacity"):
        render_overlay(photo, lm, 1.5)


def test_ade20k_mapping_of_other_label_sets():
    from geodemo.models.segformer import ade20k_mapping

    ade = {i: name for i, name in enumerate(ADE20K_CLASSES[1:])}  # SegFormer ADE: 0 = wall
    assert np.array_equal(ade20k_mapping(ade), np.arange(1, 151))
    cityscapes = {0: "road", 1: "sidewalk", 2: "building", 8: "vegetation", 10: "sky", 13: "car"}
    table = ade20k_mapping(cityscapes)
    assert [table[i] for i in (0, 1, 2, 8, 10, 13)] == [ROAD, 12, BUILDING, 0, SKY, 21]


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread(one_torch_thread):
    yield


@pytest.fixture(scope="module")
def photo(shared) -> Image.Image:
    from geodemo.imageio import load_image

    return load_image(sorted((shared / "data" / "osv5m-sample" / "images").glob("*.jpg"))[0])


def test_tiny_segformer_interface_and_round_trip(photo, tmp_path):
    photo = photo.resize((136, 102))  # small: the 150-class upsampling dominates a tiny model's cost
    seg = create_model(
        "segformer-b5-ade", random_init=True, config=TINY_SEGFORMER, image_size=64, device="cpu"
    )
    assert isinstance(seg, Segmenter)
    result = seg.segment(photo)
    assert result.model == "segformer-b5-ade"
    assert result.label_map.shape == (photo.height, photo.width)
    assert result.label_map.min() >= 1  # all 150 SegFormer classes map to ADE20K ids 1..150
    assert result.class_names == list(ADE20K_CLASSES)
    assert sum(result.shares.values()) == pytest.approx(1.0)
    assert list(result.shares.values()) == sorted(result.shares.values(), reverse=True)
    assert result.overlay.size == photo.size
    # batched label maps equal one-by-one ones; same seed, same model
    small = photo.resize((90, 50))  # another size in the same batch
    batch = seg.label_maps([photo, small], batch_size=2)
    assert np.array_equal(batch[0], result.label_map) and batch[1].shape == (50, 90)
    again = create_model(
        "segformer-b5-ade", random_init=True, config=TINY_SEGFORMER, image_size=64, device="cpu"
    )
    assert np.array_equal(again.label_map(photo), result.label_map)
    # save_pretrained -> local_dir round trip
    seg.model.save_pretrained(tmp_path)
    loaded = create_model("segformer-b5-ade", local_dir=tmp_path, image_size=64, device="cpu")
    assert np.array_equal(loaded.label_map(photo), result.label_map)


def test_deeplab_segments_a_street_view(photo):
    seg = create_model("deeplab-mnv2-ade")
    assert isinstance(seg, Segmenter)
    result = seg.segment(photo)
    assert result.label_map.shape == (photo.height, photo.width)
    assert result.label_map.dtype == np.uint8 and result.label_map.max() <= 150
    assert result.overlay.size == photo.size
    assert {"sky", "road"} <= set(list(result.shares)[:4])
    print("deeplab on", photo.size, describe_segmentation(result))


@pytest.mark.slow  # DeepLab over street views: about 18 s
def test_deeplab_sky_on_top_road_below_on_osv_street_views(shared):
    from geodemo.data import load_benchmark
    from geodemo.extraction.features import cached_label_maps

    osv = load_benchmark("osv5m-sample")
    maps = cached_label_maps("deeplab-mnv2-ade", osv, progress=False)
    assert len(maps) == 71 and all(m is not None for m in maps)
    sky_ok, road_ok = [], []
    for lm in maps:
        third = lm.shape[0] // 3
        top, bottom = lm[:third], lm[-third:]
        sky_ok.append((top == SKY).mean() >= 0.20 and (bottom == SKY).mean() < 0.05)
        road_ok.append((bottom == ROAD).mean() >= 0.10 and (top == ROAD).mean() < 0.05)
    sky_rate, road_rate = float(np.mean(sky_ok)), float(np.mean(road_ok))
    print(f"sky in top third (>=20%, <5% in bottom third): {sky_rate:.0%} of 71; "
          f"road in bottom third (>=10%, <5% in top third): {road_rate:.0%} of 71")  # fmt: skip
    assert sky_rate >= 0.70
    assert road_rate >= 0.70
