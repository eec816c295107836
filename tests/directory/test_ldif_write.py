"""LDIF writing: plain or base64 values, folding, records, round trips and ldapsearch itself."""

from __future__ import annotations

import base64
import subprocess

import pytest
from hypothesis import given
from hypothesis import strategies as st

from persona_sync.directory.ldif import parse_ldif
from persona_sync.directory.ldif_write import format_attribute, format_record
from tests.servers.plugin import require_slapd
from tests.servers.slapd import ADMIN_DN, ADMIN_PASSWORD, SlapdServer


def b64(text: str) -> bytes:
    return base64.b64encode(text.encode("utf-8"))


# -- values ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        "John Doe",
        "Smith, John",
        "#hash at the start",
        "-dash",
        "'quoted'",
        "mid:dle<and>",
        "ends with colon:",
        "double  space inside",
        "~",
        "R&D",
    ],
)
def test_safe_string_is_written_plain(value: str) -> None:
    assert format_attribute("description", value) == f"description: {value}\n".encode()


@pytest.mark.parametrize(
    "value",
    [
        "Zoë",  # non-ASCII
        "李娜",
        " leading space",
        "trailing space ",
        ":leading colon",
        "<leading less-than",
        "line\nbreak",
        "carriage\rreturn",
        "nul\0byte",
        "tab\there",
        "del\x7fchar",
        " ",
    ],
)
def test_unsafe_value_is_base64(value: str) -> None:
    assert format_attribute("description", value) == b"description:: " + b64(value) + b"\n"


def test_empty_value_has_nothing_after_the_colon() -> None:
    assert format_attribute("description", "") == b"description:\n"


def test_dn_line_follows_the_same_rule() -> None:
    assert format_record("CN=Smith\\, John,OU=London,DC=contoso,DC=example", []) == (
        b"dn: CN=Smith\\, John,OU=London,DC=contoso,DC=example\n\n"
    )
    dn = "CN=Jörg Müller,OU=Zürich,DC=contoso,DC=example"
    assert format_record(dn, []) == b"dn:: " + b64(dn) + b"\n\n"


def test_record_is_dn_attributes_in_order_and_a_blank_line() -> None:
    record = format_record(
        "CN=Ada,DC=example", [("objectClass", "top"), ("objectClass", "user"), ("sn", "Lovelace")]
    )
    assert record == b"dn: CN=Ada,DC=example\nobjectClass: top\nobjectClass: user\nsn: Lovelace\n\n"


@pytest.mark.parametrize("name", ["", "bad name", "1abc", "cn:", "-cn", "cn;", "ü"])
def test_invalid_attribute_name_is_refused(name: str) -> None:
    with pytest.raises(ValueError, match="is not a valid LDAP attribute description"):
        format_attribute(name, "x")


@pytest.mark.parametrize("name", ["cn", "msDS-cloudExtensionAttribute1", "cn;lang-de", "2.5.4.3"])
def test_attribute_descriptions_and_oids_are_accepted(name: str) -> None:
    assert format_attribute(name, "x") == f"{name}: x\n".encode()


def test_lone_surrogate_cannot_be_written() -> None:
    with pytest.raises(UnicodeEncodeError):
        format_attribute("cn", "broken \udc80")


# -- folding --------------------------------------------------------------------------------


def test_line_of_76_bytes_is_not_folded() -> None:
    line = format_attribute("description", "x" * (76 - len("description: ")))
    assert line == b"description: " + b"x" * 63 + b"\n"


def test_line_of_77_bytes_is_folded_after_76() -> None:
    line = format_attribute("description", "x" * 64)
    assert line == b"description: " + b"x" * 63 + b"\n x\n"


def test_long_value_folds_into_lines_of_at_most_76_bytes() -> None:
    value = "Senior Vice President, " * 20
    lines = format_attribute("title", value.strip()).split(b"\n")
    assert lines[-1] == b""
    assert all(len(line) == 76 for line in lines[:-2])
    assert all(line.startswith(b" ") for line in lines[1:-1])
    assert b"".join([lines[0], *(line[1:] for line in lines[1:])]) == b"title: " + (
        value.strip().encode()
    )


def test_base64_is_folded_too() -> None:
    value = "Müller " * 30
    lines = format_attribute("cn", value).split(b"\n")[:-1]
    assert max(len(line) for line in lines) == 76
    assert b"".join([lines[0], *(line[1:] for line in lines[1:])]) == b"cn:: " + b64(value)


def test_width_can_match_ldapsearch_default_of_78() -> None:
    line = format_attribute("description", "y" * 200, width=78)
    assert line == b"description: " + b"y" * 65 + b"\n " + b"y" * 77 + b"\n " + b"y" * 58 + b"\n"


def test_width_below_two_is_refused() -> None:
    with pytest.raises(ValueError, match="fold width must be at least 2 bytes, not 1"):
        format_attribute("cn", "x", width=1)


# -- round trips through the project's parser -----------------------------------------------

TEXT = st.text(st.characters(exclude_categories=["Cs"]), max_size=200)
NAMES = st.sampled_from(["cn", "description", "title", "msDS-cloudExtensionAttribute1"])


@given(dn=TEXT.filter(bool), attributes=st.lists(st.tuples(NAMES, TEXT), max_size=6))
def test_any_text_round_trips_through_parse_ldif(
    dn: str, attributes: list[tuple[str, str]]
) -> None:
    data = format_record(dn, attributes) + format_record("CN=second", [("cn", "second")])
    records = parse_ldif(data, "written.ldif").records
    assert [record.dn for record in records] == [dn, "CN=second"]
    for name in {name for name, _ in attributes}:
        assert records[0].values(name) == [value for n, value in attributes if n == name]


# -- against the real ldapsearch ------------------------------------------------------------

PROBE_VALUES = [
    "plain", "x" * 63, "x" * 64, "x" * 65, "x" * 66, "y" * 200, " lead", "trail ", ":colon",
    "<lt", "mid:dle<", "Zoë", "tab\there", "del\x7fx", "a\nb", "#hash", "Smith, John",
    "李娜 " * 30,
]  # fmt: skip


@pytest.mark.servers
@pytest.mark.parametrize("width", [76, 78])
def test_output_is_byte_identical_to_ldapsearch(width: int) -> None:
    """Load values into slapd, print them with ldapsearch -LLL, write the same entries."""
    require_slapd()
    long_cn = "Jörg Müller, " + "z" * 80
    dn = "cn=" + long_cn.replace(",", "\\,") + ",ou=People,dc=example,dc=com"
    lines = [
        f"dn:: {b64(dn).decode()}",
        "objectClass: inetOrgPerson",
        f"cn:: {b64(long_cn).decode()}",
        "sn: Probe",
        *(f"description:: {b64(value).decode()}" for value in PROBE_VALUES),
    ]
    with SlapdServer() as server:
        server.add_ldif("\n".join(lines) + "\n")
        printed = subprocess.run(
            ["ldapsearch", "-LLL", "-x", "-o", f"ldif_wrap={width}", "-H", server.url,
             "-D", ADMIN_DN, "-w", ADMIN_PASSWORD, "-b", server.people_dn, "(sn=Probe)"],
            capture_output=True, env=server.client_env, check=True, timeout=60,
        ).stdout  # fmt: skip
    (record,) = parse_ldif(printed, "ldapsearch.ldif").records
    attributes = [(n, v) for n in record.attribute_names() for v in record.values(n)]
    assert record.values("description") == PROBE_VALUES
    assert format_record(record.dn, attributes, width=width) == printed
