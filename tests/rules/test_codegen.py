"""The generated code: agrees with explain's traced steps, reads each attribute once,
derives facts only where needed, and never holds rule text."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from persona_sync.employee import Employee
from persona_sync.rules.engine import Decision, Engine
from persona_sync.rules.loader import load_rules
from persona_sync.rules.orgchart import Position
from tests.conftest import DEFAULT_RULES
from tests.rules.agreement import assert_agrees

ENGINE = Engine(load_rules([DEFAULT_RULES]))

TITLES = [
    "Trauma Surgeon",
    "registered nurse",
    "Vice President, Sales",
    "Cashier",
    " ",
    "Software Engineer",
    "CNC Machine Operator",
    "Account Executive",
    "",
    "Chief of Staff",
    "Service Desk Technician",
    "Straße Planner",
    "Intern",
]
SITES = ["Munich HQ", "Plant Linz", "Store 9", "Remote", "North Clinic", "  ", "Home Office"]
values = st.one_of(st.none(), st.sampled_from(TITLES + SITES), st.text(max_size=12))


@st.composite
def employees(draw: st.DrawFn) -> tuple[Employee, Position | None]:
    names = [
        "title",
        "jobtitle",
        "department",
        "physicaldeliveryofficename",
        "officelocation",
        "employeetype",
        "useraccountcontrol",
        "accountenabled",
        "senioritylevel",
        "customerfacing",
    ]
    attributes = {n: v for n in names if (v := draw(values)) is not None}
    if draw(st.booleans()):
        attributes["useraccountcontrol"] = draw(st.sampled_from(["512", "514", "66048", "x"]))
    identifier = draw(st.sampled_from(["jdoe", "svc-backup", "sa.report", "Ann"]))
    dn = draw(st.sampled_from(["CN=x,OU=People,DC=c", "CN=y,OU=Service Accounts,DC=c"]))
    position = draw(
        st.one_of(
            st.none(),
            st.builds(Position, st.one_of(st.none(), st.integers(0, 6)), st.integers(0, 9)),
        )
    )
    return Employee(identifier, dn, attributes), position


@settings(max_examples=400, deadline=None)
@given(employees())
def test_generated_code_agrees_with_explain(case: tuple[Employee, Position | None]) -> None:
    employee, position = case
    assert_agrees(ENGINE, employee, position)


class CountingAttributes(dict[str, str]):
    """Attributes that count how often the generated code asks for each one."""

    def __init__(self, values: dict[str, str]) -> None:
        super().__init__(values)
        self.reads: Counter[str] = Counter()

    def get(self, key: str, default: Any = None) -> Any:
        self.reads[key] += 1
        return super().get(key, default)


@settings(max_examples=200, deadline=None)
@given(employees())
def test_each_attribute_is_read_at_most_once(case: tuple[Employee, Position | None]) -> None:
    employee, position = case
    attributes = CountingAttributes(dict(employee.attributes))
    ENGINE.decide(Employee(employee.id, employee.dn, attributes), position)
    assert max(attributes.reads.values(), default=0) == 1


def test_facts_are_derived_only_where_a_rule_needs_them() -> None:
    """A clinician is decided before the site or the customer-facing flag is read."""
    attributes = CountingAttributes(
        {
            "title": "Registered Nurse",
            "department": "Cardiology",
            "useraccountcontrol": "512",
            "employeetype": "employee",
        }
    )
    nurse = Employee("jdoe", "CN=jdoe,OU=Staff,DC=example,DC=com", attributes)
    assert ENGINE.decide(nurse) == (
        Decision("persona", "matched", "clinician", "clinician-by-title"),
    )
    assert set(attributes.reads) == {
        "useraccountcontrol",
        "employeetype",
        "hr.grade",  # vip comes first and reads seniority: the HR feed's grade first
        "senioritylevel",
        "title",
        "department",
    }


def test_rule_text_never_enters_the_generated_source(write: Callable[[str, str], Path]) -> None:
    hostile = "x')\nimport os\nos.system('echo pwned')\n#"
    path = write(
        "rules.yaml",
        f"""
        facts:
          odd:
            from: {hostile!r}
            table:
              - {{match: "\\"\\\\); import sys; \\\\(\\"", value: "'''; import sys"}}
        personas:
          - id: p
            name: P
            precedence: 1
            default: true
            rules:
              - id: r
                when: {{fact: odd, equals: "'''; import sys"}}
    """.replace("{hostile!r}", repr(hostile)),
    )
    engine = Engine(load_rules([path]))
    for generated in (engine.decide, engine._fact_values):
        source = generated.source  # type: ignore[attr-defined]
        assert "import" not in source and "pwned" not in source and "odd" not in source
    match = Employee("a", "a", {hostile.lower(): '"); import sys; ("'})  # the regex matches
    assert engine.decide(match)[0].rule == "r"


SCENARIOS = """\
facts:
  title: {from: [title, jobTitle]}
  family:
    from: [title, jobTitle]
    table:
      - {match: nurse, value: clinical}
      - {match: engineer, value: engineering}
    default: general
  site: {from: office}
  level:
    type: number
    sources:
      - from: level
      - from: [title, jobTitle]
        table: [{match: chief, value: 10}]
      - org_chart: {top: 10, per_level: 2, floor: 1}
