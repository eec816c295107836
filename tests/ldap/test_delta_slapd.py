"""Delta reads on a real slapd: entryCSN without syncprov, syncrepl refreshOnly with it
(present phase), and with a session log (delete phase)."""

from __future__ import annotations

import subprocess
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import timedelta

import pytest

from persona_sync.config import LdapDirectoryConfig
from persona_sync.directory import ldap_csn
from persona_sync.directory.base import Cursor, DeltaEnd, DeltaRead
from persona_sync.directory.ldap import LdapDirectory
from persona_sync.employee import Employee
from persona_sync.secrets import Secret
from tests.servers.plugin import require_slapd
from tests.servers.slapd import SlapdServer

pytestmark = pytest.mark.servers

MODES: Mapping[str, Mapping[str, object]] = {
    "entrycsn": {},
    "syncrepl": {"syncprov": True},
    "sessionlog": {"syncprov": True, "sessionlog": 100},
}
ATTRIBUTES = ["title", "manager", "cn"]
PEOPLE = ("ceo", "alice", "bob", "carol")
SWEEP_NOTE = (
    "syncrepl is not available (it needs slapo-syncprov, a contextCSN this account may read "
    "and entryUUID as the stable id): deletions and moves out of scope are found by a sweep "
    "of every entry's entryuuid"
)


def person(server: SlapdServer, uid: str, title: str, manager: str | None = "ceo") -> str:
    lines = [
        f"dn: uid={uid},{server.people_dn}",
        "objectClass: inetOrgPerson",
        f"uid: {uid}",
        f"cn: {uid.title()}",
        "sn: Person",
        f"title: {title}",
    ]
    if manager:
        lines.append(f"manager: uid={manager},{server.people_dn}")
    return "\n".join(lines) + "\n\n"


@dataclass
class Site:
    """A slapd in one change-tracking mode, and a directory reading it."""

    mode: str
    server: SlapdServer
    directory: LdapDirectory
    keys: dict[str, str]  # uid -> key, from the first read

    def uid(self, key: str) -> str:
        return next(uid for uid, known in self.keys.items() if known == key)

    def uids(self, keys: Collection[str] | None) -> set[str]:
        assert keys is not None
        return {self.uid(key) for key in keys}


@pytest.fixture(autouse=True)
def no_margin(monkeypatch: pytest.MonkeyPatch) -> None:
    """Writes in these tests commit in order: read from the next CSN on, so the sets of
    entries returned are exact (test_margin checks the margin itself)."""
    monkeypatch.setattr(ldap_csn, "CSN_MARGIN", timedelta(0))


@pytest.fixture(params=sorted(MODES))
def site(request: pytest.FixtureRequest) -> Iterator[Site]:
    require_slapd()
    with SlapdServer(**MODES[request.param]) as server:  # type: ignore[arg-type]
        server.add_ldif(
            person(server, "ceo", "Chief Executive Officer", None)
            + person(server, "alice", "Software Engineer")
            + person(server, "bob", "Registered Nurse")
            + person(server, "carol", "Accountant")
        )
        spec = LdapDirectoryConfig.model_validate(
            {
                "type": "ldap",
                "preset": "openldap",
                "urls": [server.ldaps_url],
                "ca_file": str(server.ca_file),
                "bind": {"user": server.service_dn},
                "base_dns": [server.people_dn],
            }
        )
        directory = LdapDirectory(spec, Secret(server.service_password, "test"))
        with directory:
            yield Site(request.param, server, directory, {})


def read(site: Site, cursor: Cursor | None) -> tuple[DeltaRead, dict[str, Employee], DeltaEnd]:
    delta = site.directory.read_delta(ATTRIBUTES, cursor)
    entries = {}
    for employee in delta.entries:
        key = site.directory.key(employee)
        site.keys.setdefault(employee.id, key)
        entries[site.uid(key)] = employee
    return delta, entries, delta.finish()


def first(site: Site) -> Cursor:
    delta, entries, end = read(site, None)
    assert (delta.full, delta.reason) == (True, "no cursor yet: full read")
    assert set(entries) == set(PEOPLE)
    assert (end.removed, end.present) == ((), None)
    assert end.cursor is not None and end.cursor.kind == "csn"
    return end.cursor


