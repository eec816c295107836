"""Read and edit LDIF content files (RFC 2849) so that what was not edited stays byte-identical.

The file-backed directory keeps its entries in the LDIF that ``ldapsearch -LLL`` or Windows
``ldifde -f`` wrote. Users diff that file after a run, so an edit must touch only the lines of
the attribute it sets: comments, folding, line endings, a BOM and blank lines all survive.

Memory layout: the document keeps the file's bytes once and, per record, only its byte span,
first line number and DN. Attribute values are parsed from the span when asked for (the last
record read is cached), so a 40 MB file costs little more than 40 MB. An edited record's new
bytes replace its span when the document is serialized.

Speed: most records are checked by one regular expression over the whole record
(``_WELL_FORMED_RECORD``); only a record it does not accept goes through the line-by-line
parser, which either accepts it too or says exactly which line and column is wrong.

Folding rule of the writer: a line it writes is at most 76 bytes long, continuation lines are
one space plus up to 75 bytes, as ``ldapsearch`` folds. It only writes ASCII (anything else is
base64), so a fold never splits a character. Lines it does not write keep their folding.
"""

from __future__ import annotations

import binascii
import functools
import re
from collections.abc import Collection
from itertools import pairwise
from typing import NamedTuple

from persona_sync.directory.ldif_write import format_attribute
from persona_sync.errors import FileFormatError, Location

_BOM = b"\xef\xbb\xbf"
_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")
_FOLD_WIDTH = 76

# RFC 4512 descriptors and OIDs with options; '_' is tolerated because some exporters use it.
_NAME = rb"[A-Za-z0-9][A-Za-z0-9_.-]*(?:;[A-Za-z0-9_.-]+)*"
_ATTRIBUTE_NAME = re.compile(_NAME)
_BASE64 = rb"(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?"
# A whole unfolded record every line of which the line-by-line parser would accept. It may
# reject more than that parser (leading 'version:', trailing comments, non-UTF-8 comments):
# whatever it rejects, the parser judges. Group 1 is a plain DN, group 2 a base64 DN.
_WELL_FORMED_RECORD = re.compile(
    rb"(?:#[^\n]*\n)*"
    rb"(?i:dn):(?:(?![:<])([^\n]*)|:[ ]*(" + _BASE64 + rb")[ ]*)"
    rb"(?:(?:\n#[^\n]*)*\n(?:(?i:changetype):[ ]*(?i:add)|(?!(?i:dn|changetype):)"
    + _NAME
    + rb":(?:(?![:<])[^\n]*|:[ ]*"
    + _BASE64
    + rb"[ ]*)))*"
)
# The name of each line of an unfolded, already validated record (comments do not match).
_ATTRIBUTE_NAMES = re.compile(rb"^(" + _NAME + rb"):", re.MULTILINE)
_NOT_ATTRIBUTES = ("dn", "changetype")
_RECORD_START = re.compile(rb"^[^# ]", re.MULTILINE)
# RFC 2849 SAFE-STRING, further limited to printable ASCII without a trailing space.
_LEADING_BLANK_LINES = re.compile(rb"(?:\r?\n)+")
_RECORD_SEPARATOR = re.compile(rb"\n(?:\r?\n)+")

# Kinds of logical line inside a record.
_COMMENT = 0
_DN = 1
_CHANGETYPE = 2
_ATTRIBUTE = 3


class _Line(NamedTuple):
    """One logical (unfolded) line of a record and the physical lines it spans."""

    first: int  # index of its first physical line in the parsed chunk
    last: int  # index of its last physical line
    kind: int
    name: str  # attribute description as the file spells it; "" for comments
    value: bytes  # the value, base64-decoded when written with '::'
    text: str | None  # the value as text; None when it is not UTF-8 (binary)


class _ParsedRecord(NamedTuple):
    """The record found in a chunk of physical lines."""

    dn: str
    lines: list[_Line]  # from the dn line to the last non-comment line
    start: int  # physical index of the dn line
    end: int  # physical index of the record's last physical line


class _Chunk(NamedTuple):
    record: _ParsedRecord | None
    saw_version: bool


class _Found(NamedTuple):
    """Where a record lies in its block of lines (offsets into the block)."""

    dn: str
    line: int
    start: int
    end: int


