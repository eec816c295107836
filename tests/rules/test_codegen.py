"""The generated decide function agrees with the reference closures and is injection-safe."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from persona_sync.employee import Employee
from persona_sync.rules.engine import Engine
from persona_sync.rules.loader import load_rules
from persona_sync.rules.orgchart import Position
from tests.conftest import DEFAULT_RULES

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
def test_generated_code_agrees_with_the_closures(case: tuple[Employee, Position | None]) -> None:
    employee, position = case
    assert ENGINE.decide(employee, position) == ENGINE.decide_reference(employee, position)


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
    source = engine._decide.source  # type: ignore[attr-defined]
    assert "import" not in source and "pwned" not in source
    match = Employee("a", "a", {hostile.lower(): '"); import sys; ("'})  # the regex matches
    assert engine.decide(match)[0].rule == "r"


@settings(max_examples=300, deadline=None)
@given(employees())
def test_generated_fact_values_agree_with_the_closures(
    case: tuple[Employee, Position | None],
) -> None:
    employee, position = case
    reference = ENGINE.facts(employee, position)[: len(ENGINE.fact_names)]
    assert ENGINE.fact_values(employee, position) == dict(
        zip(ENGINE.fact_names, reference, strict=True)
    )


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
