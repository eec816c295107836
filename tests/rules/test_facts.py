"""Fact derivation: sources, fallthrough, map/table/capture/flag, conversions, built-ins."""

from __future__ import annotations

import math
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from persona_sync.employee import Employee
from persona_sync.rules.engine import Decision, Engine
from persona_sync.rules.facts import convert, trace_fact
from persona_sync.rules.loader import load_rules
from persona_sync.rules.model import RuleSet
from persona_sync.rules.orgchart import Position

PERSONA = """\
personas:
  - id: staff
    name: Staff
    precedence: 1
    default: true
"""


Write = Callable[[str, str], Path]


def load(write: Write, facts: str) -> RuleSet:
    """A rule set with one default persona and the given facts."""
    text = PERSONA + "facts:\n" + textwrap.indent(textwrap.dedent(facts), "  ")
    return load_rules([write("rules.yaml", text)])


def employee(attributes: dict[str, str], id: str = "jdoe", dn: str | None = None) -> Employee:
    return Employee(id, dn or f"uid={id},ou=people,dc=example,dc=com", attributes)


def values(engine: Engine, person: Employee, position: Position | None = None) -> dict[str, Any]:
    """Every fact's value, from the engine; the traced derivation must agree."""
    derived = dict(zip(engine.fact_names, engine.facts(person, position), strict=True))
    traced = {fact.name: trace_fact(fact, person, position).value for fact in engine.compiled_facts}
    assert traced == derived
    return derived


def value(write: Write, facts: str, attributes: dict[str, str], **kw: Any) -> Any:
    engine = Engine(load(write, facts))
    return values(engine, employee(attributes, **kw))["f"]


# --- sources --------------------------------------------------------------------------

FIRST_ATTRIBUTE = "f: {from: [title, jobTitle]}"


@pytest.mark.parametrize(
    ("attributes", "expected"),
    [
        ({"title": "Nurse", "jobtitle": "Doctor"}, "Nurse"),
        ({"jobtitle": "Doctor"}, "Doctor"),
        ({"title": "", "jobtitle": "Doctor"}, "Doctor"),
        ({"title": "  Nurse  "}, "Nurse"),
        ({"title": ""}, None),
        ({}, None),
    ],
)
def test_first_attribute_with_a_value_wins(
    write: Write, attributes: dict[str, str], expected: str | None
) -> None:
    assert value(write, FIRST_ATTRIBUTE, attributes) == expected


def test_whitespace_only_attribute_falls_through_to_the_next(write: Write) -> None:
    assert value(write, FIRST_ATTRIBUTE, {"title": "   ", "jobtitle": "Doctor"}) == "Doctor"


SOURCES = """\
f:
  type: number
  sources:
    - from: seniorityLevel
    - from: title
      table:
        - {match: director, value: 8}
    - from: grade
      capture: 'G(\\d+)'
  default: 1
"""


@pytest.mark.parametrize(
    ("attributes", "expected"),
    [
        ({"senioritylevel": "4", "title": "Director", "grade": "G3"}, 4.0),
        ({"senioritylevel": "senior", "title": "Director", "grade": "G3"}, 8.0),
        ({"title": "Director", "grade": "G3"}, 8.0),
        ({"title": "Clerk", "grade": "G3"}, 3.0),
        ({"title": "Clerk", "grade": "X3"}, 1.0),
        ({"senioritylevel": "", "title": "", "grade": ""}, 1.0),
        ({}, 1.0),
    ],
)
def test_sources_in_order_then_default(
    write: Write, attributes: dict[str, str], expected: float
) -> None:
    assert value(write, SOURCES, attributes) == expected


def test_constant_source_and_default_only(write: Write) -> None:
    engine = Engine(
        load(
            write,
            """\
            site: {from: office}
            region: {value: EMEA}
            kind: {default: employee}
            """,
        )
    )
    assert values(engine, employee({"office": "Vienna"})) == {
        "site": "Vienna",
        "region": "EMEA",
        "kind": "employee",
    }
    assert values(engine, employee({})) == {"site": None, "region": "EMEA", "kind": "employee"}


def test_empty_string_attribute_is_missing_for_tests(write: Write) -> None:
    path = write(
        "rules.yaml",
        """\
facts:
  title: {from: title}
personas:
  - id: untitled
    name: Untitled
    precedence: 2
    rules:
      - id: no-title
        when: {fact: title, missing: true}
  - id: staff
    name: Staff
    precedence: 1
    default: true
""",
    )
    engine = Engine(load_rules([path]))
    assert engine.decide(employee({"title": ""})) == (
        Decision("persona", "matched", "untitled", "no-title"),
    )
    assert engine.decide(employee({"title": "Clerk"})) == (
        Decision("persona", "default", "staff", "default"),
    )


