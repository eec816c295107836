"""Engine semantics: every operator, nesting, precedence, unless, scenarios and scope."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from persona_sync.employee import Employee
from persona_sync.rules.engine import Decision, Engine
from persona_sync.rules.loader import load_rules
from persona_sync.rules.model import RuleSet

OPERATOR_FACTS = """\
facts:
  title: {from: title}
  level: {type: number, from: level}
  remote: {type: boolean, from: remote}
personas:
  - id: hit
    name: Hit
    precedence: 1
    rules:
      - id: hit-rule
        when: %s
scope: {unmatched: leave}
"""

HIT = (Decision("persona", "matched", "hit", "hit-rule"),)
NO_HIT = (Decision("persona", "leave", None, None),)


Write = Callable[[str, str], Path]


def load(write: Write, text: str) -> RuleSet:
    return load_rules([write("rules.yaml", text)])


def employee(attributes: dict[str, str], id: str = "jdoe") -> Employee:
    return Employee(id, f"uid={id},ou=people,dc=example,dc=com", attributes)


def holds(write: Write, condition: str, attributes: dict[str, str]) -> bool:
    """Whether one condition holds for an employee, judged by the engine's decision."""
    engine = Engine(load(write, OPERATOR_FACTS % condition))
    decisions = engine.decide(employee(attributes))
    assert decisions in (HIT, NO_HIT)
    return decisions == HIT


# --- operators ------------------------------------------------------------------------

OPERATOR_CASES = [
    # equals / in / not_in, case-insensitive by default
    ("{fact: title, equals: Engineer}", {"title": "engineer"}, True),
    ("{fact: title, equals: Engineer}", {"title": "ENGINEER"}, True),
    ("{fact: title, equals: Engineer}", {"title": "Engineers"}, False),
    ("{fact: title, equals: Engineer, case_sensitive: true}", {"title": "Engineer"}, True),
    ("{fact: title, equals: Engineer, case_sensitive: true}", {"title": "engineer"}, False),
    ("{fact: title, in: [Nurse, Doctor]}", {"title": "DOCTOR"}, True),
    ("{fact: title, in: [Nurse, Doctor]}", {"title": "Surgeon"}, False),
    ("{fact: title, in: [Nurse, Doctor], case_sensitive: true}", {"title": "doctor"}, False),
    ("{fact: title, in: [Nurse, Doctor], case_sensitive: true}", {"title": "Doctor"}, True),
    ("{fact: title, not_in: [Nurse, Doctor]}", {"title": "Surgeon"}, True),
    ("{fact: title, not_in: [Nurse, Doctor]}", {"title": "nurse"}, False),
    ("{fact: title, not_in: [Nurse, Doctor], case_sensitive: true}", {"title": "nurse"}, True),
    ("{fact: title, not_in: [Nurse, Doctor], case_sensitive: true}", {"title": "Nurse"}, False),
    # matches: searched anywhere in the value, anchors honoured
    ("{fact: title, matches: president}", {"title": "Vice President, Marketing"}, True),
    ("{fact: title, matches: president}", {"title": "President"}, True),
    ("{fact: title, matches: '^vice'}", {"title": "Vice President, Marketing"}, True),
    ("{fact: title, matches: '^president'}", {"title": "Vice President, Marketing"}, False),
    ("{fact: title, matches: '^president$'}", {"title": "President"}, True),
    ("{fact: title, matches: '^president$'}", {"title": "President, Sales"}, False),
    ("{fact: title, matches: 'marketing$'}", {"title": "Vice President, Marketing"}, True),
    ("{fact: title, matches: president, case_sensitive: true}", {"title": "Vice President"}, False),
    ("{fact: title, matches: President, case_sensitive: true}", {"title": "Vice President"}, True),
    ("{fact: title, matches: '\\bvp\\b'}", {"title": "SVP Sales"}, False),
    # starts_with / ends_with / contains
    ("{fact: title, starts_with: Senior}", {"title": "senior engineer"}, True),
    ("{fact: title, starts_with: Senior}", {"title": "Engineer, Senior"}, False),
    ("{fact: title, starts_with: Senior, case_sensitive: true}", {"title": "senior x"}, False),
    ("{fact: title, starts_with: Senior, case_sensitive: true}", {"title": "Senior x"}, True),
    ("{fact: title, ends_with: Manager}", {"title": "Store MANAGER"}, True),
    ("{fact: title, ends_with: Manager}", {"title": "Manager of Stores"}, False),
    ("{fact: title, ends_with: Manager, case_sensitive: true}", {"title": "store manager"}, False),
    ("{fact: title, contains: Desk}", {"title": "Service desk technician"}, True),
    ("{fact: title, contains: Desk}", {"title": "Desktop Support"}, True),
    ("{fact: title, contains: Desk}", {"title": "Field Service"}, False),
    ("{fact: title, contains: Desk, case_sensitive: true}", {"title": "help desk"}, False),
    ("{fact: title, contains: Desk, case_sensitive: true}", {"title": "Help Desk"}, True),
    # numbers
    ("{fact: level, gt: 5}", {"level": "5"}, False),
    ("{fact: level, gt: 5}", {"level": "5.5"}, True),
    ("{fact: level, gte: 5}", {"level": "5"}, True),
    ("{fact: level, gte: 5}", {"level": "4.99"}, False),
    ("{fact: level, lt: 5}", {"level": "5"}, False),
    ("{fact: level, lt: 5}", {"level": "4"}, True),
    ("{fact: level, lte: 5}", {"level": "5"}, True),
    ("{fact: level, lte: 5}", {"level": "5.01"}, False),
    ("{fact: level, between: [3, 5]}", {"level": "3"}, True),
    ("{fact: level, between: [3, 5]}", {"level": "5"}, True),
    ("{fact: level, between: [3, 5]}", {"level": "4"}, True),
    ("{fact: level, between: [3, 5]}", {"level": "2.9"}, False),
    ("{fact: level, between: [3, 5]}", {"level": "5.1"}, False),
    ("{fact: level, equals: 7}", {"level": " 7.0 "}, True),
    ("{fact: level, in: [1, 7]}", {"level": "7"}, True),
    ("{fact: level, not_in: [1, 7]}", {"level": "7"}, False),
    # booleans
    ("{fact: remote, is: true}", {"remote": "yes"}, True),
    ("{fact: remote, is: true}", {"remote": "no"}, False),
    ("{fact: remote, is: false}", {"remote": "no"}, True),
    ("{fact: remote, is: false}", {"remote": "TRUE"}, False),
    # exists / missing on a present value
    ("{fact: title, exists: true}", {"title": "Clerk"}, True),
    ("{fact: title, exists: false}", {"title": "Clerk"}, False),
    ("{fact: title, missing: true}", {"title": "Clerk"}, False),
    ("{fact: title, missing: false}", {"title": "Clerk"}, True),
]


