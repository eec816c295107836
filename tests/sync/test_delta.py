"""Delta runs on the file backend: the snapshot, what is re-evaluated, and why a read is full.

A file's change "cursor" is its digest: an unchanged file reads as no change, a changed one
is compared entry by entry with the snapshot. That exercises the whole delta planner
(dependencies, removals, the echo of our own writes, rule changes) without a server; the
servers' own change tracking is tested in tests/ldap and tests/entra.
"""

from __future__ import annotations

import dataclasses
import json
import random
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from persona_sync.demo.generate import generate_company, ldif_bytes
from persona_sync.directory.base import ChangeResult
from persona_sync.lock import RunLock
from persona_sync.plan import Plan, StoredChanges, load_plan
from persona_sync.refresh import Refresh, compute_plan, record_results
from persona_sync.render import render_json
from persona_sync.session import Session, open_session
from persona_sync.snapshot import SNAPSHOT_LOCK, SNAPSHOT_NAME, Snapshot
from persona_sync.workflow import make_plan
from tests.sync.conftest import Workspace

Run = Callable[..., Any]
TARGET = "msDS-cloudExtensionAttribute1"


def comparable(plan: Plan) -> dict[str, Any]:
    """A plan without when it was made and how it was read: what must match."""
    body = plan.to_dict()
    body.pop("checksum")
    body["provenance"].pop("created")
    body["summary"].pop("read")
    return body


def delta(session: Session) -> Refresh:
    """A delta refresh against the workspace's snapshot, committed like `plan --delta`."""
    store, fresh = Snapshot.open(session.config.state_dir)
    with session.directory() as directory:
        refresh = compute_plan(
            session.config,
            session.engine,
            directory,
            snapshot=store,
            delta=True,
            fresh_reason=fresh,
        )
        refresh.commit()
    store.close()
    return refresh


def full(session: Session) -> Plan:
    """A full plan that leaves the snapshot alone."""
    with session.directory() as directory:
        return compute_plan(session.config, session.engine, directory).plan


def keys(refresh: Refresh) -> list[str]:
    assert refresh.summary.evaluated is not None, "a delta re-evaluates a known set"
    return sorted(refresh.summary.evaluated)


def edit(workspace: Workspace, old: str, new: str) -> None:
    text = workspace.text()
    assert old in text
    workspace.directory.write_text(text.replace(old, new, 1), encoding="utf-8")


def test_first_delta_reads_in_full_and_says_why(workspace: Workspace, run_cli: Run) -> None:
    result = run_cli("plan", "--delta", "--format", "json")
    assert result.exit_code == 2
    assert result.stderr.splitlines()[0] == "read: no snapshot yet: full read; 6 entries"
    assert (workspace.state / SNAPSHOT_NAME).exists()


def test_unchanged_directory_reads_as_no_change(workspace: Workspace, run_cli: Run) -> None:
    assert run_cli("plan", "-q").exit_code == 2
    result = run_cli("plan", "--delta", "--format", "json")
    assert result.exit_code == 2
    assert result.stderr.splitlines()[:2] == [
        "read: delta since the last read: 0 entries read, 0 changed, 0 removed; "
        "0 employees re-evaluated",
        "read: the file is unchanged",
    ]
    plan = json.loads(result.stdout)
    assert [c["employee"] for c in plan["changes"]] == ["boss", "jsmith"]  # still pending


def test_a_title_change_re_evaluates_that_employee_only(workspace: Workspace) -> None:
    session = open_session(workspace.config)
    make_plan(session, session.directory())
    edit(workspace, "title: Software Engineer", "title: Cashier")
    refresh = delta(session)
    assert refresh.summary.mode == "delta"
    assert keys(refresh) == ["CN=Müller\\, Jörg,OU=People,DC=example,DC=com"]
    assert (refresh.summary.read, refresh.summary.changed, refresh.summary.removed) == (6, 1, 0)
    assert comparable(refresh.plan) == comparable(full(session))
    moved = [c for c in refresh.plan.changes if c.employee == "jmuller"]
    assert [(c.old, c.new) for c in moved] == [("engineer", "frontline")]


