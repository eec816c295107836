"""How runs end in the journal, and how the next run recovers one that did not end."""

from __future__ import annotations

import json
import os
import re
import signal
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result

from persona_sync.directory.base import Cancel, Change, ChangeResult
from persona_sync.directory.files import FileDirectory
from persona_sync.journal import Journal
from tests.sync.conftest import Workspace

Run = Callable[..., Result]
BOSS = "CN=Boss,OU=People,DC=example,DC=com"
SMITH = "CN=Smith\\, John,OU=People,DC=example,DC=com"
ATTRIBUTE = "msDS-cloudExtensionAttribute1"


def journal(workspace: Workspace, run_id: str) -> list[dict[str, Any]]:
    path = workspace.state / "journal" / f"{run_id}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def runs(run_cli: Run) -> list[dict[str, Any]]:
    result = run_cli("runs", "--format", "json")
    assert result.exit_code == 0, result.stderr
    return list(json.loads(result.stdout))


def dead_run(workspace: Workspace, changes: Sequence[Change], answered: int = 0) -> str:
    """A journal as a run killed while writing leaves it: pending, few results, no end."""
    directory = f"file:{workspace.directory.resolve()}"
    dead = Journal.create(workspace.state, "sync", directory, changes=len(changes))
    dead.pending(changes)
    dead.results([ChangeResult(c, "applied") for c in changes[:answered]])
    dead.close()
    with open(dead.path, "a", encoding="utf-8") as handle:
        handle.write('{"type": "write", "dn": "torn')  # the kill cut a line in half
    return dead.run_id


def test_a_dead_run_is_settled_by_the_next_one(workspace: Workspace, run_cli: Run) -> None:
    # The dead run wrote boss (the file shows it) but not jsmith; neither was confirmed.
    text = workspace.text().replace(
        "userAccountControl: 512\n", f"userAccountControl: 512\n{ATTRIBUTE}: vip\n", 1
    )
    workspace.directory.write_text(text, encoding="utf-8")
    changes = [
        Change("boss", BOSS, ATTRIBUTE, None, "vip", "vip", "vip-executive", "persona"),
        Change("jsmith", SMITH, ATTRIBUTE, "engineer", "clinician", "clinician", "r", "persona"),
    ]
    dead = dead_run(workspace, changes)
    assert runs(run_cli)[0]["status"] == "incomplete"

    result = run_cli("sync")
    assert result.exit_code == 0, result.stderr
    lines = result.stderr.splitlines()
    assert lines[0] == (
        f"recovered: run {dead} was interrupted; its unconfirmed writes read back: 1 applied, "
        "1 skipped"
    )
    records = journal(workspace, dead)
    settled = [r for r in records if r.get("settled_by") is not None]
    assert [(r["type"], r["employee"], r["result"], r["message"]) for r in settled[:2]] == [
        ("write", "boss", "applied", "confirmed on recovery: the new value is there"),
        ("write", "jsmith", "skipped", "not written: the old value is still there"),
    ]
    assert (records[-1]["type"], records[-1]["status"], records[-1]["applied"]) == (
        "end",
        "interrupted",
        1,
    )
    listed = {r["run_id"]: r for r in runs(run_cli)}
    assert (listed[dead]["status"], listed[dead]["applied"], listed[dead]["unconfirmed"]) == (
        "interrupted",
        1,
        0,
    )
    # This sync wrote only what was left: jsmith.
    current = next(r for r in listed.values() if r["run_id"] != dead)
    assert (current["status"], current["applied"]) == ("complete", 1)
    # Rolling back the dead run undoes what it wrote (boss) and nothing else.
    rolled = run_cli("rollback", dead)
    assert rolled.exit_code == 0, rolled.stderr
    assert f"{ATTRIBUTE}: vip" not in workspace.text()
    assert f"{ATTRIBUTE}: clinician" in workspace.text()


def test_recovery_needs_no_second_settling(workspace: Workspace, run_cli: Run) -> None:
    changes = [Change("boss", BOSS, ATTRIBUTE, None, "vip", "vip", "r", "persona")]
    dead = dead_run(workspace, changes, answered=1)
    first = run_cli("sync")
    assert first.stderr.splitlines()[0] == (
        f"recovered: run {dead} was interrupted; it had no unconfirmed writes"
    )
    second = run_cli("sync")
    assert not second.stderr.startswith("recovered")


def test_value_already_there_is_not_applied_and_not_rolled_back(
    workspace: Workspace, run_cli: Run
) -> None:
    assert run_cli("plan", "-o", "plan.json", "-q").exit_code == 2
    # Someone sets boss's value to exactly what the plan wants before the apply.
    workspace.directory.write_text(
        workspace.text().replace(
            "userAccountControl: 512\n", f"userAccountControl: 512\n{ATTRIBUTE}: VIP\n", 1
        ),
        encoding="utf-8",
    )
    applied = run_cli("apply", "plan.json")
    assert applied.exit_code == 0, applied.stderr
    assert ": 1 applied, 1 already set, 0 conflicts, 0 failed; journal " in applied.stderr
    run_id = runs(run_cli)[0]["run_id"]
    assert run_cli("rollback", run_id).exit_code == 0
    text = workspace.text()
    assert f"{ATTRIBUTE}: VIP" in text  # someone else's value stays
    assert f"{ATTRIBUTE}: engineer\n\ndn:: " in text  # ours is undone


