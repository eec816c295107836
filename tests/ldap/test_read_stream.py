"""The full read against a real slapd: the lean stream decoder (its compiled and its
Python walk alike) gives exactly what ldap3's own decoder gives, holds one page at a time,
survives a cut mid-page, and leaves the connection usable when the reader stops early.

ldap3's ``paged_search`` is the oracle: both read the same server, and every Employee must
be equal (first value of multi-valued attributes, binary values left out, long-form BER
lengths, referrals skipped).
"""

from __future__ import annotations

import base64
import dataclasses
from collections.abc import Generator, Iterator
from contextlib import closing
from pathlib import Path
from typing import Any, cast

import pytest
import structlog
from ldap3 import SUBTREE

from persona_sync.config import LdapDirectoryConfig
from persona_sync.directory.ldap import LdapDirectory
from persona_sync.directory.ldap_conn import LdapLink
from persona_sync.dn import normalize_dn
from persona_sync.employee import Employee
from persona_sync.errors import ConfigError, DirectoryError
from persona_sync.secrets import Secret
from tests.ldap.proxy import LdapProxy, ldap_proxy
from tests.servers.clients import run_ldap_tool
from tests.servers.slapd import SlapdServer

PEOPLE = 1000
PAGE = 100
ATTRIBUTES = [
    "title",
    "description",
    "jpegPhoto",
    "cn",
    "manager",
    "personaName",
    "mail",  # nobody has it
    "entryUUID",
]
LONG = "x" * 70_000  # a three-byte BER length
PHOTO = b"\xff\xd8\xff\xe0" + bytes(range(256)) * 4  # not UTF-8: never a fact


def people_ldif(base: str) -> str:
    """PEOPLE entries, some with a second title, a medium or long description or a photo,
    a hostile and a non-ASCII name, managers; and a referral to another server."""
    photo = base64.b64encode(PHOTO).decode()
    parts = []
    for i in range(PEOPLE):
        lines = [
            f"dn: uid=p{i:04d},{base}",
            "objectClass: inetOrgPerson",
            "objectClass: personaHolder",
            f"uid: p{i:04d}",
            f"cn: Person {i}",
            "sn: P",
            f"title: Title {i % 7}",
        ]
        if i % 3 == 0:
            lines.append(f"title: Second title {i}")
        if i % 5 == 0:
            lines.append(f"description: {'d' * (100 + i)}")  # one- and two-byte lengths
        if i % 10:
            lines.append(f"manager: uid=p{i - i % 10:04d},{base}")
        if i % 4 == 0:
            lines.append("personaName: engineer")
        if i == 7:
            lines.append(f"description: {LONG}")
        if i % 50 == 1:
            lines.append(f"jpegPhoto:: {photo}")
        parts.append("\n".join(lines) + "\n\n")
    hostile = base64.b64encode('Smith, John "Jr" <x>; +1 \\ # Jörg'.encode()).decode()
    parts.append(
        f"dn: cn=Smith\\, John \\22Jr\\22 \\3Cx\\3E\\3B \\2B1 \\5C \\23 J\\C3\\B6rg,{base}\n"
        f"objectClass: inetOrgPerson\ncn:: {hostile}\nsn: Smith\nuid: jsmith\n"
        "title: Registered Nurse\n\n"
        f"dn: ou=Elsewhere,{base}\nobjectClass: referral\nobjectClass: extensibleObject\n"
        "ou: Elsewhere\nref: ldap://other.example.test/ou=Elsewhere,dc=other,dc=test\n\n"
    )
    return "".join(parts)


@pytest.fixture(scope="module")
def loaded() -> Iterator[SlapdServer]:
    """One slapd for this module, bulk-loaded; the tests only read."""
    from tests.servers.plugin import require_slapd

    require_slapd()
    server = SlapdServer()
    server.add_ldif(people_ldif(server.people_dn))
    with server:
        yield server


@pytest.fixture
def proxy(loaded: SlapdServer, tmp_path: Path) -> Iterator[LdapProxy]:
    with ldap_proxy(loaded.port, tmp_path / "proxy-tls") as proxy:
        yield proxy


