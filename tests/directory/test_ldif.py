"""LDIF reading and editing: byte-exact round trips, values, edits and located errors."""

from __future__ import annotations

import base64
import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from persona_sync.directory.ldif import LdifDocument, parse_ldif
from persona_sync.errors import FileFormatError

LDAPSEARCH = b"""\
dn: uid=jdoe,ou=People,dc=example,dc=com
objectClass: inetOrgPerson
objectClass: posixAccount
uid: jdoe
cn: John Doe
description: A very long description that ldapsearch folds because it is longer
  than seventy-six columns
mail: jdoe@example.com

dn: uid=mmuller,ou=People,dc=example,dc=com
cn:: TcO8bGxlciwgSsO2cmc=
sn: M\xc3\xbcller
userCertificate;binary:: MIIBswABAgMEBQYHCAkKCwwNDg8QERITFBUWFxgZGhscHR4fICE
 iIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj9AQUJDREVGR0hJSktMTU5PUFFSU1RVVldYWV
 pbXF1eXw==
"""

# ldifde -f: CRLF, a blank first line, changetype lines, binary GUID and SID.
LDIFDE = (
    b"\r\n"
    b"dn: CN=Smith\\, John,OU=Sales,DC=example,DC=com\r\n"
    b"changetype: add\r\n"
    b"objectClass: top\r\n"
    b"objectClass: user\r\n"
    b"cn: Smith, John\r\n"
    b"objectGUID:: /xmWb4aLEdC0LQDAT8lk/w==\r\n"
    b"objectSid:: AQUAAAAAAAUVAAAAoGXPfnhLm1/nfIdwCRwBAA==\r\n"
    b"sAMAccountName: jsmith\r\n"
    b"\r\n"
    b"dn:: Q049TcO8bGxlclwsIErDtnJnLE9VPVrDvHJpY2gsREM9ZXhhbXBsZSxEQz1jb20=\r\n"
    b"changetype: add\r\n"
    b"sAMAccountName: jmuller\r\n"
    b"\r\n"
)

AWKWARD = (
    b"\xef\xbb\xbf# Exported for persona-sync tests\n"
    b"# a folded comment that goes on\n"
    b"  and on\n"
    b"version: 1\n"
    b"\n"
    b"\n"
    b"# search result for the first entry\n"
    b'dn: CN=Team \\+ Lead,OU=\\"Quoted\\",DC=example,DC=com\n'
    b"cn: Team + Lead\n"
    b"# a comment inside the record\n"
    b"title:   padded leading spaces are FILL\n"
    b"empty:\n"
    b"emptyBase64::\n"
    b"trailing: kept as written \n"
    b"# a comment after the record\n"
    b"\n"
    b"\n"
    b"\n"
    b"dn: CN=M\xc3\xbcller\\, J\xc3\xb6rg,OU=Z\xc3\xbcrich,DC=example,DC=com\n"
    b"cn: M\xc3\xbcller, J\xc3\xb6rg\n"
    b"sn: M\xc3\xbcller"
)


def doc(data: bytes) -> LdifDocument:
    return parse_ldif(data, "dir.ldif")


def error_of(data: bytes) -> str:
    with pytest.raises(FileFormatError) as caught:
        parse_ldif(data, "dir.ldif")
    return caught.value.message


@pytest.mark.parametrize(
    "data",
    [
        LDAPSEARCH,
        LDIFDE,
        AWKWARD,
        LDAPSEARCH.replace(b"\n", b"\r\n"),
        b"",
        b"\xef\xbb\xbf",
        b"\n\n# only a comment\n",
        b"version: 1\n",
        b"dn: cn=a\ncn: a",
        b"dn: cn=a\r\ncn: a\r\n\r\n\r\n",
    ],
    ids=[
        "ldapsearch",
        "ldifde",
        "awkward",
        "ldapsearch-crlf",
        "empty",
        "bom-only",
        "comment-only",
        "version-only",
        "no-final-newline",
        "crlf-trailing-blank-lines",
    ],
)
def test_parse_then_serialize_gives_back_the_same_bytes(data: bytes) -> None:
    assert doc(data).serialize() == data


