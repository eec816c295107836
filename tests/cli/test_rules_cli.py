"""The rule author's commands, end to end through click and through the console script."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from click.testing import Result

from tests.conftest import DEFAULT_RULES, REPO

Run = Callable[..., Result]
Write = Callable[[str, str], Path]


def test_validate_default_rules(run_cli: Run) -> None:
    result = run_cli("validate", str(DEFAULT_RULES))
    assert result.exit_code == 0
    assert result.stdout == "ok: 3 file(s), 9 personas, 9 rules, 10 facts, 1 scenario(s)\n"


def test_validate_reports_every_error_and_exits_1(run_cli: Run, write: Write) -> None:
    bad = write(
        "r.yaml", "personas:\n  - id: x\n    nme: X\n    precedence: 1\n    default: true\n"
    )
    result = run_cli("validate", str(bad))
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr == (
        f"{bad}:2:5: missing required key 'name'\n"
        f"{bad}:3:5: unknown key 'nme' (did you mean 'name'?)\n"
        "2 errors\n"
    )


def test_validate_json(run_cli: Run, write: Write) -> None:
    bad = write("r.yaml", "personas: 3\n")
    result = run_cli("validate", "--format", "json", str(bad))
    assert result.exit_code == 1
    assert json.loads(result.stdout) == {
        "valid": False,
        "errors": [
            {
                "path": str(bad),
                "line": 1,
                "column": 11,
                "message": "personas: input should be a valid list",
            },
        ],
    }
    good = run_cli("validate", "--format", "json", str(DEFAULT_RULES))
    assert good.exit_code == 0
    payload = json.loads(good.stdout)
    assert payload["valid"] is True and payload["checksum"].startswith("sha256:")


def test_lint_clean_and_with_warnings(run_cli: Run, write: Write) -> None:
    assert run_cli("lint", str(DEFAULT_RULES)).stdout == "no warnings\n"
    rules = write(
        "r.yaml",
        """
        facts:
          dept: {from: department}
          unused: {from: title}
        personas:
          - id: broad
            name: Broad
            precedence: 2
            rules:
              - id: sales
                when: {fact: dept, in: [sales, marketing]}
          - id: narrow
            name: Narrow
            precedence: 1
            default: false
            rules:
              - id: sales-emea
                when: {fact: dept, equals: Sales}
          - id: base
            name: Base
            precedence: 0
            default: true
        """,
    )
    result = run_cli("lint", str(rules))
    assert result.exit_code == 1
    assert result.stdout.splitlines() == [
        f"{rules}:3:3: warning: fact 'unused' is mapped but no rule, exclusion or scope tests "
        "it [unused-fact]",
        f"{rules}:11:5: warning: persona 'narrow' can never be given: every one of its rules "
        "is shadowed [unreachable-persona]",
        f"{rules}:16:9: warning: rule 'sales-emea' can never decide: whenever it holds, rule "
        f"'sales' of persona 'broad' (precedence 2, {rules}:9:9) holds too [shadowed-rule]",
    ]
    assert result.stderr == "3 warnings\n"


def test_test_command_passes_on_shipped_cases(run_cli: Run) -> None:
    result = run_cli("test", "--rules", str(DEFAULT_RULES))
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert lines[0] == f"{DEFAULT_RULES / 'cases' / 'default.yaml'} " + "." * 37
    assert lines[-1].startswith("37 passed, 0 failed in ")


def test_test_command_reports_failures(run_cli: Run, write: Write) -> None:
    cases = write(
        "cases.yaml",
        """
        cases:
          - name: nurse
            attributes: {title: Nurse}
            expect: clinician
          - name: nurse is wrongly expected to be an engineer
            attributes: {title: Nurse}
            expect: engineer
        """,
    )
    result = run_cli("test", "--rules", str(DEFAULT_RULES), str(cases))
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert lines[:3] == [
        f"{cases} .F",
        "",
        f"FAILED {cases}:5:5 nurse is wrongly expected to be an engineer: expected engineer, "
        "got clinician (rule clinician-by-title)",
    ]
    assert lines[3].startswith("1 passed, 1 failed in ")


def test_test_command_bad_case_file(run_cli: Run, write: Write) -> None:
    cases = write("cases.yaml", "cases:\n  - name: x\n    expect: enginer\n    atributes: {}\n")
    result = run_cli("test", "--rules", str(DEFAULT_RULES), str(cases))
    assert result.exit_code == 1
    assert result.stderr == (
        f"{cases}:3:13: unknown persona 'enginer' (expect a persona id, out-of-scope, leave "
        "or clear)\n"
        f"{cases}:4:5: unknown key 'atributes' (did you mean 'attributes'?)\n"
        "2 errors\n"
    ) or result.stderr == (
        f"{cases}:4:5: unknown key 'atributes' (did you mean 'attributes'?)\n1 error\n"
    )


def test_explain_text(run_cli: Run) -> None:
    result = run_cli(
        "explain",
        "--rules",
        str(DEFAULT_RULES),
        "--attr",
        "title=Trauma Surgeon",
        "--attr",
        "department=Surgery",
    )
    assert result.exit_code == 0
    out = result.stdout
    assert (
        "  role.family         = 'clinical'               <- attribute title via table from "
        "'Trauma Surgeon'" in out
    )
    assert "  persona vip (precedence 100): CANDIDATE" in out
    assert (
        "          [yes] role.title matches /\\b(trauma|emergency)\\b/  (is 'Trauma Surgeon')"
        in out
    )
    assert out.rstrip().splitlines()[-1] == (
        "  => vip: 'vip' wins by precedence among candidates vip (100), clinician (90), "
        "remote-worker (30) (rule vip-trauma-doctor)"
    )


def test_explain_json_from_case(run_cli: Run) -> None:
    result = run_cli(
        "explain",
        "--rules",
        str(DEFAULT_RULES),
        "--format",
        "json",
        "--case",
        str(DEFAULT_RULES / "cases" / "default.yaml"),
        "--name",
        "engineering intern",
    )
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    scenario = data["scenarios"][0]
    assert (scenario["outcome"], scenario["persona"], scenario["rule"]) == (
        "default",
        "knowledge-worker",
        "default",
    )
    assert scenario["reason"] == (
        "no persona matched: the default persona 'knowledge-worker' applies; excluded by "
        "'unless': engineer"
    )


def test_explain_bad_input(run_cli: Run) -> None:
    rules = str(DEFAULT_RULES)
    cases = str(DEFAULT_RULES / "cases" / "default.yaml")
    for args, message in [
        ((), "error: say which employee: EMPLOYEE, --attr NAME=VALUE ... or --case FILE\n"),
        (("--attr", "title"), "error: --attr expects NAME=VALUE, got 'title'\n"),
        (("--case", cases), f"error: {cases} has 37 cases: pick one with --name\n"),
        (("--case", cases, "--name", "zzz"), f"error: no case in {cases} has 'zzz' in its name\n"),
        (("--case", cases, "--attr", "a=b"), "error: give either --case or --attr, not both\n"),
    ]:
        result = run_cli("explain", "--rules", rules, *args)
        assert (result.exit_code, result.stderr) == (1, message)


def test_usage_errors_exit_1_not_2(run_cli: Run) -> None:
    result = run_cli("validate", "--bogus")
    assert result.exit_code == 1
    assert result.stderr.splitlines()[-1] == "Error: No such option '--bogus'."


def test_schema_check_and_write(run_cli: Run, tmp_path: Path) -> None:
    result = run_cli("schema", "--check", "--out", str(REPO / "schemas"))
    assert (result.exit_code, result.stdout) == (
        0,
        f"schemas in {REPO / 'schemas'} are up to date\n",
    )
    out = tmp_path / "s"
    written = run_cli("schema", "--out", str(out))
    assert written.exit_code == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(
        line.rsplit("/", 1)[1] for line in written.stdout.splitlines()
    )
    (out / "rules.schema.json").write_text("{}", encoding="utf-8")
    stale = run_cli("schema", "--check", "--out", str(out))
    assert (stale.exit_code, stale.stderr) == (
        1,
        f"stale: {out / 'rules.schema.json'} (run `persona-sync schema` to update)\n",
    )


def test_installed_console_script(tmp_path: Path) -> None:
    script = shutil.which("persona-sync", path=str(Path(sys.executable).parent)) or shutil.which(
        "persona-sync"
    )
    assert script, "the persona-sync console script is not installed (pip install -e .)"
    env = {**os.environ, "NO_COLOR": "1"}
    done = subprocess.run(
        [script, "validate", str(DEFAULT_RULES)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert (done.returncode, done.stdout) == (
        0,
        "ok: 3 file(s), 9 personas, 9 rules, 10 facts, 1 scenario(s)\n",
    )
    bad = tmp_path / "bad.yaml"
    bad.write_text("personas:\n\t- x\n", encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-m", "persona_sync", "validate", str(bad)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert (done.returncode, done.stdout, done.stderr) == (
        1,
        "",
        f"{bad}:2:1: tab character in indentation: YAML indents with spaces only\n1 error\n",
    )


def test_closed_pipe_is_not_an_error_message() -> None:
    script = Path(sys.executable).parent / "persona-sync"
    command = [str(script)] if script.exists() else [sys.executable, "-m", "persona_sync"]
    done = subprocess.run(
        # The reader closes its end at once, before persona-sync has written anything.
        ["bash", "-c",
         f"{' '.join(command)} explain --rules {DEFAULT_RULES} --attr title=CEO "
         "| (exec <&-; sleep 2)"],
        capture_output=True, text=True, check=False,
    )
    assert done.stderr == ""
