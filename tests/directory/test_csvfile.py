"""CSV reading and editing: byte-exact round trips, quoting styles and located errors."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from persona_sync.directory.csvfile import CsvDocument, parse_csv
from persona_sync.errors import FileFormatError

# Windows PowerShell 5.1: Export-Csv -Encoding UTF8 (BOM, #TYPE line, every field quoted, CRLF).
EXPORT_CSV = (
    b"\xef\xbb\xbf#TYPE System.Management.Automation.PSCustomObject\r\n"
    b'"DistinguishedName","SamAccountName","Title","Description"\r\n'
    b'"CN=Smith\\, John,OU=Sales,DC=example,DC=com","jsmith","Sales ""Lead""",""\r\n'
    b'"CN=M\xc3\xbcller\\, J\xc3\xb6rg,OU=Z\xc3\xbcrich,DC=example,DC=com","jmuller","Engineer",'
    b'"first line\r\nsecond line"\r\n'
)

# csvde -f: header unquoted, fields quoted only when needed, no BOM.
CSVDE = (
    b"DN,objectClass,sAMAccountName,mail,title\r\n"
    b'"CN=Smith\\, John,OU=Sales,DC=example,DC=com",user,jsmith,jsmith@example.com,\r\n'
    b'"CN=Team \\+ Lead,OU=Sales,DC=example,DC=com",user,tlead,,"Lead, Sales"\r\n'
    b"\r\n"
)


def doc(data: bytes) -> CsvDocument:
    return parse_csv(data, "dir.csv")


def error_of(data: bytes) -> str:
    with pytest.raises(FileFormatError) as caught:
        parse_csv(data, "dir.csv")
    return caught.value.message


@pytest.mark.parametrize(
    "data",
    [
        EXPORT_CSV,
        CSVDE,
        EXPORT_CSV.replace(b"\r\n", b"\n"),
        b"a,b\n1,2",
        b"a,b\n",
        b"a,b",
        b'"only"\n""\nx\n\n\n',
        b'#TYPE Selected.Microsoft.ActiveDirectory.Management.ADUser\n"a"\n"1"\n',
    ],
    ids=[
        "export-csv",
        "csvde",
        "export-csv-lf",
        "no-final-newline",
        "header-only",
        "header-without-newline",
        "one-column-blank-tail",
        "type-line-lf",
    ],
)
def test_parse_then_serialize_gives_back_the_same_bytes(data: bytes) -> None:
    assert doc(data).serialize() == data


def test_export_csv_fields_and_lines() -> None:
    document = doc(EXPORT_CSV)
    assert document.columns == ["DistinguishedName", "SamAccountName", "Title", "Description"]
    assert document.has_column("samaccountname")
    assert not document.has_column("mail")
    smith, muller = document.rows
    assert (smith.line, muller.line) == (3, 4)
    assert smith.get("distinguishedname") == "CN=Smith\\, John,OU=Sales,DC=example,DC=com"
    assert smith.get("TITLE") == 'Sales "Lead"'
    assert smith.get("Description") == ""
    assert muller.get("DistinguishedName") == "CN=Müller\\, Jörg,OU=Zürich,DC=example,DC=com"
    assert muller.get("Description") == "first line\r\nsecond line"


def test_csvde_fields_and_trailing_blank_line() -> None:
    document = doc(CSVDE)
    assert len(document.rows) == 2
    smith, lead = document.rows
    assert smith.get("title") == ""
    assert lead.get("mail") == ""
    assert lead.get("title") == "Lead, Sales"
    assert lead.get("dn") == "CN=Team \\+ Lead,OU=Sales,DC=example,DC=com"


def test_get_of_an_unknown_column_is_a_key_error() -> None:
    with pytest.raises(KeyError) as caught:
        doc(CSVDE).rows[0].get("persona")
    assert caught.value.args == ("dir.csv has no column 'persona'",)


def test_set_value_in_an_all_quoted_file_quotes_the_row() -> None:
    document = doc(EXPORT_CSV)
    document.set_value(0, "title", "Manager")
    assert document.serialize() == EXPORT_CSV.replace(
        b'"jsmith","Sales ""Lead""",""', b'"jsmith","Manager",""'
    )
    assert document.rows[0].get("Title") == "Manager"


def test_set_value_in_a_csvde_file_quotes_only_when_needed() -> None:
    document = doc(CSVDE)
    document.set_value(0, "title", 'Sales, "Lead"')
    document.set_value(1, "title", None)
    assert document.serialize() == (
        b"DN,objectClass,sAMAccountName,mail,title\r\n"
        b'"CN=Smith\\, John,OU=Sales,DC=example,DC=com",user,jsmith,jsmith@example.com,'
        b'"Sales, ""Lead"""\r\n'
        b'"CN=Team \\+ Lead,OU=Sales,DC=example,DC=com",user,tlead,,\r\n'
        b"\r\n"
    )


@pytest.mark.parametrize(
    ("value", "field"),
    [
        ("plain", b"plain"),
        ("", b""),
        ("with,comma", b'"with,comma"'),
        ('say "hi"', b'"say ""hi"""'),
        ("two\nlines", b'"two\nlines"'),
        (" padded ", b'" padded "'),
        ("Zürich", "Zürich".encode()),
    ],
)
def test_csvde_style_quotes_what_needs_it(value: str, field: bytes) -> None:
    document = doc(b"a,b\nx,y\n")
    document.set_value(0, "b", value)
    assert document.serialize() == b"a,b\nx," + field + b"\n"