class LdifRecord:
    """One entry of an LDIF file: its DN, where it starts, and its attribute values.

    Values are read from the document on demand, so they reflect any ``set_value``.
    Attribute names are matched case-insensitively, options included (``userCertificate;binary``
    is a different attribute from ``userCertificate``). The DN and ``changetype`` line are not
    attributes.
    """

    __slots__ = ("_document", "_index", "_start", "_end", "dn", "line")

    def __init__(
        self, document: LdifDocument, index: int, dn: str, line: int, start: int, end: int
    ) -> None:
        self._document = document
        self._index = index
        self._start = start
        self._end = end
        self.dn = dn
        self.line = line

    def values(self, attr: str) -> list[str]:
        """Text values of ``attr`` in file order; binary (non-UTF-8) values are left out."""
        texts = []
        for value in self._document._values(self._index, attr):
            try:
                texts.append(value.decode("utf-8"))
            except UnicodeDecodeError:
                continue
        return texts

    def raw_values(self, attr: str) -> list[bytes]:
        """Every value of ``attr`` as bytes, binary ones (objectGUID, objectSid) included."""
        return self._document._values(self._index, attr)

    def first_values(self, wanted: Collection[str]) -> dict[str, str]:
        """The first text value of each wanted attribute (lower-case names), in one pass.

        Much faster than one ``values`` call per attribute when reading many attributes
        of every record; binary values are left out as in ``values``.
        """
        found: dict[str, str] = {}
        lines = _wanted_lines(frozenset(wanted)).findall(self._document._unfolded(self._index))
        for name, is_base64, value in lines:
            key = name.decode("ascii").lower()
            if key in found:
                continue
            raw = (
                binascii.a2b_base64(value.strip(b" "), strict_mode=True)
                if is_base64
                else value.lstrip(b" ")
            )
            try:
                found[key] = raw.decode("utf-8")
            except UnicodeDecodeError:
                continue
        return found

    def is_binary(self, attr: str) -> bool:
        """Whether some value of ``attr`` is not UTF-8 text and so only in ``raw_values``."""
        return len(self.values(attr)) != len(self.raw_values(attr))

    def attribute_names(self) -> list[str]:
        """Attribute names as first spelled in the record, in order, without repeats."""
        seen: dict[str, str] = {}
        for name in _ATTRIBUTE_NAMES.findall(self._document._unfolded(self._index)):
            text = name.decode("ascii")
            if text.lower() not in _NOT_ATTRIBUTES:
                seen.setdefault(text.lower(), text)
        return list(seen.values())