def test_records_report_dn_start_line_and_values() -> None:
    records = doc(LDAPSEARCH).records
    assert [(r.dn, r.line) for r in records] == [
        ("uid=jdoe,ou=People,dc=example,dc=com", 1),
        ("uid=mmuller,ou=People,dc=example,dc=com", 10),
    ]
    jdoe, muller = records
    assert jdoe.values("objectclass") == ["inetOrgPerson", "posixAccount"]
    assert jdoe.values("DESCRIPTION") == [
        "A very long description that ldapsearch folds because it is longer"
        " than seventy-six columns"
    ]
    assert jdoe.attribute_names() == ["objectClass", "uid", "cn", "description", "mail"]
    assert jdoe.values("telephoneNumber") == []
    assert muller.values("cn") == ["Müller, Jörg"]
    assert muller.values("sn") == ["Müller"]
    assert muller.values("userCertificate") == []
    assert muller.raw_values("usercertificate;BINARY") == [b"\x30\x82\x01\xb3" + bytes(range(96))]


def test_ldifde_export_reads_binary_values_and_dns() -> None:
    smith, muller = doc(LDIFDE).records
    assert smith.dn == "CN=Smith\\, John,OU=Sales,DC=example,DC=com"
    assert smith.line == 2
    guid = uuid.UUID("6f9619ff-8b86-d011-b42d-00c04fc964ff")
    assert smith.raw_values("objectGUID") == [guid.bytes_le]
    assert smith.is_binary("objectGUID")
    assert smith.values("objectGUID") == []
    assert smith.raw_values("objectSid")[0].startswith(b"\x01\x05\x00\x00")
    assert smith.values("cn") == ["Smith, John"]
    assert not smith.is_binary("cn")
    assert smith.raw_values("cn") == [b"Smith, John"]
    assert smith.values("changetype") == []
    assert "changetype" not in [name.lower() for name in smith.attribute_names()]
    assert muller.dn == "CN=Müller\\, Jörg,OU=Zürich,DC=example,DC=com"
    assert muller.line == 11


def test_awkward_file_values_follow_rfc_2849() -> None:
    team, muller = doc(AWKWARD).records
    assert team.dn == 'CN=Team \\+ Lead,OU=\\"Quoted\\",DC=example,DC=com'
    assert team.line == 8
    assert team.values("title") == ["padded leading spaces are FILL"]
    assert team.values("empty") == [""]
    assert team.values("emptyBase64") == [""]
    assert team.values("trailing") == ["kept as written "]
    assert team.attribute_names() == ["cn", "title", "empty", "emptyBase64", "trailing"]
    assert muller.dn == "CN=Müller\\, Jörg,OU=Zürich,DC=example,DC=com"
    assert muller.line == 19
    assert muller.values("sn") == ["Müller"]


def test_set_value_replaces_one_line_and_keeps_the_files_spelling() -> None:
    document = doc(LDAPSEARCH)
    document.set_value(0, "MAIL", "john.doe@example.com")
    assert document.serialize() == LDAPSEARCH.replace(
        b"mail: jdoe@example.com", b"mail: john.doe@example.com"
    )
    assert document.records[0].values("mail") == ["john.doe@example.com"]


def test_set_value_replaces_all_values_at_the_first_ones_place() -> None:
    document = doc(LDAPSEARCH)
    document.set_value(0, "objectClass", "person")
    assert document.serialize() == LDAPSEARCH.replace(
        b"objectClass: inetOrgPerson\nobjectClass: posixAccount\n", b"objectClass: person\n"
    )


def test_set_value_replaces_a_folded_line_with_its_new_folding() -> None:
    document = doc(LDAPSEARCH)
    document.set_value(0, "description", "short")
    expected = LDAPSEARCH.replace(
        b"description: A very long description that ldapsearch folds because it is longer\n"
        b"  than seventy-six columns\n",
        b"description: short\n",
    )
    assert document.serialize() == expected


