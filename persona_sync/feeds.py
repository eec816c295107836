"""Feeds: HR and other exports whose rows are joined to the directory's employees.

A feed is a CSV file with a header row (UTF-8, with or without a BOM; the delimiter sniffed
from the header or given) or a JSON Lines file (one object per line). Each row is keyed by
one column, compared trimmed and ignoring case, and joins the employee whose directory
attribute holds the same value. Rules read a feed's columns as ``<feed>.<column>``.

Loading reads the whole file once and keeps, per row, its line and its fields; the file's
SHA-256, row count and modification time go into a plan's provenance, so a plan made from
one export is not applied after another replaced it.

Every mistake in a feed is a located error (``hr-export.csv:3:1: ...``): a missing key
column, a duplicate key (the second line is named, and the first), a row with more or fewer
fields than the header, invalid UTF-8, a JSON line that is not an object of plain values.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from persona_sync.errors import FileFormatError, Location, PersonaSyncError

Format = Literal["auto", "csv", "jsonl"]
#: Delimiters the sniffer chooses from: HR tools export commas, semicolons (European Excel),
#: tabs and pipes.
DELIMITERS = ",;\t|"


@dataclass(frozen=True, slots=True)
class FeedRow:
    """One row: the line it starts on, and its fields by column (as written)."""

    line: int
    values: Mapping[str, str]


@dataclass(frozen=True)
class Feed:
    """A loaded feed. ``rows`` maps each row's join key (trimmed, case-folded) to it."""

    name: str
    path: Path
    key: str
    columns: tuple[str, ...]
    rows: Mapping[str, FeedRow]
    checksum: str
    modified: str

    def row_for(self, value: str | None) -> FeedRow | None:
        """The row whose key equals a directory value (trimmed, ignoring case)."""
        return self.rows.get(join_key(value)) if value else None

    @property
    def provenance(self) -> dict[str, object]:
        return {
            "path": str(self.path),
            "checksum": self.checksum,
            "rows": len(self.rows),
            "modified": self.modified,
        }


@dataclass(frozen=True, slots=True)
class FeedCell:
    """Where a value came from in a feed: ``hr-export.csv:17, column grade``."""

    feed: str
    file: str
    line: int
    column: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}, column {self.column}"

    def as_dict(self) -> dict[str, Any]:
        return {"feed": self.feed, "file": self.file, "line": self.line, "column": self.column}


def join_key(value: str | None) -> str:
    return (value or "").strip().casefold()


def load_feed(
    name: str, path: Path, key: str, fmt: Format = "auto", delimiter: str | None = None
) -> Feed:
    """Read and index a feed file; a located error for anything wrong in it."""
    try:
        data = path.read_bytes()
        stat = path.stat()
    except FileNotFoundError:
        raise PersonaSyncError(f"feed {name}: {path}: no such file") from None
    except IsADirectoryError:
        raise PersonaSyncError(f"feed {name}: {path}: is a folder, expected a file") from None
    except OSError as exc:
        raise PersonaSyncError(f"feed {name}: cannot read {path}: {exc.strerror}") from None
    shown = str(path)
    text = _decode(data, shown)
    kind = (
        fmt
        if fmt != "auto"
        else ("jsonl" if path.suffix.lower() in (".jsonl", ".ndjson") else "csv")
    )
    columns, rows = _csv_rows(text, shown, delimiter) if kind == "csv" else _json_rows(text, shown)
    wanted = next((c for c in columns if c.casefold() == key.casefold()), None)
    if wanted is None:
        listed = ", ".join(columns) if columns else "none"
        raise FileFormatError(Location(shown, 1, 1), f"no key column {key!r} (columns: {listed})")
    indexed: dict[str, FeedRow] = {}
    for row in rows:
        joined = join_key(row.values.get(wanted))
        if not joined:
            raise FileFormatError(Location(shown, row.line, 1), f"empty key column {wanted!r}")
        first = indexed.get(joined)
        if first is not None:
            raise FileFormatError(
                Location(shown, row.line, 1),
                f"duplicate key {row.values[wanted].strip()!r} in column {wanted!r} "
                f"(first on line {first.line})",
            )
        indexed[joined] = row
    modified = datetime.fromtimestamp(stat.st_mtime, UTC).isoformat(timespec="seconds")
    return Feed(
        name,
        path,
        wanted,
        tuple(columns),
        indexed,
        hashlib.sha256(data).hexdigest(),
        modified,
    )


def _decode(data: bytes, shown: str) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        offset = exc.start
        line = data.count(b"\n", 0, offset) + 1
        column = offset - (data.rfind(b"\n", 0, offset) + 1) + 1
        raise FileFormatError(
            Location(shown, line, column), f"not valid UTF-8 (byte 0x{data[offset]:02x})"
        ) from None


def _csv_rows(text: str, shown: str, delimiter: str | None) -> tuple[list[str], list[FeedRow]]:
    header_line = text.split("\n", 1)[0]
    if delimiter is None:
        try:
            delimiter = csv.Sniffer().sniff(header_line, DELIMITERS).delimiter
        except csv.Error:
            delimiter = ","  # one column, or nothing to tell by: the default
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    rows: list[FeedRow] = []
    columns: list[str] = []
    line = 1
    try:
        for fields in reader:
            start, line = line, reader.line_num + 1
            if not fields or all(not f.strip() for f in fields):
                continue  # blank lines (exports often end with some)
            if not columns:
                columns = [f.strip() for f in fields]
                _check_header(columns, shown, start)
                continue
            if len(fields) != len(columns):
                raise FileFormatError(
                    Location(shown, start, 1),
                    f"{len(fields)} fields where the header has {len(columns)}",
                )
            rows.append(FeedRow(start, dict(zip(columns, fields, strict=True))))
    except csv.Error as exc:
        # located at the start of the record that could not be read
        raise FileFormatError(Location(shown, line, 1), f"malformed CSV: {exc}") from None
    return columns, rows


def _check_header(columns: list[str], shown: str, line: int) -> None:
    seen: dict[str, int] = {}
    for position, column in enumerate(columns, 1):
        if not column:
            raise FileFormatError(Location(shown, line, 1), f"column {position} has no name")
        if column.casefold() in seen:
            raise FileFormatError(
                Location(shown, line, 1),
                f"column {column!r} appears twice "
                f"(columns {seen[column.casefold()]} and {position})",
            )
        seen[column.casefold()] = position


def _json_rows(text: str, shown: str) -> tuple[list[str], list[FeedRow]]:
    columns: dict[str, None] = {}
    rows: list[FeedRow] = []
    for number, raw in enumerate(text.split("\n"), 1):
        if not raw.strip():
            continue
        try:
            item = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise FileFormatError(
                Location(shown, number, exc.colno), f"invalid JSON: {exc.msg}"
            ) from None
        if not isinstance(item, dict):
            raise FileFormatError(Location(shown, number, 1), "expected a JSON object per line")
        values: dict[str, str] = {}
        for column, value in item.items():
            if isinstance(value, (dict, list)):
                raise FileFormatError(
                    Location(shown, number, 1),
                    f"field {column!r} holds a {'list' if isinstance(value, list) else 'object'}; "
                    "feed fields are plain values",
                )
            if value is None:
                continue
            values[column] = _text(value)
            columns.setdefault(column, None)
        rows.append(FeedRow(number, values))
    return list(columns), rows


def _text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
