"""The demo company: determinism, the shipped file, LDIF round trips and what it contains."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from persona_sync.demo.generate import (
    DEFAULT_OUTPUT,
    MIN_EMPLOYEES,
    Entry,
    generate_company,
    ldif_bytes,
)
from persona_sync.demo.hr import DEFAULT_OUTPUT as HR_OUTPUT
from persona_sync.demo.hr import hr_export
from persona_sync.demo.tables import company_tables
from persona_sync.directory.ldif import LdifRecord, parse_ldif
from persona_sync.employee import Employee
from persona_sync.feeds import load_feed
from persona_sync.rules.engine import Engine
from persona_sync.rules.loader import load_rules
from persona_sync.rules.orgchart import build_org_chart, normalize_dn
from tests.conftest import DEFAULT_RULES, REPO

SCRIPT = REPO / "scripts" / "generate_demo_company.py"
HR_DIGEST = "7d6c8985da665af35be0f6b54923a8d9541e3a38cc5091dd324cfbb07b8dd1ae"
SERVICE_OU = ",OU=Service Accounts,DC=contoso,DC=example"
OPTIONAL = ("title", "department", "physicalDeliveryOfficeName")


@pytest.fixture(scope="module")
def company() -> list[Entry]:
    return generate_company()


@pytest.fixture(scope="module")
def people(company: list[Entry]) -> list[Entry]:
    return [entry for entry in company if entry.value("employeeType") != "service"]


@pytest.fixture(scope="module")
def records() -> list[LdifRecord]:
    """The shipped file, read by the project's own parser."""
    return parse_ldif(DEFAULT_OUTPUT.read_bytes(), str(DEFAULT_OUTPUT)).records


@pytest.fixture(scope="module")
def employees(records: list[LdifRecord]) -> list[Employee]:
    return [employee_of(record) for record in records]


@pytest.fixture(scope="module")
def engine() -> Engine:
    return Engine(load_rules([DEFAULT_RULES]))


def employee_of(record: LdifRecord) -> Employee:
    attributes = {name.lower(): record.values(name)[0] for name in record.attribute_names()}
    return Employee(attributes["samaccountname"], record.dn, attributes)


def share_of(entries: list[Entry], predicate: Callable[[Entry], bool]) -> float:
    return sum(1 for entry in entries if predicate(entry)) / len(entries)


def persona_counts(engine: Engine, employees: list[Employee]) -> Counter[str | None]:
    """Persona per employee with the default rules, as a sync would decide it."""
    chart = build_org_chart(employees)
    return Counter(
        engine.decide(employee, chart.position(employee))[0].persona for employee in employees
    )


# -- determinism and the shipped file -------------------------------------------------------


def test_shipped_file_is_the_default_output(company: list[Entry]) -> None:
    assert DEFAULT_OUTPUT.read_bytes() == ldif_bytes(company), (
        "persona_sync/demo/company.ldif is stale: run `python scripts/generate_demo_company.py`"
    )


def test_shipped_file_stays_under_two_megabytes() -> None:
    assert DEFAULT_OUTPUT.stat().st_size < 2_000_000


def test_same_arguments_give_identical_bytes() -> None:
    first = ldif_bytes(generate_company(MIN_EMPLOYEES, seed=11))
    assert ldif_bytes(generate_company(MIN_EMPLOYEES, seed=11)) == first
    assert ldif_bytes(generate_company(MIN_EMPLOYEES, seed=12)) != first


@pytest.mark.parametrize(
    ("employees", "seed", "digest"),
    [
        (300, 11, "5655d3ca30bbee1ac3c8c3131afaaaa185f637c7678010635f61cdac43912cd3"),
        (1000, 0, "996b0463f94ca747120cdb82f36ba3965d917a7699b9fb1fd582dc7c324e45d4"),
    ],
)
def test_output_is_pinned(employees: int, seed: int, digest: str) -> None:
    """Benchmarks and tests depend on the exact company: a change to company.yaml or the
    generator that moves one byte fails here (and in the shipped-file test)."""
    data = ldif_bytes(generate_company(employees, seed))
    assert hashlib.sha256(data).hexdigest() == digest


def test_persona_values_come_from_the_default_catalog() -> None:
    assert company_tables().persona_ids == tuple(load_rules([DEFAULT_RULES]).personas)
    assert company_tables() is company_tables()  # read once per process