def test_set_value_appends_a_new_attribute_at_the_end_of_the_record() -> None:
    document = doc(AWKWARD)
    document.set_value(0, "employeeType", "it-admin")
    assert document.serialize() == AWKWARD.replace(
        b"trailing: kept as written \n", b"trailing: kept as written \nemployeeType: it-admin\n"
    )
    assert document.records[0].attribute_names()[-1] == "employeeType"


def test_set_value_on_the_last_record_keeps_the_missing_final_newline() -> None:
    document = doc(AWKWARD)
    document.set_value(1, "employeeType", "field")
    assert document.serialize() == AWKWARD + b"\nemployeeType: field"
    document.set_value(1, "sn", None)
    assert document.serialize().endswith(b"cn: M\xc3\xbcller, J\xc3\xb6rg\nemployeeType: field")


def test_set_value_in_a_crlf_file_writes_crlf() -> None:
    document = doc(LDIFDE)
    document.set_value(1, "employeeType", "sales")
    document.set_value(0, "cn", "Smith, Jon")
    assert document.serialize() == LDIFDE.replace(
        b"cn: Smith, John\r\n", b"cn: Smith, Jon\r\n"
    ).replace(b"sAMAccountName: jmuller\r\n", b"sAMAccountName: jmuller\r\nemployeeType: sales\r\n")


def test_set_value_crlf_without_final_newline() -> None:
    data = b"dn: cn=a\r\ncn: a"
    document = doc(data)
    document.set_value(0, "sn", "b")
    assert document.serialize() == b"dn: cn=a\r\ncn: a\r\nsn: b"


def test_set_value_none_removes_every_line_of_the_attribute() -> None:
    document = doc(LDAPSEARCH)
    document.set_value(0, "objectclass", None)
    document.set_value(0, "notThere", None)
    assert document.serialize() == LDAPSEARCH.replace(
        b"objectClass: inetOrgPerson\nobjectClass: posixAccount\n", b""
    )
    assert document.records[0].values("objectClass") == []


def test_setting_the_value_already_there_changes_no_byte() -> None:
    document = doc(LDAPSEARCH)
    document.set_value(1, "cn", "Müller, Jörg")  # stored as base64 in the file
    document.set_value(0, "uid", "jdoe")
    assert document.serialize() == LDAPSEARCH


@pytest.mark.parametrize(
    ("value", "line"),
    [
        ("plain value", b"persona: plain value"),
        ("", b"persona:"),
        (" leading space", b"persona:: IGxlYWRpbmcgc3BhY2U="),
        ("trailing space ", b"persona:: dHJhaWxpbmcgc3BhY2Ug"),
        (":colon", b"persona:: OmNvbG9u"),
        ("<angle", b"persona:: PGFuZ2xl"),
        ("Zürich", b"persona:: WsO8cmljaA=="),
        ("two\nlines", b"persona:: dHdvCmxpbmVz"),
        ("tab\there", b"persona:: dGFiCWhlcmU="),
        ("inner: colon < and space", b"persona: inner: colon < and space"),
    ],
)
def test_values_that_rfc_2849_cannot_write_plainly_are_base64(value: str, line: bytes) -> None:
    document = doc(b"dn: cn=a\ncn: a\n")
    document.set_value(0, "persona", value)
    assert document.serialize() == b"dn: cn=a\ncn: a\n" + line + b"\n"
    assert doc(document.serialize()).records[0].values("persona") == [value]


def test_long_values_are_folded_at_76_columns() -> None:
    document = doc(b"dn: cn=a\n")
    document.set_value(0, "description", "x" * 200)
    lines = document.serialize().split(b"\n")
    assert lines == [
        b"dn: cn=a",
        b"description: " + b"x" * 63,
        b" " + b"x" * 75,
        b" " + b"x" * 62,
        b"",
    ]
    assert doc(document.serialize()).records[0].values("description") == ["x" * 200]


