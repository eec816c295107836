"""Bad input to plan/apply/sync: one clear message, exit 1, and the directory untouched."""

from __future__ import annotations

import errno
import json
import os
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import Result

from persona_sync.config import load_config
from persona_sync.errors import RuleError
from tests.conftest import DEFAULT_RULES
from tests.sync.conftest import Workspace

Run = Callable[..., Result]


def assert_error(result: Result, message: str) -> None:
    assert (result.exit_code, result.stdout, result.stderr) == (1, "", message)


def test_no_config(tmp_path: Path, run_cli: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert_error(
        run_cli("plan"),
        "error: persona-sync.yaml: no such config file: pass --config "
        "FILE (or run `persona-sync demo` to see one)\n",
    )
    assert_error(
        run_cli("plan", "--config", "other.yaml"),
        "error: other.yaml: no such config file: pass --config FILE\n",
    )


def test_config_errors_are_located(workspace: Workspace, run_cli: Run) -> None:
    workspace.config.write_text(
        f"rules: {DEFAULT_RULES}\n"
        "directory:\n  type: ldapp\n"
        "targets:\n  persona: 'bad attribute!'\n"
        "safety:\n  max_changes: lots\n  max_change_percent: 150\n"
        "colour: red\n"
    )
    result = run_cli("plan")
    assert result.exit_code == 1
    assert result.stderr == (
        "persona-sync.yaml:3:9: directory.type: unknown type 'ldapp' (expected: file, ldap, "
        "entra)\n"
        "persona-sync.yaml:5:12: 'bad attribute!' is not a directory attribute name (letters, "
        "digits, '-', '_'; dots only between parts, as in onPremisesExtensionAttributes."
        "extensionAttribute10)\n"
        "persona-sync.yaml:7:16: max_changes: input should be a valid integer, unable to parse "
        "string as an integer\n"
        "persona-sync.yaml:8:23: max_change_percent: input should be less than or equal to 100\n"
        "persona-sync.yaml:9:1: unknown key 'colour'\n"
        "5 errors\n"
    )


def test_environment_override_and_its_errors(
    workspace: Workspace, run_cli: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PERSONA_SYNC_SAFETY__MAX_CHANGES", "many")
    assert_error(
        run_cli("plan"),
        "environment variable PERSONA_SYNC_SAFETY__MAX_CHANGES: "
        "max_changes: input should be a valid integer, unable to parse string as an "
        "integer\n1 error\n",
    )
    monkeypatch.setenv("PERSONA_SYNC_SAFETY__MAX_CHANGES", "1")
    run_cli("plan", "-o", "plan.json", "-q")
    blocked = run_cli("apply", "plan.json")
    assert (blocked.exit_code, blocked.stderr) == (
        4,
        "held: this run would change 2 employees, more than the safety limit of 1 (max_changes "
        "1, max_change_percent 100% of 4 in scope); nothing was written. Review the plan, then "
        "rerun with --force, or raise the limit under safety: in the config\n",
    )


def test_config_pointing_to_missing_rules(workspace: Workspace, run_cli: Run) -> None:
    workspace.config.write_text(workspace.config.read_text().replace(str(DEFAULT_RULES), "nowhere"))
    assert_error(
        run_cli("plan"),
        f"persona-sync.yaml:1:8: rules not found: "
        f"{workspace.root / 'nowhere'} (the path is relative to persona-sync.yaml)\n",
    )


def test_targets_must_match_scenarios(workspace: Workspace, run_cli: Run) -> None:
    workspace.config.write_text(workspace.config.read_text().replace("  persona:", "  routing:"))
    assert_error(
        run_cli("plan"),
        f"error: {workspace.config}: targets names scenario(s) routing "
        "that the rules do not define (scenarios: persona)\n",
    )


def test_missing_directory_file(workspace: Workspace, run_cli: Run) -> None:
    workspace.directory.unlink()
    assert_error(run_cli("plan"), f"error: {workspace.directory}: no such directory file\n")


def test_malformed_ldif_names_the_line(workspace: Workspace, run_cli: Run) -> None:
    text = workspace.text().replace("title: Cashier\n", "title Cashier\n", 1)
    workspace.directory.write_text(text)
    line = text[: text.index("title Cashier")].count("\n") + 1
    assert_error(
        run_cli("plan"),
        f"{workspace.directory}:{line}:1: line has no ':' separating attribute and value\n",
    )


def test_unknown_file_format(workspace: Workspace, run_cli: Run) -> None:
    workspace.directory.rename(workspace.root / "company.txt")
    workspace.config.write_text(workspace.config.read_text().replace("company.ldif", "company.txt"))
    assert_error(
        run_cli("plan"),
        f"error: {workspace.root / 'company.txt'}: cannot tell the file "
        "format from the extension .txt; set directory.format to ldif or csv\n",
    )


@pytest.fixture
def saved_plan(workspace: Workspace, run_cli: Run) -> dict:
    assert run_cli("plan", "-o", "plan.json", "-q").exit_code == 2
    return json.loads((workspace.root / "plan.json").read_text())


def _apply_edited(workspace: Workspace, run_cli: Run, plan: dict) -> Result:
    (workspace.root / "plan.json").write_text(json.dumps(plan))
    before = workspace.directory.read_bytes()
    result = run_cli("apply", "plan.json")
    assert workspace.directory.read_bytes() == before
    return result


def test_tampered_plan_is_refused(workspace: Workspace, run_cli: Run, saved_plan: dict) -> None:
    saved_plan["changes"][0]["new"] = "clinician"
    assert_error(
        _apply_edited(workspace, run_cli, saved_plan),
        "error: plan.json: plan checksum does not match its contents: the file was "
        "edited or damaged; make a new plan\n",
    )


def test_foreign_files_are_refused(workspace: Workspace, run_cli: Run) -> None:
    (workspace.root / "x.json").write_text('{"changes": []}')
    assert_error(
        run_cli("apply", "x.json"),
        "error: x.json: not a persona-sync plan (save one "
        "with `persona-sync plan --format json -o FILE`)\n",
    )
    (workspace.root / "y.json").write_text("changes:\n")
    assert_error(
        run_cli("apply", "y.json"),
        "error: y.json: not a persona-sync plan (invalid JSON at line 1)\n",
    )
    assert_error(
        run_cli("apply", "missing.json"),
        "error: cannot read plan missing.json: No such file or directory\n",
    )


def test_plan_for_another_directory(workspace: Workspace, run_cli: Run, saved_plan: dict) -> None:
    other = workspace.root / "other.ldif"
    other.write_bytes(workspace.directory.read_bytes())
    workspace.config.write_text(workspace.config.read_text().replace("company.ldif", "other.ldif"))
    assert_error(
        run_cli("apply", "plan.json"),
        f"error: this plan is for directory "
        f"file:{workspace.directory}, but the config points at file:{other}\n",
    )


def test_plan_after_rules_or_config_changed(
    workspace: Workspace, run_cli: Run, saved_plan: dict, tmp_path: Path
) -> None:
    workspace.config.write_text(
        workspace.config.read_text().replace("max_changes: 500", "max_changes: 400")
    )
    assert_error(
        run_cli("apply", "plan.json"),
        "error: the config changed since this plan was made: make a new plan\n",
    )
    rules = tmp_path / "rules"
    rules.mkdir()
    for item in DEFAULT_RULES.glob("*.yaml"):
        (rules / item.name).write_text(item.read_text() + "\n# edited\n")
    workspace.config.write_text(
        workspace.config.read_text()
        .replace(str(DEFAULT_RULES), str(rules))
        .replace("max_changes: 400", "max_changes: 500")
    )
    assert_error(
        run_cli("apply", "plan.json"),
        "error: the rules changed since this plan was made: make a new plan\n",
    )


def test_full_disk_leaves_the_directory_untouched(
    workspace: Workspace, run_cli: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = workspace.directory.read_bytes()
    real_fsync = os.fsync

    def full(fd: int) -> None:
        if os.readlink(f"/proc/self/fd/{fd}").startswith(str(workspace.root / ".company")):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", full)
    result = run_cli("sync")
    assert result.exit_code == 1
    lines = result.stderr.splitlines()[1:]  # after the plan's headline
    assert lines[0] == f"stopped: cannot write {workspace.directory}: No space left on device"
    assert re.fullmatch(
        r"run (\S+): 0 applied, 0 already set, 0 conflicts, 2 failed; aborted; journal "
        + re.escape(str(workspace.state / "journal"))
        + r"/\1\.jsonl",
        lines[1],
    ), lines[1]
    assert len(lines) == 2
    assert workspace.directory.read_bytes() == before
    assert sorted(p.name for p in workspace.root.iterdir() if p.name.startswith(".")) == []


@pytest.mark.parametrize(
    ("variable", "reason"),
    [("\x00", "embedded null byte"), ("x" * 5000, "File name too long")],
    ids=["nul", "too-long"],
)
def test_unusable_rules_path(workspace: Workspace, variable: str, reason: str) -> None:
    with pytest.raises(RuleError) as caught:
        load_config(workspace.config, {"PERSONA_SYNC_RULES": variable})
    assert str(caught.value) == (
        f"environment variable PERSONA_SYNC_RULES: rules path cannot be used: {reason}"
    )


def test_openldap_delta_settings_are_checked(workspace: Workspace, run_cli: Run) -> None:
    """The two settings for OpenLDAP without syncprov: located errors before any bind, and
    nothing written."""
    workspace.config.write_text(
        f"rules: {DEFAULT_RULES}\n"
        "directory:\n  type: ldap\n  preset: openldap\n  urls: [ldaps://ldap.example.com]\n"
        "  base_dns: ['ou=People,dc=example,dc=com']\n"
        "  entrycsn_margin_seconds: -5\n  deletion_sweep_every_minutes: hourly\n"
        "targets:\n  persona: personaName\n"
        "state_dir: state\n"
    )
    result = run_cli("plan", "--delta")
    assert (result.exit_code, result.stdout) == (1, "")
    assert result.stderr == (
        "persona-sync.yaml:7:28: entrycsn_margin_seconds: input should be greater than or "
        "equal to 0\n"
        "persona-sync.yaml:8:33: deletion_sweep_every_minutes: input should be a valid number, "
        "unable to parse string as a number\n"
        "2 errors\n"
    )
    assert not workspace.state.exists()