@pytest.mark.parametrize(("condition", "attributes", "expected"), OPERATOR_CASES)
def test_operator(write: Write, condition: str, attributes: dict[str, str], expected: bool) -> None:
    assert holds(write, condition, attributes) is expected


MISSING_CASES = [
    ("{fact: title, equals: x}", False),
    ("{fact: title, in: [x, y]}", False),
    ("{fact: title, not_in: [x, y]}", True),
    ("{fact: title, matches: '.*'}", False),
    ("{fact: title, matches: '^$'}", False),
    ("{fact: title, starts_with: x}", False),
    ("{fact: title, ends_with: x}", False),
    ("{fact: title, contains: x}", False),
    ("{fact: level, equals: 0}", False),
    ("{fact: level, in: [0]}", False),
    ("{fact: level, not_in: [0]}", True),
    ("{fact: level, gt: -1000}", False),
    ("{fact: level, gte: -1000}", False),
    ("{fact: level, lt: 1000}", False),
    ("{fact: level, lte: 1000}", False),
    ("{fact: level, between: [-1000, 1000]}", False),
    ("{fact: remote, is: true}", False),
    ("{fact: remote, is: false}", False),
    ("{fact: title, exists: true}", False),
    ("{fact: title, exists: false}", True),
    ("{fact: title, missing: true}", True),
    ("{fact: title, missing: false}", False),
]


