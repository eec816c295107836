"""Feed files on their own: CSV and JSON Lines, the join key, and every located error."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from persona_sync.errors import PersonaSyncError
from persona_sync.feeds import load_feed


def feed_file(tmp_path: Path, name: str, content: bytes | str) -> Path:
    path = tmp_path / name
    path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    return path


def error_of(path: Path, key: str = "employee_id", **options: str) -> str:
    with pytest.raises(PersonaSyncError) as caught:
        load_feed("hr", path, key, **options)  # type: ignore[arg-type]
    return str(caught.value)


def test_a_csv_export_is_indexed_by_its_trimmed_case_folded_key(tmp_path: Path) -> None:
    path = feed_file(
        tmp_path,
        "hr.csv",
        "\ufeffEmployee_ID,grade,work_arrangement\r\n"
        " E100 ,7,remote\r\n"
        'e101,3,"on site, plant 2"\r\n'
        "\r\n",
    )
    feed = load_feed("hr", path, "employee_id")
    assert (feed.key, feed.columns) == ("Employee_ID", ("Employee_ID", "grade", "work_arrangement"))
    row = feed.row_for("e100")
    assert row is not None
    assert (row.line, dict(row.values)) == (
        2,
        {"Employee_ID": " E100 ", "grade": "7", "work_arrangement": "remote"},
    )
    third = feed.row_for(" E101")
    assert third is not None and third.values["work_arrangement"] == "on site, plant 2"
    assert feed.row_for("E102") is None and feed.row_for(None) is None
    assert feed.provenance["rows"] == 2
    assert len(str(feed.provenance["checksum"])) == 64


@pytest.mark.parametrize("delimiter", [";", "\t", "|"])
def test_the_delimiter_is_sniffed_from_the_header(tmp_path: Path, delimiter: str) -> None:
    path = feed_file(
        tmp_path, "hr.csv", delimiter.join(["employee_id", "grade"]) + "\nE1" + delimiter + "7\n"
    )
    row = load_feed("hr", path, "employee_id").row_for("e1")
    assert row is not None and row.values == {"employee_id": "E1", "grade": "7"}


def test_a_given_delimiter_wins_and_quoted_newlines_keep_line_numbers(tmp_path: Path) -> None:
    path = feed_file(tmp_path, "hr.csv", 'employee_id;note\nE1;"two\nlines"\nE2;x\nE2;y\n')
    assert error_of(path, delimiter=";") == (
        f"{path}:5:1: duplicate key 'E2' in column 'employee_id' (first on line 4)"
    )


def test_json_lines_give_plain_values_as_text(tmp_path: Path) -> None:
    lines = [
        {"employee_id": "E1", "grade": 7, "customer_facing": True, "manager": None},
        {},
        {"employee_id": "E2", "cost_centre": "CC-9"},
    ]
    text = "\n".join("" if not item else json.dumps(item) for item in lines) + "\n"
    feed = load_feed("hr", feed_file(tmp_path, "hr.jsonl", text), "employee_id")
    assert feed.columns == ("employee_id", "grade", "customer_facing", "cost_centre")
    first, second = feed.row_for("e1"), feed.row_for("e2")
    assert first is not None and second is not None
    assert first.values == {"employee_id": "E1", "grade": "7", "customer_facing": "true"}
    assert (second.line, second.values["cost_centre"]) == (3, "CC-9")


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("id,grade\nE1,7\n", "1:1: no key column 'employee_id' (columns: id, grade)"),
        ("", "1:1: no key column 'employee_id' (columns: none)"),
        ("employee_id,grade\nE1,7\nE2\n", "3:1: 1 fields where the header has 2"),
        ("employee_id,grade\nE1,7,x\n", "2:1: 3 fields where the header has 2"),
        ("employee_id,grade\n  ,7\n", "2:1: empty key column 'employee_id'"),
        ("employee_id,Grade,grade\n", "1:1: column 'grade' appears twice (columns 2 and 3)"),
        ("employee_id,,grade\n", "1:1: column 2 has no name"),
        ('employee_id,grade\nE1,"7\n', "2:1: malformed CSV: unexpected end of data"),
        (
            'employee_id,grade\nE1,"7"x\n',
            "2:1: malformed CSV: ',' expected after '\"'",
        ),
        (b"employee_id,grade\nE1,\xff\n", "2:4: not valid UTF-8 (byte 0xff)"),
    ],
)
def test_csv_mistakes_are_located(tmp_path: Path, content: str | bytes, expected: str) -> None:
    path = feed_file(tmp_path, "hr.csv", content)
    assert error_of(path) == f"{path}:{expected}"


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ('{"employee_id": "E1"}\n[1]\n', "2:1: expected a JSON object per line"),
        ('{"employee_id": "E1"\n', "1:21: invalid JSON: Expecting ',' delimiter"),
        (
            '{"employee_id": "E1", "tags": ["a"]}\n',
            "1:1: field 'tags' holds a list; feed fields are plain values",
        ),
        ('{"employee_id": "E1"}\n{"grade": 3}\n', "2:1: empty key column 'employee_id'"),
        (
            '{"employee_id": "E1"}\n{"employee_id": "e1 "}\n',
            "2:1: duplicate key 'e1' in column 'employee_id' (first on line 1)",
        ),
    ],
)
def test_json_lines_mistakes_are_located(tmp_path: Path, content: str, expected: str) -> None:
    path = feed_file(tmp_path, "hr.jsonl", content)
    assert error_of(path) == f"{path}:{expected}"


def test_a_missing_or_unreadable_feed_names_the_feed(tmp_path: Path) -> None:
    missing = tmp_path / "nope.csv"
    assert error_of(missing) == f"feed hr: {missing}: no such file"
    assert error_of(tmp_path) == f"feed hr: {tmp_path}: is a folder, expected a file"