# --- map ------------------------------------------------------------------------------

MAP = """\
f:
  sources:
    - from: department
      map: {Sales: sales-team, "IT Ops": it, "42": answer}
    - from: title
  default: none
"""


@pytest.mark.parametrize(
    ("attributes", "expected"),
    [
        ({"department": "Sales"}, "sales-team"),
        ({"department": "SALES"}, "sales-team"),
        ({"department": " it ops "}, "it"),
        ({"department": "42"}, "answer"),
        ({"department": "Sales EMEA", "title": "Rep"}, "Rep"),
        ({"department": "Finance"}, "none"),
        ({}, "none"),
    ],
)
def test_map(write: Write, attributes: dict[str, str], expected: str) -> None:
    assert value(write, MAP, attributes) == expected


def test_map_to_boolean(write: Write) -> None:
    facts = """\
    f:
      type: boolean
      from: accountEnabled
      map: {"true": false, "false": true}
    """
    engine = Engine(load(write, facts))
    assert [
        values(engine, employee({"accountenabled": raw}))["f"]
        for raw in ("TRUE", "false", "yes", "")
    ] == [False, True, None, None]


# --- table ----------------------------------------------------------------------------

TABLE = """\
f:
  from: title
  table:
    - {match: 'vice president|\\bvp\\b', value: vp}
    - {match: 'president', value: president}
    - {match: '^chief', value: chief}
  default: other
"""


@pytest.mark.parametrize(
    ("title", "expected"),
    [
        ("Vice President, Marketing", "vp"),
        ("VP Sales", "vp"),
        ("MVP Engineer", "other"),
        ("President", "president"),
        ("Chief President", "president"),
        ("CHIEF of Staff", "chief"),
        ("Deputy Chief", "other"),
        ("Clerk", "other"),
    ],
)
def test_table_first_match_wins(write: Write, title: str, expected: str) -> None:
    assert value(write, TABLE, {"title": title}) == expected


# --- capture --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("capture", "raw", "expected"),
    [
        ("'(?P<prefix>[A-Z]+)-(?P<value>\\d+)'", "Grade EX-7 (2024)", 7.0),
        ("'Grade (\\d+)'", "grade 12", 12.0),
        ("'Grade (\\d+)'", "Level 12", None),
        ("'\\d+(\\.\\d+)?'", "L7.5", 0.5),
        ("'\\d+(?:\\.\\d+)?'", "L7.5", 7.5),
        ("'\\d+'", "L7", 7.0),
        ("'(\\d+)|(x)'", "x", None),
    ],
    ids=[
        "named-group",
        "group-1",
        "no-match",
        "group-1-beats-match",
        "whole-match-non-capturing",
        "whole-match",
        "empty",
    ],
)
def test_capture(write: Write, capture: str, raw: str, expected: float | None) -> None:
    facts = f"f: {{type: number, from: grade, capture: {capture}}}"
    assert value(write, facts, {"grade": raw}) == expected


def test_capture_group_1_is_first_group_even_when_the_match_is_wider(write: Write) -> None:
    facts = "f: {from: mail, capture: '@([a-z]+)\\.example'}"
    assert value(write, facts, {"mail": "Jane@Sales.Example.com"}) == "Sales"


def test_capture_then_map(write: Write) -> None:
    facts = """\
    f:
      from: dn_ou
      capture: 'ou=(?P<value>[^,]+)'
      map: {stores: retail, plants: production}
    """
    assert value(write, facts, {"dn_ou": "CN=x,OU=Stores,DC=y"}) == "retail"
    assert value(write, facts, {"dn_ou": "CN=x,OU=Office,DC=y"}) is None


# --- flag -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("514", True),
        ("512", False),
        ("66050", True),
        ("66048", False),
        (" 2 ", True),
        ("0", False),
        ("disabled", None),
    ],
)
def test_flag(write: Write, raw: str, expected: bool | None) -> None:
    facts = "f: {type: boolean, from: userAccountControl, flag: 2}"
    assert value(write, facts, {"useraccountcontrol": raw}) is expected


def test_flag_unparsable_falls_through_to_default(write: Write) -> None:
    facts = """\
    f:
      type: boolean
      sources:
        - {from: userAccountControl, flag: 2}
      default: false
    """
    assert value(write, facts, {"useraccountcontrol": "n/a"}) is False