def _script(*args: str) -> subprocess.CompletedProcess[str]:
    """The script with ``args`` (which name both outputs: never the shipped files)."""
    command = [sys.executable, str(SCRIPT), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


def test_script_writes_what_the_library_generates(tmp_path: Path) -> None:
    outputs = [tmp_path / "one.ldif", tmp_path / "two.ldif"]
    for output in outputs:
        hr_output = output.with_suffix(".csv")
        done = _script(
            "--employees", "500", "--seed", "3", "-o", str(output), "--hr-output", str(hr_output)
        )
        assert done.returncode == 0, done.stderr
    expected = ldif_bytes(generate_company(500, seed=3))
    assert outputs[0].read_bytes() == outputs[1].read_bytes() == expected
    expected_hr = hr_export(500, seed=3).encode()
    assert (tmp_path / "one.csv").read_bytes() == (tmp_path / "two.csv").read_bytes() == expected_hr


def test_script_says_what_it_wrote(tmp_path: Path) -> None:
    output, hr_output = tmp_path / "company.ldif", tmp_path / "hr.csv"
    done = _script(
        "--employees", str(MIN_EMPLOYEES), "-o", str(output), "--hr-output", str(hr_output)
    )
    size, hr_size = output.stat().st_size, hr_output.stat().st_size
    entries = MIN_EMPLOYEES + 20
    rows = hr_export(MIN_EMPLOYEES).count("\n") - 1
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout == (
        f"wrote {entries} entries ({size:,} bytes) to {output}\n"
        f"wrote {rows} HR rows ({hr_size:,} bytes) to {hr_output}\n"
    )


def test_too_few_employees_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=f"^the demo company needs at least {MIN_EMPLOYEES} "):
        generate_company(MIN_EMPLOYEES - 1)
    done = _script(
        "--employees", "10", "-o", str(tmp_path / "never-written.ldif"),
        "--hr-output", str(tmp_path / "never-written.csv"),
    )  # fmt: skip
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr.endswith(
        "scripts/generate_demo_company.py: error: "
        f"the demo company needs at least {MIN_EMPLOYEES} employees\n"
    )
    assert not (tmp_path / "never-written.ldif").exists()
    assert not (tmp_path / "never-written.csv").exists()


def test_script_says_when_it_cannot_write(tmp_path: Path) -> None:
    output = tmp_path / "missing" / "company.ldif"
    hr_output = tmp_path / "hr.csv"
    done = _script(
        "--employees", str(MIN_EMPLOYEES), "-o", str(output), "--hr-output", str(hr_output)
    )
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr == f"cannot write {output}: No such file or directory\n"


def test_script_writes_neither_file_when_the_hr_export_cannot_be_written(
    tmp_path: Path,
) -> None:
    output = tmp_path / "company.ldif"
    hr_output = tmp_path / "missing" / "hr.csv"
    done = _script(
        "--employees", str(MIN_EMPLOYEES), "-o", str(output), "--hr-output", str(hr_output)
    )
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr == f"cannot write {hr_output}: No such file or directory\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no LDIF, no leftover


# -- LDIF -------------------------------------------------------------------------------------


def test_every_value_round_trips_through_the_parser(
    company: list[Entry], records: list[LdifRecord]
) -> None:
    assert [record.dn for record in records] == [entry.dn for entry in company]
    for entry, record in zip(company, records, strict=True):
        parsed = [(n, v) for n in record.attribute_names() for v in record.values(n)]
        assert parsed == list(entry.attributes), entry.dn


def test_names_and_values_that_need_escapes_or_base64_are_present(
    records: list[LdifRecord],
) -> None:
    data = DEFAULT_OUTPUT.read_bytes()
    for line in (b"\ndn:: ", b"\ncn:: ", b"\nmanager:: ", b"\nl:: ", b"\ncompany:: "):
        assert line in data
    cns = [(record.dn, record.values("cn")[0]) for record in records]

    def some(test: Callable[[str, str], bool]) -> bool:
        return any(test(dn, cn) for dn, cn in cns)

    assert some(lambda dn, cn: ", " in cn and dn.startswith("CN=" + cn.replace(", ", "\\, ")))
    assert some(lambda dn, cn: cn.startswith("#") and dn.startswith("CN=\\#"))
    assert some(lambda dn, cn: "+" in cn and "\\+" in dn)
    assert some(lambda dn, cn: '"' in cn and '\\"' in dn)
    assert some(lambda dn, cn: cn.endswith(" ") and "\\ ,OU=" in dn)
    assert some(lambda dn, cn: any("\u4e00" <= char <= "\u9fff" for char in cn))
    titles = [value for record in records for value in record.values("title")]
    departments = [value for record in records for value in record.values("department")]
    assert any(title.endswith(" ") for title in titles)
    assert any(department.startswith(" ") for department in departments)
    assert "<unassigned>" in departments


