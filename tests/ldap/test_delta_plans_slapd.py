"""Delta plans end to end on a real slapd, with entryCSN alone and with syncprov (syncrepl
refreshOnly with a present phase, and with a session log: a delete phase).

The backend's read_delta alone is tested in test_delta_slapd.py; here the planner runs on
top of it (tests/ldap/delta_plans.py has the scenario): exactly the affected employees are
re-evaluated and every delta plan equals a full plan; the tool's own writes come back as no
change; a run killed between its writes and the cursor save converges on the next; a
deleted or damaged snapshot is rebuilt by a full read that says so.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest

from persona_sync.directory import ldap_csn
from persona_sync.directory.ldap_csn import Csn
from persona_sync.snapshot import SNAPSHOT_NAME, Snapshot
from tests.ldap.conftest import journal_rows, server_values, slapd_directory, write_config
from tests.ldap.delta_plans import (
    EVERYONE,
    ORG,
    Person,
    Planner,
    Run,
    check,
    copy_rules,
    delta_equals_full,
    killed_sync,
    person_ldif,
    read_lines,
    scenario,
    use_rules,
)
from tests.schedule_time import FakeTime
from tests.servers.clients import run_ldap_tool
from tests.servers.plugin import require_slapd
from tests.servers.slapd import SlapdServer

pytestmark = pytest.mark.servers

MODES: Mapping[str, Mapping[str, object]] = {
    "entrycsn": {},
    "syncrepl": {"syncprov": True},
    "sessionlog": {"syncprov": True, "sessionlog": 100},
}
SWEEP_NOTE = (
    "read: syncrepl is not available (it needs slapo-syncprov, a contextCSN this account may "
    "read and entryUUID as the stable id): deletions and moves out of scope are found by a "
    "sweep of every entry's entryuuid"
)
# What the full sync writes (rules/personas.yaml): the CEO, the VP and lead (a manager one
# level below the CEO) are vip; r1 and r2 sit two levels down, r3 three (plant-floor).
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
class Site:
    """A slapd in one change-tracking mode, the org loaded, a config for it in the test's
    folder (the working directory) reading a copy of the default rules."""

    mode: str
    server: SlapdServer
    config: Path
    rules: Path

    def dn(self, name: str) -> str:
        return f"uid={name},{self.server.people_dn}"

    def entry(self, person: Person) -> str:
        return person_ldif(self.dn, person)

    def csns(self) -> tuple[str, str]:
        """(the suffix's contextCSN, the highest entryCSN of any entry), as slapd writes
        them (fixed width: text order is CSN order)."""
        output = run_ldap_tool(
            ["ldapsearch", "-LLL", "-x", "-H", self.server.url, "-D", self.server.admin_dn,
             "-w", self.server.admin_password, "-b", self.server.base_dn, "(objectClass=*)",
             "entryCSN", "contextCSN"],
            ca_file=self.server.ca_file,
        )  # fmt: skip
        values: dict[str, list[str]] = {"contextCSN": [""], "entryCSN": [""]}
        for line in output.splitlines():
            name, _, value = line.partition(": ")
            if name in values:
                values[name].append(value)
        return max(values["contextCSN"]), max(values["entryCSN"])

    def settle(self) -> None:
        """After this tool's pipelined writes: one write of the administrator's outside the
        base, so syncprov's contextCSN is above every entryCSN again.

        Concurrent writes can commit out of order, and syncprov then leaves the contextCSN
        below the later one until the next write (about one sync in ten here). Those
        entries are read again by every delta until then (see
        test_a_change_committed_above_the_context_csn_is_read_at_once): harmless, but the
        counts of entries read would vary.
        """
        if self.mode == "entrycsn":
            return
        self.server.modify_ldif(
            f"dn: {self.server.groups_dn}\nchangetype: modify\nreplace: description\n"
            f"description: barrier {time.monotonic_ns()}\n\n"
        )
        context, newest = self.csns()
        assert context >= newest, (context, newest)

    # Org: the changes, as the administrator
    def set(self, name: str, attribute: str, value: str) -> None:
        self.server.modify_ldif(
            f"dn: {self.dn(name)}\nchangetype: modify\nreplace: {attribute}\n"
            f"{attribute}: {value}\n\n"
        )

    def set_manager(self, name: str, manager: str) -> None:
        self.set(name, "manager", self.dn(manager))

    def delete(self, name: str) -> None:
        self.server.modify_ldif(f"dn: {self.dn(name)}\nchangetype: delete\n\n")

    def add(self, person: Person) -> None:
        self.server.add_ldif(self.entry(person))

    def notes(self) -> list[str]:
        """The read lines' notes of a delta read in this mode."""
        return [SWEEP_NOTE] if self.mode == "entrycsn" else []


@pytest.fixture(params=sorted(MODES))
def site(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Site]:
    require_slapd()
    with SlapdServer(**MODES[request.param]) as server:  # type: ignore[arg-type]
        config = write_config(
            tmp_path,
            slapd_directory(server),
            "personaName",
        )
        rules = copy_rules(tmp_path)
        use_rules(config, rules)
        monkeypatch.setenv("PERSONA_SYNC_BIND_PASSWORD", server.service_password)
        monkeypatch.chdir(tmp_path)
        site = Site(request.param, server, config, rules)
        server.add_ldif("".join(site.entry(p) for p in ORG))
        yield site


@pytest.fixture
def no_margin(monkeypatch: pytest.MonkeyPatch) -> None:
    """The admin's writes here commit in order: an entryCSN read may start right after the
    highest CSN seen, so the entries it returns are exactly those changed."""
    monkeypatch.setattr(ldap_csn, "CSN_MARGIN", timedelta(0))


def full_sync(site: Site, run_cli: Run, *args: str) -> list[str]:
    """A sync that writes everyone's persona; its read lines."""
    result = run_cli("sync", *args)
    assert result.exit_code == 0, result.stderr
    assert ": 9 applied, 0 already set, 0 conflicts, 0 failed; journal " in result.stderr
    site.settle()
    return read_lines(result)


@pytest.mark.usefixtures("no_margin")
def test_each_change_re_evaluates_exactly_the_affected_employees(site: Site, run_cli: Run) -> None:
    assert full_sync(site, run_cli) == []
    assert server_values(site.server) == SYNCED
    scenario(site, Planner(site.config), site.rules, "personaName")


def test_entries_re_read_within_the_csn_margin_change_nothing(site: Site, run_cli: Run) -> None:
    """With the real margin an entryCSN read returns every entry changed in the last two
    minutes (all of them here): compared with the snapshot, they change nothing. (syncrepl
    has no margin: its reads stay exact.)"""
    full_sync(site, run_cli)
    scenario(site, Planner(site.config), site.rules, "personaName", site.mode != "entrycsn")


@pytest.mark.usefixtures("no_margin")
def test_own_writes_come_back_as_no_change(site: Site, run_cli: Run) -> None:
    assert full_sync(site, run_cli, "--delta") == [
        "read: no snapshot yet: full read; 9 entries",
        *site.notes(),
    ]
    planned = run_cli("plan", "--delta", "--format", "json")
    assert planned.exit_code == 0, planned.stderr
    assert read_lines(planned) == [
        "read: delta since the last read: 9 entries read, 0 changed, 0 removed; "
        "0 employees re-evaluated",
        *site.notes(),
    ]
    assert json.loads(planned.stdout)["changes"] == []
    # the echo was taken in: the next read finds nothing at all
    again = run_cli("sync", "--delta")
    assert again.exit_code == 0, again.stderr
    assert read_lines(again) == [
        "read: delta since the last read: 0 entries read, 0 changed, 0 removed; "
        "0 employees re-evaluated",
        *site.notes(),
    ]
    assert "plan: 0 changes for 0 employees (9 in scope" in again.stderr


@pytest.mark.usefixtures("no_margin")
def test_a_run_killed_before_the_cursor_save_converges(site: Site, run_cli: Run) -> None:
    full_sync(site, run_cli, "--delta")
    site.set("alice", "title", "Cashier")
    site.set("carol", "physicalDeliveryOfficeName", "Store 7")
    killed = killed_sync(site.config.parent)
    assert killed.returncode == -9, killed.stderr
    site.settle()
    # the full sync's nine writes come back (no change) with the two changes
    assert read_lines(killed) == [
        "read: delta since the last read: 9 entries read, 2 changed, 0 removed; "
        "2 employees re-evaluated",
        *site.notes(),
    ]
    assert server_values(site.server) == {**SYNCED, "alice": "frontline", "carol": "frontline"}
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
        *site.notes(),
    ]
    assert "plan: 0 changes for 0 employees (9 in scope" in result.stderr
    assert server_values(site.server) == {**SYNCED, "alice": "frontline", "carol": "frontline"}
    again = run_cli("plan", "--delta", "--format", "json")
    assert again.exit_code == 0, again.stderr
    assert read_lines(again) == [
        "read: delta since the last read: 0 entries read, 0 changed, 0 removed; "
        "0 employees re-evaluated",
        *site.notes(),
    ]