@pytest.mark.parametrize(("condition", "expected"), MISSING_CASES)
@pytest.mark.parametrize(
    "attributes",
    [{}, {"title": "", "level": "", "remote": ""}, {"level": "L7", "remote": "maybe"}],
    ids=["absent", "empty", "unconvertible"],
)
def test_missing_fact(
    write: Write, condition: str, expected: bool, attributes: dict[str, str]
) -> None:
    assert holds(write, condition, attributes) is expected


# --- all / any / not ------------------------------------------------------------------

NESTED = """\
  all:
    - any:
        - {fact: title, matches: engineer}
        - {fact: title, matches: developer}
    - not:
        any:
          - {fact: level, lt: 3}
          - {fact: remote, is: true}
"""


@pytest.mark.parametrize(
    ("attributes", "expected"),
    [
        ({"title": "Software Engineer", "level": "5", "remote": "no"}, True),
        ({"title": "Web Developer", "level": "3", "remote": "false"}, True),
        ({"title": "Web Developer", "level": "2", "remote": "false"}, False),
        ({"title": "Web Developer", "level": "5", "remote": "yes"}, False),
        ({"title": "Accountant", "level": "5", "remote": "no"}, False),
        # missing level and remote: lt and is both fail, so the negation holds
        ({"title": "Engineer"}, True),
    ],
)
def test_all_any_not_nesting(write: Write, attributes: dict[str, str], expected: bool) -> None:
    assert holds(write, "\n" + textwrap.indent(NESTED, "          "), attributes) is expected


def test_not_of_missing_fact_holds(write: Write) -> None:
    assert holds(write, "{not: {fact: title, equals: Clerk}}", {}) is True
    assert holds(write, "{not: {fact: title, equals: Clerk}}", {"title": "clerk"}) is False


# --- precedence and unless ------------------------------------------------------------

PRECEDENCE = """\
facts:
  title: {from: title}
  dept: {from: department}
  type: {from: employeeType}
personas:
  - id: staff
    name: Staff
    precedence: 10
    default: true
  - id: sales
    name: Sales
    precedence: 50
    rules:
      - id: sales-dept
        when: {fact: dept, equals: Sales}
  - id: vip
    name: VIP
    precedence: 90
    rules:
      - id: vip-chief
        when: {fact: title, matches: '\\bchief\\b'}
      - id: vip-president
        when: {fact: title, matches: president}
    unless:
      - {fact: type, equals: contractor}
      - {fact: type, equals: intern}
  - id: manager
    name: Manager
    precedence: 70
    rules:
      - id: manager-title
        when: {fact: title, matches: manager}
"""


@pytest.mark.parametrize(
    ("attributes", "expected"),
    [
        ({"title": "Chief Sales Officer", "department": "Sales"}, ("matched", "vip", "vip-chief")),
        # the first matching rule of the persona is the one reported
        ({"title": "Chief President"}, ("matched", "vip", "vip-chief")),
        ({"title": "Vice President"}, ("matched", "vip", "vip-president")),
        (
            {"title": "Sales Manager", "department": "sales"},
            ("matched", "manager", "manager-title"),
        ),
        ({"title": "Rep", "department": "SALES"}, ("matched", "sales", "sales-dept")),
        ({"title": "Rep", "department": "Finance"}, ("default", "staff", "default")),
        ({}, ("default", "staff", "default")),
        # unless beats every rule of the persona; the next persona in precedence wins
        (
            {"title": "Chief President", "department": "Sales", "employeetype": "Contractor"},
            ("matched", "sales", "sales-dept"),
        ),
        ({"title": "President", "employeetype": "intern"}, ("default", "staff", "default")),
        (
            {"title": "President and Manager", "employeetype": "intern"},
            ("matched", "manager", "manager-title"),
        ),
        ({"title": "President", "employeetype": "employee"}, ("matched", "vip", "vip-president")),
    ],
)
def test_precedence_and_unless(
    write: Write, attributes: dict[str, str], expected: tuple[str, str, str]
) -> None:
    engine = Engine(load(write, PRECEDENCE))
    outcome, persona, rule = expected
    assert engine.decide(employee(attributes)) == (Decision("persona", outcome, persona, rule),)


def test_precedence_not_file_order(write: Write) -> None:
    rule_set = load(write, PRECEDENCE)
    assert rule_set.scenarios[0].order == ("vip", "manager", "sales", "staff")