def test_moving_a_manager_takes_the_subtree_along(workspace: Workspace) -> None:
    session = open_session(workspace.config)
    make_plan(session, session.directory())
    # a new chair above the boss: everyone below moves one level down
    workspace.directory.write_text(
        workspace.text()
        + "\ndn: CN=Chair,OU=People,DC=example,DC=com\ncn: Chair\nsAMAccountName: chair\n"
        "title: Chair of the Board\n",
        encoding="utf-8",
    )
    edit(
        workspace,
        "userAccountControl: 512",
        "userAccountControl: 512\nmanager: CN=Chair,OU=People,DC=example,DC=com",
    )
    refresh = delta(session)
    assert keys(refresh) == [
        "CN=Boss,OU=People,DC=example,DC=com",
        "CN=Chair,OU=People,DC=example,DC=com",
        "CN=Müller\\, Jörg,OU=People,DC=example,DC=com",
        "CN=Smith\\, John,OU=People,DC=example,DC=com",
    ]
    assert comparable(refresh.plan) == comparable(full(session))


def test_a_changed_manager_link_moves_only_whose_position_changed(workspace: Workspace) -> None:
    session = open_session(workspace.config)
    make_plan(session, session.directory())
    # jmuller now reports to jsmith: jmuller one level deeper, jsmith gains a report, the
    # boss loses one
    edit(
        workspace,
        "title: Software Engineer\nmanager: CN=Boss,OU=People,DC=example,DC=com",
        "title: Software Engineer\nmanager: CN=Smith\\, John,OU=People,DC=example,DC=com",
    )
    refresh = delta(session)
    assert keys(refresh) == [
        "CN=Boss,OU=People,DC=example,DC=com",
        "CN=Müller\\, Jörg,OU=People,DC=example,DC=com",
        "CN=Smith\\, John,OU=People,DC=example,DC=com",
    ]
    assert comparable(refresh.plan) == comparable(full(session))


def test_deleted_and_added_employees(workspace: Workspace) -> None:
    session = open_session(workspace.config)
    make_plan(session, session.directory())
    text = workspace.text()
    legacy = text.index("dn: CN=Legacy")
    workspace.directory.write_text(
        text[:legacy]
        + text[text.index("dn: CN=Gone") :]
        + "\ndn: CN=New Hire,OU=People,DC=example,DC=com\ncn: New Hire\n"
        "sAMAccountName: newhire\ntitle: Registered Nurse\n",
        encoding="utf-8",
    )
    refresh = delta(session)
    assert (refresh.summary.changed, refresh.summary.removed) == (1, 1)
    assert keys(refresh) == ["CN=New Hire,OU=People,DC=example,DC=com"]
    assert comparable(refresh.plan) == comparable(full(session))
    assert refresh.plan.foreign == ()  # legacy's foreign value went with legacy


def test_own_writes_come_back_as_no_change(workspace: Workspace, run_cli: Run) -> None:
    assert run_cli("sync", "--delta", "-q").exit_code == 0
    result = run_cli("plan", "--delta", "--format", "json")
    assert result.exit_code == 0
    assert result.stderr.splitlines()[:2] == [
        "read: delta since the last read: 6 entries read, 0 changed, 0 removed; "
        "0 employees re-evaluated",
        "read: the file changed since the last read: every entry compared with the snapshot",
    ]
    assert json.loads(result.stdout)["changes"] == []


def test_changed_rules_re_evaluate_everyone_from_the_snapshot(
    workspace: Workspace, run_cli: Run, tmp_path: Path
) -> None:
    assert run_cli("sync", "-q").exit_code == 0
    rules = Path(workspace.config.read_text().split("rules: ", 1)[1].splitlines()[0])
    copied = tmp_path / "rules"
    copied.mkdir()
    for path in rules.glob("*.yaml"):
        (copied / path.name).write_text(path.read_text(encoding="utf-8"), encoding="utf-8")
    personas = copied / "personas.yaml"
    text = personas.read_text(encoding="utf-8")
    assert "Registered Nurse" not in text
    workspace.config.write_text(workspace.config.read_text().replace(str(rules), str(copied)))
    # same rules, new checksum: everyone is re-evaluated, nobody read again
    personas.write_text(text + "\n# reviewed\n", encoding="utf-8")
    result = run_cli("plan", "--delta", "--format", "json")
    assert result.exit_code == 0, result.stderr
    assert result.stderr.splitlines()[:3] == [
        "read: delta since the last read: 6 entries read, 0 changed, 0 removed; "
        "6 employees re-evaluated",
        "read: the file changed since the last read: every entry compared with the snapshot",
        "read: the rules or the config changed since the snapshot was computed: every "
        "employee re-evaluated from the snapshot",
    ]


def test_a_damaged_snapshot_is_rebuilt_and_said_so(workspace: Workspace, run_cli: Run) -> None:
    assert run_cli("plan", "-q").exit_code == 2
    (workspace.state / SNAPSHOT_NAME).write_bytes(b"this is not a database" * 100)
    result = run_cli("plan", "--delta", "--format", "json")
    assert result.exit_code == 2
    assert result.stderr.splitlines()[0] == (
        "read: the snapshot was unreadable (file is not a database): full read; 6 entries"
    )
    again = run_cli("plan", "--delta", "--format", "json")
    assert again.stderr.splitlines()[1] == "read: the file is unchanged"