# -- accounts -----------------------------------------------------------------------------------


def test_people_and_service_accounts(company: list[Entry], people: list[Entry]) -> None:
    assert len(people) == 2400
    service = [entry for entry in company if entry.value("employeeType") == "service"]
    assert len(service) == 20
    for entry in service:
        assert entry.dn.endswith(SERVICE_OU)
        assert (entry.value("sAMAccountName") or "").startswith("svc-")
        assert entry.value("manager") is None
    assert not any(entry.dn.endswith(SERVICE_OU) for entry in people)


def test_account_names_and_dns_are_unique(company: list[Entry]) -> None:
    accounts = [(entry.value("sAMAccountName") or "").casefold() for entry in company]
    assert len(set(accounts)) == len(accounts)
    assert all(0 < len(account) <= 20 and account.isascii() for account in accounts)
    assert len({normalize_dn(entry.dn) for entry in company}) == len(company)
    mails = [entry.value("mail") for entry in company if entry.value("mail")]
    assert len(set(mails)) == len(mails)


def test_every_user_has_the_ad_attributes(people: list[Entry]) -> None:
    always = ("cn", "sn", "givenName", "displayName", "sAMAccountName", "userPrincipalName",
              "mail", "company", "l", "co", "c", "employeeType", "userAccountControl")  # fmt: skip
    for entry in people:
        names = [name for name, _ in entry.attributes]
        assert names[:4] == ["objectClass"] * 4, entry.dn
        assert [value for _, value in entry.attributes[:4]] == [
            "top",
            "person",
            "organizationalPerson",
            "user",
        ]
        assert all(entry.value(name) for name in always), entry.dn


def test_quirk_counts_are_in_range(people: list[Entry]) -> None:
    disabled = share_of(people, lambda e: e.value("userAccountControl") == "514")
    assert 0.015 <= disabled <= 0.025
    assert {e.value("userAccountControl") for e in people} == {"512", "514"}
    missing = share_of(people, lambda e: not all(e.value(name) for name in OPTIONAL))
    assert 0.02 <= missing <= 0.04
    assert 0.015 <= share_of(people, lambda e: "\\," in e.dn) <= 0.025
    assert 0.08 <= share_of(people, lambda e: e.value("seniorityLevel") is not None) <= 0.12
    flagged = [e.value("customerFacing") for e in people if e.value("customerFacing")]
    assert 0.04 <= len(flagged) / len(people) <= 0.06
    assert set(flagged) == {"TRUE", "FALSE"}
    types = Counter(e.value("employeeType") for e in people)
    assert set(types) == {"employee", "contractor", "intern"}
    assert types["contractor"] >= 20 and types["intern"] >= 20


def test_remote_workers_some_without_an_office(people: list[Entry]) -> None:
    remote = [e for e in people if ",OU=Remote,OU=People," in e.dn]
    offices = Counter(e.value("physicalDeliveryOfficeName") for e in remote)
    assert offices["Remote"] and offices["Home Office"] and offices[None]


def test_sites_and_countries(people: list[Entry]) -> None:
    offices = {e.value("physicalDeliveryOfficeName") for e in people}
    for office in ("Munich HQ", "London Office", "Paris Office", "New York Office", "Plant Linz",
                   "Plant Monterrey", "St. Mary Hospital", "North Clinic", "Store 114 Vienna",
                   "Remote", "Home Office"):  # fmt: skip
        assert office in offices
    assert len({e.value("c") for e in people}) >= 5
    assert any(e.dn.endswith(",OU=Munich,OU=People,DC=contoso,DC=example") for e in people)