def spec_for(slapd: SlapdServer, port: int, **extra: Any) -> LdapDirectoryConfig:
    return LdapDirectoryConfig.model_validate(
        {
            "type": "ldap",
            "preset": "openldap",
            "urls": [f"ldaps://127.0.0.1:{port}"],
            "ca_file": slapd.ca_file,
            "bind": {"user": slapd.service_dn},
            "base_dns": [slapd.people_dn],
            "page_size": PAGE,
            **extra,
        }
    )


def directory_for(slapd: SlapdServer, port: int, **extra: Any) -> LdapDirectory:
    return LdapDirectory(spec_for(slapd, port, **extra), Secret(slapd.service_password, "test"))


def ldap3_read(directory: LdapDirectory, attributes: list[str]) -> list[Employee]:
    """The same read through ldap3's own paged search and decoder (the oracle)."""
    link = LdapLink(directory.spec, directory.password)
    connection = link.connect()
    try:
        wanted = list(
            dict.fromkeys(
                a.lower() for a in [*attributes, directory.id_attribute, directory.stable_attribute]
            )
        )
        items = connection.extend.standard.paged_search(
            directory.spec.base_dns[0],
            directory.search_filter(),
            SUBTREE,
            attributes=wanted,
            paged_size=PAGE,
            generator=True,
        )
        reading = directory._reading
        return [
            reading.employee(item["dn"], item["raw_attributes"])
            for item in items
            if item["type"] == "searchResEntry"
        ]
    finally:
        connection.unbind()


def by_dn(employees: list[Employee]) -> dict[str, Employee]:
    found = {e.dn: e for e in employees}
    assert len(found) == len(employees), "an entry was given twice"
    return found


def test_stream_gives_what_ldap3_gives(walk: str, loaded: SlapdServer, proxy: LdapProxy) -> None:
    with closing(directory_for(loaded, proxy.port)) as directory:
        ours = list(directory.read(ATTRIBUTES))
        theirs = ldap3_read(directory, ATTRIBUTES)
    people = by_dn(ours)
    # The same entries with the same values (ldap3's generator hands each page over in
    # reverse; ours keeps the server's order).
    assert people == by_dn(theirs)
    assert len(people) == PEOPLE + 1
    assert proxy.counts["searchResRef"] == 2  # the referral came, once per reader
    base = loaded.people_dn
    first = people[f"uid=p0000,{base}"]
    assert first.attributes == {
        "uid": "p0000",
        "cn": "Person 0",
        "title": "Title 0",  # the first of two values
        "description": "d" * 100,
        "personaname": "engineer",
        "entryuuid": first.attributes["entryuuid"],
    }
    assert first.id == "p0000"
    assert people[f"uid=p0007,{base}"].attributes["description"] == LONG
    with_photo = people[f"uid=p0001,{base}"]
    assert "jpegphoto" not in with_photo.attributes  # binary: not a fact
    assert with_photo.attributes["manager"] == f"uid=p0000,{base}"
    nurse = next(e for e in ours if e.id == "jsmith")
    assert nurse.attributes["cn"] == 'Smith, John "Jr" <x>; +1 \\ # Jörg'
    assert normalize_dn(nurse.dn) == normalize_dn(
        f"cn=Smith\\, John \\22Jr\\22 \\3Cx\\3E\\3B \\2B1 \\5C \\23 Jörg,{base}"
    )


