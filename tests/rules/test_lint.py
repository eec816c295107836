"""Lint: unreachable personas, shadowed rules, unused facts, too many personas."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from persona_sync.employee import Employee
from persona_sync.rules.engine import Decision, Engine
from persona_sync.rules.lint import lint
from persona_sync.rules.loader import load_rules
from tests.conftest import DEFAULT_RULES

Write = Callable[[str, str], Path]

# Line numbers matter: persona 'high' is at 10:5, its rule at 14:9; 'low' at 16:5, its
# rule at 20:9. The scope at the end tests every fact so none is reported unused.
TWO_PERSONAS = """\
facts:
  title: {from: title}
  dept: {from: department}
  level: {type: number, from: level}
personas:
  - id: staff
    name: Staff
    precedence: 1
    default: true
  - id: high
    name: High
    precedence: 20
    rules:
      - id: high-rule
        when: %s
  - id: low
    name: Low
    precedence: 10
    rules:
      - id: low-rule
        when: %s
scope:
  exclude:
    - {fact: title, exists: false}
    - {fact: dept, exists: false}
    - {fact: level, exists: false}
"""


def warnings(*paths: Path) -> list[str]:
    return [str(w) for w in lint(load_rules(list(paths)))]


def shadowed(path: Path) -> list[str]:
    return [
        f"{path}:16:5: warning: persona 'low' can never be given: every one of its rules is "
        "shadowed [unreachable-persona]",
        f"{path}:20:9: warning: rule 'low-rule' can never decide: whenever it holds, rule "
        f"'high-rule' of persona 'high' (precedence 20, {path}:14:9) holds too [shadowed-rule]",
    ]


SHADOWED = [
    ("{fact: dept, in: [Sales, Marketing, Support]}", "{fact: dept, in: [support, SALES]}"),
    ("{fact: dept, in: [Sales, Marketing]}", "{fact: dept, equals: MARKETING}"),
    ("{fact: dept, equals: sales}", "{fact: dept, equals: Sales, case_sensitive: true}"),
    ("{fact: dept, matches: '^sales'}", "{fact: dept, in: [Sales EMEA, sales apac]}"),
    ("{fact: dept, not_in: [HR]}", "{fact: dept, equals: Sales}"),
    ("{fact: level, gte: 7}", "{fact: level, gte: 9}"),
    ("{fact: level, gte: 7}", "{fact: level, gte: 7}"),
    ("{fact: level, gte: 7}", "{fact: level, gt: 7}"),
    ("{fact: level, gt: 7}", "{fact: level, between: [7.5, 10]}"),
    ("{fact: level, gte: 7}", "{fact: level, equals: 8}"),
    ("{fact: level, gte: 7}", "{fact: level, in: [7, 9]}"),
    ("{fact: level, between: [3, 5]}", "{fact: level, between: [3, 5]}"),
    ("{fact: level, lt: 5}", "{fact: level, lte: 4}"),
    ("{fact: title, exists: true}", "{fact: title, matches: chief}"),
    ("{fact: title, missing: false}", "{fact: title, equals: Chief}"),
    ("{fact: dept, equals: Sales}", "{all: [{fact: level, gte: 5}, {fact: dept, equals: sales}]}"),
    (
        "{any: [{fact: title, matches: chief}, {fact: dept, equals: Sales}]}",
        "{fact: dept, in: [sales]}",
    ),
    (
        "{fact: level, gte: 7}",
        "{any: [{fact: level, gte: 9}, {fact: level, equals: 8}]}",
    ),
    (
        "{all: [{fact: level, gte: 5}, {fact: dept, equals: sales}]}",
        "{all: [{fact: dept, equals: Sales}, {fact: title, exists: true}, {fact: level, gt: 6}]}",
    ),
    (
        "{not: {fact: dept, equals: Sales}}",
        "{not: {fact: dept, in: [Sales, Marketing]}}",
    ),
]


@pytest.mark.parametrize(("higher", "lower"), SHADOWED)
def test_shadowed_by_higher_persona(write: Write, higher: str, lower: str) -> None:
    path = write("rules.yaml", TWO_PERSONAS % (higher, lower))
    assert warnings(path) == shadowed(path)


NOT_SHADOWED = [
    ("{fact: dept, in: [Sales]}", "{fact: dept, in: [Sales, Marketing]}"),
    ("{fact: dept, equals: Sales, case_sensitive: true}", "{fact: dept, equals: Sales}"),
    ("{fact: dept, equals: Sales}", "{fact: title, equals: Sales}"),
    ("{fact: dept, equals: Sales}", "{fact: dept, not_in: [HR]}"),
    ("{fact: dept, matches: sales}", "{fact: dept, matches: sales}"),
    ("{fact: level, gte: 9}", "{fact: level, gte: 7}"),
    ("{fact: level, gt: 7}", "{fact: level, gte: 7}"),
    ("{fact: level, between: [3, 5]}", "{fact: level, between: [3, 5.5]}"),
    ("{fact: level, lt: 5}", "{fact: level, lte: 5}"),
    ("{fact: level, gte: 7}", "{fact: level, in: [6, 9]}"),
    ("{fact: title, exists: true}", "{fact: title, not_in: [x]}"),
    ("{fact: title, exists: true}", "{fact: title, missing: true}"),
    ("{fact: dept, equals: Sales}", "{any: [{fact: dept, equals: Sales}, {fact: level, gte: 1}]}"),
    ("{all: [{fact: dept, equals: Sales}, {fact: level, gte: 5}]}", "{fact: dept, equals: Sales}"),
    ("{not: {fact: dept, in: [Sales, Marketing]}}", "{not: {fact: dept, equals: Sales}}"),
]


@pytest.mark.parametrize(("higher", "lower"), NOT_SHADOWED)
def test_not_shadowed(write: Write, higher: str, lower: str) -> None:
    path = write("rules.yaml", TWO_PERSONAS % (higher, lower))
    assert warnings(path) == []


def test_lower_precedence_rule_never_shadows_a_higher_one(write: Write) -> None:
    # 'low' is broader than 'high': nothing is shadowed, whatever the file order.
    conditions = ("{fact: dept, equals: Sales}", "{fact: dept, in: [Sales, HR]}")
    path = write("rules.yaml", TWO_PERSONAS % conditions)
    assert warnings(path) == []


def test_not_shadowed_when_higher_persona_has_unless(write: Write) -> None:
    text = """\
    facts:
      dept: {from: department}
      kind: {from: employeeType}
    personas:
      - id: high
        name: High
        precedence: 20
        rules:
          - id: high-rule
            when: {fact: dept, in: [Sales, Marketing]}
        unless:
          - {fact: kind, equals: contractor}
      - id: low
        name: Low
        precedence: 10
        default: true
        rules:
          - id: low-rule
            when: {fact: dept, equals: Sales}
    """
    assert warnings(write("rules.yaml", text)) == []


def test_shadowed_within_the_same_persona(write: Write) -> None:
    text = """\
    facts:
      dept: {from: department}
    personas:
      - id: sales
        name: Sales
        precedence: 10
        default: true
        rules:
          - id: sales-broad
            when: {fact: dept, in: [Sales, Marketing]}
          - id: sales-narrow
            when: {fact: dept, equals: sales}
          - id: sales-other
            when: {fact: dept, equals: Support}
          - id: sales-support
            when: {fact: dept, in: [Support, Sales]}
    """
    path = write("rules.yaml", text)
    assert warnings(path) == [
        f"{path}:11:9: warning: rule 'sales-narrow' can never decide: whenever it holds, rule "
        f"'sales-broad' of persona 'sales' (precedence 10, {path}:9:9) holds too [shadowed-rule]",
    ]


def test_persona_with_one_shadowed_rule_is_still_reachable(write: Write) -> None:
    text = """\
    facts:
      dept: {from: department}
    personas:
      - id: high
        name: High
        precedence: 20
        default: true
        rules:
          - id: high-rule
            when: {fact: dept, equals: Sales}
      - id: low
        name: Low
        precedence: 10
        rules:
          - id: low-sales
            when: {fact: dept, in: [sales]}
          - id: low-hr
            when: {fact: dept, equals: HR}
    """
    path = write("rules.yaml", text)
    assert warnings(path) == [
        f"{path}:15:9: warning: rule 'low-sales' can never decide: whenever it holds, rule "
        f"'high-rule' of persona 'high' (precedence 20, {path}:9:9) holds too [shadowed-rule]",
    ]


def test_shadowed_across_files(write: Write) -> None:
    high = write(
        "a.yaml",
        """\
        facts:
          level: {type: number, from: level}
        personas:
          - id: vip
            name: VIP
            precedence: 100
            rules:
              - id: vip-exec
                when: {fact: level, gte: 9}
        """,
    )
    low = write(
        "b.yaml",
        """\
        personas:
          - id: staff
            name: Staff
            precedence: 1
            default: true
          - id: board
            name: Board
            precedence: 50
            rules:
              - id: board-member
                when: {fact: level, equals: 10}
        """,
    )
    assert warnings(high, low) == [
        f"{low}:6:5: warning: persona 'board' can never be given: every one of its rules is "
        "shadowed [unreachable-persona]",
        f"{low}:10:9: warning: rule 'board-member' can never decide: whenever it holds, rule "
        f"'vip-exec' of persona 'vip' (precedence 100, {high}:8:9) holds too [shadowed-rule]",
    ]


# --- unreachable personas -------------------------------------------------------------


def test_persona_without_rules_and_not_default(write: Write) -> None:
    text = """\
    facts:
      dept: {from: department}
    personas:
      - id: staff
        name: Staff
        precedence: 1
        default: true
        rules:
          - id: staff-dept
            when: {fact: dept, exists: true}
      - id: placeholder
        name: Placeholder
        precedence: 5
    """
    path = write("rules.yaml", text)
    assert warnings(path) == [
        f"{path}:11:5: warning: persona 'placeholder' can never be given: it has no rules and "
        "is not the default [unreachable-persona]",
    ]


SCENARIO_RULES = """\
facts:
  dept: {from: department}