def test_an_unexpected_error_ends_the_journal_as_error(
    workspace: Workspace, run_cli: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(self: FileDirectory, changes: Sequence[Change], cancel: Any = None) -> Any:
        raise RuntimeError("a bug")

    monkeypatch.setattr(FileDirectory, "apply", broken)
    result = run_cli("sync")
    assert result.exit_code == 1
    assert result.stderr.splitlines()[1].startswith("unexpected error: RuntimeError: a bug")
    [run] = runs(run_cli)
    assert (run["status"], run["applied"], run["unconfirmed"]) == ("error", 0, 2)
    end = journal(workspace, run["run_id"])[-1]
    assert (end["type"], end["reason"]) == ("end", "RuntimeError: a bug")


@pytest.mark.parametrize(("signal_number", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_stops_sending_journals_and_the_next_run_carries_on(
    workspace: Workspace,
    run_cli: Run,
    monkeypatch: pytest.MonkeyPatch,
    signal_number: int,
    code: int,
) -> None:
    monkeypatch.setattr(FileDirectory, "batch_size", 1)
    real = FileDirectory.apply

    def apply_then_signal(
        self: FileDirectory, changes: Sequence[Change], cancel: Cancel | None = None
    ) -> list[ChangeResult]:
        results = real(self, changes, cancel)
        os.kill(os.getpid(), signal_number)  # handled at once, in this thread
        return results

    monkeypatch.setattr(FileDirectory, "apply", apply_then_signal)
    result = run_cli("sync")
    name = signal.Signals(signal_number).name
    assert result.exit_code == code
    lines = result.stderr.splitlines()
    assert (
        lines[1] == f"{name}: stopping after the writes in flight (send it again to stop at once)"
    )
    assert re.fullmatch(
        rf"interrupted by {name}: run (\S+): 1 applied, 0 already set, 0 conflicts, 0 failed, "
        r"1 not sent; interrupted; journal \S+",
        lines[2],
    ), lines[2]
    assert len(lines) == 3
    [run] = runs(run_cli)
    assert (run["status"], run["applied"], run["unconfirmed"]) == ("interrupted", 1, 0)
    assert [r["type"] for r in journal(workspace, run["run_id"])] == [
        "run",
        "pending",
        "write",
        "end",
    ]
    monkeypatch.setattr(FileDirectory, "apply", real)
    again = run_cli("sync")
    assert again.exit_code == 0, again.stderr
    assert runs(run_cli)[-1]["applied"] == 1


def test_a_signal_while_reading_writes_nothing(
    workspace: Workspace, run_cli: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = FileDirectory._employees

    def read_then_signal(self: FileDirectory, data: bytes, attributes: Sequence[str]) -> Any:
        os.kill(os.getpid(), signal.SIGTERM)
        yield from real(self, data, attributes)

    monkeypatch.setattr(FileDirectory, "_employees", read_then_signal)
    before = workspace.directory.read_bytes()
    result = run_cli("sync")
    assert result.exit_code == 143
    assert result.stderr.splitlines()[-1] == (
        "interrupted by SIGTERM while reading employees; nothing was written; the next run "
        "starts afresh"
    )
    assert workspace.directory.read_bytes() == before
    assert not (workspace.state / "journal").exists()


def test_rollback_and_runs_need_no_rules(workspace: Workspace, run_cli: Run) -> None:
    assert run_cli("sync").exit_code == 0
    run_id = runs(run_cli)[0]["run_id"]
    rules = Path(workspace.config.read_text().split("rules: ", 1)[1].splitlines()[0])
    broken = workspace.root / "broken-rules"
    broken.mkdir()
    (broken / "personas.yaml").write_text("personas: [\n", encoding="utf-8")
    workspace.config.write_text(workspace.config.read_text().replace(str(rules), str(broken)))
    assert run_cli("plan").exit_code == 1  # the rules are broken
    assert runs(run_cli)[0]["run_id"] == run_id
    rolled = run_cli("rollback", run_id)
    assert rolled.exit_code == 0, rolled.stderr
    assert f"{ATTRIBUTE}: vip" not in workspace.text()


def test_org_chart_problems_are_counted_past_the_first_twenty(
    workspace: Workspace, run_cli: Run
) -> None:
    orphans = "".join(
        f"\ndn: CN=Orphan {n},OU=People,DC=example,DC=com\nsAMAccountName: orphan{n}\n"
        f"title: Cashier\nmanager: CN=Nobody {n},OU=People,DC=example,DC=com\n"
        for n in range(25)
    )
    workspace.directory.write_text(workspace.text() + orphans, encoding="utf-8")
    result = run_cli("plan", "-o", "plan.json")
    logged = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    problems = [e for e in logged if e["event"] == "org_chart_problem"]
    assert len(problems) == 20
    [more] = [e for e in logged if e["event"] == "org_chart_problems_not_shown"]
    assert (more["more"], more["total"]) == (5, 25)
    assert result.stderr.splitlines()[-1].endswith(
        ", 25 org-chart problems (see the log)); saved to plan.json"
    )