# --- conversion -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("7", 7.0),
        (" 7.5 ", 7.5),
        ("-2", -2.0),
        ("0", 0.0),
        ("L7", None),
        ("seven", None),
        ("   ", None),
    ],
)
def test_number_conversion(write: Write, raw: str, expected: float | None) -> None:
    assert value(write, "f: {type: number, from: level}", {"level": raw}) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("true", True),
        ("TRUE", True),
        ("Yes", True),
        ("1", True),
        (" yes ", True),
        ("false", False),
        ("No", False),
        ("0", False),
        ("FALSE", False),
        ("maybe", None),
        ("2", None),
        ("   ", None),
    ],
)
def test_boolean_conversion(write: Write, raw: str, expected: bool | None) -> None:
    assert value(write, "f: {type: boolean, from: flag}", {"flag": raw}) is expected


def test_convert_directly() -> None:
    assert convert(None, "string") is None
    assert convert(" x ", "string") == "x"
    assert convert(3, "string") == "3"
    assert convert(True, "number") is None
    assert convert(3, "number") == 3.0
    assert convert(True, "boolean") is True
    assert convert("off", "boolean") is False
    assert math.isclose(convert("2,5", "number"), 2.5)  # type: ignore[arg-type]


# --- built-ins ------------------------------------------------------------------------


def test_builtin_dn_and_id(write: Write) -> None:
    facts = """\
    dn: {from: "@dn"}
    id: {from: "@id"}
    service:
      type: boolean
      sources:
        - from: "@id"
          table: [{match: '^svc-', value: true}]
        - from: "@dn"
          table: [{match: 'ou=service accounts', value: true}]
      default: false
    """
    engine = Engine(load(write, facts))
    person = employee({}, "svc-backup", "CN=Backup,OU=Staff,DC=example,DC=com")
    assert values(engine, person) == {
        "dn": "CN=Backup,OU=Staff,DC=example,DC=com",
        "id": "svc-backup",
        "service": True,
    }
    person = employee({}, "jdoe", "CN=Doe,OU=Service Accounts,DC=example,DC=com")
    assert values(engine, person)["service"] is True
    person = employee({}, "jdoe", "CN=Doe,OU=Staff,DC=example,DC=com")
    assert values(engine, person)["service"] is False


def test_builtin_attribute_then_plain_attribute(write: Write) -> None:
    facts = "f: {from: [nickname, '@id']}"
    assert value(write, facts, {"nickname": "JD"}) == "JD"
    assert value(write, facts, {"nickname": ""}) == "jdoe"


@pytest.mark.parametrize("blank", ["", "   "])
def test_blank_attribute_before_builtin_falls_through_when_traced(write: Write, blank: str) -> None:
    assert value(write, "f: {from: [nickname, '@id']}", {"nickname": blank}) == "jdoe"


BLANK_BEFORE_BUILTIN = """\
facts:
  who: {from: [nickname, "@id"]}
personas:
  - id: jd
    name: JD
    precedence: 2
    rules:
      - id: jd-rule
        when: {fact: who, equals: jdoe}
  - id: staff
    name: Staff
    precedence: 1
    default: true
"""


def test_blank_attribute_before_builtin_in_generated_decide(write: Write) -> None:
    engine = Engine(load_rules([write("rules.yaml", BLANK_BEFORE_BUILTIN)]))
    person = employee({"nickname": "   "})
    assert engine.decide(person) == (Decision("persona", "matched", "jd", "jd-rule"),)


def test_empty_attribute_before_builtin_in_generated_decide(write: Write) -> None:
    engine = Engine(load_rules([write("rules.yaml", BLANK_BEFORE_BUILTIN)]))
    person = employee({"nickname": ""})
    assert engine.decide(person) == (Decision("persona", "matched", "jd", "jd-rule"),)


def test_builtin_org_attributes(write: Write) -> None:
    facts = """\
    depth: {type: number, from: "@org_depth"}
    reports: {type: number, from: "@direct_reports"}
    """
    engine = Engine(load(write, facts))
    person = employee({})
    assert values(engine, person, Position(0, 3)) == {"depth": 0.0, "reports": 3.0}
    assert values(engine, person, Position(None, 0)) == {"depth": None, "reports": 0.0}
    assert values(engine, person, None) == {"depth": None, "reports": None}
    assert engine.rule_set.uses_org_chart is True


# --- org chart formula ----------------------------------------------------------------

ORG = """\
f:
  type: number
  sources:
    - from: seniorityLevel
    - org_chart: {top: 10, per_level: 1.5, floor: 2, manager_bonus: 1, manager_min_reports: 2}
  default: 0
"""


@pytest.mark.parametrize(
    ("position", "expected"),
    [
        (Position(0, 0), 10.0),
        (Position(1, 0), 8.5),
        (Position(2, 0), 7.0),
        (Position(2, 1), 7.0),
        (Position(2, 2), 8.0),
        (Position(5, 0), 2.5),
        (Position(6, 0), 2.0),
        (Position(20, 0), 2.0),
        (Position(20, 5), 3.0),
        (Position(0, 2), 10.0),  # the manager bonus never lifts anyone above top
        (Position(None, 4), 0.0),
        (None, 0.0),
    ],
)
def test_org_chart_formula(write: Write, position: Position | None, expected: float) -> None:
    engine = Engine(load(write, ORG))
    assert values(engine, employee({}), position) == {"f": expected}