def _damage_table(path: Path, table: str) -> None:
    """Overwrite the root page of one of the snapshot's tables: the file still opens and
    its header reads, but SQLite finds the damage when the table is read."""
    db = sqlite3.connect(path)
    try:
        page_size = db.execute("PRAGMA page_size").fetchone()[0]
        (root,) = db.execute(
            "SELECT rootpage FROM sqlite_schema WHERE name = ?", (table,)
        ).fetchone()
    finally:
        db.close()  # the last connection out checkpoints the WAL into the file
    assert not path.with_name(path.name + "-wal").exists()
    with path.open("r+b") as file:
        file.seek((root - 1) * page_size)
        file.write(b"\xff" * page_size)


def test_damage_met_mid_delta_rebuilds_the_snapshot_by_a_full_read(
    workspace: Workspace, run_cli: Run
) -> None:
    assert run_cli("plan", "-q").exit_code == 2
    _damage_table(workspace.state / SNAPSHOT_NAME, "employees")
    edit(workspace, "title: Software Engineer", "title: Cashier")  # the delta reads rows
    result = run_cli("plan", "--delta", "--format", "json")
    assert result.exit_code == 2
    assert result.stderr.splitlines()[0] == (
        "read: the snapshot was damaged (database disk image is malformed): full read; 6 entries"
    )
    session = open_session(workspace.config)
    assert comparable(load_plan(result.stdout, "stdout")) == comparable(full(session))
    again = run_cli("plan", "--delta", "--format", "json")
    assert again.stderr.splitlines()[1] == "read: the file is unchanged"


def test_a_snapshot_of_another_version_is_rebuilt(workspace: Workspace, run_cli: Run) -> None:
    assert run_cli("plan", "-q").exit_code == 2
    with sqlite3.connect(workspace.state / SNAPSHOT_NAME) as db:
        db.execute("UPDATE meta SET value = '\"0.0.1\"' WHERE name = 'tool_version'")
    result = run_cli("plan", "--delta", "--format", "json")
    from persona_sync import __version__

    assert result.stderr.splitlines()[0] == (
        f"read: the snapshot was made by persona-sync 0.0.1, this is {__version__}: full "
        "read; 6 entries"
    )


def test_sync_delta_reads_in_full_when_the_last_full_read_is_old(
    workspace: Workspace, run_cli: Run
) -> None:
    assert run_cli("sync", "-q").exit_code == 0
    old = (datetime.now(UTC) - timedelta(hours=25)).isoformat(timespec="seconds")
    with sqlite3.connect(workspace.state / SNAPSHOT_NAME) as db:
        db.execute("UPDATE meta SET value = ? WHERE name = 'last_full'", (json.dumps(old),))
    result = run_cli("sync", "--delta")
    assert result.exit_code == 0
    assert result.stderr.splitlines()[0] == (
        "read: the last full read was 25 h ago (snapshot.full_read_every_hours: 24): full "
        "read; 6 entries"
    )
    again = run_cli("sync", "--delta")
    assert again.stderr.splitlines()[0].startswith("read: delta since the last read: ")