personas:
  - id: staff
    name: Staff
    precedence: 1
    default: true
  - id: sales
    name: Sales
    precedence: 20
    rules:
      - id: sales-dept
        when: {fact: dept, equals: Sales}
  - id: support
    name: Support
    precedence: 10
    rules:
      - id: support-dept
        when: {fact: dept, equals: Support}
  - id: spare
    name: Spare
    precedence: 5
scenarios:
  - id: routing
    order: [sales]
  - id: devices
    order: [sales, staff]
    default: spare
"""


def test_persona_not_in_any_scenario_order(write: Write) -> None:
    path = write("rules.yaml", SCENARIO_RULES)
    assert warnings(path) == [
        f"{path}:14:5: warning: persona 'support' can never be given: no scenario lists it "
        "[unreachable-persona]",
    ]


def test_persona_listed_in_one_scenario_is_reachable(write: Write) -> None:
    path = write("rules.yaml", SCENARIO_RULES.replace("order: [sales]\n", "order: [support]\n"))
    assert warnings(path) == []


# --- unused facts and persona count ---------------------------------------------------


def test_unused_fact(write: Write) -> None:
    text = """\
    facts:
      dept: {from: department}
      site: {from: physicalDeliveryOfficeName}
      kind: {from: employeeType}
      disabled: {type: boolean, from: userAccountControl, flag: 2}
      region:
        value: EMEA
    personas:
      - id: staff
        name: Staff
        precedence: 1
        default: true
        rules:
          - id: staff-dept
            when: {fact: dept, exists: true}
        unless:
          - {fact: kind, equals: contractor}
    scope:
      exclude:
        - {fact: disabled, is: true}
    """
    path = write("rules.yaml", text)
    assert warnings(path) == [
        f"{path}:3:3: warning: fact 'site' is mapped but no rule, exclusion or scope tests it "
        "[unused-fact]",
        f"{path}:6:3: warning: fact 'region' is mapped but no rule, exclusion or scope tests it "
        "[unused-fact]",
    ]


def personas_yaml(count: int) -> str:
    lines = ["facts:", "  n: {type: number, from: n}", "personas:"]
    for i in range(count):
        lines += [
            f"  - id: p{i}",
            f"    name: P{i}",
            f"    precedence: {i}",
            *(["    default: true"] if i == 0 else []),
            "    rules:",
            f"      - id: r{i}",
            f"        when: {{fact: n, equals: {i}}}",
        ]
    return "\n".join(lines) + "\n"


def test_more_than_ten_personas(write: Write) -> None:
    path = write("rules.yaml", personas_yaml(12))
    # persona p10 (the eleventh) starts on line 3 + 7 + 6 * 9 + 1
    assert warnings(path) == [
        f"{path}:65:5: warning: 12 personas: more than 10 are hard for a service desk to route "
        "and for people to remember [too-many-personas]",
    ]


def test_ten_personas_are_fine(write: Write) -> None:
    assert warnings(write("rules.yaml", personas_yaml(10))) == []


def test_default_catalog_has_no_warnings() -> None:
    assert warnings(DEFAULT_RULES) == []


# --- scenarios and non-ASCII text ---------------------------------------------------


TWO_SCENARIOS = """\
facts:
  dept: {from: department}
