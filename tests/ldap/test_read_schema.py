"""Attribute type definitions (RFC 4512) parsed by tokens, so a keyword inside a quoted
DESC is text; checked on hand-written definitions and on everything a real slapd publishes."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import closing
from pathlib import Path

import pytest

from persona_sync.config import LdapDirectoryConfig
from persona_sync.directory.ldap import LdapDirectory
from persona_sync.directory.ldap_conn import AttributeType
from persona_sync.errors import ConfigError
from persona_sync.secrets import Secret
from tests.servers.slapd import PERSONA_OID_ARC, SlapdServer

TRICKY = (
    f"attributetype ( {PERSONA_OID_ARC}.1.90 NAME 'personaNotes'\n"
    "    DESC 'several values; not SINGLE-VALUE, whatever this says'\n"
    "    EQUALITY caseIgnoreMatch\n"
    "    SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 )\n"
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "( 1.2.3 NAME 'notes' DESC 'not SINGLE-VALUE' SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 )",
            AttributeType("1.2.3", ("notes",), False, "1.3.6.1.4.1.1466.115.121.1.15"),
        ),
        (
            "( 1.2.4 NAME ( 'givenName' 'gn' ) SUP name SINGLE-VALUE X-ORIGIN ( 'a' 'b' ) )",
            AttributeType("1.2.4", ("givenName", "gn"), True, None),
        ),
        (  # AD quotes the syntax and puts the flag last
            "( 1.2.840.113556.1.4.221 NAME 'sAMAccountName' SYNTAX "
            "'1.3.6.1.4.1.1466.115.121.1.15' SINGLE-VALUE )",
            AttributeType(
                "1.2.840.113556.1.4.221",
                ("sAMAccountName",),
                True,
                "1.3.6.1.4.1.1466.115.121.1.15",
            ),
        ),
        (
            "( 1.2.5 NAME 'old' OBSOLETE SYNTAX 1.3.6.1.4.1.1466.115.121.1.15{256} "
            "NO-USER-MODIFICATION USAGE directoryOperation X-ORIGIN 'SINGLE-VALUE' )",
            AttributeType("1.2.5", ("old",), False, "1.3.6.1.4.1.1466.115.121.1.15{256}"),
        ),
        ("( 1.2.6 SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 )", None),  # no NAME
        ("( 1.2.7 NAME 'broken DESC 'x' )", None),  # an unterminated quote
        ("1.2.8 NAME 'bare'", None),
        ("", None),
    ],
)
def test_parse(text: str, expected: AttributeType | None) -> None:
    assert AttributeType.parse(text) == expected


def test_every_definition_slapd_publishes(
    slapd_factory: Callable[[], SlapdServer], tmp_path: Path
) -> None:
    slapd = slapd_factory()
    schema = slapd.workdir / "persona.schema"
    schema.write_text(schema.read_text() + "\n" + TRICKY)
    slapd.start()
    spec = LdapDirectoryConfig.model_validate(
        {
            "type": "ldap",
            "preset": "openldap",
            "urls": [slapd.ldaps_url],
            "ca_file": slapd.ca_file,
            "bind": {"user": slapd.service_dn},
            "base_dns": [slapd.people_dn],
        }
    )
    with closing(LdapDirectory(spec, Secret(slapd.service_password, "test"))) as directory:
        link = directory._link
        schema_dn = link.root_dse(["subschemaSubentry"])["subschemasubentry"]
        item = link.entry(schema_dn, ["attributeTypes"], "reading the schema")
        assert item is not None
        published = [raw.decode() for raw in item["raw_attributes"]["attributeTypes"]]
        assert len(published) > 100
        assert [text for text in published if AttributeType.parse(text) is None] == []
        single = {
            name: directory.attribute_type(name).single_valued  # type: ignore[union-attr]
            for name in ("personaName", "personaTags", "personaNotes", "displayName", "cn",
                         "commonName", "entryUUID", "title")
        }  # fmt: skip
        assert single == {
            "personaName": True,
            "personaTags": False,
            "personaNotes": False,  # its DESC says SINGLE-VALUE; the definition does not
            "displayName": True,
            "cn": False,
            "commonName": False,  # another NAME of cn
            "entryUUID": True,
            "title": False,
        }
        with pytest.raises(ConfigError) as refused:
            directory.check_targets(["personaNotes"])
    assert str(refused.value) == (
        "target attribute personaNotes is multi-valued in this directory's schema, so "
        "compare-and-swap cannot protect it; choose a single-valued attribute: a custom "
        "single-valued attribute (see the README for a two-line schema)"
    )
