"""Read and edit CSV exports (``csvde -f``, PowerShell ``Export-Csv``) without disturbing rows
that were not edited.

The file-backed directory can keep its entries in the CSV a Windows admin exported. Users diff
the file after a run, so an edit rewrites only the rows it changes, in the file's own quoting
style and line endings; the BOM, the ``#TYPE`` line Windows PowerShell writes and trailing
blank lines stay as they were.

Memory layout: like the LDIF reader, the document keeps the file's bytes once and per row only
its byte span and line number; fields are split out of the span when asked for (the last row
read is cached). An edited row keeps its fields as a list until the document is serialized.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from persona_sync.errors import FileFormatError, Location

_BOM = b"\xef\xbb\xbf"
_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")
_TYPE_LINE = b"#TYPE "
_QUOTED = re.compile(rb'"([^"]*(?:""[^"]*)*)"')
# Quotes inside an unquoted field (a"b) are taken as they are, as Excel does.
_UNQUOTED = re.compile(rb'(?:[^,"\r\n][^,\r\n]*)?')
_BLANK_TAIL = re.compile(rb"[\r\n]*\Z")
# Leading or trailing blanks are quoted too, for readers that would trim them.
_NEEDS_QUOTES = re.compile(r'[",\r\n]|\A\s|\s\Z')


class _Fields(NamedTuple):
    """A row split into fields, and the offset just after its line ending."""

    values: list[str]
    quoted: list[bool]
    end: int


class CsvRow:
    """One data row: the line it starts on and its fields by column name."""

    __slots__ = ("_document", "_index", "_start", "_end", "line")

    def __init__(self, document: CsvDocument, index: int, line: int, start: int, end: int) -> None:
        self._document = document
        self._index = index
        self._start = start
        self._end = end
        self.line = line

    def get(self, column: str) -> str:
        """The field in ``column`` (case-insensitive); "" when empty.

        Raises KeyError for a column the header does not have; see ``CsvDocument.has_column``.
        """
        return self._document._fields(self._index)[self._document._position(column)]


class CsvDocument:
    """A parsed CSV file that can set fields, add a column and write itself back."""

    def __init__(self, data: bytes, path: str, header: slice, header_fields: _Fields) -> None:
        self.path = path
        self.columns = header_fields.values
        self.rows: list[CsvRow] = []
        self._data = data
        self._header = header
        self._quote_all = all(header_fields.quoted)
        self._positions = {name.lower(): i for i, name in enumerate(self.columns)}
        self._added = 0  # columns added by add_column, at the end of the header
        self._edited: dict[int, list[str]] = {}
        self._cached: tuple[int, list[str]] | None = None

    def has_column(self, name: str) -> bool:
        """Whether the header has ``name`` (case-insensitive)."""
        return name.lower() in self._positions

    def add_column(self, name: str) -> None:
        """Append ``name`` to the header and an empty field to every row.

        This is the one edit that changes rows that were not set: each gets a trailing empty
        field. Adding a column the header already has does nothing.
        """
        if self.has_column(name):
            return
        self._positions[name.lower()] = len(self.columns)
        self.columns.append(name)
        self._added += 1
        for fields in self._edited.values():
            fields.append("")
        self._cached = None

    def set_value(self, row_index: int, column: str, value: str | None) -> None:
        """Set one field (None means empty), adding the column first if the header lacks it.

        Only that row is rewritten, in the file's quoting style: every field quoted if the
        header is all quoted (Export-Csv), otherwise only fields that need it (csvde).
        Setting the value a field already has changes nothing.
        """
        self.add_column(column)
        fields = self._fields(row_index)
        position = self._positions[column.lower()]
        if fields[position] == (value or ""):
            return
        self._edited[row_index] = fields[:position] + [value or ""] + fields[position + 1 :]
        self._cached = None

    def serialize(self) -> bytes:
        """The document as bytes: the original file with only the edited rows rewritten."""
        if not self._edited and not self._added:
            return self._data
        data = self._data
        parts = [data[: self._header.start]]
        header = data[self._header]
        if self._added:
            added = self.columns[len(self.columns) - self._added :]
            header = _before_line_ending(header, b"".join(b"," + self._field(n) for n in added))
        parts.append(header)
        position = self._header.stop
        padding = (b"," + self._field("")) * self._added
        indices = range(len(self.rows)) if self._added else sorted(self._edited)
        for index in indices:
            row = self.rows[index]
            parts.append(data[position : row._start])
            original = data[row._start : row._end]
            fields = self._edited.get(index)
            if fields is None:
                parts.append(_before_line_ending(original, padding))
            else:
                rendered = b",".join(self._field(value) for value in fields)
                parts.append(rendered + original[len(original.rstrip(b"\r\n")) :])
            position = row._end
        parts.append(data[position:])
        return b"".join(parts)

    def _position(self, column: str) -> int:
        try:
            return self._positions[column.lower()]
        except KeyError:
            raise KeyError(f"{self.path} has no column {column!r}") from None

    def _fields(self, index: int) -> list[str]:
        """A row's fields, one per column; the last row read is cached."""
        edited = self._edited.get(index)
        if edited is not None:
            return edited
        if self._cached is None or self._cached[0] != index:
            row = self.rows[index]
            fields = _RowReader(self._data, self.path).read(row._start, row.line).values
            self._cached = (index, fields + [""] * self._added)
        return self._cached[1]

    def _field(self, value: str) -> bytes:
        # A lone empty field unquoted would be a blank line, which the reader drops at the end.
        if self._quote_all or _NEEDS_QUOTES.search(value) or (not value and len(self.columns) == 1):
            value = '"' + value.replace('"', '""') + '"'
        return value.encode("utf-8")


