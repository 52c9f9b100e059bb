"""Per-call options are owned by the stages: declared once in a stage's Config, they become a CLI flag
and a page control with the stage's range, and both refuse a bad value in the stage's words."""

from __future__ import annotations

import json
import socket
from dataclasses import dataclass

import gradio as gr
import pytest

from geodemo.cli import build_parser, main
from geodemo.paths import REPO_ROOT
from geodemo.pipeline import LocateOptions
from geodemo.pipeline.options import declared_options
from geodemo.pipeline.stages import STAGES, Stage, register_stage
from geodemo.pipeline.stages.base import InvalidOptionError, option
from geodemo.web.inputs import option_controls
from geodemo.web.policy import RequestError, validate_request, web_options

REPO = REPO_ROOT
LIGHT = REPO / "tests" / "presets" / "light.json"


@dataclass(frozen=True)
class ProbeConfig:
    radius_km: float = option(7.5, kind=float, lo=0.5, hi=80, label="probe radius (km)", help="how far the probe looks")
    fixed: int = 3  # not marked: a call may not set it


@pytest.fixture
def probe_stage():
    """A stage added the way a contributor adds one: a Config with one option() field, registered."""

    class Probe(Stage):
        name = "probe.test"
        section = "probe"
        Config = ProbeConfig

        def run(self, ctx) -> None:  # pragma: no cover - never run here
            pass

    register_stage(Probe)
    yield Probe
    STAGES.remove(Probe.name)


def test_an_option_declared_in_one_stage_is_a_cli_flag_and_a_page_control_with_its_range(probe_stage):
    flags = {a.option_strings[0]: a for a in build_parser()._subparsers._group_actions[0].choices["locate"]._actions
             if a.option_strings}
    assert "--radius-km" in flags and "from 0.5 to 80" in flags["--radius-km"].help
    assert "--fixed" not in flags  # a field without option() stays the preset's
    assert [o.key for o in web_options()][-1] == "probe.radius_km"
    with gr.Blocks():
        controls = option_controls()
    probe = controls[-1]
    assert (probe.label, probe.minimum, probe.maximum) == ("probe radius (km)", 0.5, 80)
    assert len(controls) == len(web_options())
    opts = LocateOptions({"probe": {"radius_km": "12"}})
    assert opts.get("probe", "radius_km") == 12.0
    with pytest.raises(InvalidOptionError, match="cannot be set per call"):
        LocateOptions({"probe": {"fixed": 4}})


def test_the_built_in_options_are_the_stages_marks():
    keys = [o.key for o in declared_options()]
    assert keys == ["retrieval.top_k", "rerank.eps_km", "rerank.min_samples", "lmm.enabled", "lmm.backend",
                    "lmm.model", "lmm.samples"]
    flags = [o.cli_flag for o in declared_options()]
    assert flags == ["--top-k", "--eps-km", "--min-samples", "--lmm", "--lmm-backend", "--lmm-model", "--lmm-samples"]


@pytest.mark.parametrize("value", ["-1", "0.01", "2.5", "100000", "nan", "five"])
def test_out_of_range_values_are_refused_with_the_same_words_on_the_cli_and_the_page(capsys, value):
    """Each numeric option, each bad value: the CLI's line after its flag is the page's line after its label."""
    for spec in (o for o in declared_options() if o.kind in (int, float)):
        try:
            spec.parse(value)
            continue  # in range for this option (e.g. 2.5 km)
        except InvalidOptionError:
            pass
        rc = main(["locate", "no-such-photo.jpg", spec.cli_flag, value])
        err = capsys.readouterr().err
        assert rc == 2 and err.startswith(f"error: {spec.cli_flag} ") and err.count("\n") == 1, err
        with pytest.raises(RequestError) as info:
            validate_request("offline", {spec.key: value})
        page = str(info.value)
        assert page.startswith(f"{spec.label} ")
        assert err[len(f"error: {spec.cli_flag} "):].strip() == page[len(spec.label) + 1:], (err, page)
        assert f"must be {spec.range_text}" in page


def test_lmm_samples_is_a_cli_flag_that_sets_the_answers_per_prompt(shared, capsys, monkeypatch):
    """``--lmm-samples 3``: the page offered it, the CLI used to reject it. A backend that cannot answer
    still records one attempt per prompt and sample, so the count shows the setting reached the stage."""
    with socket.socket() as s:  # a port nobody listens on: Ollama "not installed", each call recorded
        s.bind(("127.0.0.1", 0))
        monkeypatch.setenv("OLLAMA_HOST", f"http://127.0.0.1:{s.getsockname()[1]}")
    photo = sorted((shared / "data" / "osv5m-sample" / "images").glob("*.jpg"))[0]
    counts = {}
    for samples in ("1", "3"):
        rc = main(["locate", str(photo), "--preset", str(LIGHT), "--lmm", "--lmm-backend", "ollama",
                   "--lmm-samples", samples, "--json"])
        out = capsys.readouterr()
        assert rc == 0, out.err
        records = json.loads(out.out)["lmm_records"]
        counts[samples] = (len(records), sorted({r["sample"] for r in records}))
    assert counts == {"1": (1, [0]), "3": (3, [0, 1, 2])}  # light.json: one zero-shot prompt


def test_the_options_keep_data_flow_order_whichever_stage_module_is_imported_first():
    """The page's controls (and so the API's positional order) and the CLI's flags must not depend on
    which module a process happens to import first: importing the rerank stage first used to register
    the rerank stages last, after the LMM's, which moved its controls."""
    import subprocess
    import sys

    code = ("import geodemo.pipeline.stages.rerank\n"
            "from geodemo.pipeline.options import declared_options\n"
            "print(' '.join(o.key for o in declared_options()))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO_ROOT, check=True)
    assert out.stdout.split() == [o.key for o in declared_options()] == [
        "retrieval.top_k", "rerank.eps_km", "rerank.min_samples", "lmm.enabled", "lmm.backend", "lmm.model",
        "lmm.samples"]
