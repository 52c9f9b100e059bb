"""Offline analogues of DualGeo and G3 on real photos: real MobileNet V1 tokens, real DeepLab ADE20K
label maps, the real trainer; fold models never score their own photographers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from geodemo.extraction.features import load_benchmark_views
from geodemo.train import Trainer, apply_overrides, load_preset

N_PHOTOS = 64


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread(one_torch_thread):
    yield


@pytest.fixture(scope="module")
def dev64(shared):
    from geodemo.data import load_benchmark

    return load_benchmark("im2gps3k-dev").subset(limit=N_PHOTOS)


@pytest.fixture(scope="module")
def dual_views(dev64):
    """Tokens (MobileNet V1 7x7x1024), DeepLab label maps (32x32) and pooled features of 64 dev photos."""
    return load_benchmark_views([dev64], "mobilenet-v1-imagenet", "deeplab-mnv2-ade", tokens=True,
                                labelmap_size=32, progress=False)


@pytest.fixture(scope="module")
def faithful_views(dev64):
    """Pooled MobileNet features and DeepLab label maps as DualGeo reads them (grey levels, bilinear, 64 px)."""
    return load_benchmark_views([dev64], "mobilenet-v1-imagenet", "deeplab-mnv2-ade", labelmap_size=64,
                                labelmap_resample="bilinear", progress=False)


def _small(cfg: dict, tmp_path, **extra) -> dict:
    return apply_overrides(cfg, {"optim.batch_size": 16, "optim.warmup_steps": 0, "run.output": str(tmp_path),
                                 "run.log_every": 1, "select.epochs": [], "data.source": "benchmark-views", **extra})


def test_dual_view_model_learns_and_embeds_each_photo_alone(dual_views, tmp_path):
    from geodemo.eval.fold_ablation import model_views

    assert dual_views.features["tokens"].shape == (N_PHOTOS, 49, 1024)
    assert dual_views.features["labelmap"].shape == (N_PHOTOS, 32, 32)
    assert len(np.unique(dual_views.features["labelmap"])) > 10  # real ADE20K classes, not a blank map
    # a held-out quarter of the photographers, as epoch selection has (the trainer must not try to score
    # a DualGeo model as a GeoAligner at the end of fit)
    cfg = _small(load_preset("dualgeo-tokens-offline"), tmp_path,
                 **{"optim.steps": 12, "optim.lr": 1e-3, "data.holdout_fraction": 0.25})
    trainer = Trainer(cfg, progress=False, table=dual_views)
    assert len(trainer.held_table) > 0
    objective = trainer.accelerator.unwrap_model(trainer.objective)
    everything = {"coords": torch.from_numpy(dual_views.coords),
                  "tokens": torch.from_numpy(dual_views.features["tokens"]).float(),
                  "labelmap": torch.from_numpy(dual_views.features["labelmap"])}

    def loss() -> float:
        objective.eval()
        with torch.no_grad():
            return float(objective(everything)[0])

    before = loss()
    assert trainer.fit(resume=False)["eval"] == {}
    after = loss()
    print(f"dual-view loss on the 64 photos: {before:.4f} -> {after:.4f} after {trainer.step} steps")
    assert after < before - 0.05

    model = objective.model
    views = model_views(model, dual_views.features, batch_size=N_PHOTOS)
    for k in (0, 5, 63):
        alone = model_views(model, {name: v[k : k + 1] for name, v in dual_views.features.items()})
        mates = np.r_[k, np.arange(N_PHOTOS - 1, N_PHOTOS - 8, -1)]
        other = model_views(model, {name: v[mates] for name, v in dual_views.features.items()}, batch_size=8)
        for view in ("fused", "image", "segmentation"):
            np.testing.assert_allclose(alone[view][0], views[view][k], atol=1e-5)
            np.testing.assert_allclose(other[view][0], views[view][k], atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(views["fused"], axis=1), 1.0, atol=1e-5)
    assert not np.allclose(views["fused"][0], views["fused"][1], atol=1e-3)


def test_fold_models_never_score_their_own_photographers(dev64, tmp_path, monkeypatch):
    from geodemo.eval.fold_ablation import fold_assignment, load_fold_models, run_analogue_ablation
    from geodemo.train.folds import train_folds

    monkeypatch.setenv("GEODEMO_CHECKPOINTS", str(tmp_path))
    table = load_benchmark_views([dev64], "mobilenet-v1-imagenet", progress=False)
    keys = table.group_keys()
    assert len(set(keys)) >= 6
    cfg = _small(load_preset("g3-offline"), tmp_path, **{"optim.epochs": 2, "select.epochs": [1, 2],
                                                         "select.holdout_fraction": 0.3})
    folders = train_folds(cfg, 3, tmp_path, "g3-offline", progress=False, table=table)
    assert [f.name for f in folders] == [f"g3-offline-fold{k}of3" for k in range(3)]
    models = load_fold_models("g3-offline", 3)
    held = [m.held_out_groups for m in models]
    assert set().union(*held) == set(keys)  # every photographer is held out by exactly one model
    assert sum(len(h) for h in held) == len(set(keys))
    for m in models:
        assert m.held_out_groups.isdisjoint(m.train_groups)
        assert m.train_groups | m.held_out_groups == set(keys)
        training = m.config["training"]
        assert training["selection"]["epochs"] in (1, 2) and training["commit"] and training["seed"] == 0
        # epochs were chosen on the model's own training photographers only
        assert training["selection"]["inner_n_train"] + training["selection"]["inner_n_held_out"] == \
            sum(k in m.train_groups for k in keys)
    fold = fold_assignment(table.ids, table.groups, models)
    assert (fold >= 0).all()
    for i, k in enumerate(fold):
        assert keys[i] in models[k].held_out_groups and keys[i] not in models[k].train_groups

    ab = run_analogue_ablation("g3-offline", "im2gps3k-dev", num_folds=3, progress=False, table=table)
    metrics = ab.metrics()
    assert len(ab.ids) == N_PHOTOS
    for row in ("raw features (MobileNet top-1)", "G3 descriptor (raw + image->GPS; no text offline), top-1",
                "+ head verification (image->GPS vs location encoder) over the top-15",
                "density prior (200 km, photographer left out)", "oracle best of these candidates"):
        assert metrics[row]["n"] == N_PHOTOS and metrics[row]["n_failed"] == 0
    # the oracle picks among the verified candidates, so it is never further from the truth
    from geodemo.geo import haversine_km

    d_oracle = haversine_km(ab.rows["oracle best of these candidates"], ab.truth)
    d_verified = haversine_km(ab.rows["+ head verification (image->GPS vs location encoder) over the top-15"], ab.truth)
    assert np.all(d_oracle <= d_verified + 1e-6)
    # retrieval never returns the photo itself or a photo by its photographer
    by_id = dict(zip(table.ids, keys, strict=True))
    assert len(ab.neighbour_ids) == N_PHOTOS and all(len(n) == 15 for n in ab.neighbour_ids)
    for sid, neighbours in zip(ab.ids, ab.neighbour_ids, strict=True):
        assert sid not in neighbours and all(by_id[n] != by_id[sid] for n in neighbours)


@pytest.mark.parametrize("name", ["dualgeo-offline", "dualgeo-tokens-offline", "g3-offline"])
def test_locate_with_an_analogue_preset_runs_every_stage(name, dev64, dual_views, faithful_views, tmp_path):
    """Small real checkpoints (a few steps on 64 dev photos), a database of their descriptor built from the
    cached views, then ``python -m geodemo locate PHOTO --preset <json> --json`` in a fresh process."""
    import json
    import os
    import subprocess
    import sys

    from geodemo.models.descriptors import load_descriptor
    from geodemo.paths import REPO_ROOT
    from geodemo.pipeline.presets import load_preset as load_pipeline_preset
    from geodemo.train.folds import build_view_database, train_checkpoint

    views = faithful_views if name == "dualgeo-offline" else dual_views
    cfg = _small(load_preset(name), tmp_path, **{"optim.steps": 4})
    folder = train_checkpoint(cfg, tmp_path / name, table=views, progress=False)
    preset = load_pipeline_preset(name)
    spec = {**preset["descriptor"], "checkpoint": str(folder)}
    descriptor = load_descriptor(spec)
    db = build_view_database(descriptor, views, tmp_path / "db", index=preset["gallery"]["index"],
                             image_paths={s.id: str(s.image_path) for s in dev64.samples}, progress=False)
    preset.update(descriptor=spec, gallery={**preset["gallery"], "path": str(db)})
    (tmp_path / "preset.json").write_text(json.dumps(preset))
    photo = dev64.samples[3].image_path
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1"}
    run = subprocess.run([sys.executable, "-m", "geodemo", "locate", str(photo), "--preset",
                          str(tmp_path / "preset.json"), "--json"], capture_output=True, text=True, cwd=REPO_ROOT,
                         env=env, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    data = json.loads(run.stdout)
    assert data["errors"] == {} and not data.get("error_details")
    assert -90 <= data["lat"] <= 90 and -180 <= data["lon"] <= 180
    top_k = preset["retrieval"]["top_k"]
    assert len(data["neighbours"]) == top_k
    assert data["neighbours"][0]["id"] == dev64.samples[3].id  # the photo itself is in this small gallery
    if name.startswith("dualgeo"):
        assert data["clusters_after"]["eps_km"] == 50 and data["segmentation"]["shares"]
    else:
        assert data["verifier"] and len(data["candidates"]) >= preset["candidates"]["retrieval_top"]


def test_dualgeo_lmm_rows_answer_from_the_fold_held_out_neighbours(dev64, dual_views, tmp_path, monkeypatch):
    """+ LMM: the preset's own segment, lmm and decide.lmm_answer stages over the neighbours the + DBSCAN row
    uses (the fold model that never saw the photographer, the photographer out of the gallery), the LMM served
    by a local server speaking Ollama's API; an answer that does not parse falls back to the main cluster's
    centre; the records are reused."""
    import json
    import re

    from test_lmm_backends import FakeServer, _chat_reply, _tags

    from geodemo.eval.ablation import analogue_lmm_rows
    from geodemo.eval.fold_ablation import load_fold_models, run_analogue_ablation
    from geodemo.geo import haversine_km
    from geodemo.pipeline.presets import load_preset as load_pipeline_preset
    from geodemo.train.folds import train_folds

    monkeypatch.setenv("GEODEMO_CHECKPOINTS", str(tmp_path))
    train_folds(_small(load_preset("dualgeo-offline"), tmp_path, **{"optim.steps": 4}), 3, tmp_path,
                "dualgeo-offline", progress=False, table=dual_views)
    train_folds(_small(load_preset("dualgeo-tokens-offline"), tmp_path, **{"optim.steps": 4}), 3, tmp_path,
                "dualgeo-tokens-offline", progress=False, table=dual_views)
    answers = {1: (48.8566, 2.3522), 3: (-33.8688, 151.2093), 5: (-0.1807, -78.4678)}  # by call; others: prose
    calls = {"n": 0}

    def chat(req):
        calls["n"] += 1
        lat_lon = answers.get(calls["n"])
        text = f'{{"latitude": {lat_lon[0]}, "longitude": {lat_lon[1]}}}' if lat_lon else "I am not sure where this is."
        return 200, _chat_reply(text, model=req["body"]["model"]), {}

    server = FakeServer()
    server.routes[("GET", "/api/tags")] = _tags("llava:13b")
    server.routes[("POST", "/api/chat")] = chat
    try:
        preset = load_pipeline_preset("dualgeo-offline")
        preset["lmm"].update(backend="ollama", model="llava:13b", host=server.url, cache=False, timeout_s=60)
        path = tmp_path / "dualgeo-offline.json"
        path.write_text(json.dumps(preset))
        n = 6
        ab = run_analogue_ablation(str(path), "im2gps3k-dev", num_folds=3, progress=False, table=dual_views,
                                   lmm_subset=n)
        assert [e.id for e in ab.evidence] == ab.ids[:n]
        # the faithful model's rows and, beside them, our token-level model's (compare_with)
        compared = "dualgeo-tokens-offline: DualGeo descriptor (enhanced image view + raw features), top-1"
        assert compared in ab.rows and np.isfinite(ab.rows[compared]).all()
        assert "DualGeo descriptor (enhanced image view + raw features), top-1" in ab.rows
        text, rows = analogue_lmm_rows(ab, str(path), dev64, tmp_path / "results-lmm.jsonl", progress=False)
        chats = server.posts("/api/chat")
        assert len(chats) == n and all(c["body"]["model"] == "llava:13b" for c in chats)
        assert all(c["body"]["messages"][-1]["images"] for c in chats)  # the photo itself is sent
    finally:
        server.close()
    records = [json.loads(line) for line in (tmp_path / "results-lmm.jsonl").read_text().splitlines()]
    assert [r["id"] for r in records] == ab.ids[:n]

    group_of = dict(zip(dual_views.ids, dual_views.group_keys(), strict=True))
    models = {m.name: m for m in load_fold_models("dualgeo-offline", 3)}
    centre = ab.rows["+ DBSCAN main-cluster centre (answer when no LMM answer parses)"]
    for i, (r, ev) in enumerate(zip(records, ab.evidence, strict=True)):
        res = r["result"]
        me = group_of[r["id"]]
        assert me in models[r["scorer"]].held_out_groups and me not in models[r["scorer"]].train_groups
        assert res["stages"] == ["load", "segment", "lmm", "decide.lmm_answer"]
        assert set(res["errors"]) <= {"decide.lmm_answer"} and res["segmentation"]["shares"], res["errors"]
        # the prompt cites the + DBSCAN row's neighbours, re-ranked, none by the photographer
        ids = [nb["id"] for nb in res["neighbours"]]
        assert ids == ab.neighbour_ids[i] and all(group_of[x] != me for x in ids + [d.id for d in ev.dissimilar])
        assert len(ev.dissimilar) == preset["retrieval"]["k_dissimilar"]
        prompt = res["lmm_records"][0]["prompt"]
        listed = re.search(r"most similar photos in a geotagged database were taken at:\n(.*?)\n\n", prompt, re.S)
        cited = [tuple(map(float, m)) for m in re.findall(r"^- \((-?[\d.]+), (-?[\d.]+)\)", listed.group(1), re.M)]
        reranked = [res["neighbours"][j] for j in res["clusters_after"]["order"][:15]]
        assert cited == [(round(nb["lat"], 4), round(nb["lon"], 4)) for nb in reranked]
        assert "15 least similar ones" in prompt
        # the final answer: the LMM's parsed answer, else the main cluster's centre (never (0, 0))
        if i + 1 in answers:
            assert (res["lat"], res["lon"]) == answers[i + 1] and res["verifier"] == "lmm-answer:rag-15"
        else:
            assert res["lmm_records"][0]["lat"] is None and res["verifier"].startswith("cluster-centre")
            np.testing.assert_allclose([res["lat"], res["lon"]], centre[i], atol=1e-9)
    final = np.array([[r["result"]["lat"], r["result"]["lon"]] for r in records])
    truth = ab.truth[:n]
    plus_lmm = rows["+ LMM (DualGeo: the LMM's answer, else the main-cluster centre)"]
    assert plus_lmm["n"] == n and plus_lmm["median_km"] == pytest.approx(np.median(haversine_km(final, truth)))
    assert rows["+ DBSCAN main-cluster centre (answer when no LMM answer parses)"]["median_km"] == pytest.approx(
        np.median(haversine_km(centre[:n], truth)))
    assert list(rows)[-3:] == ["LMM answer alone (first parsed answer; none parsed: a miss)",
                               "+ LMM (DualGeo: the LMM's answer, else the main-cluster centre)",
                               "oracle best of these candidates"]
    assert rows["LMM answer alone (first parsed answer; none parsed: a miss)"]["n_failed"] == n - len(answers)
    assert f"{len(answers)}/{n} answers parsed, 0 failed calls" in text

    # --reuse: the stored records, no LMM call (the server is gone)
    again_text, again = analogue_lmm_rows(ab, str(path), dev64, tmp_path / "results-lmm.jsonl", reuse=True,
                                          progress=False)
    assert again == rows and f"{len(answers)}/{n} answers parsed" in again_text