personas:
  - id: exec
    name: Exec
    precedence: 30
    rules:
      - id: exec-level
        when: {fact: level, gte: 9}
  - id: remote
    name: Remote
    precedence: 20
    rules:
      - id: remote-site
        when: {fact: site, equals: remote}
  - id: clinical
    name: Clinical
    precedence: 10
    rules:
      - id: clinical-title
        when: {fact: family, equals: clinical}
    unless:
      - {fact: title, contains: student}
scope:
  unmatched: leave
scenarios:
  - id: first
  - id: second
    order: [clinical, remote]
    unmatched: clear
"""


@pytest.mark.parametrize(
    ("attributes", "position", "first", "second"),
    [
        ({"title": "Chief Nurse"}, None, ("exec", "exec-level"), ("clinical", "clinical-title")),
        (
            {"jobtitle": "nurse", "office": "Remote"},
            None,
            ("remote", "remote-site"),
            ("clinical", "clinical-title"),
        ),
        ({"title": "   ", "jobtitle": "Student Nurse"}, None, (None, None), (None, None)),
        ({"title": "Engineer"}, Position(0, 3), ("exec", "exec-level"), (None, None)),
        ({"title": "Engineer"}, Position(1, 0), (None, None), (None, None)),
        (
            {"title": "Nurse", "level": "3"},
            Position(0, 0),
            ("clinical", "clinical-title"),
            ("clinical", "clinical-title"),
        ),
        (
            {"office": "REMOTE", "level": "9.5"},
            None,
            ("exec", "exec-level"),
            ("remote", "remote-site"),
        ),
    ],
)
def test_generated_scenarios_by_hand(
    write: Callable[[str, str], Path],
    attributes: dict[str, str],
    position: Position | None,
    first: tuple[str | None, str | None],
    second: tuple[str | None, str | None],
) -> None:
    """Each scenario derives its own facts before its loop; worked out by hand."""
    engine = Engine(load_rules([write("rules.yaml", SCENARIOS)]))
    decided = engine.decide(Employee("a", "cn=a,dc=x", attributes), position)
    assert [(d.persona, d.rule) for d in decided] == [first, second]
    assert [d.outcome for d in decided] == [
        "matched" if first[0] else "leave",
        "matched" if second[0] else "clear",
    ]


def test_a_rule_set_without_facts_compiles(write: Callable[[str, str], Path]) -> None:
    rules = write(
        "rules/personas.yaml",
        """
        personas:
          - id: everyone
            name: Everyone
            precedence: 1
            default: true
        scope:
          unmatched: default
        """,
    )
    engine = Engine(load_rules([rules.parent]))
    [decision] = engine.decide(Employee("a", "cn=a,dc=x", {}), None)
    assert (decision.persona, decision.rule) == ("everyone", "default")
    assert engine.fact_values(Employee("a", "cn=a,dc=x", {}), None) == {}