def test_unless_does_not_exclude_the_default_fallback(write: Write) -> None:
    text = """\
    facts:
      type: {from: employeeType}
    personas:
      - id: staff
        name: Staff
        precedence: 1
        default: true
        unless:
          - {fact: type, equals: contractor}
    """
    engine = Engine(load(write, text))
    decisions = engine.decide(employee({"employeetype": "contractor"}))
    assert decisions == (Decision("persona", "default", "staff", "default"),)


def test_default_persona_with_rules_is_matched_by_its_rule(write: Write) -> None:
    text = """\
    facts:
      dept: {from: department}
    personas:
      - id: staff
        name: Staff
        precedence: 1
        default: true
        rules:
          - id: staff-office
            when: {fact: dept, equals: Office}
    """
    engine = Engine(load(write, text))
    assert engine.decide(employee({"department": "office"})) == (
        Decision("persona", "matched", "staff", "staff-office"),
    )
    assert engine.decide(employee({"department": "plant"})) == (
        Decision("persona", "default", "staff", "default"),
    )


# --- unmatched at scope level ---------------------------------------------------------

UNMATCHED = """\
facts:
  dept: {from: department}
personas:
  - id: sales
    name: Sales
    precedence: 10
    rules:
      - id: sales-dept
        when: {fact: dept, equals: Sales}
  - id: staff
    name: Staff
    precedence: 1
    %s
scope:
  unmatched: %s
"""


@pytest.mark.parametrize(
    ("default", "unmatched", "expected"),
    [
        ("default: true", "default", Decision("persona", "default", "staff", "default")),
        ("default: true", "leave", Decision("persona", "leave", None, None)),
        ("default: true", "clear", Decision("persona", "clear", None, None)),
        ("default: false", "leave", Decision("persona", "leave", None, None)),
        ("default: false", "clear", Decision("persona", "clear", None, None)),
    ],
)
def test_unmatched_at_scope_level(
    write: Write, default: str, unmatched: str, expected: Decision
) -> None:
    engine = Engine(load(write, UNMATCHED % (default, unmatched)))
    assert engine.decide(employee({"department": "Finance"})) == (expected,)
    assert engine.decide(employee({"department": "Sales"})) == (
        Decision("persona", "matched", "sales", "sales-dept"),
    )


# --- scenarios ------------------------------------------------------------------------

SCENARIOS = """\
facts:
  level: {type: number, from: level}
  dept: {from: department}
  remote: {type: boolean, from: remote}
  disabled: {type: boolean, from: userAccountControl, flag: 2}
  kind: {from: employeeType}
personas:
  - id: vip
    name: VIP
    precedence: 30
    rules:
      - id: vip-exec
        when: {fact: level, gte: 9}
  - id: sales
    name: Sales
    precedence: 20
    rules:
      - id: sales-dept
        when: {fact: dept, equals: sales}
  - id: remote
    name: Remote
    precedence: 10
    rules:
      - id: remote-flag
        when: {fact: remote, is: true}
  - id: office
    name: Office
    precedence: 1
    default: true
scope:
  include: {fact: kind, not_in: [service, system]}
  exclude:
    - {fact: disabled, is: true}
    - {fact: dept, equals: Board}
scenarios:
  - id: routing
  - id: devices
    order: [remote, sales, vip]
    default: remote
  - id: queue
    order: [sales]
    unmatched: clear
  - id: audit
    order: [vip, remote]
    unmatched: leave
"""


@pytest.fixture
def scenario_engine(write: Write) -> Engine:
    return Engine(load(write, SCENARIOS))


def test_scenarios_are_compiled_in_file_order(scenario_engine: Engine) -> None:
    scenarios = scenario_engine.rule_set.scenarios
    assert [(s.id, s.order, s.default, s.unmatched) for s in scenarios] == [
        ("routing", ("vip", "sales", "remote", "office"), "office", "default"),
        ("devices", ("remote", "sales", "vip"), "remote", "default"),
        ("queue", ("sales",), "office", "clear"),
        ("audit", ("vip", "remote"), "office", "leave"),
    ]


