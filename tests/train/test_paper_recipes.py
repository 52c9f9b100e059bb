"""The faithful training presets run the papers' recipes: G3's and DualGeo's StepLR schedules (stepped per
epoch), and DualGeo's paired augmentation of a photo and its label map."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import geodemo  # noqa: F401
from geodemo.data import FeatureTable
from geodemo.train import Trainer, load_preset


def _table(n: int = 40) -> FeatureTable:
    rng = np.random.default_rng(0)
    coords = np.stack([rng.uniform(-60, 70, n), rng.uniform(-180, 180, n)], 1).astype(np.float32)
    return FeatureTable([f"p{i}" for i in range(n)], [f"g{i % 5}" for i in range(n)], coords,
                        {"image": rng.standard_normal((n, 16)).astype(np.float32)})


@pytest.mark.parametrize("preset", ["g3", "dualgeo"])
def test_step_schedule_is_torchs_steplr_stepped_once_per_epoch(preset, tmp_path):
    optim = load_preset(preset)["optim"]
    assert optim["schedule"] == "step" and optim["warmup_steps"] == 0 and optim["grad_clip"] == 0
    cfg = {"model": {"architecture": "mlp-aligner", "encoder_name": "t", "image_dims": [16, 8],
                     "location": {"hidden_dim": 16, "embed_dim": 8, "rff_dim": 4, "seed": 0}},
           "objective": {"kind": "geo-alignment"}, "data": {"holdout_fraction": 0.0},
           "optim": {**optim, "batch_size": 8, "epochs": 7},
           "eval": {"every_epochs": 0}, "run": {"device": "cpu", "output": str(tmp_path), "tensorboard": False}}
    trainer = Trainer(cfg, progress=False, table=_table())
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.AdamW([param], lr=optim["lr"])
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=optim["step_epochs"], gamma=optim["gamma"])
    for epoch in range(7):  # G3's run_G3.py / DualGeo_train.py: scheduler.step() after each epoch
        for step in range(epoch * trainer.steps_per_epoch, (epoch + 1) * trainer.steps_per_epoch):
            assert trainer.lr_at(step) == pytest.approx(opt.param_groups[0]["lr"], rel=1e-12)
        sched.step()


def test_paired_augmentation_moves_photo_and_label_map_together():
    """A bright left half / dark right half photo and a label map split the same way: after DualGeo's paired
    flip and resized crop (and photo-only colour changes) both still split at the same relative column."""
    from geodemo.train.data import PairedViewSource

    source = PairedViewSource.__new__(PairedViewSource)
    source.encoder, source.seg_size = type("Enc", (), {"image_size": 64})(), 32
    w, h, cut = 200, 150, 70
    photo = np.full((h, w, 3), 20, np.uint8)
    photo[:, :cut] = 235
    label = np.full((h, w), 12, np.uint8)
    label[:, :cut] = 3
    flips, crops = set(), set()
    for seed in range(24):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            image, seg = source._pair(Image.fromarray(photo), label)
        grey = np.asarray(image.convert("L"), np.float32).mean(0)
        assert image.size == (64, 64) and seg.shape == (32, 32)
        left_bright = grey[:8].mean() > grey[-8:].mean()
        cut_photo = np.argmax(np.abs(np.diff(grey))) / 64
        row = seg[16].astype(np.float32)
        cut_seg = np.argmax(np.abs(np.diff(row))) / 32
        assert abs(cut_photo - cut_seg) <= 3 / 32  # the same box, whatever the jitter did to the photo's colours
        assert left_bright == (row[0] < row[-1])  # flipped together: bright photo side = class 3 side
        flips.add(left_bright)
        crops.add(round(cut_seg, 2))
    assert flips == {True, False} and len(crops) > 3  # both flips and several crops were drawn
