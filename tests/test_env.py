"""Every GEODEMO_* variable is read in geodemo/env.py only, listed there with its meaning, and the
README's table is that list."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from geodemo import env

REPO = Path(__file__).resolve().parent.parent
SOURCES = [*REPO.joinpath("geodemo").rglob("*.py"), REPO / "app.py", *REPO.joinpath("scripts").glob("*.py")]
READ = re.compile(r"""(?:environ\.get|getenv)\(\s*['"](GEODEMO_\w+)|environ\[\s*['"](GEODEMO_\w+)['"]\s*\](?!\s*=[^=])""")


def test_every_variable_named_in_the_code_or_readme_is_listed():
    named = set()
    for path in [*SOURCES, REPO / "README.md"]:
        named |= set(re.findall(r"\bGEODEMO_[A-Z_]*[A-Z]\b", path.read_text(encoding="utf-8")))
    assert named - set(env.VARIABLES) == set()
    assert set(env.VARIABLES) - named == set()  # none listed that nothing reads


def test_no_module_but_env_reads_them():
    readers = {str(p.relative_to(REPO)): READ.findall(p.read_text(encoding="utf-8"))
               for p in SOURCES if p.name != "env.py"}
    assert {p: r for p, r in readers.items() if r} == {}


def test_the_readme_table_is_the_list():
    text = (REPO / "README.md").read_text(encoding="utf-8")
    table = re.search(r"<!-- env-table[^>]*-->\n(.*?)\n<!-- /env-table -->", text, re.S)
    assert table is not None and table.group(1) == env.markdown_table()


def test_reading(monkeypatch):
    monkeypatch.setenv("GEODEMO_MAX_UPLOAD_MB", " 4e1 ")
    assert env.get_int("GEODEMO_MAX_UPLOAD_MB", 1) == 40
    monkeypatch.setenv("GEODEMO_MAX_UPLOAD_MB", "lots")
    with pytest.raises(ValueError, match=r"\$GEODEMO_MAX_UPLOAD_MB must be a whole number, got 'lots'"):
        env.get_int("GEODEMO_MAX_UPLOAD_MB", 1)
    monkeypatch.setenv("GEODEMO_WARMUP", "0")
    assert env.get_flag("GEODEMO_WARMUP", True) is False
    monkeypatch.setenv("GEODEMO_WARMUP", "")  # blank is unset
    assert env.get_flag("GEODEMO_WARMUP", True) is True and env.get("GEODEMO_WARMUP", "d") == "d"
    monkeypatch.setenv("GEODEMO_LMM_MODELS", "a, b,,c ")
    assert env.get_list("GEODEMO_LMM_MODELS") == ["a", "b", "c"]
    with pytest.raises(KeyError, match="GEODEMO_NOPE is not a geodemo environment variable"):
        env.get("GEODEMO_NOPE")