def test_read_holds_one_page(loaded: SlapdServer, proxy: LdapProxy) -> None:
    with closing(directory_for(loaded, proxy.port)) as directory:
        employees = directory.read(["title"])
        next(employees)
        # The first page is handed over and the second requested; nothing more was asked.
        assert proxy.counts["searchRequest"] <= 2
        assert proxy.counts["searchResEntry"] <= 2 * PAGE
        assert 1 + sum(1 for _ in employees) == PEOPLE + 1
    assert proxy.counts["searchRequest"] == -(-(PEOPLE + 1) // PAGE)


def test_reader_stopped_early_leaves_the_connection_usable(
    loaded: SlapdServer, proxy: LdapProxy
) -> None:
    with closing(directory_for(loaded, proxy.port)) as directory:
        employees = cast(Generator[Employee, None, None], directory.read(["title"]))
        taken = [next(employees) for _ in range(150)]
        employees.close()  # the second page's answers are still on their way
        assert len(by_dn(taken)) == 150
        manager = directory.lookup_managers([f"uid=p0010,{loaded.people_dn}"])
        assert [(m.id, m.dn) for m in manager] == [("p0010", f"uid=p0010,{loaded.people_dn}")]
        assert sum(1 for _ in directory.read(["title"])) == PEOPLE + 1
    # The connection with answers left in it was dropped and a new one bound.
    assert proxy.counts["bindRequest"] == 2


def test_cut_mid_page_resumes_without_duplicates(
    walk: str, loaded: SlapdServer, proxy: LdapProxy
) -> None:
    with closing(directory_for(loaded, proxy.port)) as directory:
        expected = ldap3_read(directory, ATTRIBUTES)
        proxy.after("searchResEntry", 250, proxy.cut)
        with structlog.testing.capture_logs() as logs:
            got = list(directory.read(ATTRIBUTES))
    assert proxy.cuts == 1
    resumed = [e for e in logs if e["event"] == "ldap_read_resumed"]
    assert [(e["given"], e["error"]) for e in resumed] == [
        (2 * PAGE, "the connection was closed by the server or the network")
    ]
    assert by_dn(got) == by_dn(expected)


def test_key_is_the_entry_uuid(loaded: SlapdServer, proxy: LdapProxy) -> None:
    output = run_ldap_tool(
        [
            "ldapsearch", "-LLL", "-x", "-H", loaded.url, "-D", loaded.admin_dn,
            "-w", loaded.admin_password, "-b", f"uid=p0003,{loaded.people_dn}", "-s", "base",
            "(objectClass=*)", "entryUUID",
        ],
        ca_file=loaded.ca_file,
    )  # fmt: skip
    uuid_line = next(line for line in output.splitlines() if line.startswith("entryUUID: "))
    with closing(directory_for(loaded, proxy.port)) as directory:
        employee = next(e for e in directory.read([]) if e.id == "p0003")
        assert directory.key(employee) == uuid_line.removeprefix("entryUUID: ")
    # Without the stable attribute (here one nobody has) the key is the normalized DN.
    with closing(
        directory_for(loaded, proxy.port, stable_id_attribute="employeeNumber")
    ) as directory:
        employee = next(e for e in directory.read([]) if e.id == "p0003")
        assert "employeenumber" not in employee.attributes
        assert directory.key(employee) == normalize_dn(employee.dn)
        assert directory.key(employee) == f"uid=p0003,{loaded.people_dn}".lower()


def test_search_errors_are_clear(loaded: SlapdServer, proxy: LdapProxy) -> None:
    missing = f"ou=Nobody,{loaded.base_dn}"
    with (
        closing(directory_for(loaded, proxy.port, base_dns=[missing])) as directory,
        pytest.raises(DirectoryError) as refused,
    ):
        list(directory.read(["title"]))
    assert str(refused.value) == f"reading {missing} failed: LDAP 32 noSuchObject"
    with (
        closing(directory_for(loaded, proxy.port, filter="(title=*")) as directory,
        pytest.raises(ConfigError) as bad,
    ):
        list(directory.read(["title"]))
    assert str(bad.value) == (
        "directory.filter: invalid LDAP filter '(&(objectClass=inetOrgPerson)((title=*))': "
        "invalid filter"
    )


def test_reread_gives_entries_as_the_read_does(loaded: SlapdServer, proxy: LdapProxy) -> None:
    """AD-style links (the server rewrites them on a rename) are read again by DN, with the
    read's filter and attributes: a DN gone or out of scope is left out. On slapd the
    planner never asks, because without slapo-refint the values stay as they were."""
    with closing(directory_for(loaded, proxy.port)) as directory:
        assert directory.reread([f"uid=p0010,{loaded.people_dn}"], ATTRIBUTES) is None
        directory.preset = dataclasses.replace(directory.preset, linked_manager=True)
        read = by_dn(list(directory.read(ATTRIBUTES)))
        wanted = [
            f"uid=p0010,{loaded.people_dn}",
            f"uid=nobody,{loaded.people_dn}",
            loaded.people_dn,  # there, but not a person: outside the filter
            f"uid=p0020,{loaded.people_dn}",
        ]
        again = directory.reread(wanted, ATTRIBUTES)
    assert again is not None
    assert [e.dn for e in again] == [wanted[0], wanted[3]]
    assert again == [read[wanted[0]], read[wanted[3]]]
