"""Training data at scale: memory-mapped token shards, one order per epoch, prefetched batches."""

from __future__ import annotations

import copy

import numpy as np
import torch

import geodemo  # noqa: F401
from geodemo.data import FeatureTable, ShardedArray, load_feature_shards, write_feature_shard
from geodemo.train import EpochSampler, Trainer
from geodemo.train.data import FeatureBatches

TINY_LOC = {"hidden_dim": 32, "embed_dim": 16, "rff_dim": 8, "seed": 0}


def _token_table(n: int = 48, seed: int = 0) -> FeatureTable:
    rng = np.random.default_rng(seed)
    coords = np.stack([rng.uniform(-60, 70, n), rng.uniform(-180, 180, n)], 1).astype(np.float32)
    tokens = rng.standard_normal((n, 5, 24)).astype(np.float16)
    labelmap = rng.integers(0, 151, (n, 16, 16)).astype(np.uint8)
    return FeatureTable([f"p{i}" for i in range(n)], [f"g{i % 6}" for i in range(n)], coords,
                        {"tokens": tokens, "labelmap": labelmap})


def _write_shards(folder, table: FeatureTable, shard: int) -> None:
    for s in range(0, len(table), shard):
        write_feature_shard(folder / f"shard-{s // shard:05d}.npz", table.take(np.arange(s, min(s + shard, len(table)))))


def _dualgeo_cfg(output) -> dict:
    return {
        "preset": "tiny-dualgeo",
        "model": {"architecture": "dualgeo-tokens", "token_dim": 24, "d_model": 16, "heads": 2, "layers": 1,
                  "class_dim": 4, "seg_widths": [8, 16], "labelmap_size": 16, "location": TINY_LOC},
        "objective": {"kind": "dualgeo"},
        "data": {"holdout_fraction": 0.0},
        "optim": {"lr": 3e-3, "batch_size": 8, "epochs": 2, "warmup_steps": 1},
        "eval": {"every_epochs": 0},
        "run": {"seed": 3, "device": "cpu", "checkpoint_every": 3, "log_every": 5, "tensorboard": False,
                "output": str(output)},
    }


def test_token_shards_are_memory_mapped_and_read_row_by_row(tmp_path):
    table = _token_table(50)
    _write_shards(tmp_path, table, shard=16)  # 4 shards, the last one short
    assert sorted(p.name for p in tmp_path.glob("shard-00000.*")) == [
        "shard-00000.labelmap.npy", "shard-00000.npz", "shard-00000.tokens.npy"]
    loaded = load_feature_shards(tmp_path)
    tokens = loaded.features["tokens"]
    assert isinstance(tokens, ShardedArray) and all(isinstance(p, np.memmap) for p in tokens.parts)
    assert tokens.shape == (50, 5, 24) and tokens.dtype == np.float16 and loaded.ids == table.ids
    rows = np.array([49, 0, 17, 16, 33, 17])
    assert np.array_equal(tokens[rows], table.features["tokens"][rows])  # order kept across shards
    sub = loaded.take(np.arange(50) % 3 == 1)  # a split stays on disk
    assert isinstance(sub.features["tokens"], ShardedArray) and len(sub) == 17
    assert np.array_equal(sub.features["labelmap"][[0, 16]], table.features["labelmap"][[1, 49]])
    assert np.array_equal(np.asarray(FeatureTable.concat([sub, sub]).features["tokens"])[17:],
                          table.features["tokens"][1::3])


def test_epoch_order_is_drawn_once_and_is_still_a_function_of_seed_and_epoch():
    s = EpochSampler(1000, seed=5)
    first = s.order(2)
    assert s.order(2) is first  # kept for the whole epoch, not redrawn per step
    rows = [s.batch(2, i, 100) for i in range(10)]
    assert torch.equal(torch.cat(rows), first)
    assert torch.equal(EpochSampler(1000, seed=5).order(2), first) and not torch.equal(s.order(3), first)


def test_prefetched_batches_equal_resident_ones():
    table = _token_table(40)
    feats = {"coords": table.coords, **table.features}
    resident = FeatureBatches(feats, EpochSampler(40, seed=1), 8, "cpu")
    assert resident.resident
    mapped = {k: ShardedArray([v[:24], v[24:]]) for k, v in feats.items()}
    streamed = FeatureBatches(mapped, EpochSampler(40, seed=1), 8, "cpu", prefetch=2)
    assert not streamed.resident
    got = list(streamed.iterate(3, 12))  # crosses an epoch boundary (5 steps per epoch)
    assert len(got) == 9
    for step, batch in zip(range(3, 12), got, strict=True):
        want = resident.gather(step)
        assert all(torch.equal(batch[k], want[k]) for k in want), step


def test_dualgeo_trains_from_memory_mapped_shards_and_resumes_exactly(tmp_path):
    table = _token_table(48)
    _write_shards(tmp_path / "feats", table, shard=20)
    mapped = load_feature_shards(tmp_path / "feats")
    assert isinstance(mapped.features["tokens"], ShardedArray)

    in_memory = Trainer(_dualgeo_cfg(tmp_path / "mem"), progress=False, table=table)
    in_memory.fit(resume=False)
    assert in_memory.batches.resident and in_memory.step == 12

    cfg = _dualgeo_cfg(tmp_path / "mmap")
    first = Trainer(copy.deepcopy(cfg), progress=False, table=mapped)
    assert not first.batches.resident  # streamed from the shards by the prefetch thread
    first.fit(resume=False, stop_after=7)  # states at steps 3 and 6; step 7 is lost as by a kill
    torch.manual_seed(999)
    second = Trainer(copy.deepcopy(cfg), progress=False, table=load_feature_shards(tmp_path / "feats"))
    second.fit(resume=True)
    assert second.step == 12
    a = in_memory.accelerator.unwrap_model(in_memory.objective).state_dict()
    b = second.accelerator.unwrap_model(second.objective).state_dict()
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-6), k