class LdifDocument:
    """A parsed LDIF file that can set attribute values and write itself back."""

    def __init__(self, data: bytes, path: str) -> None:
        self.path = path
        self.records: list[LdifRecord] = []
        self._data = data
        first_newline = data.find(b"\n")
        self._cr = b"\r" if first_newline > 0 and data[first_newline - 1] == 13 else b""
        self._edited: dict[int, bytes] = {}
        self._cached: tuple[int, bytes] | None = None

    def set_value(self, record_index: int, attribute: str, value: str | None) -> None:
        """Make ``value`` the attribute's only value, or remove the attribute when None.

        The new line takes the place of the attribute's first line and keeps the file's
        spelling of its name; a new attribute goes at the end of the record. Setting the
        value an attribute already has alone changes nothing, so the bytes stay as they were.
        Raises ValueError for a name that is not an attribute description, for ``dn`` and
        ``changetype``, and for text that cannot be encoded as UTF-8.
        """
        if not _ATTRIBUTE_NAME.fullmatch(attribute.encode("utf-8", "replace")):
            raise ValueError(f"{attribute!r} is not a valid LDAP attribute name")
        if attribute.lower() in ("dn", "changetype"):
            raise ValueError(f"{attribute!r} cannot be set with set_value")
        parsed = self._parsed(record_index)
        key = attribute.lower()
        matches = [ln for ln in parsed.lines if ln.kind == _ATTRIBUTE and ln.name.lower() == key]
        if value is None and not matches:
            return
        if value is not None and len(matches) == 1 and matches[0].text == value:
            return
        name = matches[0].name if matches else attribute
        new_line = None if value is None else self._format_line(name, value)
        self._edited[record_index] = self._rewrite(
            self._record_bytes(record_index), parsed, key, new_line
        )
        self._cached = None

    def serialize(self) -> bytes:
        """The document as bytes: the original file with only the edited records replaced."""
        if not self._edited:
            return self._data
        parts: list[bytes] = []
        position = 0
        for index in sorted(self._edited):
            record = self.records[index]
            parts.append(self._data[position : record._start])
            parts.append(self._edited[index])
            position = record._end
        parts.append(self._data[position:])
        return b"".join(parts)

    def _record_bytes(self, index: int) -> bytes:
        edited = self._edited.get(index)
        if edited is not None:
            return edited
        record = self.records[index]
        return self._data[record._start : record._end]

    def _unfolded(self, index: int) -> bytes:
        """The record unfolded (see ``_unfold_record``); the last one asked for is cached."""
        if self._cached is None or self._cached[0] != index:
            self._cached = (index, _unfold_record(self._record_bytes(index)))
        return self._cached[1]

    def _values(self, index: int, attr: str) -> list[bytes]:
        """The values of one attribute of a record, base64 decoded."""
        if attr.lower() in _NOT_ATTRIBUTES:
            return []
        values = []
        for is_base64, value in _value_line(attr).findall(self._unfolded(index)):
            if is_base64:
                values.append(binascii.a2b_base64(value.strip(b" "), strict_mode=True))
            else:
                values.append(value.lstrip(b" "))
        return values

    def _parsed(self, index: int) -> _ParsedRecord:
        """The record line by line, with the physical lines each logical line spans."""
        lines = self._record_bytes(index).split(b"\n")
        if lines[-1] == b"":
            lines.pop()
        chunk = _BlockParser(lines, self.records[index].line, self.path).parse(False)
        assert chunk.record is not None  # the span was validated when the file was parsed
        return chunk.record

    def _format_line(self, name: str, value: str) -> bytes:
        """The physical lines of ``name: value`` as :func:`ldif_write.format_attribute`
        writes them (base64 where a reader could misread the value, folded at 76 bytes),
        each ending in the file's CR if any."""
        lines = format_attribute(name, value, width=_FOLD_WIDTH)[:-1]
        return lines.replace(b"\n", self._cr + b"\n") + self._cr

    def _rewrite(
        self, record: bytes, parsed: _ParsedRecord, key: str, new_line: bytes | None
    ) -> bytes:
        """The record's bytes with the attribute ``key`` replaced by ``new_line``."""
        physical = record.split(b"\n")
        unterminated = physical[-1] != b""
        if unterminated:
            # The file ends without a newline; give the last line one while lines move
            # around, then take it off the new last line.
            physical[-1] += self._cr
        else:
            physical.pop()
        out: list[bytes] = []
        for ln in parsed.lines:
            if ln.kind == _ATTRIBUTE and ln.name.lower() == key:
                if new_line is not None:
                    out.append(new_line)
                    new_line = None
                continue
            out.append(b"\n".join(physical[ln.first : ln.last + 1]))
        if new_line is not None:
            out.append(new_line)
        result = b"\n".join(out) + b"\n"
        if unterminated:
            result = result[: -len(self._cr + b"\n")]
        return result


def parse_ldif(data: bytes, path: str) -> LdifDocument:
    """Parse an LDIF file of content records (``ldapsearch -LLL``, ``ldifde -f``).

    Raises FileFormatError naming the line and column for anything it cannot read: a line
    without ':', bad base64, a URL value, a record without a leading ``dn:``, a change record
    other than ``changetype: add``, a continuation line with nothing to continue, non-UTF-8
    text outside base64 values (comments are not checked), or a UTF-16 file.
    """
    if data.startswith(_UTF16_BOMS):
        raise FileFormatError(
            Location(path, 1, 1), "file is UTF-16 encoded; only UTF-8 LDIF can be read"
        )
    document = LdifDocument(data, path)
    position = len(_BOM) if data.startswith(_BOM) else 0
    leading = _LEADING_BLANK_LINES.match(data, position)
    line = 1
    if leading is not None:
        line += leading.group().count(b"\n")
        position = leading.end()
    may_have_version = True
    while position < len(data):
        separator = _RECORD_SEPARATOR.search(data, position)
        block_end = separator.start() if separator is not None else len(data)
        found, saw_version = _find_record(data[position:block_end], line, path, may_have_version)
        may_have_version = may_have_version and not saw_version and found is None
        if found is not None:
            index = len(document.records)
            end = min(position + found.end, len(data))
            record = LdifRecord(document, index, found.dn, found.line, position + found.start, end)
            document.records.append(record)
        if separator is None:
            break
        line += data.count(b"\n", position, separator.end())
        position = separator.end()
    return document


