"""Plans with an HR feed on the file backend: the join, what the plan says about it, explain,
apply's check of the feed, validate --config, and the protection against a truncated export."""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import Result

from persona_sync.config import load_config
from persona_sync.plan import read_attributes
from persona_sync.rules.engine import Engine
from persona_sync.rules.loader import load_rules
from persona_sync.snapshot import SNAPSHOT_NAME
from tests.conftest import DEFAULT_RULES
from tests.feeds.conftest import FeedWorkspace

Run = Callable[..., Result]
FEED_LINE = (
    "feed hr (hr-export.csv): 5 rows; 1 employee in scope without a row (legacy); "
    "1 row matching no employee (9999 at line 6)"
)


def plan_json(run_cli: Run, *args: str) -> dict:
    result = run_cli("plan", "--format", "json", *args)
    assert result.exit_code == 2, result.stderr
    return json.loads(result.stdout)


def test_the_feed_column_decides_through_its_transform(
    workspace: FeedWorkspace, run_cli: Run
) -> None:
    plan = plan_json(run_cli)
    changes = {c["employee"]: c for c in plan["changes"]}
    # jsmith, a nurse (clinical without the feed), is graded G9 by HR: seniority 9, a VIP
    assert (changes["jsmith"]["new"], changes["jsmith"]["rule"]) == ("vip", "vip-executive")
    assert changes["jsmith"]["facts"]["seniority"] == 9.0
    assert plan["summary"]["feeds"] == {
        "hr": {
            "path": "hr-export.csv",
            "rows": 5,
            "employees_without_row": 1,
            "employees_without_row_examples": ["legacy"],
            "rows_without_employee": 1,
            "rows_without_employee_examples": [{"key": "9999", "line": 6}],
        }
    }
    feeds = plan["provenance"]["feeds"]
    assert list(feeds) == ["hr"]
    assert (feeds["hr"]["path"], feeds["hr"]["rows"]) == ("hr-export.csv", 5)
    assert feeds["hr"]["checksum"].startswith("sha256:") and len(feeds["hr"]["checksum"]) == 71
    assert feeds["hr"]["modified"].endswith("+00:00")


def test_without_the_feed_the_rules_read_the_next_source(
    workspace: FeedWorkspace, run_cli: Run
) -> None:
    workspace.config.write_text(workspace.config.read_text().split("feeds:")[0])
    plan = plan_json(run_cli)
    assert [(c["employee"], c["new"]) for c in plan["changes"]] == [
        ("boss", "vip"),
        ("jsmith", "clinician"),
    ]
    assert "feeds" not in plan["summary"] and "feeds" not in plan["provenance"]


def test_plan_says_per_feed_what_joined(workspace: FeedWorkspace, run_cli: Run) -> None:
    result = run_cli("plan", "--format", "table")
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        FEED_LINE,
        "plan: 2 changes for 2 employees (4 in scope, 2 out of scope, 2 unchanged, 1 foreign "
        "values left alone)",
    ]
    table = result.stdout.split("Feeds:\n", 1)[1]
    assert table.startswith(f"  {FEED_LINE}\n\n")
    quiet = run_cli("plan", "-q", "--format", "json")
    assert (quiet.exit_code, quiet.stderr) == (2, "")


def test_more_examples_than_shown_end_with_an_ellipsis(
    workspace: FeedWorkspace, run_cli: Run
) -> None:
    workspace.feed.write_text(
        "employee_id,grade\n" + "".join(f"{n},G3\n" for n in range(2000, 2007)), encoding="utf-8"
    )
    result = run_cli("plan", "--format", "json")
    assert result.stderr.splitlines()[0] == (
        "feed hr (hr-export.csv): 7 rows; 4 employees in scope without a row (boss, jmuller, "
        "jsmith, legacy); 7 rows matching no employee (2000 at line 2, 2001 at line 3, "
        "2002 at line 4, 2003 at line 5, 2004 at line 6, ...)"
    )


def test_the_directory_is_never_asked_for_feed_columns(workspace: FeedWorkspace) -> None:
    config = load_config(workspace.config)
    engine = Engine(load_rules([DEFAULT_RULES]))
    assert "hr.grade" in engine.attributes
    wanted = read_attributes(engine, config)
    assert "employeenumber" in wanted
    assert [a for a in wanted if "." in a] == []


def test_explain_names_the_feed_file_line_and_column(
    workspace: FeedWorkspace, run_cli: Run
) -> None:
    for args in ((), ("--read",)):
        text = run_cli("explain", "jsmith", *args)
        assert text.exit_code == 0
        seniority = next(line for line in text.stdout.splitlines() if "seniority" in line)
        assert seniority == (
            "  seniority           = 9                        <- feed hr, hr-export.csv:3, "
            "column grade via capture /(\\d+)/ from 'G9'"
        )
    facts = json.loads(run_cli("explain", "jsmith", "--format", "json").stdout)["facts"]
    by_name = {f["fact"]: f for f in facts}
    assert by_name["seniority"] == {
        "fact": "seniority",
        "value": 9.0,
        "origin": "feed hr, hr-export.csv:3, column grade via capture /(\\d+)/",
        "raw": "G9",
        "feed": {"feed": "hr", "file": "hr-export.csv", "line": 3, "column": "grade"},
    }
    assert by_name["role.title"]["feed"] is None