def test_adding_a_column_appends_an_empty_field_to_every_row() -> None:
    document = doc(EXPORT_CSV)
    document.set_value(1, "persona", "engineer")
    assert document.columns[-1] == "persona"
    assert document.serialize() == (
        b"\xef\xbb\xbf#TYPE System.Management.Automation.PSCustomObject\r\n"
        b'"DistinguishedName","SamAccountName","Title","Description","persona"\r\n'
        b'"CN=Smith\\, John,OU=Sales,DC=example,DC=com","jsmith","Sales ""Lead""","",""\r\n'
        b'"CN=M\xc3\xbcller\\, J\xc3\xb6rg,OU=Z\xc3\xbcrich,DC=example,DC=com","jmuller",'
        b'"Engineer","first line\r\nsecond line","engineer"\r\n'
    )
    assert document.rows[0].get("persona") == ""


def test_adding_a_column_in_a_csvde_file_and_without_final_newline() -> None:
    document = doc(b"a,b\r\n1,2\r\n3,4")
    document.set_value(0, "b", "two")
    document.add_column("Persona")
    document.add_column("persona")  # already there: nothing happens
    document.set_value(1, "PERSONA", "p")
    assert document.serialize() == b"a,b,Persona\r\n1,two,\r\n3,4,p"


def test_edits_leave_other_rows_byte_identical() -> None:
    document = doc(CSVDE)
    document.set_value(1, "mail", "tlead@example.com")
    document.set_value(0, "mail", "jsmith@example.com")  # the value it has: no change
    assert document.serialize() == CSVDE.replace(b"tlead,,", b"tlead,tlead@example.com,")


def test_one_column_file_writes_an_empty_value_quoted() -> None:
    document = doc(b"a\nx\n")
    document.set_value(0, "a", "")
    assert document.serialize() == b'a\n""\n'
    assert doc(document.serialize()).rows[0].get("a") == ""


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"a,b,c\n1,2,3\n1,2,3,4,5\n", "dir.csv:3:1: row has 5 fields, header has 3"),
        (b"a,b,c\n1,2,3\n\n4,5,6\n", "dir.csv:3:1: row has 1 field, header has 3"),
        (
            b'a,b\n1,"two\nlines"\n3,"never closed\n4,5\n',
            "dir.csv:4:3: opening quote is never closed",
        ),
        (
            b'a,b\n1,"quoted"tail\n',
            "dir.csv:2:11: unexpected 't' after a closing quote; a quote inside a quoted "
            "field must be doubled",
        ),
        (b"a,b\n1,2\r3\n", "dir.csv:2:4: carriage return inside an unquoted field"),
        (
            b"a,b\n1,caf\xe9\n",
            "dir.csv:2:6: byte 0xe9 is not valid UTF-8; the file must be UTF-8 encoded",
        ),
        (
            b'\xef\xbb\xbfa,b\n1,"M\xc3\xbcller\nZ\xc3\xbcr\xe9"\n',
            "dir.csv:3:4: byte 0xe9 is not valid UTF-8; the file must be UTF-8 encoded",
        ),
        (b"Mail,mail\n", "dir.csv:1:1: column 'mail' appears twice in the header"),
        (b"", "dir.csv:1:1: file has no header row"),
        (b"\xef\xbb\xbf\r\n", "dir.csv:1:1: file has no header row"),
        (b"#TYPE System.Object\r\n", "dir.csv:2:1: file has no header row"),
        (b"\xff\xfea\x00", "dir.csv:1:1: file is UTF-16 encoded; only UTF-8 CSV can be read"),
    ],
    ids=[
        "too-many-fields",
        "blank-line-inside",
        "unterminated-quote",
        "text-after-quote",
        "stray-cr",
        "latin1",
        "latin1-in-multiline-field",
        "duplicate-column",
        "empty",
        "bom-and-blank",
        "type-line-only",
        "utf-16",
    ],
)
def test_malformed_files_are_reported_with_their_location(data: bytes, message: str) -> None:
    assert error_of(data) == message


# -- properties ---------------------------------------------------------------------------

TEXT = st.text(st.characters(codec="utf-8"), max_size=60)


@settings(max_examples=300)
@given(
    value=TEXT,
    data=st.sampled_from([EXPORT_CSV, CSVDE, b"a\nx\n", b"a,b\n1,2"]),
    column=st.sampled_from(["Title", "persona", "a"]),
)
def test_any_value_survives_set_value_serialize_parse(value: str, data: bytes, column: str) -> None:
    document = doc(data)
    document.set_value(0, column, value)
    written = document.serialize()
    again = doc(written)
    assert again.rows[0].get(column) == value
    assert len(again.rows) == len(document.rows)
    if data in (EXPORT_CSV, CSVDE) and column == "Title":
        # The second row is untouched byte for byte when no column was added.
        assert written.endswith(data[data.rindex(b'"CN=') :])


CSV_PIECES = st.sampled_from(
    [b"a", b",", b'"', b'""', b"\n", b"\r\n", b"\r", b"\xe9", b"\xc3\xa9", b" ", b"#TYPE x"]
)


@settings(max_examples=500)
@given(pieces=st.lists(CSV_PIECES, max_size=16))
def test_any_input_either_round_trips_or_raises_file_format_error(pieces: list[bytes]) -> None:
    data = b"".join(pieces)
    try:
        document = doc(data)
    except FileFormatError as error:
        assert error.location is not None
        return
    assert document.serialize() == data
    for index, row in enumerate(document.rows):
        for column in document.columns:
            row.get(column)
        document.set_value(index, "persona", "p,\n")
    assert [row.get("persona") for row in doc(document.serialize()).rows] == ["p,\n"] * len(
        document.rows
    )
