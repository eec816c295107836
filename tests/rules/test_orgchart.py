"""The org chart: depth and direct reports, link matching, broken and cyclic chains."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from persona_sync.employee import Employee
from persona_sync.rules.engine import Decision, Engine
from persona_sync.rules.loader import load_rules
from persona_sync.rules.orgchart import OrgChart, Position, build_org_chart, normalize_dn

BASE = "OU=Staff,DC=example,DC=com"
Write = Callable[[str, str], Path]


def person(name: str, manager: str | None = None, *, dn: str | None = None) -> Employee:
    attributes = {"manager": manager} if manager is not None else {}
    return Employee(name, dn or f"CN={name},{BASE}", attributes)


def dn(name: str) -> str:
    return f"CN={name},{BASE}"


def positions(chart: OrgChart) -> dict[str, tuple[int | None, int]]:
    return {key: (p.depth, p.direct_reports) for key, p in chart.positions.items()}


def test_depth_and_direct_reports_on_a_tree() -> None:
    people = [
        person("e1", dn("m1")),
        person("ceo"),
        person("vp1", dn("ceo")),
        person("e2", dn("m1")),
        person("m1", dn("vp1")),
        person("vp2", dn("ceo")),
        person("e3", dn("vp2")),
    ]
    chart = build_org_chart(people)
    assert chart.problems == []
    assert positions(chart) == {
        dn("e1"): (3, 0),
        dn("ceo"): (0, 2),
        dn("vp1"): (1, 1),
        dn("e2"): (3, 0),
        dn("m1"): (2, 2),
        dn("vp2"): (1, 1),
        dn("e3"): (2, 0),
    }
    assert chart.position(people[4]) == Position(2, 2)
    assert chart.position(person("stranger")) is None


def test_person_with_neither_manager_nor_reports_has_no_depth() -> None:
    # A directory without manager data must not make everyone "the top of the chart".
    people = [person("alone"), person("blank", ""), person("boss"), person("worker", dn("boss"))]
    chart = build_org_chart(people)
    assert chart.problems == []
    assert positions(chart) == {
        dn("alone"): (None, 0),
        dn("blank"): (None, 0),
        dn("boss"): (0, 1),
        dn("worker"): (1, 0),
    }


def test_two_separate_trees_and_empty_manager() -> None:
    people = [person("a"), person("b", ""), person("c", dn("a")), person("d", dn("b"))]
    chart = build_org_chart(people)
    assert chart.problems == []
    assert positions(chart) == {
        dn("a"): (0, 1),
        dn("b"): (0, 1),
        dn("c"): (1, 0),
        dn("d"): (1, 0),
    }


@pytest.mark.parametrize(
    "link",
    [
        "cn=boss,ou=staff,dc=example,dc=com",
        "CN=Boss, OU=Staff, DC=Example, DC=Com",
        " cn = boss ,ou=STAFF,dc=example , dc=com ",
    ],
)
def test_manager_dn_matched_ignoring_case_and_spacing(link: str) -> None:
    chart = build_org_chart([person("boss"), person("worker", link)])
    assert chart.problems == []
    assert positions(chart) == {dn("boss"): (0, 1), dn("worker"): (1, 0)}


def test_manager_dn_with_escaped_comma() -> None:
    smith = r"CN=Smith\, John,OU=Staff,DC=example,DC=com"
    other = r"CN=Smith,OU=Staff,DC=example,DC=com"
    people = [
        person("jsmith", dn=smith),
        person("smith", dn=other),
        person("a", r"cn=smith\, john, ou=staff, dc=example, dc=com"),
        person("b", r"CN=SMITH\, JOHN,OU=Staff,DC=example,DC=com"),
        person("c", "cn=smith,ou=staff,dc=example,dc=com"),
    ]
    chart = build_org_chart(people)
    assert chart.problems == []
    assert chart.positions[smith] == Position(0, 2)
    assert chart.positions[other] == Position(0, 1)
    assert chart.positions[dn("a")] == Position(1, 0)
    assert chart.positions[dn("c")] == Position(1, 0)


@pytest.mark.parametrize(
    ("raw", "normalized"),
    [
        ("CN=Doe,OU=Staff,DC=Example", "cn=doe,ou=staff,dc=example"),
        ("cn = Doe , ou = Staff", "cn=doe,ou=staff"),
        (r"CN=Smith\, John,OU=Staff", r"cn=smith\, john,ou=staff"),
        (r"CN=Smith\,John,OU=Staff", r"cn=smith\,john,ou=staff"),
        ("CN=Doe+UID=jd,OU=Staff", "cn=doe+uid=jd,ou=staff"),
        # caseIgnoreMatch drops spaces at the ends, escaped or not (RFC 4518).
        (r"CN=trailing\ ,OU=x", r"cn=trailing,ou=x"),
        (r"CN=x\=y,OU=z", r"cn=x\=y,ou=z"),
    ],
)
def test_normalize_dn(raw: str, normalized: str) -> None:
    assert normalize_dn(raw) == normalized


def test_manager_given_as_id() -> None:
    # Entra ID: the "DN" is the object id and the manager attribute holds an id too.
    people = [
        Employee("jdoe@example.com", "0a1b-ceo", {}),
        Employee("asmith@example.com", "0a1b-vp", {"manager": "0A1B-CEO"}),
        Employee("bjones@example.com", "0a1b-e1", {"manager": "ASmith@Example.com"}),
    ]
    chart = build_org_chart(people)
    assert chart.problems == []
    assert positions(chart) == {"0a1b-ceo": (0, 1), "0a1b-vp": (1, 1), "0a1b-e1": (2, 0)}


def test_manager_given_as_account_name_in_ldap() -> None:
    people = [person("boss"), person("worker", "BOSS")]
    chart = build_org_chart(people)
    assert chart.problems == []
    assert positions(chart) == {dn("boss"): (0, 1), dn("worker"): (1, 0)}


def test_cycle_is_reported_and_has_no_depth() -> None:
    people = [
        person("a", dn("b")),
        person("b", dn("c")),
        person("c", dn("a")),
        person("below", dn("b")),
        person("top"),
    ]
    chart = build_org_chart(people)
    assert chart.problems == ["manager cycle: a -> b -> c -> a"]
    assert positions(chart) == {
        dn("a"): (None, 1),
        dn("b"): (None, 2),
        dn("c"): (None, 1),
        dn("below"): (None, 0),
        dn("top"): (None, 0),
    }


def test_cycle_reported_once_whoever_is_resolved_first() -> None:
    people = [person("below", dn("b")), person("a", dn("b")), person("b", dn("a"))]
    chart = build_org_chart(people)
    assert chart.problems == ["manager cycle: b -> a -> b"]
    assert positions(chart) == {dn("below"): (None, 0), dn("a"): (None, 1), dn("b"): (None, 2)}


def test_own_manager_is_the_top_not_a_cycle() -> None:
    # HR systems often record the chief executive as their own manager.
    chart = build_org_chart([person("a", dn("a")), person("b", dn("a"))])
    assert chart.problems == []
    assert positions(chart) == {dn("a"): (0, 1), dn("b"): (1, 0)}
    alone = build_org_chart([person("a", dn("a"))])
    assert alone.positions[dn("a")].depth is None  # heads no chain


def test_missing_manager_is_reported_and_breaks_the_chain_below() -> None:
    ghost = "CN=ghost,OU=Gone,DC=example,DC=com"
    people = [
        person("x2", dn("x1")),
        person("x1", ghost),
        person("x3", dn("x2")),
        person("ok"),
        person("ok2", dn("ok")),
    ]
    chart = build_org_chart(people)
    assert chart.problems == [f"manager of x1 not found: {ghost}"]
    assert positions(chart) == {
        dn("x2"): (None, 1),
        dn("x1"): (None, 1),
        dn("x3"): (None, 0),
        dn("ok"): (0, 1),
        dn("ok2"): (1, 0),
    }


def test_problems_name_employees_by_id_not_by_object_id() -> None:
    # Entra ID: the "DN" is an object id nobody recognises; the id is the UPN.
    people = [
        Employee("ceo@example.com", "0000-ceo", {"manager": "0000-gone"}),
        Employee("a@example.com", "0000-a", {"manager": "0000-b"}),
        Employee("b@example.com", "0000-b", {"manager": "0000-a"}),
    ]
    chart = build_org_chart(people)
    assert chart.problems == [
        "manager of ceo@example.com not found: 0000-gone",
        "manager cycle: a@example.com -> b@example.com -> a@example.com",
    ]


def test_one_problem_per_broken_chain_so_they_can_be_counted() -> None:
    people = [person(f"e{i}", f"CN=gone{i},{BASE}") for i in range(30)]
    people += [person("boss"), *(person(f"w{i}", dn("boss")) for i in range(5))]
    chart = build_org_chart(people)
    assert chart.problems == [f"manager of e{i} not found: CN=gone{i},{BASE}" for i in range(30)]


def test_manager_dn_as_slapd_spells_it() -> None:
    # slapd returns the entry as cn=Smith\2C Jr.; the manager value keeps "\," and its case.
    boss = r"cn=Smith\2C Jr. 78,ou=People,dc=example,dc=com"
    people = [
        person("boss", dn=boss),
        person("a", r"CN=SMITH\, JR. 78,OU=people,DC=EXAMPLE,DC=COM"),
        person("b", r"cn=Smith\, Jr. 78, ou=People, dc=example, dc=com"),
    ]
    chart = build_org_chart(people)
    assert chart.problems == []
    assert positions(chart) == {boss: (0, 2), dn("a"): (1, 0), dn("b"): (1, 0)}


RULES = """\
facts:
  seniority:
    type: number
    sources:
      - from: seniorityLevel
      - org_chart: {top: 10, per_level: 2, floor: 1, manager_bonus: 1}
