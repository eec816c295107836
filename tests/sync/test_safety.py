"""Safety: limits counted from the changes, per-persona limits, and plans applied as reviewed."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from click.testing import Result

from tests.sync.conftest import Workspace

Run = Callable[..., Result]
CHECKSUM_ERROR = (
    "error: plan.json: plan checksum does not match its contents: the file was edited or "
    "damaged; make a new plan\n"
)


def saved_plan(workspace: Workspace, run_cli: Run) -> dict[str, Any]:
    assert run_cli("plan", "-o", "plan.json", "-q").exit_code == 2
    return dict(json.loads((workspace.root / "plan.json").read_text()))


def save(workspace: Workspace, plan: dict[str, Any]) -> None:
    (workspace.root / "plan.json").write_text(json.dumps(plan), encoding="utf-8")


def set_safety(workspace: Workspace, text: str) -> None:
    config = workspace.config.read_text()
    head, _ = config.split("safety:\n", 1)
    workspace.config.write_text(head + text + "state_dir: state\n", encoding="utf-8")


@pytest.mark.parametrize(
    "edit",
    [
        lambda p: p["summary"].update(employees_changed=1),
        lambda p: p["summary"].update(in_scope=100000),
        lambda p: p["changes"][0].update(new="knowledge-worker"),
        lambda p: p["changes"].pop(),
        lambda p: p["foreign"].clear(),
        lambda p: p["provenance"].update(created="2020-01-01T00:00:00+00:00"),
    ],
    ids=["summary-count", "summary-scope", "new-value", "dropped-change", "foreign", "created"],
)
def test_any_edit_of_a_plan_is_refused(
    workspace: Workspace, run_cli: Run, edit: Callable[[dict[str, Any]], None]
) -> None:
    plan = saved_plan(workspace, run_cli)
    edit(plan)
    save(workspace, plan)
    before = workspace.directory.read_bytes()
    result = run_cli("apply", "plan.json", "--force")
    assert (result.exit_code, result.stdout, result.stderr) == (1, "", CHECKSUM_ERROR)
    assert workspace.directory.read_bytes() == before


def test_the_limit_counts_the_changes_not_the_summary(workspace: Workspace, run_cli: Run) -> None:
    set_safety(workspace, "safety:\n  max_changes: 1\n  max_change_percent: 100\n")
    saved_plan(workspace, run_cli)
    result = run_cli("apply", "plan.json")
    assert (result.exit_code, result.stderr) == (
        4,
        "held: this run would change 2 employees, more than the safety limit of 1 "
        "(max_changes 1, max_change_percent 100% of 4 in scope); nothing was written. Review "
        "the plan, then rerun with --force, or raise the limit under safety: in the config\n",
    )


def test_a_persona_limit_holds_a_run_and_names_the_persona(
    workspace: Workspace, run_cli: Run
) -> None:
    set_safety(
        workspace,
        "safety:\n  max_changes: 500\n  max_change_percent: 100\n"
        "  persona_limits:\n    vip: {max_gain: 5, max_gain_percent: 20}\n",
    )
    before = workspace.directory.read_bytes()
    message = (
        "held: this run would move 1 employees into persona vip, more than its safety limit "
        "of 0 (max_gain 5, max_gain_percent 20% of 4 in scope under safety.persona_limits.vip)"
        "; nothing was written. Review the plan, then rerun with --force, or raise the limit "
        "under safety: in the config\n"
    )
    synced = run_cli("sync", "-q")
    assert (synced.exit_code, synced.stderr) == (4, message)
    saved_plan(workspace, run_cli)
    applied = run_cli("apply", "plan.json")
    assert (applied.exit_code, applied.stderr) == (4, message)
    assert workspace.directory.read_bytes() == before
    assert not (workspace.state / "journal").exists()
    assert run_cli("apply", "plan.json", "--force").exit_code == 0
    assert workspace.directory.read_bytes() != before


def test_a_persona_limit_that_is_not_reached_lets_the_run_through(
    workspace: Workspace, run_cli: Run
) -> None:
    set_safety(
        workspace,
        "safety:\n  max_changes: 500\n  max_change_percent: 100\n"
        "  persona_limits:\n    vip: {max_gain: 1}\n    clinician: {max_gain_percent: 25}\n",
    )
    result = run_cli("sync")
    assert result.exit_code == 0, result.stderr


def test_a_persona_limit_for_an_unknown_persona(workspace: Workspace, run_cli: Run) -> None:
    set_safety(workspace, "safety:\n  persona_limits:\n    vipp: {max_gain: 1}\n")
    result = run_cli("plan")
    assert (result.exit_code, result.stdout) == (1, "")
    assert result.stderr.startswith(
        f"error: {workspace.config}: safety.persona_limits names persona(s) vipp that the rules "
        "do not define (personas: vip, "
    )


def test_two_scenarios_may_not_share_an_attribute(workspace: Workspace, run_cli: Run) -> None:
    workspace.config.write_text(
        workspace.config.read_text().replace(
            "targets:\n  persona: msDS-cloudExtensionAttribute1\n",
            "targets:\n  persona: msDS-cloudExtensionAttribute1\n"
            "  support: msds-CLOUDExtensionAttribute1\n",
        )
    )
    result = run_cli("plan")
    assert (result.exit_code, result.stdout, result.stderr) == (
        1,
        "",
        "persona-sync.yaml:6:3: scenarios persona and support both write "
        "msds-CLOUDExtensionAttribute1; each scenario needs an attribute of its own "
        "(attribute names ignore case)\n1 error\n",
    )
