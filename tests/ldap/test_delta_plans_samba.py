"""Delta plans end to end on a real Samba AD DC (uSNChanged on one DC): with the
least-privilege service account, whose deletions come from a sweep of objectGUIDs, and
with an account that may read Deleted Objects.

The backend's read_delta alone is tested in test_delta_samba.py; here the planner runs on
top of it (tests/ldap/delta_plans.py has the scenario): exactly the affected employees are
re-evaluated and every delta plan equals a full plan; the tool's own writes come back as no
change; a run killed between its writes and the cursor save converges on the next; a
deleted or damaged snapshot is rebuilt by a full read that says so.

The DC binds fixed ports: run under `flock /tmp/persona-samba.lock`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from persona_sync.snapshot import SNAPSHOT_NAME, Snapshot
from tests.ldap.conftest import journal_rows, write_config
from tests.ldap.delta_plans import (
    ORG,
    Person,
    Planner,
    Run,
    check,
    copy_rules,
    delta_equals_full,
    killed_sync,
    read_lines,
    scenario,
    use_rules,
)
from tests.servers.samba import AdUser, SambaDC

pytestmark = pytest.mark.servers

TARGET = "msDS-cloudExtensionAttribute1"
PASSWORD = "Persona-Sync-Test-1!"  # enabled accounts (a user without one is disabled)
PREFIX = "dp-"  # sAMAccountName is unique in the domain
SWEEP_NOTE = (
    "read: the account cannot read CN=Deleted Objects: deletions and moves out of scope are "
    "found by a sweep of every entry's objectguid (grant it List Contents and Read Property "
    "on Deleted Objects to make delta reads cheaper)"
)
SYNCED = {
    "ceo": "vip",
    "vp": "vip",
    "alice": "engineer",
    "bob": "knowledge-worker",
    "carol": "field-sales",
    "lead": "vip",
    "r1": "knowledge-worker",
    "r2": "knowledge-worker",
    "r3": "plant-floor",
}


@dataclass
class Domain:
    """The org in the test's own OU, a config for it in the test's folder (the working
    directory) reading a copy of the default rules, bound as ``account``."""

    account: str  # "service" (least privilege) or "admin" (may read Deleted Objects)
    dc: SambaDC
    ou: str
    config: Path
    rules: Path

    def dn(self, name: str) -> str:
        return f"CN={PREFIX}{name},{self.ou}"

    def user(self, person: Person) -> AdUser:
        attributes = {"title": person.title, "physicalDeliveryOfficeName": person.site}
        if person.manager:
            attributes["manager"] = self.dn(person.manager)
        return AdUser(PREFIX + person.name, attributes, PASSWORD, self.ou)

    # Org: the changes, as Administrator
    def set(self, name: str, attribute: str, value: str) -> None:
        self.dc.modify_ldif(
            f"dn: {self.dn(name)}\nchangetype: modify\nreplace: {attribute}\n"
            f"{attribute}: {value}\n\n"
        )

    def set_manager(self, name: str, manager: str) -> None:
        self.set(name, "manager", self.dn(manager))

    def delete(self, name: str) -> None:
        self.dc.modify_ldif(f"dn: {self.dn(name)}\nchangetype: delete\n\n")

    def add(self, person: Person) -> None:
        self.dc.add_users([self.user(person)])

    def notes(self) -> list[str]:
        """The read lines' notes of a delta read with this account."""
        return [SWEEP_NOTE] if self.account == "service" else []

    def values(self) -> dict[str, str]:
        """name -> the persona attribute as an independent client (ldapsearch) sees it."""
        found: dict[str, str] = {}
        for block in self.dc.dump(self.ou).split("\n\n"):
            lines = block.splitlines()
            name = next((ln[16:] for ln in lines if ln.startswith("sAMAccountName: ")), None)
            value = next((ln[len(TARGET) + 2 :] for ln in lines if ln.startswith(TARGET)), None)
            if name and value:
                found[name.removeprefix(PREFIX)] = value
        return found