personas:
  - id: exec
    name: Exec
    precedence: 3
    rules:
      - id: exec-senior
        when: {fact: seniority, gte: 9}
  - id: lead
    name: Lead
    precedence: 2
    rules:
      - id: lead-senior
        when: {fact: seniority, gte: 7}
  - id: unknown
    name: Unknown
    precedence: 1
    rules:
      - id: unknown-seniority
        when: {fact: seniority, missing: true}
  - id: staff
    name: Staff
    precedence: 0
    default: true
"""


def test_decide_all_builds_the_org_chart(write: Write) -> None:
    engine = Engine(load_rules([write("rules.yaml", RULES)]))
    assert engine.rule_set.uses_org_chart is True
    people = [
        person("ceo"),  # depth 0, 1 report: 10 + 1
        person("vp", dn("ceo")),  # depth 1, 1 report: 8 + 1
        person("mgr", dn("vp")),  # depth 2, 1 report: 6 + 1
        person("dev", dn("mgr")),  # depth 3: 4
        person("hr", "CN=nobody,DC=example"),  # broken chain: no seniority
        person("loner"),  # no manager, no reports: no seniority
        Employee("graded", dn("graded"), {"manager": dn("mgr"), "senioritylevel": "9"}),
    ]
    decided = {p.id: d for p, d in engine.decide_all(iter(people))}
    assert decided == {
        "ceo": (Decision("persona", "matched", "exec", "exec-senior"),),
        "vp": (Decision("persona", "matched", "exec", "exec-senior"),),
        "mgr": (Decision("persona", "matched", "lead", "lead-senior"),),
        "dev": (Decision("persona", "default", "staff", "default"),),
        "hr": (Decision("persona", "matched", "unknown", "unknown-seniority"),),
        "loner": (Decision("persona", "matched", "unknown", "unknown-seniority"),),
        "graded": (Decision("persona", "matched", "exec", "exec-senior"),),
    }
    chart = build_org_chart(people)
    assert chart.problems == ["manager of hr not found: CN=nobody,DC=example"]
    assert chart.positions[dn("mgr")] == Position(2, 2)


def test_decide_without_position_has_no_org_chart_value(write: Write) -> None:
    engine = Engine(load_rules([write("rules.yaml", RULES)]))
    assert engine.decide(person("ceo")) == (
        Decision("persona", "matched", "unknown", "unknown-seniority"),
    )


def _reference_chart(people: list[Employee]) -> OrgChart:
    """The org chart as it was computed before ChartBuilder (DN-keyed dicts): the oracle
    the builder must agree with, problems and their order included."""
    key_of: dict[str, str] = {}
    name_of: dict[str, str] = {}
    for p in people:
        name_of[p.dn] = p.id
        key_of[normalize_dn(p.dn)] = p.dn
        key_of.setdefault(p.id.casefold(), p.dn)
    manager_of: dict[str, str | None] = {}
    missing: dict[str, str] = {}
    reports: dict[str, int] = {}
    for p in people:
        link = p.get("manager")
        if not link or link.isspace():
            manager_of[p.dn] = None
            continue
        target = key_of.get(normalize_dn(link)) or key_of.get(link.casefold())
        if target == p.dn:
            manager_of[p.dn] = None
            continue
        if target is None:
            missing[p.dn] = link
            continue
        manager_of[p.dn] = target
        reports[target] = reports.get(target, 0) + 1
    chart = OrgChart()
    depth: dict[str, int | None] = {}
    for p in people:
        chain: list[str] = []
        current = p.dn
        base: int | None
        while True:
            if current in depth:
                base = depth[current]
                break
            if current in chain:
                cycle = [*chain[chain.index(current) :], current]
                chart.problems.append("manager cycle: " + " -> ".join(name_of[d] for d in cycle))
                base = None
                break
            if current in missing:
                chart.problems.append(
                    f"manager of {name_of[current]} not found: {missing[current]}"
                )
                depth[current] = base = None
                break
            chain.append(current)
            parent = manager_of.get(current)
            if parent is None:
                base = 0 if reports.get(current, 0) > 0 else None
                depth[current] = base
                chain.pop()
                break
            current = parent
        for d in reversed(chain):
            base = None if base is None else base + 1
            depth[d] = base
    for p in people:
        chart.positions[p.dn] = Position(depth.get(p.dn), reports.get(p.dn, 0))
    return chart


_NAMES = ["ann", "bob", "cy", "dee", "ed", "flo", "gus", "hal"]


def _spelling(name: str, style: int) -> str:
    return [dn(name), dn(name).lower(), f"cn = {name.upper()} , ou=staff,dc=example,dc=com"][style]


@settings(derandomize=True, max_examples=400, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(_NAMES),  # whose DN
            st.sampled_from(_NAMES),  # id (an id may repeat, or be another's name)
            st.one_of(
                st.none(),
                st.just(""),
                st.just("  "),
                st.tuples(st.sampled_from([*_NAMES, "ghost"]), st.integers(0, 2)).map(
                    lambda t: _spelling(*t)
                ),
                st.sampled_from(_NAMES).map(str.upper),  # a link by id
            ),
        ),
        max_size=12,
    )
)
def test_the_builder_agrees_with_the_reference(
    rows: list[tuple[str, str, str | None]],
) -> None:
    people = [
        Employee(id_, dn(who), {"manager": link} if link is not None else {})
        for who, id_, link in rows
    ]
    expected = _reference_chart(people)
    chart = build_org_chart(people)
    assert chart.problems == expected.problems
    assert positions(chart) == positions(expected)
