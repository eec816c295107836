"""Bad input to the remaining commands: one clear line, exit 1, nothing written."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import Result

from tests.sync.conftest import Workspace, workspace  # noqa: F401 - fixture

Run = Callable[..., Result]


def test_lint_on_invalid_rules(run_cli: Run, write: Callable[[str, str], Path]) -> None:
    bad = write("r.yaml", "personas:\n  - id: x\n")
    result = run_cli("lint", str(bad))
    assert (result.exit_code, result.stdout, result.stderr) == (1, "", (
        f"{bad}:2:5: missing required key 'name'\n"
        f"{bad}:2:5: missing required key 'precedence'\n"
        "2 errors\n"))


def test_schema_into_an_unwritable_place(run_cli: Run, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    result = run_cli("schema", "--out", str(blocker / "schemas"))
    assert (result.exit_code, result.stderr) == (
        1, f"error: cannot create {blocker / 'schemas'}: Not a directory\n")


def test_runs_without_a_config(run_cli: Run, tmp_path: Path,
                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = run_cli("runs")
    assert (result.exit_code, result.stderr) == (1, (
        "error: persona-sync.yaml: no such config file: pass --config FILE (or run "
        "`persona-sync demo` to see one)\n"))
    assert list(tmp_path.iterdir()) == []


def test_demo_into_a_file(run_cli: Run, tmp_path: Path) -> None:
    blocker = tmp_path / "taken"
    blocker.write_text("x")
    result = run_cli("demo", "--dir", str(blocker))
    assert (result.exit_code, result.stderr) == (
        1, f"error: cannot set up the demo in {blocker}: File exists\n")
    assert blocker.read_text() == "x"


def test_entra_command_on_another_directory(workspace: Workspace, run_cli: Run) -> None:  # noqa: F811
    before = workspace.directory.read_bytes()
    result = run_cli("entra", "create-extension", "persona", "--dry-run")
    assert (result.exit_code, result.stderr) == (
        1, "error: entra create-extension needs a config with directory type entra\n")
    assert workspace.directory.read_bytes() == before


def test_check_connection_on_a_missing_file(workspace: Workspace, run_cli: Run) -> None:  # noqa: F811
    workspace.directory.unlink()
    result = run_cli("check-connection")
    assert result.exit_code == 1
    assert result.stdout == f"FAIL  file          {workspace.directory}: no such directory file\n"
