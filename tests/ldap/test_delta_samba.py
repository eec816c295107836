"""Delta reads on a real Samba AD DC: highestCommittedUSN / uSNChanged on the same DC;
deletions and moves from Deleted Objects (an account allowed to read it) or a sweep of
objectGUIDs (the least-privilege service account, which is not)."""

from __future__ import annotations

from collections.abc import Collection, Iterator
from dataclasses import dataclass, replace

import pytest

from persona_sync.config import LdapDirectoryConfig
from persona_sync.directory.base import Cursor, DeltaEnd, DeltaRead
from persona_sync.directory.ldap import LdapDirectory
from persona_sync.employee import Employee
from persona_sync.secrets import Secret
from tests.servers.samba import AdUser, SambaDC

ATTRIBUTES = ["title", "manager", "cn"]
PEOPLE = ("ps-ceo", "ps-alice", "ps-bob", "ps-carol")
SWEEP_NOTE = (
    "the account cannot read CN=Deleted Objects: deletions and moves out of scope are found "
    "by a sweep of every entry's objectguid (grant it List Contents and Read Property on "
    "Deleted Objects to make delta reads cheaper)"
)


@dataclass
class Domain:
    account: str  # "service" (default rights) or "admin" (may read Deleted Objects)
    dc: SambaDC
    ou: str
    elsewhere: str  # an OU outside the base
    directory: LdapDirectory
    keys: dict[str, str]  # sAMAccountName -> key (objectGUID), from the first read

    def dn(self, name: str) -> str:
        return f"CN={name},{self.ou}"

    def uid(self, key: str) -> str:
        return next(name for name, known in self.keys.items() if known == key)

    def uids(self, keys: Collection[str] | None) -> set[str]:
        assert keys is not None
        return {self.uid(key) for key in keys}


@pytest.fixture(params=["admin", "service"])
def domain(request: pytest.FixtureRequest, samba_dc: SambaDC, samba_ou: str) -> Iterator[Domain]:
    elsewhere = samba_dc.create_ou(f"{samba_ou.split(',')[0][3:]}-elsewhere")
    ceo = f"CN=ps-ceo,{samba_ou}"
    samba_dc.add_users(
        [
            AdUser("ps-ceo", {"title": "Chief Executive Officer"}, None, samba_ou),
            AdUser("ps-alice", {"title": "Software Engineer", "manager": ceo}, None, samba_ou),
            AdUser("ps-bob", {"title": "Registered Nurse", "manager": ceo}, None, samba_ou),
            AdUser("ps-carol", {"title": "Accountant", "manager": ceo}, None, samba_ou),
        ]
    )
    # Whether an account may read Deleted Objects shows only when something was deleted.
    samba_dc.add_users([AdUser("ps-deleted", {}, None, elsewhere)])
    samba_dc.modify_ldif(f"dn: CN=ps-deleted,{elsewhere}\nchangetype: delete\n\n")
    admin = request.param == "admin"
    spec = LdapDirectoryConfig.model_validate(
        {
            "type": "ldap",
            "preset": "ad",
            "urls": [samba_dc.url],
            "ca_file": str(samba_dc.ca_file),
            "bind": {"user": samba_dc.admin_user if admin else samba_dc.service_user},
            "base_dns": [samba_ou],
        }
    )
    password = samba_dc.admin_password if admin else samba_dc.service_password
    directory = LdapDirectory(spec, Secret(password, "test"))
    with directory:
        yield Domain(request.param, samba_dc, samba_ou, elsewhere, directory, {})
    samba_dc.delete_tree(elsewhere)


def read(domain: Domain, cursor: Cursor | None) -> tuple[DeltaRead, dict[str, Employee], DeltaEnd]:
    delta = domain.directory.read_delta(ATTRIBUTES, cursor)
    entries = {}
    for employee in delta.entries:
        key = domain.directory.key(employee)
        domain.keys.setdefault(employee.id, key)
        entries[domain.uid(key)] = employee
    return delta, entries, delta.finish()


def first(domain: Domain) -> Cursor:
    delta, entries, end = read(domain, None)
    assert (delta.full, delta.reason) == (True, "no cursor yet: full read")
    assert set(entries) == set(PEOPLE)
    assert (end.removed, end.present) == ((), None)
    assert end.cursor is not None and end.cursor.kind == "usn"
    assert end.cursor.state["dc"] == "dc1.example.test"
    return end.cursor


