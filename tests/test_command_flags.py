"""One flag vocabulary across ``geodemo`` subcommands and ``scripts/*.py``, every option explained.

Each parser is the one the command really builds: the script's ``main`` runs until it parses its
arguments, where the test takes the parser. Vocabulary: ``--out`` names an output path (never
``--output`` or a positional), ``--json`` switches the output to JSON (it takes no value),
``--folds`` counts photographer folds (never ``--num-folds``).
"""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

import pytest

from geodemo.cli import build_parser
from geodemo.paths import REPO_ROOT

SCRIPTS = sorted(p for p in (REPO_ROOT / "scripts").glob("*.py") if "argparse" in p.read_text(encoding="utf-8"))
OLD_SPELLINGS = {"--output", "--num-folds", "--ivf-nlist"}


class _Parsed(Exception):
    def __init__(self, parser: argparse.ArgumentParser) -> None:
        super().__init__(parser.prog)
        self.parser = parser


def _script_parser(path: Path, monkeypatch: pytest.MonkeyPatch) -> argparse.ArgumentParser:
    """The parser ``scripts/<name>.py`` builds, taken when its ``main`` first parses arguments."""

    def take(self, args=None, namespace=None):
        raise _Parsed(self)

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", take)
    spec = importlib.util.spec_from_file_location(f"script_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    with pytest.raises(_Parsed) as parsed:
        module.main([])
    return parsed.value.parser


def _parsers(parser: argparse.ArgumentParser, name: str):
    """``(name, parser)`` for ``parser`` and each of its subcommands."""
    yield name, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub_name, sub in action.choices.items():
                yield from _parsers(sub, f"{name} {sub_name}")


def _problems(name: str, parser: argparse.ArgumentParser) -> list[str]:
    found = []
    for action in parser._actions:
        if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)) or action.help == argparse.SUPPRESS:
            continue
        label = f"{name} {'/'.join(action.option_strings) or action.dest}"
        if not (action.help or "").strip():
            found.append(f"{label}: no help text")
        if OLD_SPELLINGS & set(action.option_strings):
            found.append(f"{label}: old spelling (use --out, --folds, --nlist)")
        if not action.option_strings and action.dest in ("out", "output"):
            found.append(f"{label}: an output path is --out, not a positional")
        if "--json" in action.option_strings and action.nargs != 0:
            found.append(f"{label}: --json is a switch (print JSON); a path is --out")
        if "--out" in action.option_strings and action.nargs == 0:
            found.append(f"{label}: --out takes a path")
    return found


def test_scripts_are_found():
    names = {p.stem for p in SCRIPTS}
    assert {"evaluate", "train", "ablate", "bench_locate", "build_assets"} <= names


@pytest.mark.parametrize("path", SCRIPTS, ids=lambda p: p.stem)
def test_every_script_option_has_help_and_the_shared_spelling(path, monkeypatch):
    if path.stem == "build_database":  # the `geodemo index` parser, checked below
        pytest.skip("scripts/build_database.py is `geodemo index`")
    parser = _script_parser(path, monkeypatch)
    assert [p for name, sub in _parsers(parser, path.name) for p in _problems(name, sub)] == []


def test_every_geodemo_subcommand_option_has_help_and_the_shared_spelling():
    parsers = dict(_parsers(build_parser(), "geodemo"))
    assert {"geodemo locate", "geodemo index", "geodemo evaluate", "geodemo train"} <= set(parsers)
    assert [p for name, sub in parsers.items() for p in _problems(name, sub)] == []


def test_the_checker_catches_each_old_spelling():
    """The rules fail on the spellings the vocabulary replaced (a checker that cannot fail proves nothing)."""
    old = argparse.ArgumentParser(prog="old")
    old.add_argument("output")
    old.add_argument("--num-folds", type=int, help="folds")
    old.add_argument("--json", help="write JSON here")
    old.add_argument("--seed", type=int)
    problems = _problems("old", old)
    assert len(problems) == 5, problems  # `output` also lacks help
    assert any("positional" in p for p in problems) and any("old spelling" in p for p in problems)
    assert any("switch" in p for p in problems) and any("no help" in p for p in problems)