@functools.lru_cache(maxsize=64)
def _wanted_lines(wanted: frozenset[str]) -> re.Pattern[bytes]:
    """Matches only the lines of the wanted attributes, so others cost the regex engine
    a skip, not a Python loop turn."""
    names = b"|".join(re.escape(n.encode("utf-8")) for n in sorted(wanted)) or b"(?!)"
    return re.compile(rb"^(" + names + rb"):(:?)([^\n]*)", re.MULTILINE | re.IGNORECASE)


@functools.lru_cache(maxsize=256)
def _value_line(attr: str) -> re.Pattern[bytes]:
    """Matches the lines of ``attr`` in an unfolded, already validated record."""
    name = re.escape(attr.encode("utf-8"))
    return re.compile(rb"^" + name + rb":(:?)([^\n]*)", re.MULTILINE | re.IGNORECASE)


def _find_record(
    block: bytes, line: int, path: str, version_allowed: bool
) -> tuple[_Found | None, bool]:
    """The record in a block of non-blank lines starting at ``line``, and whether the block
    held the ``version:`` line. Raises FileFormatError when the block is malformed."""
    quick = _well_formed(block)
    if quick is not None:
        dn, skipped = quick
        # The record runs to the end of the block and the newline after it.
        return _Found(dn, line + block.count(b"\n", 0, skipped), skipped, len(block) + 1), False
    lines = block.split(b"\n")
    if lines[-1] == b"":
        lines.pop()  # the newline ending the file
    chunk = _BlockParser(lines, line, path).parse(version_allowed)
    record = chunk.record
    if record is None:
        return None, chunk.saw_version
    start = sum(len(raw) + 1 for raw in lines[: record.start])
    end = sum(len(raw) + 1 for raw in lines[: record.end + 1])
    return _Found(record.dn, line + record.start, start, end), chunk.saw_version


def _unfold_record(block: bytes) -> bytes:
    """The block with line endings made LF and continuation lines joined to their line."""
    unfolded = block.replace(b"\r\n", b"\n").replace(b"\n ", b"")
    return unfolded[:-1] if unfolded[-1:] in (b"\r", b"\n") else unfolded


def _well_formed(block: bytes) -> tuple[str, int] | None:
    """The DN and the DN line's offset when a block is a record in the common shape.

    None means "ask the line-by-line parser", not "malformed".
    """
    unfolded = _unfold_record(block)
    match = _WELL_FORMED_RECORD.fullmatch(unfolded)
    if match is None:
        return None
    try:
        unfolded.decode("utf-8")
        if match.group(2) is not None:
            dn = binascii.a2b_base64(match.group(2), strict_mode=True).decode("utf-8")
        else:
            dn = match.group(1).lstrip(b" ").decode("utf-8")
    except UnicodeDecodeError:
        return None
    if block[:1] != b"#":
        return dn, 0
    start = _RECORD_START.search(block)
    assert start is not None  # the match found a dn line
    return dn, start.start()