@pytest.fixture(params=["service", "admin"])
def domain(
    request: pytest.FixtureRequest,
    samba_dc: SambaDC,
    samba_ou: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Domain]:
    # Whether an account may read Deleted Objects shows only once something was deleted:
    # delete one user first, so the admin account's reads use the tombstones from the start.
    elsewhere = samba_dc.create_ou(f"{samba_ou.split(',')[0][3:]}-elsewhere")
    samba_dc.add_users([AdUser(f"{PREFIX}deleted", {}, None, elsewhere)])
    samba_dc.modify_ldif(f"dn: CN={PREFIX}deleted,{elsewhere}\nchangetype: delete\n\n")
    admin = request.param == "admin"
    config = write_config(
        tmp_path,
        (
            "  type: ldap\n  preset: ad\n"
            f"  urls: [{samba_dc.url}]\n  ca_file: {samba_dc.ca_file}\n"
            f"  bind: {{user: '{samba_dc.admin_user if admin else samba_dc.service_user}'}}\n"
            f"  base_dns: ['{samba_ou}']\n"
        ),
        TARGET,
    )
    rules = copy_rules(tmp_path)
    use_rules(config, rules)
    password = samba_dc.admin_password if admin else samba_dc.service_password
    monkeypatch.setenv("PERSONA_SYNC_BIND_PASSWORD", password)
    monkeypatch.chdir(tmp_path)
    domain = Domain(request.param, samba_dc, samba_ou, config, rules)
    samba_dc.add_users([domain.user(p) for p in ORG])
    yield domain
    samba_dc.delete_tree(elsewhere)


def full_sync(run_cli: Run, *args: str) -> list[str]:
    """A sync that writes everyone's persona; its read lines."""
    result = run_cli("sync", *args)
    assert result.exit_code == 0, result.stderr
    assert ": 9 applied, 0 already set, 0 conflicts, 0 failed; journal " in result.stderr
    return read_lines(result)


def test_each_change_re_evaluates_exactly_the_affected_employees(
    domain: Domain, run_cli: Run
) -> None:
    assert full_sync(run_cli) == []
    assert domain.values() == SYNCED
    scenario(domain, Planner(domain.config, PREFIX), domain.rules, TARGET)


def test_own_writes_come_back_as_no_change(domain: Domain, run_cli: Run) -> None:
    assert full_sync(run_cli, "--delta") == ["read: no snapshot yet: full read; 9 entries"]
    planned = run_cli("plan", "--delta", "--format", "json")
    assert planned.exit_code == 0, planned.stderr
    assert read_lines(planned) == [
        "read: delta since the last read: 9 entries read, 0 changed, 0 removed; "
        "0 employees re-evaluated",
        *domain.notes(),
    ]
    assert json.loads(planned.stdout)["changes"] == []
    # the echo was taken in: the next read finds nothing at all
    again = run_cli("sync", "--delta")
    assert again.exit_code == 0, again.stderr
    assert read_lines(again) == [
        "read: delta since the last read: 0 entries read, 0 changed, 0 removed; "
        "0 employees re-evaluated",
        *domain.notes(),
    ]
    assert "plan: 0 changes for 0 employees (9 in scope" in again.stderr


def test_a_run_killed_before_the_cursor_save_converges(domain: Domain, run_cli: Run) -> None:
    full_sync(run_cli, "--delta")
    domain.set("alice", "title", "Cashier")
    domain.set("carol", "physicalDeliveryOfficeName", "Store 7")
    killed = killed_sync(domain.config.parent)
    assert killed.returncode == -9, killed.stderr
    # the full sync's nine writes come back (no change) with the two changes
    assert read_lines(killed) == [
        "read: delta since the last read: 9 entries read, 2 changed, 0 removed; "
        "2 employees re-evaluated",
        *domain.notes(),
    ]
    assert domain.values() == {**SYNCED, "alice": "frontline", "carol": "frontline"}
    ends = journal_rows("end")
    assert [row["status"] for row in ends] == ["complete", "complete"]  # the writes' run ended
    result = run_cli("sync", "--delta")
    assert result.exit_code == 0, result.stderr
    assert "recovered:" not in result.stderr
    # from the old cursor: the same entries again, the two changed now with the values
    # the killed run wrote
    assert read_lines(result) == [
        "read: delta since the last read: 9 entries read, 2 changed, 0 removed; "
        "2 employees re-evaluated",
        *domain.notes(),
    ]
    assert "plan: 0 changes for 0 employees (9 in scope" in result.stderr
    assert domain.values() == {**SYNCED, "alice": "frontline", "carol": "frontline"}
    again = run_cli("plan", "--delta", "--format", "json")
    assert again.exit_code == 0, again.stderr
    assert read_lines(again) == [
        "read: delta since the last read: 0 entries read, 0 changed, 0 removed; "
        "0 employees re-evaluated",
        *domain.notes(),
    ]