@pytest.mark.usefixtures("no_margin")
@pytest.mark.parametrize("damage", ["deleted", "damaged"])
def test_a_lost_snapshot_is_rebuilt_by_a_full_read(site: Site, run_cli: Run, damage: str) -> None:
    full_sync(site, run_cli)
    state = site.config.parent / "state"
    if damage == "deleted":
        for name in (SNAPSHOT_NAME, f"{SNAPSHOT_NAME}-wal", f"{SNAPSHOT_NAME}-shm"):
            (state / name).unlink(missing_ok=True)
        why = "no snapshot yet"
    else:
        (state / SNAPSHOT_NAME).write_bytes(b"this is not a database" * 100)
        why = "the snapshot was unreadable (file is not a database)"
    site.set("alice", "title", "Cashier")
    planned = run_cli("plan", "--delta", "--format", "json")
    assert planned.exit_code == 2, planned.stderr
    assert read_lines(planned) == [f"read: {why}: full read; 9 entries", *site.notes()]
    assert [(c["employee"], c["new"]) for c in json.loads(planned.stdout)["changes"]] == [
        ("alice", "frontline")
    ]
    again = run_cli("plan", "--delta", "--format", "json")
    assert again.exit_code == 2, again.stderr
    assert read_lines(again) == [
        "read: delta since the last read: 0 entries read, 0 changed, 0 removed; "
        "0 employees re-evaluated",
        *site.notes(),
    ]


