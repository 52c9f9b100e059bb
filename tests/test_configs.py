"""One configuration reader: unknown keys are errors in every preset family, one override syntax."""

from __future__ import annotations

import json

import pytest

from geodemo.configs import apply_overrides, parse_overrides
from geodemo.pipeline.locator import build_stages
from geodemo.pipeline.presets import list_presets as pipeline_presets
from geodemo.pipeline.presets import load_preset as pipeline_preset
from geodemo.train.config import TRAINING_SCHEMA, list_presets, load_preset


def test_one_override_syntax_with_json_values():
    assert parse_overrides(["optim.lr=3e-4", "run.output=runs/x", "data.benchmarks=[\"a\", \"b\"]", "a.b=true"]) == [
        ("optim.lr", 3e-4), ("run.output", "runs/x"), ("data.benchmarks", ["a", "b"]), ("a.b", True)]
    assert parse_overrides({"optim.lr": 0.1}) == [("optim.lr", 0.1)]
    for bad in ("optim.lr", "=3"):  # once silently ignored
        with pytest.raises(ValueError, match="section.key=value"):
            parse_overrides([bad])


@pytest.mark.parametrize("name", list_presets())
def test_every_training_preset_reads_and_takes_an_override(name):
    cfg = load_preset(name)
    from geodemo.train.config import apply_overrides as train_overrides

    before = json.dumps(cfg, sort_keys=True)
    out = train_overrides(cfg, ["optim.lr=0.125", "run.seed=3"])
    assert out["optim"]["lr"] == 0.125 and out["run"]["seed"] == 3
    assert json.dumps(cfg, sort_keys=True) == before  # the input is not modified


def test_a_typo_in_a_training_override_is_refused_naming_the_known_keys():
    from geodemo.train.config import apply_overrides as train_overrides

    cfg = load_preset("offline-verifier")
    with pytest.raises(ValueError, match=r"unknown setting 'optim.lrr' in training preset 'offline-verifier'; "
                                         r"known at optim: batch_size, epochs, .*\blr\b"):
        train_overrides(cfg, ["optim.lrr=0.1"])
    with pytest.raises(ValueError, match=r"unknown setting 'optimiser.lr'.*known at the top level: .*optim"):
        train_overrides(cfg, {"optimiser.lr": 0.1})


def test_a_typo_in_a_training_preset_file_or_dict_is_refused(tmp_path):
    cfg = load_preset("offline-verifier")
    cfg["run"]["sed"] = 1
    path = tmp_path / "mine.json"
    path.write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match=r"unknown setting 'run.sed' in training preset mine.json"):
        load_preset(path)
    from geodemo.train.trainer import Trainer

    with pytest.raises(ValueError, match=r"unknown setting 'run.sed'"):
        Trainer(cfg)  # a dict built in code is checked too, before anything is loaded


def test_the_schema_covers_what_the_built_in_presets_set():
    for name in list_presets():
        for section, value in load_preset(name).items():
            assert section in TRAINING_SCHEMA
            if isinstance(value, dict) and TRAINING_SCHEMA[section] is not None:
                assert set(value) <= set(TRAINING_SCHEMA[section]), (name, section)


def test_pipeline_presets_take_the_same_overrides_and_refuse_typos():
    cfg = pipeline_preset("offline", ["rerank.eps_km=25"])
    assert cfg["rerank"]["eps_km"] == 25
    build_stages(cfg)  # known key: builds
    with pytest.raises(ValueError, match=r"unknown setting\(s\) \['epz_km'\] in"):
        build_stages(pipeline_preset("offline", ["rerank.epz_km=25"]))
    for name in pipeline_presets():
        build_stages(pipeline_preset(name))


def test_overrides_cannot_descend_into_a_value():
    with pytest.raises(ValueError, match="optim.lr is not a section"):
        apply_overrides({"optim": {"lr": 1}}, ["optim.lr.x=2"])