def test_each_scenario_has_its_own_order(scenario_engine: Engine) -> None:
    person = employee({"level": "9", "department": "Sales", "remote": "yes"})
    assert scenario_engine.decide(person) == (
        Decision("routing", "matched", "vip", "vip-exec"),
        Decision("devices", "matched", "remote", "remote-flag"),
        Decision("queue", "matched", "sales", "sales-dept"),
        Decision("audit", "matched", "vip", "vip-exec"),
    )


def test_scenario_order_with_partial_match(scenario_engine: Engine) -> None:
    person = employee({"level": "9", "department": "Sales", "remote": "no"})
    assert scenario_engine.decide(person) == (
        Decision("routing", "matched", "vip", "vip-exec"),
        Decision("devices", "matched", "sales", "sales-dept"),
        Decision("queue", "matched", "sales", "sales-dept"),
        Decision("audit", "matched", "vip", "vip-exec"),
    )


def test_scenario_gives_only_personas_in_its_order(scenario_engine: Engine) -> None:
    person = employee({"level": "3", "remote": "true"})
    assert scenario_engine.decide(person) == (
        Decision("routing", "matched", "remote", "remote-flag"),
        Decision("devices", "matched", "remote", "remote-flag"),
        Decision("queue", "clear", None, None),
        Decision("audit", "matched", "remote", "remote-flag"),
    )


def test_unmatched_per_scenario(scenario_engine: Engine) -> None:
    person = employee({"level": "3", "department": "Finance"})
    assert scenario_engine.decide(person) == (
        Decision("routing", "default", "office", "default"),
        Decision("devices", "default", "remote", "default"),
        Decision("queue", "clear", None, None),
        Decision("audit", "leave", None, None),
    )


@pytest.mark.parametrize(
    "attributes",
    [
        {"level": "9", "useraccountcontrol": "514"},
        {"level": "9", "department": "BOARD"},
        {"level": "9", "employeetype": "Service"},
        {"level": "9", "employeetype": "system", "useraccountcontrol": "512"},
    ],
    ids=["disabled", "excluded-department", "not-included", "not-included-enabled"],
)
def test_out_of_scope_in_every_scenario(
    scenario_engine: Engine, attributes: dict[str, str]
) -> None:
    assert scenario_engine.decide(employee(attributes)) == (
        Decision("routing", "out_of_scope", None, None),
        Decision("devices", "out_of_scope", None, None),
        Decision("queue", "out_of_scope", None, None),
        Decision("audit", "out_of_scope", None, None),
    )


def test_in_scope_when_include_holds_and_no_exclude(scenario_engine: Engine) -> None:
    person = employee({"level": "9", "useraccountcontrol": "512", "employeetype": "employee"})
    facts = scenario_engine.facts(person)
    assert scenario_engine.in_scope(facts) is True
    assert scenario_engine.decide(person)[0] == Decision("routing", "matched", "vip", "vip-exec")


def test_scenario_unmatched_overrides_scope(write: Write) -> None:
    text = """\
    facts:
      dept: {from: department}
    personas:
      - id: sales
        name: Sales
        precedence: 10
        rules:
          - id: sales-dept
            when: {fact: dept, equals: sales}
      - id: other
        name: Other
        precedence: 5
    scope:
      unmatched: clear
    scenarios:
      - id: a
      - id: b
        unmatched: default
        default: other
      - id: c
        unmatched: leave
    """
    engine = Engine(load(write, text))
    assert engine.decide(employee({})) == (
        Decision("a", "clear", None, None),
        Decision("b", "default", "other", "default"),
        Decision("c", "leave", None, None),
    )


def test_decide_all_without_org_chart_keeps_input_order(write: Write) -> None:
    engine = Engine(load(write, PRECEDENCE))
    people = [employee({"title": "Vice President"}, "a"), employee({}, "b")]
    assert [(p.id, d) for p, d in engine.decide_all(iter(people))] == [
        ("a", (Decision("persona", "matched", "vip", "vip-president"),)),
        ("b", (Decision("persona", "default", "staff", "default"),)),
    ]


def test_engine_attributes_are_the_facts_raw_attributes(scenario_engine: Engine) -> None:
    assert scenario_engine.attributes == (
        "level",
        "department",
        "remote",
        "useraccountcontrol",
        "employeetype",
    )
