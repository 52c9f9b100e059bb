"""The one Registry helper: built-ins always present, user names replace them, unknown names listed."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from geodemo.registry import Registry, UnknownNameError

REPO = Path(__file__).resolve().parent.parent


def _builtins(registry: Registry) -> None:
    registry.add("a", 1)
    registry.add("b", 2)


def test_builtins_stay_when_something_is_registered_first():
    reg = Registry("thing", _builtins)
    reg.add("c", 3)  # before any lookup: the built-ins are loaded first, not hidden
    assert reg.names() == ["a", "b", "c"]
    assert reg.get("a") == 1 and reg.get("c") == 3


def test_a_user_registration_replaces_a_builtin_even_before_they_load():
    reg = Registry("thing", _builtins)
    reg.add("a", 10)
    assert reg.get("a") == 10 and reg.get("b") == 2
    reg.remove("a")
    assert "a" not in reg and "b" in reg


def test_unknown_name_lists_the_known_ones_as_key_and_value_error():
    reg = Registry("thing", _builtins)
    with pytest.raises(KeyError, match=r"unknown thing 'z'; known things: a, b"):
        reg.get("z")
    with pytest.raises(ValueError):  # older callers caught ValueError
        reg.get("z")
    try:
        reg.get("z")
    except UnknownNameError as exc:
        assert str(exc) == "unknown thing 'z'; known things: a, b"  # not quoted as KeyError would


def test_decorator_registers_aliases_and_builtins_by_module_import():
    reg = Registry("codec", ["json"], sort=False)
    deco = reg.register("x", "x-alias")
    obj = deco(object)
    assert reg.get("x") is obj is reg.get("x-alias") and reg.names() == ["x", "x-alias"]
    with pytest.raises(ValueError):
        reg.register()


def test_a_failing_builtin_loader_is_retried_not_left_half_loaded():
    calls = []

    def loader(registry):
        calls.append(1)
        if len(calls) == 1:
            raise ImportError("optional dependency missing")
        registry.add("a", 1)

    reg = Registry("thing", loader)
    with pytest.raises(ImportError):
        reg.names()
    assert reg.names() == ["a"]


def test_register_model_then_a_builtin_model_is_still_found():
    """Regression: ``register_model(...)`` on a fresh interpreter hid every built-in model
    (``get_spec("mobilenet-v1-imagenet")`` raised KeyError). A fresh process: no test ran first."""
    code = textwrap.dedent("""
        from geodemo.models.registry import ModelSpec, get_spec, list_models, register_model
        register_model(ModelSpec("my-model", "image-encoder", "geodemo.models.mobilenet:load_mobilenet_v1_encoder"))
        assert get_spec("mobilenet-v1-imagenet").family == "image-encoder"
        assert "my-model" in list_models("image-encoder") and "mobilenet-v1-imagenet" in list_models()
        print("ok")
    """)
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


@pytest.mark.parametrize("module, lister, getter, builtin", [
    ("geodemo.models.registry", "list_models", "get_spec", "mobilenet-v1-imagenet"),
    ("geodemo.pipeline.stages", "list_stages", "get_stage", "retrieve"),
    ("geodemo.lmm.backends.base", "list_backends", "create_backend", None),
    ("geodemo.eval.predictors", "list_predictors", "create_predictor", None),
    ("geodemo.data.benchmarks", "list_benchmarks", "load_benchmark", None),
    ("geodemo.retrieval.index_kinds", None, None, None),
])
def test_every_named_lookup_is_one_registry(module, lister, getter, builtin):
    import importlib

    mod = importlib.import_module(module)
    registries = [v for v in vars(mod).values() if isinstance(v, Registry)]
    assert len(registries) == 1, f"{module} should hold exactly one Registry"
    reg = registries[0]
    if lister:
        assert getattr(mod, lister)() == reg.names() != []
    if builtin:
        assert getattr(mod, getter)(builtin) is reg.get(builtin)
    if getter:
        with pytest.raises(KeyError, match="known"):
            getattr(mod, getter)("no-such-name")
