"""An HR feed joined to a real slapd's employees: a full plan and sync with the join, then
delta plans after feed edits (each re-evaluates exactly the employee the row joins and
equals a full plan) and after a change of the join attribute in the directory."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest

from persona_sync.directory import ldap_csn
from tests.ldap.conftest import server_values, slapd_directory, write_config
from tests.ldap.delta_plans import (
    ORG,
    Person,
    Planner,
    Run,
    check,
    person_ldif,
    personas,
    read_lines,
)
from tests.servers.plugin import require_slapd
from tests.servers.slapd import SlapdServer

pytestmark = pytest.mark.servers

NUMBERS = {p.name: f"E{n}" for n, p in enumerate(ORG, 100)}
# bob, an accountant, is G9 in HR: a VIP; lead, a manager one level below the CEO (a VIP
# by the org chart), is G5: plant-floor; E999 matches nobody; r3 (E108) has no row
HR = {
    "E100": "G10",
    "E101": "G9",
    "E102": "G4",
    "E103": "G9",
    "E104": "G4",
    "E105": "G5",
    "E106": "G3",
    "E107": "G3",
    "E999": "G5",
}
SYNCED = {
    "ceo": "vip",
    "vp": "vip",
    "alice": "engineer",
    "bob": "vip",
    "carol": "field-sales",
    "lead": "plant-floor",
    "r1": "plant-floor",
    "r2": "plant-floor",
    "r3": "plant-floor",
}


@dataclass
class Site:
    server: SlapdServer
    config: Path
    feed: Path

    def dn(self, name: str) -> str:
        return f"uid={name},{self.server.people_dn}"

    def set(self, name: str, attribute: str, value: str) -> None:
        self.server.modify_ldif(
            f"dn: {self.dn(name)}\nchangetype: modify\nreplace: {attribute}\n"
            f"{attribute}: {value}\n\n"
        )

    def write_feed(self, rows: dict[str, str]) -> None:
        self.feed.write_text(
            "employee_id,grade\n" + "".join(f"{k},{g}\n" for k, g in rows.items()),
            encoding="utf-8",
        )


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Site]:
    require_slapd()
    monkeypatch.setattr(ldap_csn, "CSN_MARGIN", timedelta(0))  # exact delta reads
    with SlapdServer() as server:
        config = write_config(
            tmp_path,
            slapd_directory(server),
            "personaName",
        )
        config.write_text(
            config.read_text(encoding="utf-8")
            + "feeds:\n  hr: {path: hr.csv, key: employee_id, matches: employeeNumber}\n",
            encoding="utf-8",
        )
        monkeypatch.setenv("PERSONA_SYNC_BIND_PASSWORD", server.service_password)
        monkeypatch.chdir(tmp_path)
        site = Site(server, config, tmp_path / "hr.csv")
        site.write_feed(HR)
        server.add_ldif("".join(_entry(site, p) for p in ORG))
        yield site


def _entry(site: Site, person: Person) -> str:
    return person_ldif(site.dn, person, f"employeeNumber: {NUMBERS[person.name]}")


def test_a_full_plan_and_sync_join_the_feed(site: Site, run_cli: Run) -> None:
    planned = run_cli("plan", "--format", "json")
    assert planned.exit_code == 2, planned.stderr
    plan = json.loads(planned.stdout)
    assert plan["summary"]["feeds"]["hr"] == {
        "path": "hr.csv",
        "rows": 9,
        "employees_without_row": 1,
        "employees_without_row_examples": ["r3"],
        "rows_without_employee": 1,
        "rows_without_employee_examples": [{"key": "E999", "line": 10}],
    }
    assert planned.stderr.splitlines()[0] == (
        "feed hr (hr.csv): 9 rows; 1 employee in scope without a row (r3); 1 row matching "
        "no employee (E999 at line 10)"
    )
    synced = run_cli("sync", "-q")
    assert synced.exit_code == 0, synced.stderr
    assert server_values(site.server) == SYNCED
    explained = run_cli("explain", "bob", "--read")
    assert (
        "  seniority           = 9                        <- feed hr, hr.csv:5, column grade "
        "via capture /(\\d+)/ from 'G9'"
    ) in explained.stdout.splitlines()


def test_a_feed_row_edit_re_evaluates_that_employee_only(site: Site, run_cli: Run) -> None:
    assert run_cli("sync", "--delta", "-q").exit_code == 0
    planner = Planner(site.config)
    check(planner, "own writes", set(), None)

    site.write_feed({**HR, "E103": "G4"})  # bob's grade corrected: no longer a VIP
    plan = check(planner, "a feed row", {"bob"}, (0, 0, 0))
    assert personas(plan) == {"bob": "knowledge-worker"}

    site.write_feed({**HR, "E103": "G4", "E108": "G7"})  # r3 gets a row: off the plant floor
    plan = check(planner, "a row added", {"r3"}, (0, 0, 0))
    assert personas(plan) == {"bob": "knowledge-worker", "r3": "knowledge-worker"}

    # alice's employee number now names the row nobody had: through the directory's delta
    site.set("alice", "employeeNumber", "E999")
    plan = check(planner, "the join attribute", {"alice"}, (1, 1, 0))
    assert plan.summary["feeds"]["hr"]["rows_without_employee_examples"] == [
        {"key": "E102", "line": 4}
    ]
    delta = run_cli("plan", "--delta", "--format", "json")
    assert read_lines(delta)[-1] == "read: feed hr: no row changed"
