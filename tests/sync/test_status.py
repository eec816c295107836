"""`persona-sync status` and `explain` from the snapshot."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from persona_sync.config import load_config
from persona_sync.directory import directory_identity, open_directory
from persona_sync.status import status
from tests.sync.conftest import Workspace

Run = Callable[..., Any]


def test_status_before_any_run(workspace: Workspace, run_cli: Run) -> None:
    result = run_cli("status")
    assert result.exit_code == 0
    assert result.stdout.splitlines() == [
        "last run:  none yet",
        "last read: none yet (persona-sync plan or sync makes the snapshot)",
        f"snapshot:  none in {workspace.state}",
    ]


def test_status_after_a_delta_sync(workspace: Workspace, run_cli: Run) -> None:
    assert run_cli("sync", "--delta", "-q").exit_code == 0
    data = json.loads(run_cli("status", "--format", "json").stdout)
    run = data["last_run"]
    assert (run["command"], run["status"], run["applied"], run["conflicts"]) == (
        "sync",
        "complete",
        2,
        0,
    )
    assert data["last_read"]["mode"] == "full"
    assert data["last_read"]["reason"] == "no snapshot yet: full read"
    [source] = data["sources"]
    assert source["name"] == "directory"
    assert source["identity"] == f"file:{workspace.directory}"
    assert source["cursor"] == "file"
    assert isinstance(source["age_seconds"], int) and source["age_seconds"] >= 0
    snapshot = data["snapshot"]
    assert (snapshot["employees"], snapshot["pending"], snapshot["usable"]) == (6, 0, True)
    assert snapshot["bytes"] > 0
    text = run_cli("status").stdout.splitlines()
    assert text[0].startswith(f"last run:  sync {run['run_id']} at ")
    assert text[0].endswith(": complete, 2 applied, 0 conflicts, 0 failed")
    assert text[1] == (f"last read: full at {data['last_read']['at']} (no snapshot yet: full read)")
    assert text[3] == (
        f"cursor:    directory file:{workspace.directory}: file, taken {source['taken']} "
        f"({source['age_seconds']} s ago)"
    )
    assert text[4].startswith(
        f"snapshot:  {workspace.state / 'snapshot.sqlite'}: 6 employees, 0 with changes pending, "
    )


def test_status_ages_are_measured_from_now(workspace: Workspace, run_cli: Run) -> None:
    assert run_cli("plan", "-q").exit_code == 2
    first = status(workspace.state)
    taken = datetime.fromisoformat(first.sources[0].taken or "")
    later = status(workspace.state, now=taken + timedelta(seconds=90))
    assert later.sources[0].age_seconds == 90
    assert first.snapshot is not None and first.snapshot["pending"] == 2


def test_explain_reads_the_snapshot_not_the_directory(workspace: Workspace, run_cli: Run) -> None:
    assert run_cli("plan", "-q").exit_code == 2
    before = run_cli("explain", "jsmith")
    assert before.exit_code == 0
    read_at = json.loads(run_cli("status", "--format", "json").stdout)["last_read"]["at"]
    assert before.stderr.splitlines()[-1] == (
        f"explain: jsmith as read in the snapshot of {read_at} (--read reads the directory now)"
    )
    workspace.directory.write_text("", encoding="utf-8")  # the directory is gone: no read
    again = run_cli("explain", "jsmith")
    assert again.exit_code == 0 and again.stdout == before.stdout
    direct = run_cli("explain", "jsmith", "--read")
    assert direct.exit_code == 1
    assert direct.stderr.splitlines()[-1] == (
        f"error: no employee 'jsmith' in file:{workspace.directory} (searched id, DN, "
        "sAMAccountName, uid, userPrincipalName, mail, cn)"
    )


def test_explain_falls_back_to_the_directory_for_someone_new(
    workspace: Workspace, run_cli: Run
) -> None:
    assert run_cli("plan", "-q").exit_code == 2
    workspace.directory.write_text(
        workspace.text() + "\ndn: CN=New,OU=People,DC=example,DC=com\nsAMAccountName: "
        "newbie\ntitle: Cashier\n",
        encoding="utf-8",
    )
    result = run_cli("explain", "newbie")
    assert result.exit_code == 0
    assert "as read in the snapshot" not in result.stderr


def test_directory_identity_matches_the_backends(workspace: Workspace, tmp_path: Path) -> None:
    config = load_config(workspace.config)
    with open_directory(config) as directory:
        assert directory_identity(config) == directory.identity
    ldap = tmp_path / "ldap.yaml"
    ldap.write_text(
        workspace.config.read_text().replace(
            "  type: file\n  path: company.ldif\n",
            "  type: ldap\n  preset: ad\n  urls: [ldaps://dc1.example.com]\n"
            "  bind: {method: anonymous}\n"
            "  base_dns: ['OU=People,DC=Example,DC=com', 'ou=Staff,dc=example,dc=com']\n",
        )
    )
    config = load_config(ldap)
    assert directory_identity(config) == open_directory(config).identity


def test_status_after_the_demo_names_its_run(
    tmp_path: Path, run_cli: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert run_cli("demo").exit_code == 0
    data = json.loads(
        run_cli(
            "status", "--config", "persona-sync-demo/persona-sync.yaml", "--format", "json"
        ).stdout
    )
    assert data["last_run"]["command"] == "demo"
    assert data["last_run"]["status"] == "complete"
    assert data["last_read"]["reason"] == "no --delta: a full read"