def parse_csv(data: bytes, path: str) -> CsvDocument:
    """Parse a CSV export with a header row: UTF-8 with or without BOM, LF or CRLF.

    Raises FileFormatError naming the line and column for a row whose field count differs
    from the header's, a quote that is never closed (at the line it opens), text after a
    closing quote, non-UTF-8 bytes, a repeated column name, a missing header or a UTF-16 file.
    """
    if data.startswith(_UTF16_BOMS):
        raise FileFormatError(
            Location(path, 1, 1), "file is UTF-16 encoded; only UTF-8 CSV can be read"
        )
    position = len(_BOM) if data.startswith(_BOM) else 0
    line = 1
    if data.startswith(_TYPE_LINE, position):
        # Windows PowerShell's Export-Csv writes '#TYPE <type name>' above the header.
        newline = data.find(b"\n", position)
        position = len(data) if newline < 0 else newline + 1
        line = 2
    if _BLANK_TAIL.match(data, position):
        raise FileFormatError(Location(path, line, 1), "file has no header row")
    reader = _RowReader(data, path)
    header = reader.read(position, line)
    _check_unique(header.values, path, line)
    document = CsvDocument(data, path, slice(position, header.end), header)
    line += data.count(b"\n", position, header.end)
    position = header.end
    width = len(header.values)
    while position < len(data) and not _BLANK_TAIL.match(data, position):
        row = reader.read(position, line)
        if len(row.values) != width:
            noun = "field" if len(row.values) == 1 else "fields"
            raise FileFormatError(
                Location(path, line, 1), f"row has {len(row.values)} {noun}, header has {width}"
            )
        document.rows.append(CsvRow(document, len(document.rows), line, position, row.end))
        line += data.count(b"\n", position, row.end)
        position = row.end
    return document


class _RowReader:
    """Splits the row starting at a given offset into fields (RFC 4180, LF or CRLF)."""

    def __init__(self, data: bytes, path: str) -> None:
        self._data = data
        self._path = path

    def read(self, start: int, line: int) -> _Fields:
        """The fields of the row at ``start``, which is on file line ``line``."""
        return self._read_simple(start) or self._read_any(start, line)

    def _read_simple(self, start: int) -> _Fields | None:
        """The fields of a one-line row quoted all (Export-Csv) or not at all (csvde).

        A shortcut for the common shapes: None means "use ``_read_any``", which also finds
        every error, so this accepts nothing ``_read_any`` would reject.
        """
        newline = self._data.find(b"\n", start)
        end = len(self._data) if newline < 0 else newline + 1
        text = self._data[start:newline] if newline >= 0 else self._data[start:]
        if newline >= 0 and text.endswith(b"\r"):
            text = text[:-1]
        if b"\r" in text:
            return None
        try:
            if b'"' not in text:
                values = text.decode("utf-8").split(",")
                return _Fields(values, [False] * len(values), end)
            if len(text) >= 2 and text.startswith(b'"') and text.endswith(b'"'):
                values = text[1:-1].decode("utf-8").split('","')
                if not any('"' in value for value in values):
                    return _Fields(values, [True] * len(values), end)
        except UnicodeDecodeError:
            pass
        return None

    def _read_any(self, start: int, line: int) -> _Fields:
        """The fields of any row, which may span lines; raises on malformed input."""
        data = self._data
        values: list[str] = []
        quoted: list[bool] = []
        position = start
        while True:
            if data.startswith(b'"', position):
                match = _QUOTED.match(data, position)
                if match is None:
                    raise self._error(start, line, position, "opening quote is never closed")
                values.append(self._decode(match, 1, start, line).replace('""', '"'))
                quoted.append(True)
            else:
                match = _UNQUOTED.match(data, position)
                assert match is not None  # it matches the empty string
                values.append(self._decode(match, 0, start, line))
                quoted.append(False)
            position = match.end()
            following = data[position : position + 1]
            if following == b",":
                position += 1
            elif following == b"\n":
                return _Fields(values, quoted, position + 1)
            elif data.startswith(b"\r\n", position):
                return _Fields(values, quoted, position + 2)
            elif not following:
                return _Fields(values, quoted, position)
            elif following == b"\r":
                raise self._error(start, line, position, "carriage return inside an unquoted field")
            else:
                shown = following.decode("utf-8", "replace")
                message = (
                    f"unexpected {shown!r} after a closing quote; "
                    "a quote inside a quoted field must be doubled"
                )
                raise self._error(start, line, position, message)

    def _decode(self, match: re.Match[bytes], group: int, start: int, line: int) -> str:
        raw = match.group(group)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            message = (
                f"byte 0x{raw[exc.start]:02x} is not valid UTF-8; the file must be UTF-8 encoded"
            )
            raise self._error(start, line, match.start(group) + exc.start, message) from None

    def _error(self, start: int, line: int, offset: int, text: str) -> FileFormatError:
        """A FileFormatError at ``offset``, counting lines from the row's ``start``."""
        line_start = max(self._data.rfind(b"\n", start, offset) + 1, start)
        column = len(self._data[line_start:offset].decode("utf-8", "replace")) + 1
        where = Location(self._path, line + self._data.count(b"\n", start, offset), column)
        return FileFormatError(where, text)


def _check_unique(columns: list[str], path: str, line: int) -> None:
    seen: set[str] = set()
    for name in columns:
        if name.lower() in seen:
            raise FileFormatError(
                Location(path, line, 1), f"column {name!r} appears twice in the header"
            )
        seen.add(name.lower())


def _before_line_ending(row: bytes, extra: bytes) -> bytes:
    """``row`` with ``extra`` inserted before its line ending (if it has one)."""
    body = row.rstrip(b"\r\n")
    return body + extra + row[len(body) :]