def commit_above_the_context_csn(site: Site, name: str, attribute: str, value: str) -> None:
    """Change one entry so that its entryCSN lies above syncprov's contextCSN, as when
    concurrent writes commit out of order (syncprov then leaves the contextCSN at the
    earlier CSN, below the later write, until the next write; after about one sync in ten
    here).

    Done offline so that it is deterministic: slapd stopped (syncprov writes the contextCSN
    down), the database dumped with every operational attribute, the entry edited (same
    entryUUID, an entryCSN 1 ms above the highest CSN known), reloaded without touching
    the contextCSN, slapd started again on the same ports.
    """
    server = site.server
    server.kill(signal.SIGTERM)
    conf = ["-f", str(server.config_file)]
    dump = subprocess.run(
        ["/usr/sbin/slapcat", *conf, "-o", "ldif_wrap=no"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    highest = max(re.findall(r"^(?:entryCSN|contextCSN): (\S+)$", dump, re.M))
    above = Csn.parse(highest)
    above = Csn(above.time + timedelta(milliseconds=1), 0, above.sid, 0)
    blocks = dump.split("\n\n")
    (index,) = [i for i, b in enumerate(blocks) if b.startswith(f"dn: {site.dn(name)}\n")]
    lines = [
        line
        for line in blocks[index].splitlines()
        if not line.startswith((f"{attribute}:", "entryCSN:"))
    ]
    blocks[index] = "\n".join([*lines, f"{attribute}: {value}", f"entryCSN: {above}"])
    reload = server.workdir / "reload.ldif"
    reload.write_text("\n\n".join(blocks))
    for path in (server.workdir / "db").iterdir():
        path.unlink()
    subprocess.run(
        ["/usr/sbin/slapadd", "-q", *conf, "-l", str(reload)], capture_output=True, check=True
    )
    server._launch(keep_ports=True)  # as restart() does: same database, same ports


@pytest.mark.usefixtures("no_margin")
def test_a_change_committed_above_the_context_csn_is_read_at_once(site: Site, run_cli: Run) -> None:
    """A syncrepl refresh skips entries whose entryCSN is above the server's contextCSN;
    the delta read must still return them (here: alice's new title)."""
    full_sync(site, run_cli)
    planner = Planner(site.config)
    check(planner, "own writes", set(), None)
    commit_above_the_context_csn(site, "alice", "title", "Cashier")
    context, newest = site.csns()
    if site.mode != "entrycsn":
        assert context < newest  # the state a late commit leaves behind
    plan = check(planner, "above the contextCSN", {"alice"}, (1, 1, 0))
    assert [(c.employee, c.new) for c in plan.changes] == [("alice", "frontline")]


@pytest.mark.usefixtures("no_margin")
def test_a_renamed_or_deleted_manager(site: Site, run_cli: Run) -> None:
    """slapd (without slapo-refint) leaves the reports' manager values as they were: after a
    rename or a delete they name nobody, in a full read and in a delta alike."""
    full_sync(site, run_cli)
    planner = Planner(site.config)
    check(planner, "own writes", set(), None)
    # deleteoldrdn 0 keeps uid: lead as the first uid, so the id stays lead
    site.server.modify_ldif(
        f"dn: {site.dn('lead')}\nchangetype: modrdn\nnewrdn: uid=lead2\ndeleteoldrdn: 0\n\n"
    )
    # r1 and r2 name uid=lead: they and r3 leave lead's subtree
    check(planner, "a renamed manager", {"lead", "r1", "r2", "r3"}, (1, 1, 0))
    site.server.modify_ldif(f"dn: uid=lead2,{site.server.people_dn}\nchangetype: delete\n\n")
    # the CEO loses a report; r1 and r2 named a DN that was already gone
    check(planner, "a deleted manager", {"ceo"}, (0, 0, 1))
    site.set_manager("r1", "vp")
    check(planner, "a report re-attached", {"r1", "r3", "vp"}, (1, 1, 0))


@pytest.mark.usefixtures("no_margin")
def test_a_manager_outside_the_base_moves(site: Site, run_cli: Run) -> None:
    """A chain headed outside the base (the CEO reports to a chair under ou=Groups): the
    chair's own manager changes, and everyone is one level further from the top."""
    groups = site.server.groups_dn
    site.server.add_ldif(
        "".join(
            f"dn: uid={uid},{groups}\nobjectClass: inetOrgPerson\nuid: {uid}\ncn: {uid}\n"
            f"sn: Outside\ntitle: Board Member\n\n"
            for uid in ("chair", "board")
        )
    )
    site.set("ceo", "manager", f"uid=chair,{groups}")
    full_sync(site, run_cli)
    planner = Planner(site.config)
    check(planner, "own writes", set(), None)
    site.server.modify_ldif(
        f"dn: uid=chair,{groups}\nchangetype: modify\nreplace: manager\n"
        f"manager: uid=board,{groups}\n\n"
    )
    # everyone one level further from the top
    delta_equals_full(planner, "a manager outside the base moved", set(EVERYONE))


@pytest.mark.usefixtures("no_margin")
def test_a_renamed_ou_carries_its_employees(site: Site, run_cli: Run) -> None:
    """Renaming an OU changes only the OU: the employees under it get new DNs without a new
    entryCSN, and a delta reads them again under the renamed OU."""
    people = site.server.people_dn
    site.server.add_ldif(
        f"dn: ou=Team,{people}\nobjectClass: organizationalUnit\nou: Team\n\n"
        f"dn: uid=tm,ou=Team,{people}\nobjectClass: inetOrgPerson\nuid: tm\ncn: Tm\n"
        f"sn: Person\ntitle: Software Engineer\nphysicalDeliveryOfficeName: Munich HQ\n"
        f"manager: {site.dn('ceo')}\n\n"
    )
    synced = run_cli("sync")
    assert synced.exit_code == 0, synced.stderr
    site.settle()
    planner = Planner(site.config)
    check(planner, "own writes", set(), None)
    site.server.modify_ldif(
        f"dn: ou=Team,{people}\nchangetype: modrdn\nnewrdn: ou=Squad\ndeleteoldrdn: 1\n\n"
    )
    check(planner, "an OU renamed", {"tm"}, None)
    with Snapshot.open(site.config.parent / "state")[0] as store:
        assert [r.dn for r in store.rows() if r.id == "tm"] == [f"uid=tm,ou=Squad,{people}"]
    # an OU edited otherwise: its employees are read again and come back as no change
    site.server.modify_ldif(
        f"dn: ou=Squad,{people}\nchangetype: modify\nreplace: description\ndescription: x\n\n"
    )
    check(planner, "an OU edited", set(), (1, 0, 0))


@pytest.mark.usefixtures("no_margin")
def test_sync_every_reads_each_cycles_changes_over_a_new_connection(
    site: Site, run_cli: Run, fake_time: FakeTime
) -> None:
    """One process, three cycles: a full read, a delta with alice's new title, a delta
    with nothing (the second cycle's own write taken in)."""
    fake_time.at_sleep = lambda number: (
        site.set("alice", "title", "Registered Nurse") if number == 1 else None
    )
    done = run_cli("sync", "--delta", "--every", "5m", "--cycles", "3")
    assert done.exit_code == 0, done.stderr
    assert [line.split(": ")[1].split(",")[0] for line in done.stderr.splitlines()
            if line.startswith("run ")] == ["9 applied", "1 applied"]  # fmt: skip
    lines = read_lines(done)
    assert lines[0] == "read: no snapshot yet: full read; 9 entries"
    deltas = [line for line in lines if line.startswith("read: delta")]
    assert deltas[0].startswith("read: delta since the last read: ")
    assert deltas[0].endswith(", 1 changed, 0 removed; 1 employees re-evaluated")
    assert deltas[1].endswith(", 0 changed, 0 removed; 0 employees re-evaluated")
    assert "plan: 0 changes for 0 employees (9 in scope" in done.stderr.splitlines()[-1]
    assert fake_time.cycle == 3