def test_explain_with_a_feed_column_given_by_hand(run_cli: Run) -> None:
    result = run_cli(
        "explain",
        "--rules",
        str(DEFAULT_RULES),
        "--attr",
        "title=Accountant",
        "--attr",
        "hr.grade=G9",
        "--attr",
        "physicalDeliveryOfficeName=Munich HQ",
    )
    assert result.exit_code == 0
    assert (
        "  seniority           = 9                        <- attribute hr.grade via "
        "capture /(\\d+)/ from 'G9'" in result.stdout.splitlines()
    )
    assert result.stdout.rstrip().endswith(
        "=> vip: 'vip' is the only candidate (rule vip-executive)"
    )


def test_apply_refuses_a_plan_whose_feed_changed(workspace: FeedWorkspace, run_cli: Run) -> None:
    assert run_cli("plan", "-q", "-o", "plan.json").exit_code == 2
    stat = workspace.feed.stat()
    os.utime(workspace.feed, (stat.st_atime + 60, stat.st_mtime + 60))  # touched, same rows
    before = workspace.directory.read_bytes()
    workspace.edit_feed("1002,G9,remote", "1002,G3,remote")
    result = run_cli("apply", "plan.json")
    assert (result.exit_code, result.stdout, result.stderr) == (
        1,
        "",
        "error: the feed hr (hr-export.csv) changed since this plan was made: make a new plan\n",
    )
    assert workspace.directory.read_bytes() == before
    workspace.edit_feed("1002,G3,remote", "1002,G9,remote")  # the same bytes again
    applied = run_cli("apply", "plan.json", "-q")
    assert applied.exit_code == 0, applied.stderr


def test_a_plan_made_before_feeds_keeps_its_checksum_and_applies(
    workspace: FeedWorkspace, run_cli: Run
) -> None:
    workspace.config.write_text(workspace.config.read_text().split("feeds:")[0])
    assert run_cli("plan", "-q", "-o", "plan.json").exit_code == 2
    assert "feeds" not in json.loads((workspace.root / "plan.json").read_text())["provenance"]
    assert run_cli("apply", "plan.json", "-q").exit_code == 0


def test_validate_with_the_config_knows_the_feed_columns(
    workspace: FeedWorkspace, run_cli: Run, tmp_path: Path
) -> None:
    ok = run_cli("validate", "--config", str(workspace.config))
    assert (ok.exit_code, ok.stdout) == (
        0,
        "ok: 3 file(s), 9 personas, 9 rules, 10 facts, 1 scenario(s)\n",
    )
    rules = tmp_path / "rules"
    rules.mkdir()
    for item in DEFAULT_RULES.glob("*.yaml"):
        (rules / item.name).write_text(item.read_text(encoding="utf-8"), encoding="utf-8")
    facts = rules / "facts.yaml"
    text = facts.read_text(encoding="utf-8")
    facts.write_text(
        text.replace("- from: hr.grade ", "- from: [hr.grad, payroll.grade]", 1),
        encoding="utf-8",
    )
    line = next(n for n, t in enumerate(facts.read_text().splitlines(), 1) if "hr.grad," in t)
    bad = run_cli("validate", "--config", str(workspace.config), str(rules))
    assert (bad.exit_code, bad.stdout, bad.stderr) == (
        1,
        "",
        f"{facts}:{line}:16: feed hr has no column 'grad' (did you mean hr.grade? columns: "
        "employee_id, grade, work_arrangement)\n"
        f"{facts}:{line}:25: unknown feed 'payroll' in 'payroll.grade' (feeds in the config: "
        "hr)\n"
        "2 errors\n",
    )
    as_json = json.loads(
        run_cli(
            "validate", "--config", str(workspace.config), "--format", "json", str(rules)
        ).stdout
    )
    assert as_json["valid"] is False
    assert [(e["line"], e["column"]) for e in as_json["errors"]] == [(line, 16), (line, 25)]
    # without a config, feed-qualified names are accepted as they are
    assert run_cli("validate", str(rules)).exit_code == 0
    # a plan stops at the column the feed does not have; the unknown feed is only logged
    workspace.config.write_text(
        workspace.config.read_text().replace(str(DEFAULT_RULES), str(rules))
    )
    planned = run_cli("plan", "-q")
    assert (planned.exit_code, planned.stdout) == (1, "")
    assert planned.stderr.splitlines()[-2:] == [
        f"{facts}:{line}:16: feed hr has no column 'grad' (did you mean hr.grade? columns: "
        "employee_id, grade, work_arrangement)",
        "1 error",
    ]


