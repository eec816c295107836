"""`persona-sync report` end to end: plan, apply, rollback, then every kind of report."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import Result

from tests.conftest import DEFAULT_RULES

Run = Callable[..., Result]

DIRECTORY = """\
version: 1

dn: CN=Boss,OU=HQ,DC=example,DC=com
sAMAccountName: boss
title: Chief Executive Officer
physicalDeliveryOfficeName: Munich HQ
co: Germany
department: Board

dn: CN=Smith\\, John,OU=Clinic,DC=example,DC=com
sAMAccountName: jsmith
title: Registered Nurse
manager: CN=Boss,OU=HQ,DC=example,DC=com
physicalDeliveryOfficeName: North Clinic
co: Germany
department: Nursing & Care

dn:: Q049TcO8bGxlclwsIErDtnJnLE9VPUhRLERDPWV4YW1wbGUsREM9Y29t
sAMAccountName: jmuller
title: Software Engineer
manager: CN=Boss,OU=HQ,DC=example,DC=com
physicalDeliveryOfficeName: Munich HQ
co: Germany
department: R&D

dn: CN=<script>alert(1)</script>,OU=HQ,DC=example,DC=com
sAMAccountName: <script>x</script>
title: Software Engineer
manager: CN=Boss,OU=HQ,DC=example,DC=com
physicalDeliveryOfficeName: Zürich Office
co: Switzerland
department: R&D

dn: CN=Cashier,OU=Stores,DC=example,DC=com
sAMAccountName: cashier
title: Cashier
manager: CN=Boss,OU=HQ,DC=example,DC=com
physicalDeliveryOfficeName: Store 1
co: Austria
department: Stores

