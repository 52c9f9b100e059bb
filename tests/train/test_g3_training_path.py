"""G3's training path at one scale: the real extraction command writes shards, one training step on
them, the index vector of the trained heads, all compared with a transcription of G3's own code
(tests/g3_reference.py) on the same photos and weights (tiny CLIP of the real architecture, random)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import geodemo  # noqa: F401
from geodemo.paths import REPO_ROOT
from tests.g3_reference import G3Reference, caption
from tests.tiny_clip import tiny_clip_config

TINY_CLIP = tiny_clip_config(projection_dim=768)
OPTIONS = {"random_init": True, "config": TINY_CLIP, "seed": 3}
# MP16-Pro's columns; the second photo has no state (G3 leaves it out of the caption)
ROWS = [("a/b/1.jpg", 48.8566, 2.3522, "Paris", "Ile-de-France", "France"),
        ("a/b/2.jpg", 35.6762, 139.6503, "Tokyo", "", "Japan"),
        ("a/c/3.jpg", -33.8688, 151.2093, "Sydney", "New South Wales", "Australia"),
        ("a/c/4.jpg", 40.7128, -74.0060, "New York", "New York", "United States"),
        ("a/d/5.jpg", -22.9068, -43.1729, "Rio de Janeiro", "Rio de Janeiro", "Brazil"),
        ("a/d/6.jpg", 64.1466, -21.9426, "Reykjavik", "Capital Region", "Iceland")]
SIZES = [(64, 80), (90, 64), (64, 64), (64, 100), (77, 64), (64, 71)]  # short side 64: no resampling


@pytest.fixture(scope="module")
def extracted(tmp_path_factory) -> tuple[Path, Path]:
    """A CSV in MP16-Pro's layout, its photos, and the shards `scripts/extract_features.py --text` writes."""
    root = tmp_path_factory.mktemp("g3path")
    images = root / "images"
    rng = np.random.default_rng(0)
    lines = ["IMG_ID,LAT,LON,neighbourhood,city,county,state,region,country,country_code,continent"]
    for (img_id, lat, lon, city, state, country), (w, h) in zip(ROWS, SIZES, strict=True):
        path = images / img_id
        path.parent.mkdir(parents=True, exist_ok=True)
        base = rng.integers(0, 256, (h // 8 + 1, w // 8 + 1, 3), dtype=np.uint8)
        Image.fromarray(base).resize((w, h), Image.Resampling.BILINEAR).save(path, quality=95)
        lines.append(f"{img_id},{lat},{lon},,{city},,{state},,{country},xx,yy")
    csv = root / "mp16pro.csv"
    csv.write_text("\n".join(lines) + "\n")
    out = root / "shards"
    cmd = [sys.executable, str(REPO_ROOT / "scripts" / "extract_features.py"), "--csv", str(csv), "--images",
           str(images), "--encoder", "hf-clip-vit-l14", "--model-options", json.dumps(OPTIONS), "--text",
           "--device", "cpu", "--dtype", "fp32", "--workers", "0", "--resize-on", "workers", "--shard-size", "4",
           "--out", str(out), "--no-progress"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=REPO_ROOT,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert done.returncode == 0, done.stderr[-2000:]
    return csv, out


def _reference_inputs(csv: Path, clip) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """G3's inputs to ``G3.forward``: CLIPImageProcessor pixels, tokenized captions (77 tokens)."""
    import open_clip
    import pandas as pd
    from transformers import CLIPImageProcessor

    df = pd.read_csv(csv)
    size = TINY_CLIP["vision_config"]["image_size"]
    processor = CLIPImageProcessor(size={"shortest_edge": size}, crop_size={"height": size, "width": size})
    photos = [Image.open(csv.parent / "images" / i).convert("RGB") for i in df["IMG_ID"]]
    pixels = processor(images=photos, return_tensors="pt")["pixel_values"]
    captions = [caption(row) for row in df.to_dict("records")]
    ids = open_clip.get_tokenizer("ViT-L-14")(captions)  # the OpenAI BPE of G3's CLIPTokenizer, 77 tokens
    return pixels, ids, captions


def _trained_heads(shards: Path, tmp: Path):
    from geodemo.models.aligners import load_aligner
    from geodemo.train import Trainer, load_preset

    cfg = load_preset("g3")
    cfg["model"] = {**cfg["model"], "location_init": None}  # GeoCLIP's wheel is not needed for one step
    cfg["data"] = {"source": "shards", "path": str(shards), "holdout_fraction": 0.0}
    cfg["optim"] = {**cfg["optim"], "batch_size": len(ROWS), "epochs": 1}
    cfg["eval"] = {"every_epochs": 0}
    cfg["run"] = {**cfg["run"], "device": "cpu", "output": str(tmp / "run"), "tensorboard": False,
                  "checkpoint_every": 0}
    trainer = Trainer(cfg, progress=False)
    before = {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}
    batch = trainer.batch_at(0)
    trainer.fit(resume=False)
    assert trainer.step == 1
    return load_aligner(trainer.export(tmp / "heads")), before, batch


def test_g3_path_from_extraction_to_index_vector_matches_g3s_code(extracted, tmp_path):
    from geodemo.data import load_csv, load_feature_shards
    from geodemo.models import create_model
    from geodemo.models.descriptors import G3Descriptor
    from geodemo.retrieval.builder import ShardSource

    csv, shards = extracted
    table = load_feature_shards(shards)
    assert set(table.features) == {"image", "projection", "text_projection"}
    encoder = create_model("hf-clip-vit-l14", device="cpu", dtype="fp32", **OPTIONS)
    heads, initial, batch = _trained_heads(shards, tmp_path)

    reference = G3Reference(encoder.model).eval()
    reference.load_state_dict({**{k: v for k, v in reference.state_dict().items()
                                  if k.startswith(("vision_model.", "text_model.", "vision_projection.",
                                                   "text_projection."))},
                               **heads.state_dict()}, strict=True)
    pixels, ids, captions = _reference_inputs(csv, encoder.model)
    order = [table.ids.index(i) for i in load_csv(csv).ids()]

    # the shards hold what G3's forward computes: raw projections of the photo and of its caption
    with torch.no_grad():
        ref_image = reference.vision_projection(reference.vision_model(pixels)[1])
        ref_text = reference.text_projection(reference.text_model(input_ids=ids)[1])
    assert np.abs(table.features["projection"][order] - ref_image.numpy()).max() < 1e-5
    assert np.abs(table.features["text_projection"][order] - ref_text.numpy()).max() < 1e-5
    assert np.abs(np.linalg.norm(ref_image.numpy(), axis=1) - 1).min() > 1e-2  # raw, not unit rows
    assert captions[1] == "A street view photo taken in Tokyo, Japan"

    # the one training step ran on those raw projections (the batch the objective saw, all photos)
    rows = [int(np.argmin(np.abs(np.asarray(table.coords) - c).sum(1))) for c in batch["coords"].numpy()]
    assert sorted(rows) == list(range(len(ROWS)))
    assert torch.equal(batch["image"], torch.from_numpy(np.asarray(table.features["projection"])[rows]))
    assert torch.equal(batch["text"], torch.from_numpy(np.asarray(table.features["text_projection"])[rows]))
    assert any(not torch.equal(initial[k], v) for k, v in heads.state_dict().items())

    # the index vector, at query time from photos and from the shards (database build), is G3's
    want = reference.index_vector(pixels).numpy() / math.sqrt(3)  # ours: unit rows (a constant factor)
    descriptor = G3Descriptor("g3-test", encoder, heads)
    photos = load_csv(csv)
    from_photos = descriptor.describe([photos.open_image(s) for s in photos.samples]).descriptor
    assert np.abs(from_photos - want).max() < 1e-5
    chunk = ShardSource(shards).chunk(0, len(ROWS), descriptor)
    assert np.abs(chunk.descriptor[order] - want).max() < 1e-5


def test_g3_objective_equals_g3s_two_losses(extracted):
    from geodemo.data import load_csv, load_feature_shards
    from geodemo.models import create_model
    from geodemo.models.g3 import G3Heads, g3_inputs
    from geodemo.train.objectives import G3Objective

    csv, shards = extracted
    table = load_feature_shards(shards)
    encoder = create_model("hf-clip-vit-l14", device="cpu", dtype="fp32", **OPTIONS)
    torch.manual_seed(5)
    heads = G3Heads(location={"projection": "mercator"})
    with torch.no_grad():
        heads.logit_scale1.fill_(3.2)
        heads.logit_scale2.fill_(4.4)
    reference = G3Reference(encoder.model)
    towers = {k: v for k, v in reference.state_dict().items()
              if k.startswith(("vision_model.", "text_model.", "vision_projection.", "text_projection."))}
    reference.load_state_dict({**towers, **heads.state_dict()}, strict=True)
    pixels, ids, _ = _reference_inputs(csv, encoder.model)
    order = [table.ids.index(i) for i in load_csv(csv).ids()]
    lat = torch.tensor([r[1] for r in ROWS], dtype=torch.float32)
    lon = torch.tensor([r[2] for r in ROWS], dtype=torch.float32)
    ref = reference(pixels, ids, lon, lat)

    cols = g3_inputs(table.features)
    batch = {"image": torch.from_numpy(np.asarray(cols["image"])[order]),
             "text": torch.from_numpy(np.asarray(cols["text"])[order]),
             "coords": torch.from_numpy(np.asarray(table.coords)[order])}
    loss, parts = G3Objective(heads)(batch)
    assert abs(loss.item() - ref["loss"].item()) < 1e-5
    assert abs(parts["loss_img_text"].item() - ref["loss_text"].item()) < 1e-5
    assert abs(parts["loss_img_gps"].item() - ref["loss_gps"].item()) < 1e-5


def test_unit_row_shards_are_refused_for_g3_training():
    from geodemo.models.g3 import g3_inputs

    unit = np.eye(3, 8, dtype=np.float32)
    with pytest.raises(ValueError, match="raw CLIP projections"):
        g3_inputs({"image": unit, "text": unit})
    with pytest.raises(ValueError, match="raw text projection"):
        g3_inputs({"image": unit, "projection": unit, "text": unit})
    assert set(g3_inputs({"image": unit}, text_head=False)) == {"image"}  # MobileNet: its output is what it is


def test_g3_preset_sends_g3s_own_prompts_and_g3_plus_ours():
    from geodemo.lmm.prompts import build_prompts
    from geodemo.lmm.stage import LMMConfig
    from geodemo.pipeline.presets import load_preset
    from geodemo.result import Neighbour
    from tests.g3_reference import rag_prompt, zero_shot_prompt

    near = [Neighbour(i, f"n{i}", 48.8 + i / 7, 2.35 - i / 3, 0.9) for i in range(6)]
    far = [Neighbour(i, f"f{i}", -33.9 + i, 151.2, 0.1) for i in range(6)]
    g3 = LMMConfig.from_dict(load_preset("g3")["lmm"])
    prompts = {p.kind: p.text for p in build_prompts(g3.prompts, neighbours=near, dissimilar=far, wording=g3.wording)}
    assert prompts["zero-shot"] == zero_shot_prompt()
    assert prompts["rag-5"] == rag_prompt([(n.lat, n.lon) for n in near[:5]], [(n.lat, n.lon) for n in far[:5]])
    plus = LMMConfig.from_dict(load_preset("g3-plus")["lmm"])
    ours = build_prompts(plus.prompts, neighbours=near, dissimilar=far, wording=plus.wording)
    assert plus.wording == "ours" and all(p.text not in (zero_shot_prompt(),) for p in ours)
    assert LMMConfig.from_dict(load_preset("dualgeo")["lmm"]).wording == "g3"  # DualGeo's prompts are placeholders
