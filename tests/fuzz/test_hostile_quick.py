"""Hostile input, quick: a few examples of each kind in the default suite (the slow suite,
test_fuzz_inputs.py, throws many more). Loaders and engine answer with a result or a
one-line located PersonaSyncError, never a traceback."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from persona_sync.cli.main import cli
from persona_sync.config import load_config
from persona_sync.employee import Employee
from tests.conftest import DEFAULT_RULES
from tests.fuzz import hostile

QUICK = settings(
    max_examples=30,
    deadline=None,
    derandomize=True,  # the default suite sees the same examples every run
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)


@QUICK
@given(hostile.rule_files)
def test_rule_files(tmp_path: Path, raw: bytes) -> None:
    hostile.check_rule_file(tmp_path / "r.yaml", raw)


@QUICK
@given(hostile.config_files, hostile.environments)
def test_configs(tmp_path: Path, raw: bytes, environ: dict[str, str]) -> None:
    (tmp_path / "rules").mkdir(exist_ok=True)
    (tmp_path / "rules" / "r.yaml").write_bytes(hostile.RULE_FILES[0])
    path = tmp_path / "persona-sync.yaml"
    path.write_bytes(raw)
    hostile.outcome(lambda: load_config(path, environ), str(path))


@QUICK
@given(hostile.ldif_files, hostile.hostile_text)
def test_ldif(raw: bytes, value: str) -> None:
    hostile.check_ldif(raw, value)


@QUICK
@given(hostile.csv_files, hostile.hostile_text)
def test_csv(raw: bytes, value: str) -> None:
    hostile.check_csv(raw, value)


@QUICK
@given(st.lists(hostile.employees, min_size=1, max_size=5))
def test_engine_decides_for_hostile_attribute_values(
    tmp_path: Path, people: list[Employee]
) -> None:
    hostile.check_decide([hostile.DEFAULT_ENGINE, hostile.hostile_engine(tmp_path)], people)


# --- whole files through the CLI ------------------------------------------------------

_FOOTER = re.compile(r"\d+ errors?$")


def assert_cli_answered(result: object, *paths: str) -> None:
    exit_code = result.exit_code  # type: ignore[attr-defined]
    stderr = result.stderr  # type: ignore[attr-defined]
    assert exit_code in (0, 1, 2), (exit_code, stderr)
    assert "Traceback" not in stderr and "unexpected error" not in stderr, stderr
    for line in stderr.splitlines():
        if line.startswith('{"event": '):  # a log record (JSON when not on a terminal)
            continue
        if line and not _FOOTER.match(line):
            hostile.assert_reported(hostile.PersonaSyncError(line), *paths)


@QUICK
@given(hostile.rule_files)
def test_validate_reads_hostile_rule_files(tmp_path: Path, raw: bytes) -> None:
    path = tmp_path / "r.yaml"
    path.write_bytes(raw)
    result = CliRunner().invoke(cli, ["validate", str(path)], catch_exceptions=False)
    assert_cli_answered(result, str(path))


@pytest.mark.parametrize("kind", ["ldif", "csv"])
@QUICK
@given(data=st.data())
def test_plan_reads_hostile_directory_files(tmp_path: Path, kind: str, data: st.DataObject) -> None:
    plan_hostile_directory(tmp_path, kind, data.draw(hostile.directory_files(kind)))


def plan_hostile_directory(tmp_path: Path, kind: str, raw: bytes) -> None:
    """`plan` over a directory file holding ``raw`` answers with a plan or located errors."""
    directory = tmp_path / f"company.{kind}"
    directory.write_bytes(raw)
    config = tmp_path / "persona-sync.yaml"
    config.write_text(
        f"rules: {DEFAULT_RULES}\ndirectory: {{type: file, path: {directory.name}}}\n"
        "targets: {persona: employeeType}\n"
        "safety: {max_changes: 1000, max_change_percent: 100}\nstate_dir: state\n",
        encoding="utf-8",
    )
    result = CliRunner().invoke(
        cli, ["plan", "--config", str(config), "-q", "--format", "json"], catch_exceptions=False
    )
    assert_cli_answered(result, str(directory), directory.name, str(config))