def test_a_crash_between_the_writes_and_the_snapshot_converges(
    workspace: Workspace, run_cli: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert run_cli("plan", "-q").exit_code == 2  # snapshot and cursor before the writes

    def killed(self: Refresh, results: Any, run_id: str) -> None:
        raise SystemExit(137)  # the process dies after the journal ended, before the commit

    monkeypatch.setattr(Refresh, "record", killed)
    assert run_cli("sync", "--delta", "-q").exit_code == 137
    assert f"{TARGET}: vip" in workspace.text()  # the writes landed
    monkeypatch.undo()
    result = run_cli("sync", "--delta")
    assert result.exit_code == 0, result.stderr
    assert result.stderr.splitlines()[:2] == [
        "read: delta since the last read: 6 entries read, 2 changed, 0 removed; "
        "2 employees re-evaluated",
        "read: the file changed since the last read: every entry compared with the snapshot",
    ]
    assert "plan: 0 changes for 0 employees" in result.stderr


def test_a_plan_while_another_run_updates_the_snapshot_uses_a_copy(
    workspace: Workspace, run_cli: Run
) -> None:
    assert run_cli("plan", "-q").exit_code == 2
    before = (workspace.state / SNAPSHOT_NAME).read_bytes()
    edit(workspace, "title: Software Engineer", "title: Cashier")
    with RunLock(workspace.state, "sync", SNAPSHOT_LOCK):
        result = run_cli("plan", "--delta", "--format", "json")
    assert result.exit_code == 2
    assert result.stderr.splitlines()[0].startswith("read: delta since the last read: 6 entries")
    assert (workspace.state / SNAPSHOT_NAME).read_bytes() == before  # nothing saved


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_edits_delta_plan_equals_full_plan(tmp_path: Path, seed: int) -> None:
    """Many edits of every kind, one delta after each batch: always the full plan."""
    from tests.conftest import DEFAULT_RULES

    company = generate_company(400, seed=seed)
    path = tmp_path / "company.ldif"
    config = tmp_path / "persona-sync.yaml"
    config.write_text(
        f"rules: {DEFAULT_RULES}\ndirectory: {{type: file, path: company.ldif, "
        "id_attributes: [sAMAccountName]}\n"
        f"targets: {{persona: {TARGET}}}\nstate_dir: state\n",
        encoding="utf-8",
    )
    rng = random.Random(seed)
    entries = list(company)
    path.write_bytes(ldif_bytes(entries))
    session = open_session(config)
    make_plan(session, session.directory())
    titles = [e.value("title") for e in entries if e.value("title")]
    for _round in range(4):
        for _ in range(15):
            i = rng.randrange(len(entries))
            entry = entries[i]
            kind = rng.choice(["title", "manager", "delete", "target"])
            name = {"title": "title", "manager": "manager", "target": TARGET}.get(kind, "")
            attributes = [(n, v) for n, v in entry.attributes if n.lower() != name.lower()]
            if kind == "title":
                attributes.append(("title", rng.choice(titles) or "Cashier"))
            elif kind == "manager":
                attributes.append(("manager", rng.choice(entries).dn))
            elif kind == "target":
                attributes.append((TARGET, rng.choice(["vip", "frontline", "someone-else's"])))
            if kind == "delete":
                entries.pop(i)
            else:
                entries[i] = type(entry)(entry.dn, tuple(attributes))
        path.write_bytes(ldif_bytes(entries))
        refresh = delta(session)
        assert refresh.summary.mode == "delta"
        assert comparable(refresh.plan) == comparable(full(session))


def test_an_applied_plan_is_recorded_in_the_snapshot(workspace: Workspace, run_cli: Run) -> None:
    assert run_cli("plan", "-q", "-o", "plan.json").exit_code == 2
    assert run_cli("apply", "plan.json", "-q").exit_code == 0
    result = run_cli("plan", "--delta", "--format", "json")
    assert result.exit_code == 0
    assert result.stderr.splitlines()[0] == (
        "read: delta since the last read: 6 entries read, 0 changed, 0 removed; "
        "0 employees re-evaluated"
    )


def test_recorded_writes_update_their_rows_in_batches() -> None:
    """More rows than one batch, two writes to one row, an emptied value and a key that is
    not in the snapshot: each row ends up holding what was written, and who wrote it."""
    from persona_sync.snapshot import Row

    store = Snapshot.in_memory()
    store.begin()
    store.put(
        Row(f"k{i:04d}", f"id{i}", f"uid=u{i},dc=x", {"title": "Nurse", "persona": "old"})
        for i in range(1200)
    )
    writes = [(f"k{i:04d}", "persona", f"p{i}", "run-1") for i in range(1200)]
    writes += [("k0007", "extra", "x", "run-1"), ("k0008", "persona", None, "run-1")]
    writes.append(("missing", "persona", "p", "run-1"))
    assert store.record_written(writes) == set()
    rows = {row.key: row for row in store.rows()}
    assert rows["k1199"].attributes == {"title": "Nurse", "persona": "p1199"}
    assert rows["k0007"].attributes == {"title": "Nurse", "persona": "p7", "extra": "x"}
    assert rows["k0008"].attributes == {"title": "Nurse"}
    assert store.written("k0007") == {
        "extra": {"run": "run-1", "value": "x"},
        "persona": {"run": "run-1", "value": "p7"},
    }
    assert store.written("k0008") == {"persona": {"run": "run-1", "value": None}}
    assert "missing" not in rows


def test_a_recorded_apply_evaluates_again_only_what_it_cannot_settle(
    workspace: Workspace,
) -> None:
    """Written changes leave their rows' plan items without an evaluation; a conflict, or
    a row planned since to another value, is evaluated again; the plan assembled after it
    is the plan a full read makes."""
    session = open_session(workspace.config)
    store, _ = Snapshot.open(session.config.state_dir)
    with store, session.directory() as directory:
        refresh = compute_plan(session.config, session.engine, directory, snapshot=store)
        refresh.commit()
        changes = {c.employee: c for c in refresh.plan.changes}
        assert sorted(changes) == ["boss", "jsmith"] and all(c.key for c in changes.values())
        evaluated: list[set[str]] = []
        real = refresh._evaluate

        def evaluate(keys: Any) -> int:
            evaluated.append(set(keys))
            return int(real(keys))

        boss, jsmith = changes["boss"].to_change(), changes["jsmith"].to_change()
        store.begin()
        record_results(store, [ChangeResult(boss, "applied")], "run-1", evaluate)
        assert evaluated == []  # settled: boss's change left the items
        # jsmith's row plans clinician; an older plan's write of vip cannot settle it
        stale = dataclasses.replace(jsmith, new="vip")
        record_results(store, [ChangeResult(stale, "applied")], "run-1", evaluate)
        assert evaluated == [{jsmith.key}]
        record_results(store, [ChangeResult(jsmith, "conflict", "", "other")], "r", evaluate)
        assert evaluated == [{jsmith.key}, {jsmith.key}]
        # a rule that reads the attribute written: evaluated again, however it went
        record_results(
            store,
            [ChangeResult(boss, "applied")],
            "run-1",
            evaluate,
            {TARGET.lower()},
        )
        assert evaluated[-1] == {boss.key}
        store.commit()
    # the directory as recorded: boss written, jsmith's conflict found "other"
    edit(workspace, "userAccountControl: 512\n", f"userAccountControl: 512\n{TARGET}: vip\n")
    edit(workspace, f"North Clinic\n{TARGET}: engineer\n", f"North Clinic\n{TARGET}: other\n")
    after = delta(session)
    assert keys(after) == []  # the snapshot already held what the file now says
    assert comparable(after.plan) == comparable(full(session))


def test_a_plan_without_keys_is_recorded_by_dn(workspace: Workspace, run_cli: Run) -> None:
    """Plans written before changes carried the snapshot's key still apply, and their
    results still reach the snapshot (looked up by DN)."""
    assert run_cli("plan", "-q", "-o", "plan.json").exit_code == 2
    path = workspace.root / "plan.json"
    plan = load_plan(path.read_text(encoding="utf-8"), str(path))
    keyless = dataclasses.replace(
        plan, changes=tuple(dataclasses.replace(c, key=None) for c in plan.changes)
    )
    assert "key" not in json.dumps(keyless.to_dict()["changes"])
    path.write_text(json.dumps(keyless.to_dict()), encoding="utf-8")
    assert run_cli("apply", "plan.json", "-q").exit_code == 0
    result = run_cli("plan", "--delta", "--format", "json")
    assert result.exit_code == 0
    assert result.stderr.splitlines()[0] == (
        "read: delta since the last read: 6 entries read, 0 changed, 0 removed; "
        "0 employees re-evaluated"
    )


def test_damage_met_by_a_full_read_rebuilds_the_snapshot(
    workspace: Workspace, run_cli: Run
) -> None:
    assert run_cli("plan", "-q", "-o", "before.json").exit_code == 2
    _damage_table(workspace.state / SNAPSHOT_NAME, "plan_items")
    result = run_cli("plan", "--format", "json")
    assert result.exit_code == 2
    before = (workspace.root / "before.json").read_text(encoding="utf-8")
    assert comparable(load_plan(result.stdout, "stdout")) == comparable(load_plan(before, "b"))
    again = run_cli("plan", "--delta", "--format", "json")
    assert again.stderr.splitlines()[1] == "read: the file is unchanged"


def test_a_delta_plan_is_written_from_the_texts_the_snapshot_holds(workspace: Workspace) -> None:
    """A delta plan's changes are the canonical texts stored with the rows: its file is,
    byte for byte and checksum included, the file the same changes make as values, and
    they decode to the changes of a full read."""
    session = open_session(workspace.config)
    make_plan(session, session.directory())
    edit(workspace, "title: Software Engineer", "title: Cashier")
    stored = delta(session).plan
    assert isinstance(stored.changes, StoredChanges)
    values = dataclasses.replace(stored, changes=tuple(stored.changes))
    assert not isinstance(values.changes, StoredChanges)
    assert render_json(values) == render_json(stored)
    assert values.checksum == stored.checksum
    assert load_plan(render_json(stored), "delta.json").checksum == stored.checksum
    assert list(stored.changes) == list(full(session).changes)
    assert [c.employee for c in stored.changes] == ["boss", "jmuller", "jsmith"]