personas:
  - id: staff
    name: Staff
    precedence: 1
    default: true
  - id: vip
    name: VIP
    precedence: 20
    rules:
      - id: vip-dept
        when: {fact: dept, in: [Sales, Marketing]}
  - id: sales
    name: Sales
    precedence: 10
    rules:
      - id: sales-dept
        when: {fact: dept, equals: Sales}
scenarios:
  - id: routing
    order: [vip, sales]
  - id: devices
    order: [sales, vip]
"""


def test_rule_shadowed_in_one_scenario_decides_in_the_other(write: Write) -> None:
    engine = Engine(load_rules([write("rules.yaml", TWO_SCENARIOS)]))
    assert engine.decide(Employee("jdoe", "jdoe", {"department": "Sales"})) == (
        Decision("routing", "matched", "vip", "vip-dept"),
        Decision("devices", "matched", "sales", "sales-dept"),
    )


def test_rule_shadowed_in_one_scenario_only_is_not_reported(write: Write) -> None:
    assert warnings(write("rules.yaml", TWO_SCENARIOS)) == []


def test_rule_shadowed_in_every_scenario_is_reported(write: Write) -> None:
    path = write("rules.yaml", TWO_SCENARIOS.replace("order: [sales, vip]", "order: [vip, sales]"))
    assert warnings(path) == [
        f"{path}:14:5: warning: persona 'sales' can never be given: every one of its rules is "
        "shadowed [unreachable-persona]",
        f"{path}:18:9: warning: rule 'sales-dept' can never decide: whenever it holds, rule "
        f"'vip-dept' of persona 'vip' (precedence 20, {path}:12:9) holds too [shadowed-rule]",
    ]


def sharp_s(write: Write, lower: str) -> tuple[list[str], Decision]:
    """Lint's verdict and the engine's decision for department 'Straße' when the higher
    persona's rule is ``matches: strasse`` and the lower one's is ``lower``."""
    path = write("rules.yaml", TWO_PERSONAS % ("{fact: dept, matches: strasse}", lower))
    engine = Engine(load_rules([path]))
    person = Employee("jdoe", "jdoe", {"title": "Rep", "department": "Straße", "level": "3"})
    return warnings(path), engine.decide(person)[0]


def test_regex_does_not_fold_sharp_s_and_lint_knows(write: Write) -> None:
    # 'Straße' equals 'STRASSE' case-insensitively (casefold), but re.IGNORECASE does not
    # fold ß to ss: the lower rule decides, so it must not be reported shadowed.
    assert sharp_s(write, "{fact: dept, equals: Straße}") == (
        [],
        Decision("persona", "matched", "low", "low-rule"),
    )


def test_case_sensitive_sharp_s_against_regex(write: Write) -> None:
    assert sharp_s(write, "{fact: dept, equals: Straße, case_sensitive: true}") == (
        [],
        Decision("persona", "matched", "low", "low-rule"),
    )


@pytest.mark.xfail(
    strict=True,
    reason=(
        "KNOWN GAP (lint docstring): an ASCII case-insensitive operand 'Strasse' also "
        "accepts the directory value 'Straße', which /strasse/i does not match; the rule "
        "is reported shadowed yet decides"
    ),
)
def test_ascii_operand_folded_from_sharp_s_value(write: Write) -> None:
    assert sharp_s(write, "{fact: dept, equals: Strasse}") == (
        [],
        Decision("persona", "matched", "low", "low-rule"),
    )
