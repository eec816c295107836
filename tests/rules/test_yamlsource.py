"""The located YAML loader: YAML 1.2 scalars, locations, and every syntax error located."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from persona_sync.errors import Location, RuleError
from persona_sync.yamlsource import load_yaml, parse_yaml
from tests.fuzz import hostile


def test_scalars_follow_yaml_1_2_core_schema() -> None:
    doc = parse_yaml(
        "country: NO\nflags: [yes, on, off, true, False]\ntime: 1:30\ndate: 2024-01-01\n"
        "n: 012\nm: -12\nx: 0x1F\nf: 1.5\nnothing: ~\nempty:\n",
        "f.yaml",
    )
    assert doc.data == {
        "country": "NO",
        "flags": ["yes", "on", "off", True, False],
        "time": "1:30",
        "date": "2024-01-01",
        "n": "012",
        "m": -12,
        "x": "0x1F",
        "f": 1.5,
        "nothing": None,
        "empty": None,
    }


def test_locations_of_values_and_keys() -> None:
    doc = parse_yaml("personas:\n  - id: vip\n    precedence: 100\n", "p.yaml")
    assert doc.values[("personas", 0, "precedence")] == Location("p.yaml", 3, 17)
    assert doc.keys[("personas", 0, "precedence")] == Location("p.yaml", 3, 5)
    # A missing value falls back to the nearest enclosing one.
    assert doc.locate(("personas", 0, "name")) == Location("p.yaml", 2, 5)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a:\n\tb: 1\n", "f.yaml:2:1: tab character in indentation: YAML indents with spaces only"),
        ("a: 1\na: 2\n", "f.yaml:2:1: duplicate key 'a' (first given at line 1)"),
        (
            "a: 1\n---\nb: 2\n",
            "f.yaml:2:1: more than one YAML document ('---') in one file: put each in its own file",
        ),
        (
            "a: [1, 2\n",
            "f.yaml:2:1: invalid YAML: expected ',' or ']', but got '<stream end>' "
            "(while parsing a flow sequence)",
        ),
        ("? [a]\n: 1\n", "f.yaml:1:3: a key must be a plain value, not a list or mapping"),
        (
            "a: b: c\n",
            "f.yaml:1:5: invalid YAML: mapping values are not allowed here",
        ),
    ],
)
def test_syntax_errors_are_located(text: str, message: str) -> None:
    with pytest.raises(RuleError) as caught:
        parse_yaml(text, "f.yaml")
    assert str(caught.value) == message


def test_non_utf8_bytes_are_located(tmp_path: Path) -> None:
    path = tmp_path / "r.yaml"
    path.write_bytes(b"facts:\n  x:\n    from: caf\xe9\n")
    with pytest.raises(RuleError) as caught:
        load_yaml(path, "r.yaml")
    assert str(caught.value) == "r.yaml:3:14: file is not valid UTF-8 (byte 0xe9)"


def test_utf8_bom_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "r.yaml"
    path.write_bytes("\ufeffname: Zoë\n".encode())
    assert load_yaml(path).data == {"name": "Zoë"}


def test_missing_file_and_folder(tmp_path: Path) -> None:
    with pytest.raises(RuleError) as caught:
        load_yaml(tmp_path / "none.yaml", "none.yaml")
    assert str(caught.value) == "none.yaml: no such file"
    with pytest.raises(RuleError) as caught:
        load_yaml(tmp_path, "dir")
    assert str(caught.value) == "dir: is a directory, expected a file"


def test_empty_document_is_none() -> None:
    assert parse_yaml("# only a comment\n", "f.yaml").data is None


def test_control_characters_are_located() -> None:
    with pytest.raises(RuleError) as caught:
        parse_yaml("a: 1\nb: x\x00y\n", "f.yaml")
    assert str(caught.value) == "f.yaml:2:5: character U+0000 is not allowed in YAML"


def _python(text: str) -> Any:
    from persona_sync import yamlsource

    try:
        return yamlsource._parse_yaml(text, "f.yaml", yamlsource._CoreSchemaLoader)
    except RuleError as exc:
        return str(exc)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(
    st.one_of(
        hostile.rule_files,
        hostile.config_files,
        st.lists(st.sampled_from(hostile.YAML_TOKENS), max_size=30).map(
            lambda tokens: "".join(tokens).encode()
        ),
    )
)
def test_libyaml_reads_what_pyyaml_reads(raw: bytes) -> None:
    """parse_yaml reads on libyaml's parser when it can: the same data, the same error
    for a bad file (PyYAML's), and the same locations; those of empty values, which
    libyaml places otherwise, are taken from PyYAML when asked for."""
    from persona_sync import yamlsource

    assert yamlsource.CParser is not None, "PyYAML is built with libyaml here"
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return
    python = _python(text)
    try:
        doc = parse_yaml(text, "f.yaml")
    except RuleError as exc:
        assert str(exc) == python
        return
    assert not isinstance(python, str), f"PyYAML refuses it: {python}"
    assert doc.data == python.data
    assert doc.keys == python.keys
    assert {p: v for p, v in doc.values.items() if p not in doc._empty} == {
        p: v for p, v in python.values.items() if p not in doc._empty
    }
    for path in doc._empty:
        assert doc.locate(path) == python.locate(path)
    assert doc.values == python.values