@pytest.mark.parametrize("damage", ["deleted", "damaged"])
def test_a_lost_snapshot_is_rebuilt_by_a_full_read(
    domain: Domain, run_cli: Run, damage: str
) -> None:
    full_sync(run_cli)
    state = domain.config.parent / "state"
    if damage == "deleted":
        for name in (SNAPSHOT_NAME, f"{SNAPSHOT_NAME}-wal", f"{SNAPSHOT_NAME}-shm"):
            (state / name).unlink(missing_ok=True)
        why = "no snapshot yet"
    else:
        (state / SNAPSHOT_NAME).write_bytes(b"this is not a database" * 100)
        why = "the snapshot was unreadable (file is not a database)"
    domain.set("alice", "title", "Cashier")
    planned = run_cli("plan", "--delta", "--format", "json")
    assert planned.exit_code == 2, planned.stderr
    assert read_lines(planned) == [f"read: {why}: full read; 9 entries"]
    assert [(c["employee"], c["new"]) for c in json.loads(planned.stdout)["changes"]] == [
        (f"{PREFIX}alice", "frontline")
    ]
    again = run_cli("plan", "--delta", "--format", "json")
    assert again.exit_code == 2, again.stderr
    assert read_lines(again) == [
        "read: delta since the last read: 0 entries read, 0 changed, 0 removed; "
        "0 employees re-evaluated",
        *domain.notes(),
    ]


# AD keeps a manager link by the manager's identity: renaming or moving the manager
# rewrites the reports' manager values, deleting it takes them away, and neither changes
# the reports' uSNChanged. The planner reads again whoever named the old DN.
def test_a_renamed_manager_keeps_the_reports(domain: Domain, run_cli: Run) -> None:
    full_sync(run_cli)
    planner = Planner(domain.config, PREFIX)
    check(planner, "own writes", set(), None)
    domain.dc.modify_ldif(
        f"dn: {domain.dn('lead')}\nchangetype: modrdn\nnewrdn: CN=Lead Renamed\ndeleteoldrdn: 1\n\n"
    )
    # r1 and r2 now name CN=Lead Renamed: nobody's position moved
    delta_equals_full(planner, "a renamed manager", {"lead", "r1", "r2"})


def test_a_deleted_manager_frees_the_reports(domain: Domain, run_cli: Run) -> None:
    full_sync(run_cli)
    planner = Planner(domain.config, PREFIX)
    check(planner, "own writes", set(), None)
    domain.delete("lead")
    # r1 and r2 have no manager now (r3 one level up), the CEO lost a report
    delta_equals_full(planner, "a deleted manager", {"r1", "r2", "r3", "ceo"})


def test_a_renamed_ou_carries_its_employees(domain: Domain, run_cli: Run) -> None:
    """Renaming an OU changes only the OU's uSNChanged: the employees under it get new DNs
    without one, and a delta reads them again under the renamed OU."""
    team = domain.dc.create_ou("Team", domain.ou)
    attributes = {"title": "Software Engineer", "physicalDeliveryOfficeName": "Munich HQ"}
    domain.dc.add_users([AdUser(f"{PREFIX}tm", attributes, PASSWORD, team)])
    synced = run_cli("sync")
    assert synced.exit_code == 0, synced.stderr
    planner = Planner(domain.config, PREFIX)
    check(planner, "own writes", set(), None)
    domain.dc.modify_ldif(f"dn: {team}\nchangetype: modrdn\nnewrdn: OU=Squad\ndeleteoldrdn: 1\n\n")
    check(planner, "an OU renamed", {"tm"}, None)
    with Snapshot.open(domain.config.parent / "state")[0] as store:
        assert [r.dn for r in store.rows() if r.id == f"{PREFIX}tm"] == [
            f"CN={PREFIX}tm,OU=Squad,{domain.ou}"
        ]
