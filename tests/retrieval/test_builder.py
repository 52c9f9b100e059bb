"""Database builder: real dev photos, real MobileNet, resumable chunks, descriptor refusal, the CLI."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

import geodemo  # noqa: F401
from geodemo.cli import main
from geodemo.paths import REPO_ROOT
from geodemo.retrieval import DescriptorMismatchError, EncoderMismatchError, RetrievalDatabase
from geodemo.retrieval.builder import BuildMismatchError, PhotoSource, ShardSource, build_database

N = 20
FEATURES = {"kind": "features", "encoder": "mobilenet-v1-imagenet"}


@pytest.fixture(scope="module")
def dev(shared):
    from geodemo.data import load_benchmark

    return load_benchmark("im2gps3k-dev").subset(N)


@pytest.fixture(scope="module")
def descriptor(shared):
    from geodemo.models.descriptors import load_descriptor

    return load_descriptor(FEATURES)


@pytest.fixture(scope="module")
def reference(dev, descriptor, tmp_path_factory):
    """One uninterrupted build of the N dev photos."""
    out = tmp_path_factory.mktemp("ref") / "db"
    report = build_database(PhotoSource(dev), descriptor, out, index={"kind": "flat"}, chunk_size=8,
                            progress=False)
    return out, report


def _vectors(db: RetrievalDatabase) -> np.ndarray:
    return db.index.reconstruct_n(0, len(db))


def test_builds_a_database_of_the_descriptor(dev, descriptor, reference):
    out, report = reference
    assert report.rows == N and not report.skipped and report.index_kind == "flat"
    db = RetrievalDatabase.load(out, descriptor=descriptor.name)
    assert db.descriptor == descriptor.name and db.encoder_name == "mobilenet-v1-imagenet"
    assert db.meta.ids == dev.ids() and all(db.meta.places) and db.meta.groups == dev.groups()
    assert np.allclose(db.meta.coords, dev.coords())
    # rows are the descriptor of each photo: a photo finds itself first
    images = [dev.open_image(s) for s in dev.samples[:3]]
    query = descriptor.describe(images).descriptor
    hits = db.search(query, k=1, descriptor=descriptor.name)
    assert [int(h.indices[0]) for h in hits] == [0, 1, 2]
    assert all(h.similarities[0] > 0.999 for h in hits)
    assert not (out / ".partial").exists()


def _interrupted_build(dev, descriptor, out, monkeypatch) -> dict[str, int]:
    """A build killed while describing its second chunk; returns the describe-call counter, set to 10."""
    calls = {"n": 0}
    real = type(descriptor).describe

    def flaky(self, images):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt  # killed while describing the second chunk
        return real(self, images)

    monkeypatch.setattr(type(descriptor), "describe", flaky)
    with pytest.raises(KeyboardInterrupt):
        build_database(PhotoSource(dev), descriptor, out, index={"kind": "flat"}, chunk_size=8, progress=False)
    assert sorted(p.name for p in (out / ".partial").glob("chunk-*.npz")) == ["chunk-000000.npz"]
    assert not (out / "config.json").exists()
    calls["n"] = 10  # no more failures; count the chunks described on resume
    return calls


def test_an_interrupted_build_resumes_without_duplicates(dev, descriptor, reference, tmp_path, monkeypatch):
    out = tmp_path / "db"
    calls = _interrupted_build(dev, descriptor, out, monkeypatch)
    report = build_database(PhotoSource(dev), descriptor, out, index={"kind": "flat"}, chunk_size=8, progress=False)
    assert calls["n"] == 12  # chunks 2 and 3 only: chunk 1 came from disk
    assert report.resumed_rows == 8 and report.rows == N
    ref = RetrievalDatabase.load(reference[0])
    db = RetrievalDatabase.load(out)
    assert db.meta.ids == ref.meta.ids  # no row twice, none missing, same order
    assert np.array_equal(_vectors(db), _vectors(ref))


def test_an_interrupted_build_with_a_damaged_chunk_or_state_file_rebuilds_them(dev, descriptor, reference,
                                                                               tmp_path, monkeypatch, caplog):
    out = tmp_path / "db"
    calls = _interrupted_build(dev, descriptor, out, monkeypatch)
    chunk = out / ".partial" / "chunk-000000.npz"
    chunk.write_bytes(chunk.read_bytes()[: chunk.stat().st_size // 2])  # e.g. a disk that filled up
    with caplog.at_level("WARNING", logger="geodemo.storage"):
        report = build_database(PhotoSource(dev), descriptor, out, index={"kind": "flat"}, chunk_size=8,
                                progress=False)
    assert calls["n"] == 13  # the damaged chunk 1 again, then chunks 2 and 3
    assert report.resumed_rows == 0 and report.rows == N
    assert "chunk-000000.npz is unreadable" in caplog.text
    ref = RetrievalDatabase.load(reference[0])
    db = RetrievalDatabase.load(out)
    assert db.meta.ids == ref.meta.ids and np.array_equal(_vectors(db), _vectors(ref))

    out2 = tmp_path / "db2"
    (out2 / ".partial").mkdir(parents=True)
    (out2 / ".partial" / "build.json").write_text('{"descriptor": "feat')  # a torn state file
    report = build_database(PhotoSource(dev), descriptor, out2, index={"kind": "flat"}, chunk_size=8,
                            progress=False)
    assert report.rows == N and np.array_equal(_vectors(RetrievalDatabase.load(out2)), _vectors(ref))


def test_resuming_with_another_descriptor_is_refused(dev, descriptor, tmp_path):
    out = tmp_path / "db"
    (out / ".partial").mkdir(parents=True)
    (out / ".partial" / "build.json").write_text(json.dumps(
        {"descriptor": "features:other@0", "source": PhotoSource(dev).fingerprint, "rows": N, "chunk_size": 8}))
    with pytest.raises(BuildMismatchError, match="descriptor"):
        build_database(PhotoSource(dev), descriptor, out, chunk_size=8, progress=False)
    report = build_database(PhotoSource(dev), descriptor, out, index={"kind": "flat"}, chunk_size=8,
                            progress=False, overwrite=True)
    assert report.rows == N


def test_a_database_refuses_another_descriptor(reference, descriptor):
    out, _ = reference
    other = descriptor.name.replace("@", "@0") + "-other-weights"
    with pytest.raises(DescriptorMismatchError, match="cannot be compared"):
        RetrievalDatabase.load(out, descriptor=other)
    db = RetrievalDatabase.load(out)
    with pytest.raises(EncoderMismatchError, match="another model"):  # the subclass is an EncoderMismatchError
        db.search(np.ones((1, db.dim), np.float32), k=1, descriptor=other)


def test_feature_shards_give_the_same_database(dev, descriptor, reference, tmp_path):
    feats = descriptor.describe([dev.open_image(s) for s in dev.samples]).features
    folder = tmp_path / "shards"
    folder.mkdir()
    (folder / "meta.json").write_text(json.dumps({"encoder": "mobilenet-v1-imagenet"}))
    for i, (a, b) in enumerate([(0, 12), (12, N)]):  # shards and chunks do not line up
        np.savez(folder / f"shard-{i:05d}.npz", ids=np.array(dev.ids()[a:b]),
                 groups=np.array([g or "" for g in dev.groups()[a:b]]),
                 coords=dev.coords()[a:b].astype(np.float32), feat_image=feats[a:b])
    report = build_database(ShardSource(folder), descriptor, tmp_path / "db", index={"kind": "flat"},
                            chunk_size=8, progress=False)
    assert report.rows == N
    db, ref = RetrievalDatabase.load(tmp_path / "db"), RetrievalDatabase.load(reference[0])
    assert db.meta.ids == ref.meta.ids and db.descriptor == ref.descriptor
    assert np.abs(_vectors(db) - _vectors(ref)).max() < 1e-6


@pytest.fixture
def photo_csv(dev, tmp_path):
    """A CSV + folder of 4 real dev photos and one unreadable file."""
    folder = tmp_path / "photos"
    folder.mkdir()
    rows = []
    for s in dev.samples[:4]:
        shutil.copy(s.image_path, folder / s.image_path.name)
        rows.append({"id": s.image_path.name, "lat": s.lat, "lon": s.lon})  # the id names the file
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff not a jpeg")
    rows.append({"id": "broken.jpg", "lat": 10.0, "lon": 20.0})
    csv = tmp_path / "photos.csv"
    pd.DataFrame(rows).to_csv(csv, index=False)
    return csv, folder


def test_cli_index_reports_unreadable_photos(photo_csv, tmp_path, capsys):
    csv, folder = photo_csv
    out = tmp_path / "db"
    args = ["index", "--out", str(out), "--preset", "offline", "--csv", str(csv), "--images", str(folder),
            "--index-kind", "flat", "--no-progress"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "4 rows indexed (flat)" in printed and "1 skipped" in printed and "skipped broken.jpg:" in printed
    db = RetrievalDatabase.load(out)
    assert len(db) == 4 and "broken.jpg" not in db.meta.ids
    assert main(args) == 2  # the folder already holds a database: a one-line error, no traceback
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "already holds a retrieval database" in err and "Traceback" not in err


def test_build_database_script(photo_csv, tmp_path):
    csv, folder = photo_csv
    out = tmp_path / "db"
    proc = subprocess.run(
        [sys.executable, str(REPO_ROOT / "scripts" / "build_database.py"), "--out", str(out), "--preset", "offline",
         "--csv", str(csv), "--images", str(folder), "--index-kind", "hnsw", "--no-progress"],
        capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    assert "4 rows indexed (hnsw)" in proc.stdout
    assert RetrievalDatabase.load(out).config.kind == "hnsw"


def test_cli_index_with_random_weights_needs_no_checkpoint(tmp_path, capsys, shared, one_torch_thread):
    """``--weights random`` builds the preset's real architectures untrained, so the faithful g3 preset
    indexes photos on a machine without G3's checkpoint (what the database-build timing uses)."""
    out = tmp_path / "g3-random"
    assert main(["index", "--out", str(out), "--preset", "g3", "--weights", "random", "--benchmark", "osv5m-sample",
                 "--limit", "2", "--no-progress"]) == 0
    db = RetrievalDatabase.load(out)
    assert len(db) == 2 and db.descriptor.startswith("g3")