class _BlockParser:
    """Line-by-line parser of one block of non-blank lines, exact about where errors are.

    ``lines`` are the block's physical lines split at LF (a CR before it is still there);
    ``line`` is the file line number of the first one.
    """

    def __init__(self, lines: list[bytes], line: int, path: str) -> None:
        self._lines = lines
        self._line = line
        self._path = path

    def parse(self, version_allowed: bool) -> _Chunk:
        """The block's record (None if it holds only comments or the version line)."""
        record_lines: list[_Line] = []
        dn: str | None = None
        start = end = 0
        saw_version = False
        for first, last, text in self._logical_lines():
            if text[:1] == b"#":
                if dn is not None:
                    record_lines.append(_Line(first, last, _COMMENT, "", b"", None))
                continue
            name, value, value_text = self._attribute(first, last, text)
            key = name.lower()
            if dn is None and key == "version" and version_allowed and not saw_version:
                if value_text != "1":
                    message = f"unsupported LDIF version {value_text!r}; only version 1 exists"
                    raise self._error(first, last, 0, message)
                saw_version = True
                continue
            if dn is None:
                if key != "dn":
                    raise self._error(first, last, 0, f"record starts with '{name}:', not 'dn:'")
                if value_text is None:
                    raise self._error(first, last, 0, "DN is not valid UTF-8 after base64 decoding")
                dn, start, kind = value_text, first, _DN
            elif key == "dn":
                message = "second 'dn:' line in one record; separate records with a blank line"
                raise self._error(first, last, 0, message)
            elif key == "changetype":
                if (value_text or "").lower() != "add":
                    message = (
                        f"change records (changetype: {value_text}) are not supported; "
                        "only content records and 'changetype: add' can be read"
                    )
                    raise self._error(first, last, 0, message)
                kind = _CHANGETYPE
            else:
                kind = _ATTRIBUTE
            record_lines.append(_Line(first, last, kind, name, value, value_text))
            end = last
        if dn is None:
            return _Chunk(None, saw_version)
        while record_lines[-1].kind == _COMMENT:
            record_lines.pop()  # trailing comments stay between records
        return _Chunk(_ParsedRecord(dn, record_lines, start, end), saw_version)

    def _logical_lines(self) -> list[tuple[int, int, bytes]]:
        """Continuation lines joined: (first physical index, last physical index, text)."""
        texts = [raw[:-1] if raw[-1:] == b"\r" else raw for raw in self._lines]
        starts: list[int] = []
        for index, text in enumerate(texts):
            if text[:1] != b" ":
                starts.append(index)
            elif not starts:
                raise FileFormatError(
                    Location(self._path, self._line + index, 1),
                    "continuation line (starting with a space) has no line before it to continue",
                )
        starts.append(len(texts))
        logical: list[tuple[int, int, bytes]] = []
        for first, after in pairwise(starts):
            # RFC 2849: a continuation line's first space is not part of the value.
            joined = texts[first] + b"".join(text[1:] for text in texts[first + 1 : after])
            logical.append((first, after - 1, joined))
        return logical

    def _attribute(self, first: int, last: int, text: bytes) -> tuple[str, bytes, str | None]:
        """(name, value bytes, value text or None when binary) of a non-comment line."""
        colon = text.find(b":")
        if colon < 0:
            raise self._error(first, last, 0, "line has no ':' separating attribute and value")
        name = text[:colon]
        if not _ATTRIBUTE_NAME.fullmatch(name):
            shown = name.decode("utf-8", "replace")
            raise self._error(first, last, 0, f"{shown!r} is not a valid attribute name")
        rest = text[colon + 1 :]
        if rest[:1] == b"<":
            raise self._error(first, last, colon + 1, "URL values (:<) are not supported")
        if rest[:1] == b":":
            encoded = rest[1:].lstrip(b" ")
            try:
                value = binascii.a2b_base64(encoded.rstrip(b" "), strict_mode=True)
            except binascii.Error:
                offset = len(text) - len(encoded)
                raise self._error(first, last, offset, "value is not valid base64") from None
            try:
                return name.decode("ascii"), value, value.decode("utf-8")
            except UnicodeDecodeError:
                return name.decode("ascii"), value, None
        value = rest.lstrip(b" ")
        try:
            return name.decode("ascii"), value, value.decode("utf-8")
        except UnicodeDecodeError as exc:
            message = (
                f"byte 0x{value[exc.start]:02x} is not valid UTF-8; the file must be UTF-8 "
                "and binary values base64-encoded ('attr:: ...')"
            )
            raise self._error(first, last, len(text) - len(value) + exc.start, message) from None

    def _error(self, first: int, last: int, offset: int, text: str) -> FileFormatError:
        """A FileFormatError at byte ``offset`` of the unfolded line spanning first..last."""
        for index in range(first, last + 1):
            raw = self._lines[index]
            physical = raw[:-1] if raw[-1:] == b"\r" else raw
            skip = 0 if index == first else 1  # the folding space is not part of the text
            if offset < len(physical) - skip or index == last:
                column = len(physical[: skip + offset].decode("utf-8", "replace")) + 1
                return FileFormatError(Location(self._path, self._line + index, column), text)
            offset -= len(physical) - skip
        raise AssertionError("unreachable: a logical line spans at least one physical line")
