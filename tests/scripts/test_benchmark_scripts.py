"""The speed benchmarks run end to end at CI size and report consistent ratios (speed itself is not asserted).

The scripts run in their own processes, as from the command line: accelerate's process-wide state and
the benchmarks' memory stay out of the test process."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import geodemo  # noqa: F401
from geodemo.paths import REPO_ROOT


def _run(name: str, *args: str) -> str:
    proc = subprocess.run([sys.executable, str(REPO_ROOT / "scripts" / f"{name}.py"), *args], capture_output=True,
                          text=True, timeout=900, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return proc.stdout


def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO_ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bench_extract_mobilenet_on_cpu(shared, tmp_path):
    out = tmp_path / "extract.json"
    text = _run("bench_extract", "--encoder", "mobilenet-v1-imagenet", "--device", "cpu", "--limit", "8",
                "--workers", "1", "--batch-size", "4", "--model-steps", "1", "--out", str(out))
    fig = json.loads(out.read_text())
    assert fig["photos"] == 8 and fig["unreadable"] == 0
    assert fig["end_to_end_photos_per_s"] > 0 and fig["model_alone_photos_per_s"] > 0
    assert fig["end_to_end_vs_model"] == pytest.approx(fig["end_to_end_photos_per_s"] / fig["model_alone_photos_per_s"])
    assert "end to end from files" in text


def test_bench_extract_writes_synthetic_jpegs(tmp_path):
    dataset = _script("bench_extract").synthetic_photos(tmp_path / "photos", 5, (96, 64), distinct=2)
    assert len(dataset) == 5
    image = dataset.open_image(dataset.samples[0])
    assert image.size == (96, 64) and np.asarray(image).std() > 10  # a real, non-flat JPEG
    files = [s.image_path for s in dataset.samples]
    assert files[4].read_bytes() == files[0].read_bytes() != files[1].read_bytes()


def test_bench_train_rows_runs_the_real_trainer(tmp_path):
    out = tmp_path / "train.json"
    text = _run("bench_train", "--rows", "2048", "--steps", "6", "--batch-size", "64", "--device", "cpu",
                "--out", str(out), "--json")
    fig = json.loads(out.read_text())
    assert json.loads(text) == fig  # --json: stdout is the figures, the table goes to stderr
    assert fig["rows"] == 2048 and fig["steps"] == 6 and fig["features_resident"]
    assert fig["ratio"] == pytest.approx(fig["trainer_photos_per_s"] / fig["heads_step_photos_per_s"])


def test_bench_retrieval_exact_truth_is_chunked_brute_force():
    bench = _script("bench_retrieval")
    gen = bench.Spectral(128, n_centres=64)
    rows = np.concatenate(list(gen.chunks(3000, 700)))
    assert rows.shape == (3000, 128) and np.allclose(np.linalg.norm(rows, axis=1), 1, atol=1e-5)
    assert np.array_equal(rows[700:1400], gen.chunk(700, 700))  # chunks are reproducible on their own
    queries = gen.chunk(10**12, 5)
    truth = bench.ExactTopK(queries, 20)
    assert sum(len(c) for c in truth.tee(gen.chunks(3000, 700))) == 3000
    assert np.array_equal(truth.result(), np.argsort(-(queries @ rows.T), 1)[:, :20])


def test_bench_retrieval_small_run_prints_the_table():
    text = _run("bench_retrieval", "--sizes", "4000", "--dim", "64", "--queries", "20", "--chunk", "1000",
                "--kinds", "flat,ivfsq,ivfrabitq", "--nlist", "16", "--ivf-train", "4000", "--nprobe", "4,16",
                "--skip-real", "--skip-locate")
    flat = [line for line in text.splitlines() if line.startswith("| 4,000 | flat")]
    assert flat and flat[0].rstrip().endswith("| 1.000 |")  # exact search against the chunked truth
    assert text.count("| 4,000 | ivfsq") == 2 and text.count("| 4,000 | ivfrabitq") == 2 and "load average" in text
    rabitq = [float(line.rstrip(" |").rsplit("|", 1)[1]) for line in text.splitlines()
              if line.startswith("| 4,000 | ivfrabitq")]
    assert rabitq[-1] > 0.8  # every list probed: the codes alone (7 bits a dimension by default)


def test_bench_retrieval_builds_one_index_per_option_set():
    text = _run("bench_retrieval", "--sizes", "4000", "--dim", "64", "--queries", "20", "--chunk", "1000",
                "--kinds", "ivfrabitq", "--nlist", "16", "--ivf-train", "4000", "--nprobe", "16",
                "--index-options", '[{"rabitq_bits": 1}, {"rabitq_bits": 7}]',
                "--skip-real", "--skip-locate")
    recall = {}
    for line in text.splitlines():
        if line.startswith("| 4,000 | ivfrabitq"):
            recall[line.split("|")[2].strip()] = float(line.rstrip(" |").rsplit("|", 1)[1])
    print(recall)
    assert set(recall) == {'ivfrabitq {"rabitq_bits": 1}', 'ivfrabitq {"rabitq_bits": 7}'}
    assert recall['ivfrabitq {"rabitq_bits": 7}'] > recall['ivfrabitq {"rabitq_bits": 1}'] + 0.1
