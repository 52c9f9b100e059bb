"""Parallel extraction: same features as the single-process path, broken photos skipped, killed runs resume."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest

import geodemo  # noqa: F401
from geodemo.paths import REPO_ROOT
from tests.tiny_clip import tiny_clip_config

N_DEV = 32


@pytest.fixture(scope="module")
def dev32(shared):
    from geodemo.data import load_benchmark

    return load_benchmark("im2gps3k-dev").subset(N_DEV)


@pytest.fixture(scope="module")
def mobilenet(shared):
    from geodemo.models import create_model

    return create_model("mobilenet-v1-imagenet", num_threads=1)


def _csv_folder(tmp: Path, dev, n: int, broken: bool = False) -> Path:
    """The first ``n`` dev photos as CSV + folder (the benchmark's own format), plus broken files."""
    images = tmp / "images"
    images.mkdir(parents=True)
    lines = (Path(dev.source).read_text().splitlines())
    header, rows = lines[0], lines[1 : n + 1]
    for row in rows:
        name = row.split(",")[0]
        shutil.copy(dev.get(name).image_path, images / name)
    if broken:
        (images / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not a jpeg at all" * 10)
        good = (images / rows[0].split(",")[0]).read_bytes()
        (images / "truncated.jpg").write_bytes(good[: len(good) // 3])
        rows.insert(2, "corrupt.jpg,someone@N00,10.0,20.0,1,1,1,0.1,0.1,0.8")
        rows.insert(5, "truncated.jpg,someone@N00,11.0,21.0,1,1,1,0.1,0.1,0.8")
        rows.append("missing.jpg,someone@N00,12.0,22.0,1,1,1,0.1,0.1,0.8")
    csv = tmp / "photos.csv"
    csv.write_text("\n".join([header, *rows]) + "\n")
    return csv


def test_parallel_extraction_gives_the_single_process_features(dev32, mobilenet):
    from geodemo.extraction import encode_photos

    reference = mobilenet.encode_images([dev32.open_image(s) for s in dev32.samples], batch_size=8)
    batches = list(encode_photos(mobilenet, dev32, workers=2, batch_size=8, resize_on="workers"))
    assert [p for b in batches for p in b.positions] == list(range(N_DEV))
    got = np.concatenate([b.outputs["image"] for b in batches])
    assert got.shape == reference.shape == (N_DEV, 1024)
    assert np.abs(got - reference).max() <= 1e-3
    # resizing on the device (what a GPU does): antialiased torch resize of a reduced-scale JPEG decode
    batches = list(encode_photos(mobilenet, dev32, workers=2, batch_size=8, resize_on="device"))
    on_device = np.concatenate([b.outputs["image"] for b in batches])
    cos = (on_device * reference).sum(1)
    assert cos.min() > 0.99 and np.abs(on_device - reference).max() > 0  # close, not the same pixels


def test_unreadable_photos_in_workers_are_reported_and_skipped(dev32, mobilenet, tmp_path):
    from geodemo.data import load_csv, load_feature_shards
    from geodemo.extraction import extract_to_shards

    csv = _csv_folder(tmp_path, dev32, 6, broken=True)
    ds = load_csv(csv, images_dir=tmp_path / "images")
    assert len(ds) == 9
    seen: list[str] = []
    report = extract_to_shards(ds, mobilenet, tmp_path / "out", shard_size=4, batch_size=3, workers=2,
                               progress=False, on_failure=lambda pid, reason: seen.append(pid))
    failed = dict(report.failures)
    assert set(failed) == set(seen) == {"corrupt.jpg", "truncated.jpg", "missing.jpg"}
    assert "not found" in failed["missing.jpg"] and all(failed.values())
    table = load_feature_shards(tmp_path / "out")
    assert table.ids == [s.id for s in ds.samples if s.id not in failed] and report.encoded == 6
    assert np.allclose(np.linalg.norm(table.features["image"], axis=1), 1, atol=1e-4)
    assert (tmp_path / "out" / "shard-00000.skipped.json").is_file()


def test_mp16pro_tar_shards_give_the_folder_features(dev32, mobilenet, tmp_path):
    from geodemo.data import load_csv
    from geodemo.extraction import encode_photos

    csv = _csv_folder(tmp_path, dev32, 8)
    names = [line.split(",")[0] for line in csv.read_text().splitlines()[1:]]
    shards = tmp_path / "tars"
    shards.mkdir()
    for part, chunk in enumerate((names[:5], names[5:])):
        with tarfile.open(shards / f"mp16-{part}.tar", "w") as tar:
            for name in chunk:
                tar.add(tmp_path / "images" / name, arcname=name)
    from_tars = load_csv(csv, images_dir=shards)
    assert type(from_tars.tar_store).__name__ == "TarShardStore"
    from_folder = load_csv(csv, images_dir=tmp_path / "images")
    a = np.concatenate([b.outputs["image"] for b in encode_photos(mobilenet, from_tars, workers=2, batch_size=4)])
    b = np.concatenate([b.outputs["image"] for b in encode_photos(mobilenet, from_folder, workers=0, batch_size=4)])
    assert a.shape == (8, 1024) and np.array_equal(a, b)


def test_killed_extraction_resumes_without_duplicates(dev32, tmp_path):
    from geodemo.data import load_feature_shards

    n = 40
    from geodemo.data import load_benchmark

    csv = _csv_folder(tmp_path, load_benchmark("im2gps3k-dev"), n)
    out = tmp_path / "out"
    cmd = [sys.executable, str(REPO_ROOT / "scripts" / "extract_features.py"), "--csv", str(csv),
           "--images", str(tmp_path / "images"), "--out", str(out), "--shard-size", "4", "--batch-size", "2",
           "--workers", "1", "--device", "cpu", "--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 240
    while not (out / "shard-00001.npz").exists():
        assert proc.poll() is None, proc.stdout.read().decode()[-2000:]
        assert time.monotonic() < deadline, "no shard written in 4 minutes"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_at_kill = {p.name: p.stat().st_mtime_ns for p in out.glob("shard-*.npz")}
    assert 2 <= len(done_at_kill) < n // 4, "the run was not killed in the middle"
    (out / ".shard-00009.npz.killed.tmp").write_bytes(b"half a shard")  # as if killed while writing it

    rerun = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert f"({len(done_at_kill)} already there)" in rerun.stdout
    assert not list(out.glob("*.tmp*"))
    for name, mtime in done_at_kill.items():  # finished shards were kept, not redone
        assert (out / name).stat().st_mtime_ns == mtime
    table = load_feature_shards(out)
    expected = [line.split(",")[0] for line in csv.read_text().splitlines()[1:]]
    assert table.ids == expected and len(set(table.ids)) == n  # every photo once, in order


def test_clip_tokens_go_to_float16_memory_mapped_shards(dev32, tmp_path):
    """A real CLIP architecture (tiny, random weights): embeddings as encode_images, tokens as
    encode_image_tokens, stored float16 in a .npy per shard that training memory-maps."""
    from geodemo.data import ShardedArray, load_feature_shards
    from geodemo.extraction import extract_to_shards
    from geodemo.models import create_model

    tiny = tiny_clip_config()
    enc = create_model("hf-clip-vit-l14", random_init=True, config=tiny, device="cpu")
    photos = dev32.subset(7)
    report = extract_to_shards(photos, enc, tmp_path / "out", shard_size=3, tokens=True, batch_size=2,
                               workers=1, resize_on="workers", progress=False)
    assert report.encoded == 7 and report.shards_written == 3
    assert sorted(p.name for p in (tmp_path / "out").glob("*.npy")) == [
        f"shard-0000{i}.tokens.npy" for i in range(3)]
    table = load_feature_shards(tmp_path / "out")
    tokens = table.features["tokens"]
    assert isinstance(tokens, ShardedArray) and tokens.dtype == np.float16 and tokens.shape == (7, 16, 48)
    images = [photos.open_image(s) for s in photos.samples]
    assert np.abs(table.features["image"] - enc.encode_images(images)).max() <= 1e-3
    want = enc.encode_image_tokens(images).numpy()
    assert np.allclose(tokens[np.arange(7)].astype(np.float32), want, atol=1e-2 * np.abs(want).max())
