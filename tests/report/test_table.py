"""The compact row encoding the page's script reads: round trip, escaping, byte budget."""

from __future__ import annotations

import json
from typing import Any

import pytest

from persona_sync.report.table import Column, encode_table, script_json, split_dn

COLUMNS = (
    Column("employee", "Employee", "text"),
    Column("dn", "DN", "dn"),
    Column("rule", "Rule", "ref", True),
)


def decode(text: str) -> list[list[str]]:
    """What the page's script does, in Python."""
    data: dict[str, Any] = json.loads(text)
    strings = data["strings"]
    rows = []
    for row in data["rows"]:
        cells, at = [], 0
        for column in data["columns"]:
            value = row[at]
            if column["kind"] == "text":
                cells.append(value)
            elif column["kind"] == "ref":
                cells.append(strings[value])
            else:
                parent = row[at + 1]
                cells.append(value if parent < 0 else value + "," + strings[parent])
                at += 1
            at += 1
        rows.append(cells)
    return rows


def _by_column(rows: list[list[str]]) -> list[list[str]]:
    return [list(column) for column in zip(*rows, strict=True)]


def test_refs_columns_hold_several_shared_values() -> None:
    columns = (Column("employee", "Employee", "text"), Column("facts", "Facts", "refs"))
    encoded = encode_table(columns, [["a", "b"], [("x=1", "y=2"), ("y=2",)]], 2)
    data = json.loads(encoded.json)
    assert data["rows"] == [["a", [1, 0]], ["b", [0]]]
    assert data["strings"] == ["y=2", "x=1"]


@pytest.mark.parametrize(
    ("dn", "expected"),
    [
        ("CN=Smith\\, John,OU=People,DC=x", ("CN=Smith\\, John", "OU=People,DC=x")),
        ("CN=a\\\\,OU=b", ("CN=a\\\\", "OU=b")),
        ("CN=a\\", ("CN=a\\", "")),
        ("CN=top", ("CN=top", "")),
        ("", ("", "")),
    ],
)
def test_split_dn_at_the_first_unescaped_comma(dn: str, expected: tuple[str, str]) -> None:
    assert split_dn(dn) == expected


def test_round_trip_with_hostile_text() -> None:
    rows = [
        ["<script>alert(1)</script>", "CN=Müller\\, Ä,OU=<b>,DC=x", "r&1"],
        ["b", "CN=b,OU=<b>,DC=x", "r&1"],
        ["c", "CN=c", "</script><!--"],
    ]
    encoded = encode_table(COLUMNS, _by_column(rows), len(rows))
    assert decode(encoded.json) == rows
    assert "<" not in encoded.json and ">" not in encoded.json and "&" not in encoded.json
    # Shared parents and rules are stored once, the most used first.
    assert json.loads(encoded.json)["strings"] == ["OU=<b>,DC=x", "r&1", "</script><!--"]


def test_budget_keeps_the_first_rows_and_says_how_many() -> None:
    rows = [[f"employee{i:05}", f"CN=e{i},OU=P,DC=x", "rule"] for i in range(1000)]
    encoded = encode_table(COLUMNS, _by_column(rows), len(rows), budget=5_000)
    assert encoded.truncated
    assert 0 < encoded.embedded < 1000
    assert len(encoded.json) < 5_400  # budget plus the small head
    assert decode(encoded.json) == rows[: encoded.embedded]
    assert json.loads(encoded.json)["total"] == 1000


def test_script_json_escapes_markup() -> None:
    assert script_json({"a": "</script>&"}) == '{"a":"\\u003c/script\\u003e\\u0026"}'