def test_a_truncated_export_stops_plan_and_sync_unless_forced(
    workspace: FeedWorkspace, run_cli: Run
) -> None:
    assert run_cli("sync", "-q").exit_code == 0
    snapshot = workspace.state / SNAPSHOT_NAME
    before = (workspace.directory.read_bytes(), _meta(snapshot))
    workspace.feed.write_text(
        "employee_id,grade,work_arrangement\n1001,G10,onsite\n1002,G3,remote\n1003,G4,hybrid\n",
        encoding="utf-8",
    )
    held = (
        "held: feed hr (hr-export.csv) has 3 rows, 5 at the last run: 40.0% fewer, more than "
        "its limit of 10% (feeds.hr.max_shrink_percent); nothing was written. Check the "
        "export; if it is complete, rerun with --force\n"
    )
    for command in (("plan", "-o", "plan.json"), ("sync",), ("sync", "--delta")):
        result = run_cli(*command)
        assert (result.exit_code, result.stdout, result.stderr) == (4, "", held), command
        assert (workspace.directory.read_bytes(), _meta(snapshot)) == before
    assert not (workspace.root / "plan.json").exists()
    forced = run_cli("plan", "--force", "--format", "json", "-q")
    assert forced.exit_code == 2  # jsmith, G3 now, is no longer a VIP
    assert json.loads(forced.stdout)["summary"]["feeds"]["hr"]["rows"] == 3
    # the forced plan's export is the baseline now
    assert run_cli("sync", "-q").exit_code == 0


def test_the_limit_is_the_feeds_own(workspace: FeedWorkspace, run_cli: Run) -> None:
    workspace.config.write_text(
        workspace.config.read_text().replace(
            "matches: employeeNumber}", "matches: employeeNumber, max_shrink_percent: 40}"
        )
    )
    assert run_cli("plan", "-q").exit_code == 2
    workspace.edit_feed("9999,G5,remote\n", "")
    workspace.edit_feed("1005,G2,onsite\n", "")
    assert run_cli("plan", "-q").exit_code == 2  # 40% fewer: at the limit, not over it
    workspace.edit_feed("1003,G4,hybrid\n", "")
    workspace.edit_feed("1002,G9,remote\n", "")
    result = run_cli("plan", "-q")  # 1 row, 3 at the last plan
    assert (result.exit_code, result.stderr) == (
        4,
        "held: feed hr (hr-export.csv) has 1 row, 3 at the last run: 66.7% fewer, more than "
        "its limit of 40% (feeds.hr.max_shrink_percent); nothing was written. Check the "
        "export; if it is complete, rerun with --force\n",
    )


def _meta(snapshot: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(snapshot) as db:
        return sorted(db.execute("SELECT name, value FROM meta"))


@pytest.mark.parametrize("name", ["hr-export.jsonl"])
def test_a_json_lines_feed_joins_the_same(
    workspace: FeedWorkspace, run_cli: Run, name: str
) -> None:
    lines = workspace.feed.read_text().splitlines()
    header = lines[0].split(",")
    (workspace.root / name).write_text(
        "".join(
            json.dumps(dict(zip(header, row.split(","), strict=True))) + "\n" for row in lines[1:]
        ),
        encoding="utf-8",
    )
    workspace.config.write_text(workspace.config.read_text().replace("hr-export.csv", name))
    plan = plan_json(run_cli)
    assert [(c["employee"], c["new"]) for c in plan["changes"]] == [
        ("boss", "vip"),
        ("jsmith", "vip"),
    ]
    assert plan["summary"]["feeds"]["hr"]["rows_without_employee_examples"] == [
        {"key": "9999", "line": 5}
    ]


def test_the_report_groups_by_a_feed_column(workspace: FeedWorkspace, run_cli: Run) -> None:
    assert run_cli("plan", "-q", "-o", "plan.json").exit_code == 2
    result = run_cli(
        "report", "plan.json", "--config", str(workspace.config), "--group-by",
        "grade=hr.grade", "--format", "markdown",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert (
        "| Grade | vip | engineer | frontline | total |\n"
        "|---|---:|---:|---:|---:|\n"
        "| (none) |  |  | 1 | 1 |\n"
        "| G10 | 1 |  |  | 1 |\n"
        "| G4 |  | 1 |  | 1 |\n"
        "| G9 | 1 |  |  | 1 |\n"
    ) in result.stdout


def test_check_connection_reads_the_feeds(workspace: FeedWorkspace, run_cli: Run) -> None:
    result = run_cli("check-connection")
    assert "ok    feeds         hr: 5 rows in hr-export.csv" in result.stdout.splitlines()
    assert "ok    employees     6 read, 4 in scope, 2 out of scope" in result.stdout.splitlines()
    workspace.feed.unlink()
    broken = run_cli("check-connection")
    assert broken.exit_code == 1
    assert f"FAIL  feeds         feed hr: {workspace.feed}: no such file" in (
        broken.stdout.splitlines()
    )
