"""Incremental reads on Entra ID (/users/delta) through the backend's API, with the real
msal and msgraph-sdk against the fake: exactly the changed users come back, as a full read
would show them; removals and users leaving the scope come as removed keys; a cursor that
cannot be used means a full read that says why."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from click.testing import Result

from persona_sync.directory import entra_delta
from persona_sync.directory.base import Cursor, DeltaEnd, DeltaRead
from persona_sync.directory.entra import EntraDirectory
from persona_sync.employee import Employee
from tests.entra.conftest import ON_PREMISES, Tenant, entra_directory
from tests.fakegraph import FakeEntra
from tests.schedule_time import FakeTime

ATTRIBUTES = ["jobTitle", "officeLocation", "manager", ON_PREMISES]
Run = Callable[..., Result]


class Org:
    """A small tenant: a CEO, two reports, a disabled user; one backend open on it."""

    def __init__(self, fake: FakeEntra, **settings: object) -> None:
        self.fake = fake
        self.ceo = fake.add_user(userPrincipalName="ceo@contoso.example", jobTitle="CEO")
        self.nurse = fake.add_user(
            userPrincipalName="nurse@contoso.example", jobTitle="Nurse", manager=self.ceo
        )
        self.engineer = fake.add_user(
            userPrincipalName="eng@contoso.example", jobTitle="Engineer", manager=self.ceo
        )
        self.off = fake.add_user(userPrincipalName="off@contoso.example", accountEnabled=False)
        self.settings = settings

    def open(self, **settings: object) -> EntraDirectory:
        return entra_directory(self.fake, **{**self.settings, **settings})  # type: ignore[arg-type]


@pytest.fixture
def org(fake_entra: FakeEntra) -> Org:
    return Org(fake_entra)


def drain(read: DeltaRead) -> tuple[dict[str, Employee], DeltaEnd]:
    """The entries by key, then what the read knows at its end."""
    entries = {employee.dn.casefold(): employee for employee in read.entries}
    return entries, read.finish()


def full_then(org: Org) -> Cursor:
    """A first (full) read; its cursor."""
    with org.open() as entra:
        read = entra.read_delta(ATTRIBUTES, None)
        _, end = drain(read)
    assert end.cursor is not None
    return end.cursor


def delta(
    org: Org, cursor: Cursor, **settings: object
) -> tuple[DeltaRead, dict[str, Employee], DeltaEnd]:
    with org.open(**settings) as entra:
        read = entra.read_delta(ATTRIBUTES, cursor)
        entries, end = drain(read)
    return read, entries, end


def full_read(org: Org) -> dict[str, Employee]:
    with org.open() as entra:
        return {e.dn.casefold(): e for e in entra.read(ATTRIBUTES)}


def test_a_first_read_is_full_and_takes_the_delta_position_first(org: Org) -> None:
    with org.open() as entra:
        read = entra.read_delta(ATTRIBUTES, None)
        entries, end = drain(read)
        assert entra.key(entries[org.nurse]) == org.nurse
    assert (read.full, read.reason) == (True, "no cursor yet: first run")
    assert set(entries) == {org.ceo, org.nurse, org.engineer}  # the disabled user is out
    assert entries == full_read(org)
    assert (list(end.removed), end.present) == ([], None)
    assert end.cursor is not None and end.cursor.kind == "graph-delta"
    assert end.cursor.state["select"] == [
        "accountenabled", "id", "jobtitle", "manager", "officelocation",
        "onpremisesextensionattributes", "onpremisessyncenabled", "userprincipalname",
    ]  # fmt: skip
    # $deltatoken=latest was taken before the users were read: nothing falls between.
    paths = [(r.path, r.query.get("$deltatoken")) for r in org.fake.requests if r.batch_id is None]
    graph = [p for p in paths if p[0].startswith("/v1.0/users")]
    assert graph[0] == ("/v1.0/users/delta", "latest")
    assert graph[1][0] == "/v1.0/users"


def test_nothing_changed_reads_nobody(org: Org) -> None:
    cursor = full_then(org)
    read, entries, end = delta(org, cursor)
    assert (read.full, entries, list(end.removed)) == (False, {}, [])
    assert end.cursor is not None and end.cursor.state["delta_link"] != cursor.state["delta_link"]
    assert org.fake.count("GET", "/v1.0/users") == 1  # only the first, full read listed users


def test_a_changed_title_and_a_changed_manager_come_back_as_a_full_read_shows_them(
    org: Org,
) -> None:
    cursor = full_then(org)
    org.fake.set_property(org.nurse, "jobTitle", "Head Nurse")
    org.fake.set_property(org.engineer, "manager", org.nurse)
    org.fake.set_property(org.ceo, "department", "Board")  # not read: not tracked
    read, entries, end = delta(org, cursor)
    assert (read.full, read.reason) == (False, "")
    assert set(entries) == {org.nurse, org.engineer}
    assert entries[org.nurse].get("jobtitle") == "Head Nurse"
    assert entries[org.engineer].get("manager") == org.nurse
    now = full_read(org)
    assert entries == {key: now[key] for key in entries}
    assert list(end.removed) == []


def test_a_manager_taken_away_is_read_without_one(org: Org) -> None:
    cursor = full_then(org)
    org.fake.set_property(org.nurse, "manager", None)
    _, entries, _ = delta(org, cursor)
    assert set(entries) == {org.nurse}
    assert entries[org.nurse].get("manager") is None


def test_deleted_users_are_removed_and_a_restored_one_comes_back(org: Org) -> None:
    cursor = full_then(org)
    org.fake.delete_user(org.nurse)  # restorable: @removed reason "changed"
    org.fake.remove_user(org.engineer)  # for good: reason "deleted"
    _, entries, end = delta(org, cursor)
    assert (entries, sorted(end.removed)) == ({}, sorted([org.nurse, org.engineer]))
    assert end.cursor is not None
    org.fake.restore_user(org.nurse)
    _, entries, end = delta(org, end.cursor)
    assert (set(entries), list(end.removed)) == ({org.nurse}, [])


def test_a_disabled_user_leaves_the_scope_and_comes_back_when_enabled(org: Org) -> None:
    cursor = full_then(org)
    org.fake.set_property(org.engineer, "accountEnabled", False)
    org.fake.set_property(org.off, "accountEnabled", True)
    _, entries, end = delta(org, cursor)
    assert (set(entries), list(end.removed)) == ({org.off}, [org.engineer])
    assert end.cursor is not None
    org.fake.set_property(org.engineer, "accountEnabled", True)
    _, entries, end = delta(org, end.cursor)
    assert (set(entries), list(end.removed)) == ({org.engineer}, [])


def test_a_user_who_stops_or_starts_matching_the_filter(fake_entra: FakeEntra) -> None:
    org = Org(fake_entra, scope={"filter": "department eq 'Care'"})
    for user in (org.ceo, org.nurse):
        fake_entra.set_property(user, "department", "Care")
    cursor = full_then(org)
    # department is not among the attributes read, but the filter names it: tracked.
    assert "department" in cursor.state["select"]
    fake_entra.set_property(org.nurse, "department", "Lab")
    fake_entra.set_property(org.engineer, "department", "Care")
    _, entries, end = delta(org, cursor)
    assert (set(entries), list(end.removed)) == ({org.engineer}, [org.nurse])


def test_group_scope_follows_members_joining_and_leaving(fake_entra: FakeEntra) -> None:
    fake_entra.grant(
        fake_entra.app.client_id,  # type: ignore[union-attr]
        ["User.ReadWrite.All", "GroupMember.Read.All"],
    )
    org = Org(fake_entra)
    group = fake_entra.add_group([org.ceo, org.nurse])
    org.settings = {"scope": {"group_id": group}}
    cursor = full_then(org)
    assert cursor.state["members"] == sorted([org.ceo, org.nurse])
    # Membership changes do not touch the users: only the member list shows them.
    fake_entra.groups[group]["members"] = [org.ceo, org.engineer]
    fake_entra.set_property(org.ceo, "jobTitle", "Chair")
    read, entries, end = delta(org, cursor)
    assert (set(entries), list(end.removed)) == ({org.ceo, org.engineer}, [org.nurse])
    assert read.notes == [f"group {group}: 1 joined, 1 left"]
    assert end.cursor is not None and end.cursor.state["members"] == sorted([org.ceo, org.engineer])


def test_our_own_writes_come_back_harmlessly(org: Org) -> None:
    from persona_sync.directory.base import Change

    cursor = full_then(org)
    with org.open() as entra:
        entra.apply([Change("nurse@contoso.example", org.nurse, ON_PREMISES, None, "clinician")])
    _, entries, _ = delta(org, cursor)
    assert set(entries) == {org.nurse}
    assert entries[org.nurse].get(ON_PREMISES.lower()) == "clinician"


@pytest.mark.parametrize(
    ("expire", "reason"),
    [
        (
            FakeEntra.expire_delta_tokens,
            "the delta token expired (Graph answered 400 syncStateNotFound): full read",
        ),
        (
            FakeEntra.reset_delta_sync,
            "Graph reset its change tracking (it answered 410 resyncRequired): full read",
        ),
    ],
    ids=["expired", "reset"],
)
def test_a_delta_link_graph_no_longer_knows_means_a_full_read(
    org: Org, expire: object, reason: str
) -> None:
    cursor = full_then(org)
    expire(org.fake)  # type: ignore[operator]
    org.fake.set_property(org.nurse, "jobTitle", "Head Nurse")
    read, entries, end = delta(org, cursor)
    assert (read.full, read.reason) == (True, reason)
    assert set(entries) == {org.ceo, org.nurse, org.engineer}
    assert end.cursor is not None
    # The new cursor works.
    org.fake.set_property(org.ceo, "jobTitle", "Chair")
    read, entries, _ = delta(org, end.cursor)
    assert (read.full, set(entries)) == (False, {org.ceo})


def test_a_cursor_older_than_seven_days_is_not_used(org: Org) -> None:
    cursor = full_then(org)
    old = datetime.now(UTC) - timedelta(days=8)
    aged = replace(cursor, taken=old.isoformat())
    read, entries, _ = delta(org, aged)
    assert (read.full, read.reason) == (
        True,
        "the delta token is 8 days old (they last 7): full read",
    )
    assert set(entries) == {org.ceo, org.nurse, org.engineer}
    assert not any(
        r.query.get("$deltatoken") == cursor.state["delta_link"].rsplit("=", 1)[1]
        for r in org.fake.requests
    )  # the stale link was never sent
    nearly = replace(cursor, taken=(datetime.now(UTC) - timedelta(days=7, hours=5)).isoformat())
    read, _, _ = delta(org, nearly)
    assert read.reason == "the delta token is 7 days and 5 hours old (they last 7): full read"


def test_cursors_made_for_something_else_mean_a_full_read(org: Org) -> None:
    cursor = full_then(org)
    cases = {
        "the saved cursor is not a Graph delta link (usn): full read": replace(cursor, kind="usn"),
        "the saved cursor holds no delta link: full read": replace(
            cursor, state={**cursor.state, "delta_link": ""}
        ),
        f"the saved delta link is for tenant 0000, not {org.fake.tenant_id}: full read": replace(
            cursor, state={**cursor.state, "tenant": "0000"}
        ),
        "the saved delta link is for another Graph (graph.microsoft.com): full read": replace(
            cursor,
            state={
                **cursor.state,
                "delta_link": "https://graph.microsoft.com/v1.0/users/delta?$deltatoken=x",
            },
        ),
        "the attributes read changed (now also officelocation; no longer department) and the "
        "delta link did not track them: full read": replace(
            cursor,
            state={
                **cursor.state,
                "select": [
                    *(s for s in cursor.state["select"] if s != "officelocation"),
                    "department",
                ],
            },
        ),
        "the scope changed (include_disabled was True, now False): full read": replace(
            cursor,
            state={**cursor.state, "scope": {**cursor.state["scope"], "include_disabled": True}},
        ),
        "the saved cursor's time 'yesterday' is not a time: full read": replace(
            cursor, taken="yesterday"
        ),
    }
    for reason, unusable in cases.items():
        read, entries, end = delta(org, unusable)
        assert (read.full, read.reason, len(entries)) == (True, reason, 3)
        assert end.cursor is not None and end.cursor.kind == "graph-delta"


def test_too_many_changed_users_are_read_in_full(org: Org, monkeypatch: pytest.MonkeyPatch) -> None:
    cursor = full_then(org)
    for user in (org.ceo, org.nurse, org.engineer):
        org.fake.set_property(user, "jobTitle", "Staff")
    monkeypatch.setattr(EntraDirectory, "reread_limit", 2)
    read, entries, end = delta(org, cursor)
    assert (read.full, read.reason) == (
        True,
        "3 users changed since the last read: one full read costs less than reading more "
        "than 2 users one by one",
    )
    assert set(entries) == {org.ceo, org.nurse, org.engineer}
    # That full read continues from the round it made: the next delta starts after it.
    assert end.cursor is not None
    monkeypatch.setattr(EntraDirectory, "reread_limit", 10)
    read, entries, _ = delta(org, end.cursor)
    assert (read.full, entries) == (False, {})


def test_a_delta_round_of_many_pages_and_throttled_reads(
    fake_entra: FakeEntra, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(entra_delta, "PAGE_PREFERENCE", {"Prefer": "odata.maxpagesize=40"})
    org = Org(fake_entra)
    staff = [fake_entra.add_user(userPrincipalName=f"s{n}@contoso.example") for n in range(250)]
    cursor = full_then(org)
    for user in staff[::2]:
        fake_entra.set_property(user, "jobTitle", "Nurse")
    fake_entra.remove_user(staff[1])
    fake_entra.faults.retry_after = 0
    fake_entra.faults.every(4, 429, methods={"GET"})  # delta pages and re-reads alike
    read, entries, end = delta(org, cursor)
    assert read.full is False
    assert set(entries) == set(staff[::2])
    assert list(end.removed) == [staff[1]]
    pages = [r for r in fake_entra.requests if r.path == "/v1.0/users/delta()" and r.status == 200]
    assert len(pages) == 4  # 126 changed, 1 removed, 40 a page: followed by hand


def test_sync_delta_through_the_cli_plans_what_a_full_run_plans(
    tenant: Tenant, run_cli: Run
) -> None:
    first = run_cli("sync", "--delta")
    assert first.exit_code == 0, first.stderr
    assert "read: no snapshot yet: full read; 4 entries" in first.stderr.splitlines()
    fake = tenant.fake
    fake.set_property(tenant.users["engineer"], "jobTitle", "Registered Nurse")
    fake.set_property(tenant.users["engineer"], "officeLocation", "North Clinic")
    fake.set_property(tenant.users["nurse"], "accountEnabled", False)
    fake.add_user(userPrincipalName="new@contoso.example", jobTitle="Software Engineer",
                  officeLocation="Munich HQ", manager=tenant.users["boss"])  # fmt: skip
    planned = run_cli("plan", "--delta", "--format", "json")
    assert planned.exit_code == 2, planned.stderr
    read = [line for line in planned.stderr.splitlines() if line.startswith("read: ")]
    # Read again: the engineer, the newcomer and the CEO, whose persona the sync wrote
    # (our own write comes back in the delta, and changes nothing); the nurse left.
    assert read == [
        "read: delta since the last read: 3 entries read, 2 changed, 1 removed; "
        "2 employees re-evaluated"
    ]
    full = run_cli("plan", "--format", "json")
    assert json.loads(planned.stdout)["changes"] == json.loads(full.stdout)["changes"]
    assert sorted(c["employee"] for c in json.loads(full.stdout)["changes"]) == [
        "eng@contoso.example",
        "new@contoso.example",
    ]


def test_sync_every_runs_its_cycles_against_graph_in_one_process(
    tenant: Tenant, run_cli: Run, fake_time: FakeTime
) -> None:
    """Each cycle its own session, token and event loop: the second one reads the delta."""
    fake = tenant.fake
    fake_time.at_sleep = lambda number: fake.set_property(
        tenant.users["engineer"], "jobTitle", "Registered Nurse"
    )
    done = run_cli("sync", "--delta", "--every", "5m", "--cycles", "2")
    assert done.exit_code == 0, done.stderr
    said = [line for line in done.stderr.splitlines() if not line.startswith("run ")]
    assert said == [
        "read: no snapshot yet: full read; 4 entries",
        "plan: 3 changes for 3 employees (4 in scope, 0 out of scope, 1 unchanged, 1 skipped)",
        # the engineer, and the three the first cycle wrote (our own writes, changing nothing)
        "read: delta since the last read: 3 entries read, 1 changed, 0 removed; "
        "1 employees re-evaluated",
        "plan: 1 change for 1 employees (4 in scope, 0 out of scope, 3 unchanged, 1 skipped)",
    ]
    applied = [line.split(": ")[1].split(",")[0] for line in done.stderr.splitlines()
               if line.startswith("run ")]  # fmt: skip
    assert applied == ["3 applied", "1 applied"]
    assert run_cli("plan", "-q", "--format", "json").exit_code == 0  # nothing left to do
    tokens = [r for r in fake.requests if r.path.endswith("/oauth2/v2.0/token")]
    assert len(tokens) == 3  # a token per session: two cycles, then the plan