def test_edits_leave_every_other_record_byte_identical() -> None:
    document = doc(LDIFDE + LDAPSEARCH.replace(b"\n", b"\r\n"))
    before = document.serialize()
    document.set_value(2, "mail", "new@example.com")
    after = document.serialize()
    assert after == before.replace(b"mail: jdoe@example.com", b"mail: new@example.com")


@pytest.mark.parametrize(
    ("attribute", "message"),
    [
        ("dn", "'dn' cannot be set with set_value"),
        ("changeType", "'changeType' cannot be set with set_value"),
        ("bad name", "'bad name' is not a valid LDAP attribute name"),
        ("", "'' is not a valid LDAP attribute name"),
    ],
)
def test_set_value_refuses_what_is_not_an_attribute(attribute: str, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        doc(LDAPSEARCH).set_value(0, attribute, "x")
    assert str(caught.value) == message


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            b"dn: cn=a\ncn: a\nthis line has no separator\n",
            "dir.ldif:3:1: line has no ':' separating attribute and value",
        ),
        (b"dn: cn=a\ncn:: bm90IGJhc2U2NA=\n", "dir.ldif:2:6: value is not valid base64"),
        (b"dn: cn=a\ncn::  !!!!\n", "dir.ldif:2:7: value is not valid base64"),
        (
            b"dn: cn=a\njpegPhoto:< file:///tmp/photo.jpg\n",
            "dir.ldif:2:11: URL values (:<) are not supported",
        ),
        (
            b"dn: cn=a\ncn: a\n\ncn: b\ndn: cn=b\n",
            "dir.ldif:4:1: record starts with 'cn:', not 'dn:'",
        ),
        (
            b" dn: cn=a\n",
            "dir.ldif:1:1: continuation line (starting with a space) has no line before it "
            "to continue",
        ),
        (
            b"dn: cn=a\n\n continued\n",
            "dir.ldif:3:1: continuation line (starting with a space) has no line before it "
            "to continue",
        ),
        (
            b"dn: cn=a\ncn: caf\xe9\n",
            "dir.ldif:2:8: byte 0xe9 is not valid UTF-8; the file must be UTF-8 and binary "
            "values base64-encoded ('attr:: ...')",
        ),
        (
            b"dn: cn=a\ndescription: Z\xc3\xbcrich and\n  caf\xe9\n",
            "dir.ldif:3:6: byte 0xe9 is not valid UTF-8; the file must be UTF-8 and binary "
            "values base64-encoded ('attr:: ...')",
        ),
        (
            b"\xef\xbb\xbfdn: cn=\xff\n",
            "dir.ldif:1:8: byte 0xff is not valid UTF-8; the file must be UTF-8 and binary "
            "values base64-encoded ('attr:: ...')",
        ),
        (
            b"dn: cn=a\nchangetype: modify\nreplace: cn\ncn: b\n-\n",
            "dir.ldif:2:1: change records (changetype: modify) are not supported; only "
            "content records and 'changetype: add' can be read",
        ),
        (
            b"dn: cn=a\ncn: a\ndn: cn=b\n",
            "dir.ldif:3:1: second 'dn:' line in one record; separate records with a blank line",
        ),
        (
            b"version: 2\n\ndn: cn=a\n",
            "dir.ldif:1:1: unsupported LDIF version '2'; only version 1 exists",
        ),
        (
            b"dn: cn=a\n\nversion: 1\n",
            "dir.ldif:3:1: record starts with 'version:', not 'dn:'",
        ),
        (b"dn:: /w==\n", "dir.ldif:1:1: DN is not valid UTF-8 after base64 decoding"),
        (b"dn: cn=a\ngiven name: a\n", "dir.ldif:2:1: 'given name' is not a valid attribute name"),
        (
            b"\xff\xfed\x00n\x00",
            "dir.ldif:1:1: file is UTF-16 encoded; only UTF-8 LDIF can be read",
        ),
    ],
    ids=[
        "no-colon",
        "bad-padding",
        "bad-characters",
        "url",
        "no-dn",
        "continuation-at-start",
        "continuation-after-blank",
        "latin1",
        "latin1-in-folded-line",
        "bom-then-bad-byte",
        "changetype-modify",
        "missing-separator",
        "version-2",
        "late-version",
        "binary-dn",
        "space-in-name",
        "utf-16",
    ],
)
def test_malformed_files_are_reported_with_their_location(data: bytes, message: str) -> None:
    assert error_of(data) == message