def assert_left(site: Site, end: DeltaEnd, gone: set[str], now: set[str]) -> None:
    """Entries ``gone`` left the scope: as removed keys (delete phase) or missing from
    the keys present (a sweep or a present phase), which then are exactly ``now``."""
    if site.mode == "sessionlog":
        assert (site.uids(end.removed), end.present) == (gone, None)
    else:
        assert (end.removed, site.uids(end.present)) == ((), now)


def modify(server: SlapdServer, uid: str, attribute: str, value: str) -> None:
    server.modify_ldif(
        f"dn: uid={uid},{server.people_dn}\nchangetype: modify\n"
        f"replace: {attribute}\n{attribute}: {value}\n\n"
    )


def test_first_read_is_full_and_says_so(site: Site) -> None:
    delta = site.directory.read_delta(ATTRIBUTES, None)
    assert delta.notes == ([SWEEP_NOTE] if site.mode == "entrycsn" else [])
    assert {e.id for e in delta.entries} == set(PEOPLE)
    end = delta.finish()
    assert end.cursor is not None
    assert set(end.cursor.state) == {"csn", "server", "scope", "attributes"}
    assert end.cursor.state["server"] == f"127.0.0.1:{site.server.ldaps_port}"


def test_a_title_and_a_manager_change(site: Site) -> None:
    cursor = first(site)
    modify(site.server, "alice", "title", "Head of Nursing")
    modify(site.server, "bob", "manager", f"uid=alice,{site.server.people_dn}")
    delta, entries, end = read(site, cursor)
    assert (delta.full, delta.reason) == (False, "")
    assert set(entries) == {"alice", "bob"}
    assert entries["alice"].get("title") == "Head of Nursing"
    assert entries["bob"].get("manager") == f"uid=alice,{site.server.people_dn}"
    assert "entrycsn" not in entries["alice"].attributes  # read for the cursor only
    assert_left(site, end, set(), set(PEOPLE))
    # Nothing changed since: nothing read. syncprov then answers "nothing deleted" (an
    # empty delete phase) instead of listing every entry present.
    assert end.cursor is not None
    delta, entries, again = read(site, end.cursor)
    assert (delta.full, set(entries)) == (False, set())
    if site.mode == "entrycsn":
        assert (again.removed, site.uids(again.present)) == ((), set(PEOPLE))
    else:
        assert (set(again.removed), again.present) == (set(), None)


def test_added_and_deleted_employees(site: Site) -> None:
    cursor = first(site)
    site.server.add_ldif(person(site.server, "dave", "Nurse"))
    site.server.modify_ldif(f"dn: uid=carol,{site.server.people_dn}\nchangetype: delete\n\n")
    delta, entries, end = read(site, cursor)
    assert (delta.full, set(entries)) == (False, {"dave"})
    assert_left(site, end, {"carol"}, {"ceo", "alice", "bob", "dave"})


def test_an_entry_moved_out_of_the_base(site: Site) -> None:
    cursor = first(site)
    site.server.modify_ldif(
        f"dn: uid=carol,{site.server.people_dn}\nchangetype: modrdn\nnewrdn: uid=carol\n"
        f"deleteoldrdn: 1\nnewsuperior: {site.server.groups_dn}\n\n"
    )
    delta, entries, end = read(site, cursor)
    assert (delta.full, set(entries)) == (False, set())
    assert_left(site, end, {"carol"}, {"ceo", "alice", "bob"})


def modify_timestamp(server: SlapdServer, uid: str) -> str:
    output = subprocess.run(
        ["ldapsearch", "-LLL", "-x", "-H", server.url, "-D", server.admin_dn, "-w",
         server.admin_password, "-b", f"uid={uid},{server.people_dn}", "-s", "base",
         "modifyTimestamp"],
        capture_output=True, text=True, check=True, env=server.client_env,
    ).stdout  # fmt: skip
    return next(line.split()[1] for line in output.splitlines() if line.startswith("modifyT"))