dn: CN=Gone,OU=HQ,DC=example,DC=com
sAMAccountName: gone
title: Cashier
userAccountControl: 514
"""

CONFIG = """\
rules: {rules}
directory: {{ type: file, path: {directory} }}
targets: {{ persona: extensionAttribute10 }}
safety: {{ max_changes: 500, max_change_percent: 100 }}
state_dir: state
"""


@dataclass
class Company:
    root: Path
    run: Run

    @property
    def config(self) -> str:
        return str(self.root / "persona-sync.yaml")

    @property
    def plan(self) -> str:
        return str(self.root / "plan.json")

    def make_plan(self) -> None:
        result = self.run("plan", "--config", self.config, "-q", "-o", self.plan)
        assert result.exit_code == 2, result.stderr

    def report(self, *args: str) -> Result:
        return self.run("report", *args)


@pytest.fixture
def company(tmp_path: Path, run_cli: Run, monkeypatch: pytest.MonkeyPatch) -> Company:
    monkeypatch.delenv("PERSONA_SYNC_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "company.ldif").write_text(DIRECTORY, encoding="utf-8")
    (tmp_path / "persona-sync.yaml").write_text(
        CONFIG.format(rules=DEFAULT_RULES, directory="company.ldif"), encoding="utf-8"
    )
    return Company(tmp_path, run_cli)


def test_plan_report_html_without_the_directory(company: Company) -> None:
    company.make_plan()
    out = company.root / "plan.html"
    result = company.report(company.plan, "-o", str(out))
    assert result.exit_code == 0
    assert result.stdout == ""
    assert re.fullmatch(rf"report: wrote {re.escape(str(out))} \(\d+ KiB\)\n", result.stderr)
    html = out.read_text(encoding="utf-8")
    assert html.startswith("<!DOCTYPE html>")
    assert "needs the directory" in html
    assert "<script>alert" not in html and "<script>x" not in html


def test_plan_report_groups_with_the_config(company: Company) -> None:
    company.make_plan()
    result = company.report(company.plan, "--config", company.config, "--format", "markdown")
    assert result.exit_code == 0, result.stderr
    text = result.stdout
    assert "| Persona | Employees | Share |\n|---|---:|---:|\n| engineer | 2 | 40.0% |\n" in text
    assert "| Munich HQ | 1 |  |  | 1 | 2 |" in text  # engineer, ..., vip, total
    assert "| R\\&D |" not in text and "| R&D | 2 |" in text
    assert "| \\<script\\>x\\</script\\> | persona | (empty) | engineer |" in text


def test_plan_report_html_to_stdout_when_piped(company: Company) -> None:
    company.make_plan()
    result = company.report(company.plan, "--group-by", "country=co")
    assert result.exit_code == 0
    assert result.stdout.startswith("<!DOCTYPE html>")


def test_plan_report_refuses_another_directory(company: Company) -> None:
    company.make_plan()
    other = company.root / "other"
    other.mkdir()
    (other / "company.ldif").write_text(DIRECTORY, encoding="utf-8")
    (other / "persona-sync.yaml").write_text(
        CONFIG.format(rules=DEFAULT_RULES, directory="company.ldif"), encoding="utf-8"
    )
    result = company.report(company.plan, "--config", str(other / "persona-sync.yaml"))
    assert result.exit_code == 1
    assert result.stderr == (
        f"error: the plan is for directory file:{company.root / 'company.ldif'}, but the config "
        f"points at file:{other / 'company.ldif'}: pass the plan's --config, or --no-directory\n"
    )


def test_plan_report_of_a_damaged_plan(company: Company) -> None:
    bad = company.root / "bad.json"
    bad.write_text("{}", encoding="utf-8")
    result = company.report(str(bad))
    assert result.exit_code == 1
    assert result.stderr == (
        f"error: {bad}: not a persona-sync plan (save one with "
        "`persona-sync plan --format json -o FILE`)\n"
    )


def _runs(company: Company) -> list[dict[str, object]]:
    result = company.run("runs", "--config", company.config, "--format", "json")
    return list(json.loads(result.stdout))


def test_journal_and_employee_reports_after_apply_and_rollback(company: Company) -> None:
    company.make_plan()
    assert company.run("apply", company.plan, "--config", company.config, "-q").exit_code == 0
    first = str(_runs(company)[0]["run_id"])
    assert company.run("rollback", first, "--config", company.config, "-q").exit_code == 0
    result = company.report("--config", company.config, "--format", "markdown")
    assert result.exit_code == 0, result.stderr
    text = result.stdout
    assert "counted back from the directory's current values" in text
    assert f"| {first} |" in text and f"rollback of {first}" in text
    assert "- Runs: 2, applied writes: 10, conflicts: 0, failed: 0, rollbacks: 1" in text
    # Counted back: before the first run and after the rollback all six entries are empty.
    assert "| (before the first run) |  | 6 | 0 | 0 | 0 | 0 |" in text
    result = company.report("--no-directory", "--format", "markdown")  # ./persona-sync.yaml
    assert "net change since before the first run" in result.stdout

    result = company.report("--employee", "JSMITH", "--format", "markdown")
    assert result.exit_code == 0
    assert "- Employee: jsmith (`CN=Smith\\, John,OU=Clinic,DC=example,DC=com`)" in result.stdout
    assert "| persona | (empty) | clinician | clinician-by-title | applied |" in result.stdout
    assert "| persona | clinician | (empty) | rollback | applied |" in result.stdout
    out = company.root / "jsmith.html"
    result = company.report("--employee", "jsmith", "-o", str(out), "--title", "Audit <jsmith>")
    assert result.exit_code == 0
    assert "<h1>Audit &lt;jsmith&gt;</h1>" in out.read_text(encoding="utf-8")


def test_report_errors(company: Company, tmp_path: Path) -> None:
    state = company.root / "state"
    result = company.report("--employee", "nobody", "--state-dir", str(state))
    assert result.exit_code == 1
    assert result.stderr == (
        f"error: no journalled or planned change for employee 'nobody' in "
        f"{state / 'journal'} (0 runs; matched by id or DN)\n"
    )
    result = company.report("--state-dir", str(state))
    assert result.stderr == f"error: no runs recorded yet in {state / 'journal'}\n"
    (company.root / "persona-sync.yaml").unlink()
    result = company.report()
    assert result.exit_code == 1
    assert result.stderr == (
        "error: which journal? pass --config FILE (its state_dir) or --state-dir DIR\n"
    )
    result = company.report(company.plan, "--group-by", "nonsense")
    assert result.exit_code == 1
    assert result.stderr.startswith("error: ")


def test_plan_report_groups_from_the_snapshot_when_it_holds_the_grouping(
    company: Company,
) -> None:
    company.make_plan()
    by_title = ("--group-by", "role=title", "--format", "markdown")  # the rules read title
    grouped = company.report(company.plan, "--config", company.config, *by_title)
    assert grouped.exit_code == 0, grouped.stderr
    # the directory is gone: the snapshot the plan was made from holds everyone
    (company.root / "company.ldif").write_text("garbage\n", encoding="utf-8")
    result = company.report(company.plan, "--config", company.config, *by_title)
    assert result.exit_code == 0, result.stderr
    assert result.stdout == grouped.stdout
    assert "| Role | engineer |" in result.stdout
    assert re.search(
        r"Employees grouped as the snapshot of \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00 holds "
        r"them \(no directory read\)\.",
        result.stdout,
    )


def test_plan_report_reads_the_directory_for_a_grouping_the_snapshot_lacks(
    company: Company,
) -> None:
    company.make_plan()
    (company.root / "company.ldif").write_text("garbage\n", encoding="utf-8")
    # the default grouping (site, country, department) reads attributes the rules do not
    result = company.report(company.plan, "--config", company.config, "--format", "markdown")
    assert result.exit_code == 1
    assert result.stderr == (
        f"{company.root / 'company.ldif'}:1:1: line has no ':' separating attribute and value\n"
    )
