"""The one bounded JSON reader (models/contract/jsonio.py), and that every JSON the project takes goes through it."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from models.contract.errors import BadInput
from models.contract.jsonio import MAX_DEPTH, loads_json, nesting_depth, read_json

ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize("text, reason", [
    ("[" * 100_000 + "]" * 100_000, "nested 100000 levels deep (at most 64)"),
    ('{"a": ' * 65 + "1" + "}" * 65, "nested 65 levels deep"),
    ("[" + "7" * 5000 + "]", "(5000 digits) is out of range"),
    ("[" + "9" * 400 + "]", "(400 digits) is out of range"),
    ("[9223372036854775808]", "integer 9223372036854775808 is out of range"),
    ("[1e400]", "number 1e400 is beyond the range of a float"),
    ('{"coord_dims": Infinity}', "Infinity is not a JSON number"),
    ("[-Infinity]", "-Infinity is not a JSON number"),
    ("[NaN]", "NaN is not a JSON number"),
    ("[1,", "not valid JSON"),
    (b"\xff\xfe", "not valid JSON"),
])
def test_refused_in_one_line_naming_the_source(text, reason):
    with pytest.raises(BadInput) as e:
        loads_json(text, "f.json")
    assert str(e.value).startswith("f.json: ") and reason in str(e.value) and "\n" not in str(e.value), str(e.value)


def test_ordinary_documents_read_as_json_reads_them():
    doc = {"a": [1, -2, 3.5, -9223372036854775808, 9223372036854775807, 1e308], "s": '[[[{{ \\" ]]', "n": None,
           "deep": [[[[[[1]]]]]], "t": True, "u": "dönnées 動作"}
    text = json.dumps(doc)
    assert loads_json(text, "x") == loads_json(text.encode(), "x") == json.loads(text)
    # brackets inside strings do not count; exactly MAX_DEPTH levels are fine
    assert nesting_depth(b'["[[[[[[", "\\"[["]') == 1
    assert loads_json("[" * MAX_DEPTH + "]" * MAX_DEPTH, "x") is not None


def test_read_json_vets_the_path(tmp_path: Path):
    import os

    os.mkfifo(tmp_path / "p.json")
    with pytest.raises(BadInput, match="is a named pipe"):
        read_json(tmp_path / "p.json")
    (tmp_path / "ok.json").write_text('{"a": 1}')
    assert read_json(tmp_path / "ok.json") == {"a": 1}


def test_no_json_is_parsed_outside_the_reader():
    """grep: `json.load(s)` appears only in models/contract/jsonio.py (bench/ scripts read their own outputs)."""
    found = [f"{p.relative_to(ROOT)}:{n}" for pkg in ("models", "estimators", "pipeline")
             for p in sorted((ROOT / pkg).rglob("*.py")) if p.name != "jsonio.py"
             for n, line in enumerate(p.read_text().splitlines(), 1) if re.search(r"\bjson\.loads?\(", line)]
    assert found == [], found