def test_two_changes_in_the_same_second_are_both_seen(site: Site) -> None:
    """alice changes, a read takes its cursor, bob changes within the same second: a
    modifyTimestamp mark (one-second resolution) could not tell the two apart."""
    cursor = first(site)
    for attempt in range(5):  # until both writes fall within one second (the first, mostly)
        modify(site.server, "alice", "title", f"Title {attempt}")
        delta, entries, end = read(site, cursor)
        assert set(entries) == {"alice"}
        assert end.cursor is not None
        modify(site.server, "bob", "title", f"Title {attempt}")
        same_second = modify_timestamp(site.server, "alice") == modify_timestamp(
            site.server, "bob"
        )
        # the cursor sits between the two writes whether or not they share a second
        # (on a loaded machine they may never): the next read sees bob's and only bob's
        delta, entries, after = read(site, end.cursor)
        assert set(entries) == {"bob"}
        assert entries["bob"].get("title") == f"Title {attempt}"
        if same_second:
            break
        assert after.cursor is not None
        cursor = after.cursor  # past bob's write, so the next attempt starts clean


def unusable(site: Site, cursor: Cursor) -> list[tuple[Cursor, str]]:
    state = dict(cursor.state)
    other_scope = {**state["scope"], "filter": "(objectClass=person)"}
    return [
        (
            replace(cursor, kind="usn"),
            "the saved cursor cannot be used (a 'usn' cursor, not 'csn'): full read",
        ),
        (
            replace(cursor, state={k: v for k, v in state.items() if k != "csn"}),
            "the saved cursor cannot be used (no valid csn): full read",
        ),
        (
            replace(cursor, state={**state, "csn": ["yesterday"]}),
            "the saved cursor cannot be used ('yesterday' is not an entryCSN): full read",
        ),
        (
            replace(cursor, state={**state, "server": "ldap2.example.com:636"}),
            f"another server answered (127.0.0.1:{site.server.ldaps_port}, not "
            "ldap2.example.com:636): full read",
        ),
        (
            replace(cursor, state={**state, "scope": other_scope}),
            "the search scope changed since the saved cursor (base_dns, scope or filter): "
            "full read",
        ),
        (
            replace(cursor, state={**state, "attributes": ["cn", "entryuuid", "uid"]}),
            "attributes not read before are needed (manager, title): full read",
        ),
    ]


def test_a_cursor_that_cannot_be_used_means_a_full_read(site: Site) -> None:
    cursor = first(site)
    modify(site.server, "alice", "title", "Head of Nursing")
    for bad, reason in unusable(site, cursor):
        delta, entries, end = read(site, bad)
        assert (delta.full, delta.reason) == (True, reason)
        assert set(entries) == set(PEOPLE)
        assert (end.removed, end.present) == ((), None)
        assert end.cursor is not None and set(end.cursor.state["csn"]) != set(cursor.state["csn"])


def test_a_cursor_from_the_future_means_a_full_read(site: Site) -> None:
    """A server restored from a backup older than the cursor: syncprov refuses to continue;
    on entryCSN alone the read finds nothing newer."""
    cursor = first(site)
    future = replace(
        cursor, state={**cursor.state, "csn": ["29991231235959.000000Z#000000#000#000000"]}
    )
    delta, entries, _ = read(site, future)
    if site.mode == "entrycsn":
        assert (delta.full, set(entries)) == (False, set())
    else:
        assert (delta.full, delta.reason) == (
            True,
            "the server cannot continue from the saved cursor (LDAP 53 unwillingToPerform: "
            "consumer state is newer than provider!): full read",
        )
        assert set(entries) == set(PEOPLE)


def test_margin(site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without syncprov the read starts CSN_MARGIN before the highest entryCSN seen, for
    writes that commit after a later one: here everything was written within it."""
    monkeypatch.setattr(ldap_csn, "CSN_MARGIN", timedelta(minutes=2))
    cursor = first(site)
    modify(site.server, "alice", "title", "Head of Nursing")
    _, entries, _ = read(site, cursor)
    assert set(entries) == (set(PEOPLE) if site.mode == "entrycsn" else {"alice"})