def test_org_chart_comes_after_earlier_sources(write: Write) -> None:
    engine = Engine(load(write, ORG))
    assert values(engine, employee({"senioritylevel": "4"}), Position(0, 9)) == {"f": 4.0}


def test_org_chart_defaults(write: Write) -> None:
    facts = "f: {type: number, org_chart: {}}"
    engine = Engine(load(write, facts))
    assert [values(engine, employee({}), Position(d, 5))["f"] for d in (0, 3, 9, 12)] == [
        10.0,
        7.0,
        1.0,
        1.0,
    ]


def test_org_chart_decides_through_engine(write: Write) -> None:
    path = write(
        "rules.yaml",
        """\
facts:
  seniority: {type: number, org_chart: {top: 10, per_level: 2, floor: 1}}
personas:
  - id: exec
    name: Exec
    precedence: 2
    rules:
      - id: exec-top
        when: {fact: seniority, gte: 8}
  - id: staff
    name: Staff
    precedence: 1
    default: true
""",
    )
    engine = Engine(load_rules([path]))
    person = employee({})
    assert engine.decide(person, Position(1, 0)) == (
        Decision("persona", "matched", "exec", "exec-top"),
    )
    assert engine.decide(person, Position(2, 0)) == (
        Decision("persona", "default", "staff", "default"),
    )
    assert engine.decide(person) == (Decision("persona", "default", "staff", "default"),)


# --- memoisation ----------------------------------------------------------------------


def test_memo_cache_does_not_leak_between_raw_values(write: Write) -> None:
    facts = """\
    family:
      from: title
      table:
        - {match: nurse, value: clinical}
        - {match: engineer, value: engineering}
    grade: {type: number, from: grade, capture: '(\\d+)'}
    dept: {from: department, map: {sales: s, it: i}}
    title: {from: title}
    """
    engine = Engine(load(write, facts))
    sequence = [
        (
            {"title": "Nurse", "grade": "G1", "department": "Sales"},
            {"family": "clinical", "grade": 1.0, "dept": "s", "title": "Nurse"},
        ),
        (
            {"title": "Engineer", "grade": "G2", "department": "IT"},
            {"family": "engineering", "grade": 2.0, "dept": "i", "title": "Engineer"},
        ),
        (
            {"title": "nurse", "grade": "G10", "department": "sales "},
            {"family": "clinical", "grade": 10.0, "dept": "s", "title": "nurse"},
        ),
        (
            {"title": "Clerk", "grade": "none", "department": "HR"},
            {"family": None, "grade": None, "dept": None, "title": "Clerk"},
        ),
        (
            {"title": "Nurse", "grade": "G1", "department": "Sales"},
            {"family": "clinical", "grade": 1.0, "dept": "s", "title": "Nurse"},
        ),
        ({}, {"family": None, "grade": None, "dept": None, "title": None}),
        (
            {"title": "Engineer", "grade": "G2", "department": "IT"},
            {"family": "engineering", "grade": 2.0, "dept": "i", "title": "Engineer"},
        ),
    ]
    for attributes, expected in sequence * 2:
        assert values(engine, employee(attributes)) == expected


def test_memo_cache_of_builtin_source_follows_the_position(write: Write) -> None:
    facts = "level: {type: number, from: '@org_depth', map: {'0': 10, '1': 8}}"
    engine = Engine(load(write, facts))
    person = employee({})
    assert [values(engine, person, Position(d, 0))["level"] for d in (0, 1, 2, 0, 1)] == [
        10.0,
        8.0,
        None,
        10.0,
        8.0,
    ]


def test_folded_copy_follows_the_value(write: Write) -> None:
    path = write(
        "rules.yaml",
        """\
facts:
  title: {from: title}
personas:
  - id: nurse
    name: Nurse
    precedence: 2
    rules:
      - id: nurse-exact
        when: {fact: title, equals: Nurse, case_sensitive: true}
      - id: nurse-any-case
        when: {fact: title, equals: NURSE}
  - id: staff
    name: Staff
    precedence: 1
    default: true
""",
    )
    engine = Engine(load_rules([path]))
    assert engine.facts(employee({"title": "NuRsE"})) == ["NuRsE"]
    assert [engine.decide(employee({"title": t}))[0].rule for t in ("Nurse", "nurse", "x")] == [
        "nurse-exact",
        "nurse-any-case",
        "default",
    ]