def test_error_line_numbers_count_from_the_start_of_the_file() -> None:
    data = LDIFDE + b"dn: cn=x\r\nbroken\r\n"
    assert error_of(data) == "dir.ldif:16:1: line has no ':' separating attribute and value"


def test_records_in_the_usual_shape_and_others_agree() -> None:
    # A record with a trailing comment goes through the line-by-line parser; the same
    # record without it through the whole-record check. Both must give the same answers.
    plain = b"# lead\ndn: cn=a\ncn: a\nsn:: Yg==\n"
    commented = plain + b"# trailing\n"
    for data in (plain, commented):
        (record,) = doc(data).records
        assert (record.dn, record.line, record.values("cn"), record.values("sn")) == (
            "cn=a",
            2,
            ["a"],
            ["b"],
        )
    document = doc(commented)
    document.set_value(0, "cn", "z")
    assert document.serialize() == b"# lead\ndn: cn=a\ncn: z\nsn:: Yg==\n# trailing\n"


# -- properties ---------------------------------------------------------------------------

TEXT = st.text(st.characters(codec="utf-8"), max_size=120)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(value=TEXT, crlf=st.booleans(), attribute=st.sampled_from(["cn", "persona", "CN"]))
def test_any_value_survives_set_value_serialize_parse(
    value: str, crlf: bool, attribute: str
) -> None:
    data = LDAPSEARCH.replace(b"\n", b"\r\n") if crlf else LDAPSEARCH
    document = doc(data)
    document.set_value(0, attribute, value)
    written = document.serialize()
    again = doc(written)
    assert again.records[0].values(attribute) == [value]
    assert again.records[0].raw_values(attribute) == [value.encode("utf-8")]
    # The second record is untouched, byte for byte.
    second = data.index(b"dn: uid=mmuller")
    assert written.endswith(data[second:])
    assert again.serialize() == written


LDIF_PIECES = st.sampled_from(
    [
        b"dn: cn=a",
        b"dn:: Y249YQ==",
        b"cn: x",
        b"cn:: eA==",
        b"cn:: !",
        b"cn:< f",
        b"# c",
        b" fold",
        b"  ",
        b"",
        b"\r",
        b"changetype: add",
        b"changetype: delete",
        b"version: 1",
        b"garbage",
        b"\xc3\xa9",
        b"\xe9",
        b"dn;x: y",
        b":",
        b"cn:\x00",
        b"\xef\xbb\xbf",
    ]
)


@settings(max_examples=500)
@given(pieces=st.lists(LDIF_PIECES, max_size=12), separator=st.sampled_from([b"\n", b"\r\n"]))
def test_any_input_either_round_trips_or_raises_file_format_error(
    pieces: list[bytes], separator: bytes
) -> None:
    data = separator.join(pieces)
    try:
        document = doc(data)
    except FileFormatError as error:
        assert error.location is not None
        return
    assert document.serialize() == data
    for index, record in enumerate(document.records):
        for name in record.attribute_names():
            assert len(record.raw_values(name)) >= 1
        document.set_value(index, "persona", "p")
    for record in doc(document.serialize()).records:
        assert record.values("persona") == ["p"]


def test_base64_dn_and_value_decode() -> None:
    dn = "CN=Müller\\, Jörg,OU=Zürich,DC=example,DC=com"
    encoded = base64.b64encode(dn.encode()).decode()
    (record,) = doc(f"dn:: {encoded}\ncn: x\n".encode()).records
    assert record.dn == dn