def test_seniority_level_agrees_with_the_title(people: list[Entry], engine: Engine) -> None:
    """Where the title alone implies a grade, seniorityLevel is that grade."""
    slot = engine.fact_names.index("seniority")
    graded = [e for e in people if e.value("seniorityLevel") is not None]
    checked = 0
    for entry in graded:
        level = int(entry.value("seniorityLevel") or "")
        assert 1 <= level <= 10
        attributes = {"title": entry.value("title") or ""}
        from_title = engine.facts(Employee("x", entry.dn, attributes))[slot]
        if from_title is not None:
            assert from_title == level, entry.value("title")
            checked += 1
    assert checked >= 20


# -- org chart ---------------------------------------------------------------------------------


def test_manager_tree_with_exactly_the_two_deliberate_problems(people: list[Entry]) -> None:
    """Every manager link resolves (case-insensitively) but one; one pair forms a cycle."""
    manager_of = {normalize_dn(e.dn): e.value("manager") for e in people}
    tops = [e for e in people if e.value("manager") is None]
    assert [e.value("title") for e in tops] == ["Chief Executive Officer"]
    links = {dn: normalize_dn(link) for dn, link in manager_of.items() if link is not None}
    dangling = [dn for dn, link in links.items() if link not in manager_of]
    assert len(dangling) == 1
    cycles = {frozenset((dn, link)) for dn, link in links.items() if links.get(link) == dn}
    assert len(cycles) == 1


def test_org_chart_is_deep_and_reports_only_the_two_problems(employees: list[Employee]) -> None:
    chart = build_org_chart(employees)
    assert len(chart.problems) == 2, chart.problems
    assert sum("cycle" in problem for problem in chart.problems) == 1
    assert sum("not found" in problem for problem in chart.problems) == 1
    depths = [p.depth for p in chart.positions.values() if p.depth is not None]
    assert max(depths) >= 6  # CEO, C-level, VP, director, manager, lead, individual
    assert sum(1 for p in chart.positions.values() if p.direct_reports >= 5) >= 50


# -- personas -----------------------------------------------------------------------------------


def test_every_persona_is_assigned_to_at_least_20_people(
    engine: Engine, employees: list[Employee]
) -> None:
    counts = persona_counts(engine, employees)
    catalog = list(engine.rule_set.personas)
    assert all(counts[persona] >= 20 for persona in catalog), dict(counts)
    assert counts[None] == 20 + sum(e.get("useraccountcontrol") == "514" for e in employees)


def test_target_attribute_holds_catalog_personas_and_three_foreign_values(
    people: list[Entry], engine: Engine
) -> None:
    enabled = [e for e in people if e.value("userAccountControl") == "512"]
    tags = [e.value("msDS-cloudExtensionAttribute1") for e in people]
    present = [tag for tag in tags if tag is not None]
    assert 0.13 <= len(present) / len(enabled) <= 0.17
    foreign = [tag for tag in present if tag not in engine.rule_set.personas]
    assert len(foreign) == 3
    assert "legacy-tag" in foreign


# -- the HR export ------------------------------------------------------------------------------


def test_shipped_hr_export_is_the_default_output() -> None:
    assert HR_OUTPUT.read_bytes() == hr_export().encode(), (
        "persona_sync/demo/hr-export.csv is stale: run `python scripts/generate_demo_company.py`"
    )


def test_hr_export_is_deterministic_and_pinned() -> None:
    text = hr_export(MIN_EMPLOYEES, seed=11)
    assert hr_export(MIN_EMPLOYEES, seed=11) == text != hr_export(MIN_EMPLOYEES, seed=12)
    assert hashlib.sha256(text.encode()).hexdigest() == HR_DIGEST


def test_hr_export_joins_the_company_by_work_email(company: list[Entry]) -> None:
    feed = load_feed("hr", HR_OUTPUT, "work_email")
    mails = {(entry.value("mail") or "").casefold(): entry for entry in company}
    joined = [mails[key] for key in feed.rows if key in mails]
    assert len(feed.rows) - len(joined) == 2  # two leavers still in the report
    # no contractor, no service account
    assert {entry.value("employeeType") for entry in joined} == {"employee", "intern"}
    assert all(entry.value("userAccountControl") == "512" for entry in joined)
    grades = {row.values["grade"] for row in feed.rows.values()}
    assert grades <= {f"G{n}" for n in range(1, 11)}
