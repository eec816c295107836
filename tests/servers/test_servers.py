"""The server fixtures work: checked with OpenLDAP's CLI clients (and one ldap3 bind),
independently of the code under test."""

from __future__ import annotations

import ssl
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import ldap3
import pytest
import trustme

from .clients import sorted_ldif
from .samba import AdUser, SambaDC, SambaError, ensure_ports_free
from .slapd import SlapdError, SlapdServer

pytestmark = pytest.mark.servers

Server = SlapdServer | SambaDC


def ldap(
    server: Server, *args: str, input_text: str | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run an OpenLDAP client (ldapsearch, ldapmodify, ...) that trusts the test CA."""
    return subprocess.run(
        list(args),
        input=input_text,
        capture_output=True,
        text=True,
        env=env or server.client_env,
        timeout=60,
        check=False,
    )


def modify(server: Server, url: str, who: str, password: str, ldif: str) -> int:
    """ldapmodify as `who`; returns the exit code, which is the LDAP result code."""
    return ldap(
        server, "ldapmodify", "-x", "-H", url, "-D", who, "-w", password, input_text=ldif
    ).returncode


def replace(dn: str, attribute: str, value: str) -> str:
    return f"dn: {dn}\nchangetype: modify\nreplace: {attribute}\n{attribute}: {value}\n"


LDAP_SUCCESS = 0
CONSTRAINT_VIOLATION = 19
ATTRIBUTE_OR_VALUE_EXISTS = 20
INSUFFICIENT_ACCESS = 50
STRONGER_AUTH_REQUIRED = 8
CONNECT_ERROR = 255  # ldap tools exit -1 when the TLS handshake fails


# -- slapd ---------------------------------------------------------------------------


def test_slapd_serves_base_entries_over_ldap(slapd: SlapdServer) -> None:
    result = ldap(
        slapd,
        "ldapsearch",
        "-LLL",
        "-x",
        "-H",
        slapd.url,
        "-D",
        slapd.admin_dn,
        "-w",
        slapd.admin_password,
        "-b",
        slapd.base_dn,
        "dn",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [
        "dn:",
        "dc=example,dc=com",
        "dn:",
        "ou=People,dc=example,dc=com",
        "dn:",
        "ou=Service",
        "Accounts,dc=example,dc=com",
        "dn:",
        "ou=Groups,dc=example,dc=com",
        "dn:",
        "uid=svc-persona,ou=Service",
        "Accounts,dc=example,dc=com",
    ]


def test_slapd_starts_well_under_a_second(
    slapd_factory: Callable[[], SlapdServer],
) -> None:
    began = time.perf_counter()
    server = slapd_factory().start()
    elapsed = time.perf_counter() - began
    assert server.running
    assert elapsed < 1.0
    server.stop()
    assert not server.running
    assert not server.workdir.exists()


def test_slapd_tls_verifies_against_the_test_ca(slapd: SlapdServer, tmp_path: Path) -> None:
    for args in (("-H", slapd.ldaps_url), ("-H", slapd.url, "-ZZ")):
        result = ldap(
            slapd,
            "ldapsearch",
            "-LLL",
            "-x",
            *args,
            "-D",
            slapd.service_dn,
            "-w",
            slapd.service_password,
            "-b",
            slapd.base_dn,
            "-s",
            "base",
            "dn",
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == f"dn: {slapd.base_dn}"
    # The check is real: a client trusting another CA refuses the certificate.
    other_ca = tmp_path / "other-ca.pem"
    other_ca.write_bytes(trustme.CA().cert_pem.bytes())
    env = {**slapd.client_env, "LDAPTLS_CACERT": str(other_ca)}
    refused = ldap(
        slapd, "ldapsearch", "-x", "-H", slapd.ldaps_url, "-b", "", "-s", "base", env=env
    )
    assert refused.returncode == CONNECT_ERROR


def test_slapd_persona_schema(slapd: SlapdServer) -> None:
    dn = f"uid=ada,{slapd.people_dn}"
    slapd.add_ldif(f"""\
dn: {dn}
objectClass: inetOrgPerson
objectClass: personaHolder
uid: ada
cn: Ada Lovelace
sn: Lovelace
personaName: Developer
personaTags: one
personaTags: two
""")
    add_second = f"dn: {dn}\nchangetype: modify\nadd: personaName\npersonaName: Manager\n"
    assert (
        modify(slapd, slapd.url, slapd.admin_dn, slapd.admin_password, add_second)
        == CONSTRAINT_VIOLATION
    )
    result = ldap(
        slapd,
        "ldapsearch",
        "-LLL",
        "-x",
        "-H",
        slapd.url,
        "-D",
        slapd.admin_dn,
        "-w",
        slapd.admin_password,
        "-b",
        slapd.people_dn,
        "(personaName=*VELOP*)",
        "personaName",
        "personaTags",
    )
    assert result.returncode == 0, result.stderr
    assert sorted_ldif(result.stdout) == (
        f"dn: {dn}\npersonaName: Developer\npersonaTags: one\npersonaTags: two\n\n"
    )


def test_slapd_service_account_may_write_only_persona_name_under_people(
    slapd: SlapdServer,
) -> None:
    person = f"uid=bob,{slapd.people_dn}"
    slapd.add_ldif(f"dn: {person}\nobjectClass: inetOrgPerson\nuid: bob\ncn: Bob\nsn: B\n")
    svc = (slapd.service_dn, slapd.service_password)

    def as_service(ldif: str) -> int:
        return modify(slapd, slapd.url, *svc, ldif)

    # Allowed: add the auxiliary class and the persona in one modify.
    assert (
        as_service(
            f"dn: {person}\nchangetype: modify\nadd: objectClass\nobjectClass: personaHolder\n-\n"
            "add: personaName\npersonaName: Developer\n"
        )
        == LDAP_SUCCESS
    )
    assert as_service(replace(person, "personaName", "Manager")) == LDAP_SUCCESS
    # Denied: any other attribute, another objectClass, the multi-valued persona
    # attribute, and personaName outside ou=People.
    assert as_service(replace(person, "mail", "bob@example.com")) == INSUFFICIENT_ACCESS
    assert as_service(replace(person, "personaTags", "x")) == INSUFFICIENT_ACCESS
    assert (
        as_service(
            f"dn: {person}\nchangetype: modify\nadd: objectClass\nobjectClass: posixAccount\n"
        )
        == INSUFFICIENT_ACCESS
    )
    assert (
        as_service(
            f"dn: {slapd.service_dn}\nchangetype: modify\nadd: objectClass\n"
            "objectClass: personaHolder\n-\nadd: personaName\npersonaName: x\n"
        )
        == INSUFFICIENT_ACCESS
    )
    # ... and it may read, but not the password hashes.
    result = ldap(
        slapd,
        "ldapsearch",
        "-LLL",
        "-x",
        "-H",
        slapd.url,
        "-D",
        svc[0],
        "-w",
        svc[1],
        "-b",
        slapd.base_dn,
        "(uid=*)",
        "personaName",
        "userPassword",
    )
    assert result.returncode == 0, result.stderr
    assert sorted_ldif(result.stdout) == (
        f"dn: {person}\npersonaName: Manager\n\ndn: {slapd.service_dn}\n\n"
    )


def test_slapd_dump_is_sorted_and_shows_exactly_what_changed(slapd: SlapdServer) -> None:
    slapd.add_ldif(
        "".join(
            f"dn: uid=u{n},{slapd.people_dn}\nobjectClass: inetOrgPerson\nuid: u{n}\ncn: U {n}\n"
            f"sn: {n}\n\n"
            for n in (3, 1, 2)
        )
    )
    before = slapd.dump()
    assert slapd.dump() == before
    dns = [line for line in before.splitlines() if line.startswith("dn:")]
    assert dns[:2] == [f"dn: {slapd.base_dn}", f"dn: {slapd.groups_dn}"]
    assert dns.index(f"dn: {slapd.people_dn}") < dns.index(f"dn: uid=u1,{slapd.people_dn}")
    slapd.modify_ldif(replace(f"uid=u2,{slapd.people_dn}", "sn", "changed"))
    after = slapd.dump()
    assert after == before.replace(
        f"dn: uid=u2,{slapd.people_dn}\ncn: U 2\nobjectClass: inetOrgPerson\nsn: 2\n",
        f"dn: uid=u2,{slapd.people_dn}\ncn: U 2\nobjectClass: inetOrgPerson\nsn: changed\n",
    )
    assert after != before
    assert slapd.dump(f"uid=u1,{slapd.people_dn}") == (
        f"dn: uid=u1,{slapd.people_dn}\ncn: U 1\nobjectClass: inetOrgPerson\nsn: 1\nuid: u1\n\n"
    )


def test_slapd_bulk_load_before_start(slapd_factory: Callable[[], SlapdServer]) -> None:
    server = slapd_factory()
    server.add_ldif(
        "".join(
            f"dn: uid=bulk{n},{server.people_dn}\nobjectClass: inetOrgPerson\nuid: bulk{n}\n"
            f"cn: Bulk {n}\nsn: {n}\n\n"
            for n in range(2000)
        )
    )
    server.start()
    result = ldap(
        server,
        "ldapsearch",
        "-LLL",
        "-x",
        "-H",
        server.url,
        "-D",
        server.service_dn,
        "-w",
        server.service_password,
        "-b",
        server.people_dn,
        "(uid=bulk*)",
        "1.1",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("dn: ") == 2000


def test_slapd_start_failure_carries_slapd_output(
    slapd_factory: Callable[[], SlapdServer],
) -> None:
    server = slapd_factory()
    server.config_file.write_text(server.config_file.read_text() + "\nnot-a-directive x\n")
    with pytest.raises(SlapdError, match="unknown directive <not-a-directive>"):
        server.start()
    assert not server.workdir.exists()


def test_slapd_session_is_reachable_with_ldap3(slapd_session: SlapdServer) -> None:
    tls = ldap3.Tls(validate=ssl.CERT_REQUIRED, ca_certs_file=str(slapd_session.ca_file))
    server = ldap3.Server(slapd_session.ldaps_url, use_ssl=True, tls=tls)
    with ldap3.Connection(
        server, slapd_session.service_dn, slapd_session.service_password, auto_bind=True
    ) as connection:
        assert connection.search(slapd_session.base_dn, "(ou=People)", attributes=["ou"])
        assert [entry.entry_dn for entry in connection.entries] == [slapd_session.people_dn]


# -- Samba AD DC ---------------------------------------------------------------------


def test_samba_ldaps_and_starttls_verify_for_127_0_0_1(samba_dc: SambaDC) -> None:
    for args in (("-H", samba_dc.url), ("-H", samba_dc.ldap_url, "-ZZ")):
        result = ldap(
            samba_dc,
            "ldapsearch",
            "-LLL",
            "-x",
            *args,
            "-D",
            samba_dc.admin_user,
            "-w",
            samba_dc.admin_password,
            "-b",
            samba_dc.base_dn,
            "-s",
            "base",
            "dn",
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == f"dn: {samba_dc.base_dn}"


def test_samba_refuses_plain_simple_bind(samba_dc: SambaDC) -> None:
    result = ldap(
        samba_dc,
        "ldapsearch",
        "-x",
        "-H",
        samba_dc.ldap_url,
        "-D",
        samba_dc.admin_user,
        "-w",
        samba_dc.admin_password,
        "-b",
        "",
        "-s",
        "base",
    )
    assert result.returncode == STRONGER_AUTH_REQUIRED


def test_samba_has_ous_and_service_account(samba_dc: SambaDC) -> None:
    result = ldap(
        samba_dc,
        "ldapsearch",
        "-LLL",
        "-o",
        "ldif-wrap=no",
        "-x",
        "-H",
        samba_dc.url,
        "-D",
        samba_dc.service_user,
        "-w",
        samba_dc.service_password,
        "-b",
        samba_dc.base_dn,
        "(|(objectClass=organizationalUnit)(sAMAccountName=svc-persona))",
        "1.1",
    )
    assert result.returncode == 0, result.stderr
    dns = set(result.stdout.split("\n\n"))
    assert {
        f"dn: {samba_dc.staff_dn}",
        f"dn: {samba_dc.service_accounts_dn}",
        f"dn: {samba_dc.service_dn}",
    } <= {dn.strip() for dn in dns}


def test_samba_service_account_may_write_only_the_persona_attribute_on_staff(
    samba_dc: SambaDC,
    samba_ou: str,
) -> None:
    [staff_user] = samba_dc.add_users([AdUser("persona-t1", parent_dn=samba_ou)])
    users_container = f"CN=Users,{samba_dc.base_dn}"
    [outsider] = samba_dc.add_users([AdUser("persona-t2", parent_dn=users_container)])
    svc = (samba_dc.service_user, samba_dc.service_password)
    try:
        persona = samba_dc.persona_attribute
        assert (
            modify(samba_dc, samba_dc.url, *svc, replace(staff_user, persona, "Dev"))
            == LDAP_SUCCESS
        )
        assert (
            modify(
                samba_dc,
                samba_dc.url,
                *svc,
                replace(staff_user, "msDS-cloudExtensionAttribute2", "Dev"),
            )
            == INSUFFICIENT_ACCESS
        )
        assert (
            modify(samba_dc, samba_dc.url, *svc, replace(staff_user, "description", "x"))
            == INSUFFICIENT_ACCESS
        )
        assert (
            modify(samba_dc, samba_dc.url, *svc, replace(outsider, persona, "Dev"))
            == INSUFFICIENT_ACCESS
        )
        assert (
            modify(samba_dc, samba_dc.url, *svc, replace(samba_ou, persona, "Dev"))
            == INSUFFICIENT_ACCESS
        )
        add_second = f"dn: {staff_user}\nchangetype: modify\nadd: {persona}\n{persona}: Ops\n"
        assert (
            modify(samba_dc, samba_dc.url, samba_dc.admin_user, samba_dc.admin_password, add_second)
            == ATTRIBUTE_OR_VALUE_EXISTS
        )
        assert samba_dc.dump(staff_user).count(f"\n{persona}: Dev\n") == 1
    finally:
        samba_dc.delete_tree(outsider)


def test_samba_bulk_users_and_stable_dump(samba_dc: SambaDC, samba_ou: str) -> None:
    users = [
        AdUser(f"bulk{n:03d}", {"department": "IT", "title": "Engineer"}, parent_dn=samba_ou)
        for n in range(200)
    ]
    users.append(
        AdUser("bulk-pw", {"givenName": "Zoë"}, password="Bulk!pass-123", parent_dn=samba_ou)
    )
    began = time.perf_counter()
    dns = samba_dc.add_users(users)
    assert time.perf_counter() - began < 30
    result = ldap(
        samba_dc,
        "ldapsearch",
        "-LLL",
        "-x",
        "-H",
        samba_dc.url,
        "-D",
        samba_dc.admin_user,
        "-w",
        samba_dc.admin_password,
        "-E",
        "pr=100/noprompt",
        "-b",
        samba_ou,
        "(objectClass=user)",
        "1.1",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("dn: ") == 201
    # The user with a password can bind (and the bind does not change the dump).
    before = samba_dc.dump(samba_ou)
    bind = ldap(
        samba_dc,
        "ldapsearch",
        "-x",
        "-H",
        samba_dc.url,
        "-D",
        "bulk-pw@example.test",
        "-w",
        "Bulk!pass-123",
        "-b",
        "",
        "-s",
        "base",
    )
    assert bind.returncode == 0, bind.stderr
    assert samba_dc.dump(samba_ou) == before
    samba_dc.modify_ldif(replace(dns[5], samba_dc.persona_attribute, "Engineer"))
    after = samba_dc.dump(samba_ou)
    added = [line for line in after.splitlines() if line not in before.splitlines()]
    assert added == [f"{samba_dc.persona_attribute}: Engineer"]
    assert len(after.splitlines()) == len(before.splitlines()) + 1
    assert "givenName:: Wm/Dqw==" in after  # non-ASCII values stay base64, exactly


def test_samba_is_reachable_with_ldap3(samba_dc: SambaDC) -> None:
    tls = ldap3.Tls(validate=ssl.CERT_REQUIRED, ca_certs_file=str(samba_dc.ca_file))
    server = ldap3.Server(samba_dc.url, use_ssl=True, tls=tls)
    with ldap3.Connection(
        server, samba_dc.service_user, samba_dc.service_password, auto_bind=True
    ) as connection:
        assert connection.search(
            samba_dc.base_dn, "(sAMAccountName=svc-persona)", attributes=["objectSid"]
        )
        assert connection.entries[0].entry_dn == samba_dc.service_dn


def test_samba_ports_are_reported_with_their_holder(samba_dc: SambaDC) -> None:
    # Our own running DC holds them: the message names it, and it is left running.
    with pytest.raises(SambaError, match=r"port 389: pid \d+ \(.*samba"):
        ensure_ports_free()
    assert samba_dc.running
