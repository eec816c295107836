"""plan -> apply -> runs -> rollback on the file-backed directory, through the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import Result

from tests.sync.conftest import Workspace

Run = Callable[..., Result]


def plan_json(run_cli: Run, *extra: str) -> dict:
    result = run_cli("plan", "--format", "json", "-q", *extra)
    assert result.exit_code in (0, 2), result.stderr
    return json.loads(result.stdout)


def test_plan_json_lists_changes_summary_and_checksum(workspace: Workspace, run_cli: Run) -> None:
    result = run_cli("plan", "--format", "json")
    assert result.exit_code == 2
    assert result.stderr == (
        "plan: 2 changes for 2 employees (4 in scope, 2 out of scope, 2 unchanged, "
        "1 foreign values left alone)\n"
    )
    plan = json.loads(result.stdout)
    assert sorted(plan) == [
        "changes",
        "checksum",
        "foreign",
        "format",
        "provenance",
        "skipped",
        "summary",
        "version",
    ]
    assert [
        (c["employee"], c["dn"], c["attribute"], c["old"], c["new"], c["rule"])
        for c in plan["changes"]
    ] == [
        (
            "boss",
            "CN=Boss,OU=People,DC=example,DC=com",
            "msDS-cloudExtensionAttribute1",
            None,
            "vip",
            "vip-executive",
        ),
        (
            "jsmith",
            "CN=Smith\\, John,OU=People,DC=example,DC=com",
            "msDS-cloudExtensionAttribute1",
            "engineer",
            "clinician",
            "clinician-by-title",
        ),
    ]
    assert plan["changes"][1]["facts"] == {
        "account.disabled": False,
        "account.service": False,
        "role.family": "clinical",
    }
    assert plan["foreign"] == [
        {
            "employee": "legacy",
            "dn": "CN=Legacy,OU=People,DC=example,DC=com",
            "scenario": "persona",
            "attribute": "msDS-cloudExtensionAttribute1",
            "value": "legacy-tag",
            "wanted": "frontline",
        }
    ]
    summary = plan["summary"]
    assert {k: v for k, v in summary.items() if k != "scenarios"} == {
        "employees": 6,
        "in_scope": 4,
        "out_of_scope": 2,
        "unchanged": 2,
        "changes": 2,
        "employees_changed": 2,
        "foreign_values": 1,
        "org_chart_problems": 0,
        "skipped": 0,
        "read": {
            "mode": "full",
            "reason": "no --delta: a full read",
            "entries_read": 6,
            "changed": 6,
            "removed": 0,
            "re_evaluated": 6,
            "notes": [],
        },
    }
    assert summary["scenarios"]["persona"]["transitions"] == {
        "(empty) -> vip": 1,
        "engineer -> clinician": 1,
    }
    assert plan["provenance"]["directory"] == f"file:{workspace.directory}"
    assert plan["checksum"].startswith("sha256:")


def test_plan_is_stable_and_writes_nothing(workspace: Workspace, run_cli: Run) -> None:
    before = workspace.directory.read_bytes()
    first, second = plan_json(run_cli), plan_json(run_cli)
    # The same plan but for when it was made (to the second: part of what the checksum
    # covers, so two plans a second apart differ in it).
    for plan in (first, second):
        del plan["provenance"]["created"], plan["checksum"]
    assert first == second
    assert workspace.directory.read_bytes() == before
    # only the snapshot of what was read: no journal, no run
    assert sorted(p.name for p in workspace.state.iterdir()) == [
        "snapshot.lock",
        "snapshot.readers",
        "snapshot.sqlite",
    ]


@pytest.mark.parametrize("fmt", ["table", "csv", "markdown"])
def test_plan_other_formats(workspace: Workspace, run_cli: Run, fmt: str) -> None:
    result = run_cli("plan", "--format", fmt, "-q")
    assert result.exit_code == 2
    if fmt == "csv":
        assert result.stdout.splitlines()[0] == (
            "employee,dn,scenario,attribute,old,new,persona,rule,facts"
        )
        assert result.stdout.splitlines()[2].startswith(
            'jsmith,"CN=Smith\\, John,OU=People,DC=example,DC=com",persona,'
            "msDS-cloudExtensionAttribute1,engineer,clinician,clinician,clinician-by-title,"
        )
    elif fmt == "markdown":
        # the report's Markdown renderer: its escaping (role.employee\_type), facts and all
        lines = result.stdout.splitlines()
        changes = lines.index("### Changes")
        assert lines[changes + 2 : changes + 6] == [
            "| Employee | Scenario | Old | New | Rule | Facts the rule read |",
            "|---|---|---|---|---|---|",
            "| boss | persona | (empty) | vip | vip-executive | seniority=10; "
            "role.employee\\_type=(missing); account.disabled=false; account.service=false |",
            "| jsmith | persona | engineer | clinician | clinician-by-title | "
            "role.family=clinical; account.disabled=false; account.service=false |",
        ]
    else:
        assert (
            "  jsmith    msDS-cloudExtensionAttribute1  engineer -> clinician  "
            "clinician-by-title" in result.stdout
        )


def test_apply_writes_exactly_the_plan_and_a_second_run_is_a_no_op(
    workspace: Workspace, run_cli: Run
) -> None:
    before = workspace.text()
    assert run_cli("plan", "-o", "plan.json", "-q").exit_code == 2
    result = run_cli("apply", "plan.json")
    assert result.exit_code == 0, result.stderr
    assert result.stderr.startswith("run ")
    assert ": 2 applied, 0 already set, 0 conflicts, 0 failed; journal " in result.stderr
    after = workspace.text()
    expected = before.replace(
        "userAccountControl: 512\n",
        "userAccountControl: 512\nmsDS-cloudExtensionAttribute1: vip\n",
        1,
    ).replace(
        "North Clinic\nmsDS-cloudExtensionAttribute1: engineer",
        "North Clinic\nmsDS-cloudExtensionAttribute1: clinician",
    )
    assert after == expected
    again = run_cli("plan", "--format", "json")
    assert again.exit_code == 0
    assert json.loads(again.stdout)["changes"] == []


def test_edit_between_plan_and_apply_is_a_conflict(workspace: Workspace, run_cli: Run) -> None:
    run_cli("plan", "-o", "plan.json", "-q")
    edited = workspace.text().replace(
        "msDS-cloudExtensionAttribute1: engineer\n\ndn:: ",
        "msDS-cloudExtensionAttribute1: vip\n\ndn:: ",
    )
    assert edited != workspace.text()
    workspace.directory.write_text(edited, encoding="utf-8")
    result = run_cli("apply", "plan.json")
    assert result.exit_code == 3
    assert result.stderr.splitlines()[0] == (
        "conflict: jsmith (CN=Smith\\, John,OU=People,DC=example,DC=com) "
        "msDS-cloudExtensionAttribute1: value changed since the plan: expected 'engineer', "
        "found 'vip'"
    )
    assert ": 1 applied, 0 already set, 1 conflicts, 0 failed; journal " in result.stderr
    assert "North Clinic\nmsDS-cloudExtensionAttribute1: vip\n" in workspace.text()


def test_safety_limit_blocks_and_force_passes(workspace: Workspace, run_cli: Run) -> None:
    workspace.config.write_text(
        workspace.config.read_text().replace("max_change_percent: 100", "max_change_percent: 25")
    )
    before = workspace.directory.read_bytes()
    run_cli("plan", "-o", "plan.json", "-q")
    blocked = run_cli("apply", "plan.json")
    assert (blocked.exit_code, blocked.stderr) == (
        4,
        (
            "held: this run would change 2 employees, more than the safety limit of 1 "
            "(max_changes 500, max_change_percent 25% of 4 in scope); nothing was written. Review "
            "the plan, then rerun with --force, or raise the limit under safety: in the config\n"
        ),
    )
    assert workspace.directory.read_bytes() == before
    assert not (workspace.state / "journal").exists()
    assert run_cli("sync").exit_code == 4
    assert workspace.directory.read_bytes() == before
    assert run_cli("apply", "plan.json", "--force").exit_code == 0
    assert workspace.directory.read_bytes() != before


def test_sync_then_runs_then_rollback(workspace: Workspace, run_cli: Run) -> None:
    before = workspace.directory.read_bytes()
    synced = run_cli("sync")
    assert synced.exit_code == 0, synced.stderr
    runs = json.loads(run_cli("runs", "--format", "json").stdout)
    assert [(r["command"], r["status"], r["applied"], r["conflicts"]) for r in runs] == [
        ("sync", "complete", 2, 0)
    ]
    run_id = runs[0]["run_id"]
    journal = [
        json.loads(line)
        for line in (workspace.state / "journal" / f"{run_id}.jsonl").read_text().splitlines()
    ]
    assert [j["type"] for j in journal] == ["run", "pending", "pending", "write", "write", "end"]
    write = journal[3]
    assert {
        k: write[k] for k in ("employee", "dn", "attribute", "old", "new", "rule", "result")
    } == {
        "employee": "boss",
        "dn": "CN=Boss,OU=People,DC=example,DC=com",
        "attribute": "msDS-cloudExtensionAttribute1",
        "old": None,
        "new": "vip",
        "rule": "vip-executive",
        "result": "applied",
    }
    rolled = run_cli("rollback", run_id)
    assert rolled.exit_code == 0, rolled.stderr
    assert workspace.directory.read_bytes() == before
    runs = json.loads(run_cli("runs", "--format", "json").stdout)
    assert [(r["run_id"], r["rollback_of"], r["rolled_back_by"]) for r in runs] == [
        (run_id, None, runs[1]["run_id"]),
        (runs[1]["run_id"], run_id, None),
    ]
    table = run_cli("runs").stdout.splitlines()
    assert table[1].endswith(f"rolled back by {runs[1]['run_id']}")
    assert table[2].endswith(f"rollback of {run_id}")


def test_rollback_keeps_a_later_change(workspace: Workspace, run_cli: Run) -> None:
    run_cli("sync")
    run_id = json.loads(run_cli("runs", "--format", "json").stdout)[0]["run_id"]
    workspace.directory.write_text(
        workspace.text().replace(
            "msDS-cloudExtensionAttribute1: clinician",
            "msDS-cloudExtensionAttribute1: tech-support",
        ),
        encoding="utf-8",
    )
    result = run_cli("rollback", run_id)
    assert result.exit_code == 3
    assert result.stderr.splitlines()[0] == (
        "conflict: jsmith (CN=Smith\\, John,OU=People,DC=example,DC=com) "
        "msDS-cloudExtensionAttribute1: value changed since the plan: expected 'clinician', "
        "found 'tech-support'"
    )
    text = workspace.text()
    assert "msDS-cloudExtensionAttribute1: tech-support" in text
    assert "msDS-cloudExtensionAttribute1: vip" not in text


def test_unknown_run_id(workspace: Workspace, run_cli: Run) -> None:
    result = run_cli("rollback", "nope")
    assert (result.exit_code, result.stderr) == (
        1,
        f"error: unknown run id 'nope' in {workspace.state / 'journal'} (no runs recorded yet)\n",
    )


def test_owns_attribute_overwrites_foreign_values(workspace: Workspace, run_cli: Run) -> None:
    workspace.config.write_text(workspace.config.read_text() + "owns_attribute: true\n")
    plan = plan_json(run_cli)
    assert plan["foreign"] == []
    assert [(c["employee"], c["old"], c["new"]) for c in plan["changes"]] == [
        ("boss", None, "vip"),
        ("legacy", "legacy-tag", "frontline"),
        ("jsmith", "engineer", "clinician"),
    ]


def test_csv_directory_round_trip(workspace: Workspace, run_cli: Run) -> None:
    csv_text = (
        "\ufeff#TYPE System.Management.Automation.PSCustomObject\r\n"
        '"DistinguishedName","sAMAccountName","title","physicalDeliveryOfficeName",'
        '"msDS-cloudExtensionAttribute1","notes"\r\n'
        '"CN=Núñez\\, José,OU=People,DC=example,DC=com","jnunez","Registered Nurse",'
        '"North Clinic","","line one\r\nline two"\r\n'
        '"CN=Ann,OU=People,DC=example,DC=com","ann","Accountant","Munich HQ",'
        '"knowledge-worker",""\r\n'
    )
    path = workspace.root / "company.csv"
    path.write_bytes(csv_text.encode("utf-8"))
    workspace.config.write_text(workspace.config.read_text().replace("company.ldif", "company.csv"))
    assert run_cli("sync").exit_code == 0
    assert path.read_bytes().decode("utf-8") == csv_text.replace(
        '"North Clinic","","line one', '"North Clinic","clinician","line one'
    )
    assert run_cli("plan", "-q", "--format", "json").exit_code == 0


def test_installed_script_plan_exit_code(workspace: Workspace) -> None:
    script = Path(sys.executable).parent / "persona-sync"
    command = [str(script)] if script.exists() else [sys.executable, "-m", "persona_sync"]
    done = subprocess.run(
        [*command, "plan", "-q"],
        capture_output=True,
        text=True,
        cwd=workspace.root,
        env={**os.environ},
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert json.loads(done.stdout)["summary"]["changes"] == 2  # piped: JSON by default


def test_explain_looks_up_the_directory(workspace: Workspace, run_cli: Run) -> None:
    for key in ("jsmith", "CN=Smith\\, John,OU=People,DC=example,DC=com", "JSMITH"):
        result = run_cli("explain", key, "--format", "json")
        assert result.exit_code == 0, result.stderr
        data = json.loads(result.stdout)
        assert data["employee"] == {
            "id": "jsmith",
            "dn": "CN=Smith\\, John,OU=People,DC=example,DC=com",
        }
        assert data["scenarios"][0]["persona"] == "clinician"
    boss = json.loads(run_cli("explain", "boss", "--format", "json").stdout)
    seniority = next(f for f in boss["facts"] if f["fact"] == "seniority")
    assert (seniority["value"], seniority["origin"]) == (10.0, "attribute title via table")
    text = run_cli("explain", "jmuller").stdout
    assert (
        text.splitlines()[0] == "employee jmuller  (CN=Müller\\, Jörg,OU=People,DC=example,DC=com)"
    )
    missing = run_cli("explain", "nobody")
    assert (missing.exit_code, missing.stderr) == (
        1,
        (
            f"error: no employee 'nobody' in file:{workspace.directory} (searched id, DN, "
            "sAMAccountName, uid, userPrincipalName, mail, cn)\n"
        ),
    )