def assert_left(domain: Domain, end: DeltaEnd, gone: set[str], now: set[str]) -> None:
    """Entries ``gone`` left the scope: removed keys (from Deleted Objects and the users
    changed elsewhere), or missing from the keys present (a sweep), exactly ``now``."""
    if domain.account == "admin":
        assert (domain.uids(end.removed), end.present) == (gone, None)
    else:
        assert (end.removed, domain.uids(end.present)) == ((), now)


def modify(domain: Domain, name: str, attribute: str, value: str) -> None:
    domain.dc.modify_ldif(
        f"dn: {domain.dn(name)}\nchangetype: modify\nreplace: {attribute}\n{attribute}: {value}\n\n"
    )


def test_a_title_and_a_manager_change(domain: Domain) -> None:
    cursor = first(domain)
    modify(domain, "ps-alice", "title", "Head of Nursing")
    modify(domain, "ps-bob", "manager", domain.dn("ps-alice"))
    delta, entries, end = read(domain, cursor)
    assert (delta.full, delta.reason) == (False, "")
    assert delta.notes == ([] if domain.account == "admin" else [SWEEP_NOTE])
    assert set(entries) == {"ps-alice", "ps-bob"}
    assert entries["ps-alice"].get("title") == "Head of Nursing"
    assert entries["ps-bob"].get("manager") == domain.dn("ps-alice")
    assert_left(domain, end, set(), set(PEOPLE))
    assert end.cursor is not None and end.cursor.state["usn"] > cursor.state["usn"]
    delta, entries, again = read(domain, end.cursor)
    assert (delta.full, set(entries)) == (False, set())
    assert_left(domain, again, set(), set(PEOPLE))


def test_added_deleted_and_moved_employees(domain: Domain) -> None:
    cursor = first(domain)
    domain.dc.add_users([AdUser("ps-dave", {"title": "Nurse"}, None, domain.ou)])
    domain.dc.modify_ldif(f"dn: {domain.dn('ps-carol')}\nchangetype: delete\n\n")
    domain.dc.modify_ldif(
        f"dn: {domain.dn('ps-bob')}\nchangetype: modrdn\nnewrdn: CN=ps-bob\ndeleteoldrdn: 1\n"
        f"newsuperior: {domain.elsewhere}\n\n"
    )
    delta, entries, end = read(domain, cursor)
    assert (delta.full, set(entries)) == (False, {"ps-dave"})
    assert_left(domain, end, {"ps-carol", "ps-bob"}, {"ps-ceo", "ps-alice", "ps-dave"})


def test_another_dc_or_a_restore_means_a_full_read(domain: Domain) -> None:
    cursor = first(domain)
    modify(domain, "ps-alice", "title", "Head of Nursing")
    other_dc = replace(cursor, state={**cursor.state, "dc": "dc2.example.test"})
    restored = replace(
        cursor, state={**cursor.state, "invocation_id": "00000000-0000-0000-0000-000000000001"}
    )
    for bad, reason in [
        (
            other_dc,
            "another domain controller answered (dc1.example.test, not dc2.example.test): "
            "full read",
        ),
        (
            restored,
            "the domain controller's database was restored (invocationId changed): full read",
        ),
        (
            replace(cursor, kind="csn"),
            "the saved cursor cannot be used (a 'csn' cursor, not 'usn'): full read",
        ),
        (
            replace(cursor, state={k: v for k, v in cursor.state.items() if k != "invocation_id"}),
            "the saved cursor cannot be used (no valid invocation_id): full read",
        ),
        (
            replace(cursor, state={**cursor.state, "usn": "12"}),
            "the saved cursor cannot be used (no valid usn): full read",
        ),
    ]:
        delta, entries, end = read(domain, bad)
        assert (delta.full, delta.reason) == (True, reason)
        assert set(entries) == set(PEOPLE)
        assert (end.removed, end.present) == ((), None)
        assert end.cursor is not None
        assert end.cursor.state["dc"] == "dc1.example.test"
        assert end.cursor.state["invocation_id"] == cursor.state["invocation_id"]
