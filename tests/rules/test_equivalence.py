"""explain is the traced twin of the engine: same facts, same scope, same decisions.

Random employees are run through the default catalog and through random small rule sets;
for each, explain's facts, scope verdict and first candidate (or fallback) must equal what
the engine's generated code decided (tests/rules/agreement.py), and trace_node must agree
with the compiled condition on every condition. Lint's implication check must be sound on
the same random conditions.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from persona_sync.employee import Employee
from persona_sync.rules.conditions import trace_node
from persona_sync.rules.engine import Engine
from persona_sync.rules.explain import explain
from persona_sync.rules.lint import implies
from persona_sync.rules.loader import load_rules
from persona_sync.rules.model import RuleSet
from persona_sync.rules.orgchart import Position
from tests.conftest import DEFAULT_RULES
from tests.rules.agreement import assert_agrees, conditions

SETTINGS = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

# --- employees ------------------------------------------------------------------------

TITLES = [
    "Chief Executive Officer",
    "CHIEF EXECUTIVE OFFICER",
    "Interim CFO",
    "Vice President, Marketing",
    "vice president, sales",
    "Senior Vice President",
    "President",
    "Trauma Surgeon",
    "Attending Physician",
    "Registered Nurse",
    "registered NURSE",
    "CNC Machine Operator",
    "Junior Planner",
    "Plant Director",
    "Cashier",
    "Greeter",
    "Account Executive",
    "Sales Operations Analyst",
    "Service Desk Technician",
    "Software Engineer",
    "software engineer",
    "Data Analyst",
    "Team Lead",
    "Head of Sales",
    "Sr. Developer",
    "Intern",
    "Planner",
    "",
    "   ",
]
DEPARTMENTS = [
    "Sales",
    "sales emea",
    "SALES",
    "Marketing",
    "Emergency Medicine",
    "Trauma",
    "IT Operations",
    "it",
    "Information Technology",
    "Stores",
    "Production",
    "Customer Service",
    "Field Service",
    "Finance",
    "Revenue Operations",
    "",
]
SITES = [
    "Munich HQ",
    "munich hq",
    "Plant Linz",
    "Store 114 Vienna",
    "Outlet Graz",
    "St. Mary Hospital",
    "Remote - Lyon",
    "home office",
    "Berlin Office",
    "Warehouse 3",
    "",
]
# Repeated entries weight the draw towards in-scope employees, where the rules matter.
EMPLOYEE_TYPES = [
    "employee",
    "employee",
    "Employee",
    "contractor",
    "Consultant",
    "intern",
    "service",
    "SYSTEM",
    "",
]
LEVELS = ["1", "2", "5", "6", "7", "9", "10", " 8.5 ", "L7", ""]
BOOLEANS = ["true", "TRUE", "false", "yes", "no", "1", "0", "maybe", ""]
CONTROL = ["512", "512", "512", "514", "66048", "66050", "disabled", ""]
IDS = [
    "jdoe",
    "asmith",
    "bjones",
    "ckim",
    "dlee",
    "emora",
    "fnagy",
    "gotto",
    "svc-backup",
    "SA_scan",
    "srv.print",
]

ATTRIBUTES = {
    "title": TITLES,
    "jobtitle": TITLES,
    "department": DEPARTMENTS,
    "departmentnumber": DEPARTMENTS,
    "employeetype": EMPLOYEE_TYPES,
    "physicaldeliveryofficename": SITES,
    "officelocation": SITES,
    "senioritylevel": LEVELS,
    "level": LEVELS,
    "customerfacing": BOOLEANS,
    "remote": BOOLEANS,
    "useraccountcontrol": CONTROL,
    "accountenabled": BOOLEANS,
}


@st.composite
def employees(draw: st.DrawFn, pools: dict[str, list[str]] = ATTRIBUTES) -> Employee:
    attributes = draw(
        st.fixed_dictionaries(
            {}, optional={name: st.sampled_from(pool) for name, pool in pools.items()}
        )
    )
    id = draw(st.sampled_from(IDS))
    ou = draw(st.sampled_from(["OU=Staff"] * 5 + ["OU=Service Accounts"]))
    return Employee(id, f"CN={id},{ou},DC=example,DC=com", attributes)


positions = st.none() | st.builds(
    Position, st.none() | st.integers(min_value=0, max_value=8), st.integers(0, 4)
)


# --- the property ---------------------------------------------------------------------


CATALOG = Engine(load_rules([DEFAULT_RULES]))


@SETTINGS
@given(person=employees(), position=positions)
def test_explain_agrees_with_engine_on_default_catalog(
    person: Employee, position: Position | None
) -> None:
    assert_agrees(CATALOG, person, position)


def test_default_catalog_conditions_are_all_checked() -> None:
    assert len(list(conditions(CATALOG.rule_set))) == 13


# --- every operator, each deciding a scenario of its own -----------------------------

LEAF_TEXT = [
    "Sales",
    "sales",
    "SALES",
    "Sales EMEA",
    "Vice President, Sales",
    "es",
    "Straße",
    "STRASSE",
    "strasse",
]
LEAF_PATTERNS = ["sales", "^sales$", "Sales", "^vice", "emea$", "ß", "strasse"]
LEAF_NUMBERS = [5, 7, 7.5]


def leaf_tests() -> Iterator[dict[str, Any]]:
    """One test per operator, operand and case-sensitivity, over text, number and boolean."""
    for case_sensitive in (False, True):
        flag = {"case_sensitive": True} if case_sensitive else {}
        for word in ("Sales", "sales emea", "straße", "es"):
            for op in ("equals", "starts_with", "ends_with", "contains"):
                yield {"fact": "title", op: word, **flag}
        for op in ("in", "not_in"):
            yield {"fact": "title", op: ["Sales", "Straße"], **flag}
            yield {"fact": "title", op: ["sales emea", "es"], **flag}
        for pattern in LEAF_PATTERNS:
            yield {"fact": "title", "matches": pattern, **flag}
    for number in LEAF_NUMBERS:
        for op in ("equals", "gt", "gte", "lt", "lte"):
            yield {"fact": "level", op: number}
    yield {"fact": "level", "between": [5, 7.5]}
    yield {"fact": "level", "in": [5, 7.5]}
    yield {"fact": "level", "not_in": [5, 7.5]}
    for flag_value in (True, False):
        yield {"fact": "remote", "is": flag_value}
        yield {"fact": "remote", "equals": flag_value}
        yield {"fact": "remote", "not_in": [flag_value]}
    for fact in ("title", "level", "remote"):
        for op in ("exists", "missing"):
            for flag_value in (True, False):
                yield {"fact": fact, op: flag_value}


LEAF_ATTRIBUTES = {
    "title": [*LEAF_TEXT, "", "   "],
    "level": ["5", "7", "7.0", " 7.5 ", "7.49", "8", "4.9", "L7", ""],
    "remote": ["true", "no", "1", "maybe", ""],
}


@pytest.fixture(scope="module")
def leaf_engine(workdir: Path) -> Engine:
    tests = list(leaf_tests())
    document = {
        "facts": {
            "title": {"from": "title"},
            "level": {"type": "number", "from": "level"},
            "remote": {"type": "boolean", "from": "remote"},
        },
        "personas": [
            {
                "id": f"t{i}",
                "name": f"T{i}",
                "precedence": i,
                "rules": [{"id": f"t{i}-rule", "when": test}],
            }
            for i, test in enumerate(tests)
        ],
        "scope": {"unmatched": "leave"},
        "scenarios": [{"id": f"s{i}", "order": [f"t{i}"]} for i in range(len(tests))],
    }
    return Engine(load_random(workdir / "leaf", document))


def test_leaf_engine_has_a_scenario_per_test(leaf_engine: Engine) -> None:
    assert len(leaf_engine.rule_set.scenarios) == len(list(leaf_tests())) == 90


@SETTINGS
@given(person=employees(LEAF_ATTRIBUTES))
def test_every_operator_agrees(leaf_engine: Engine, person: Employee) -> None:
    assert_agrees(leaf_engine, person, None)


# --- random rule sets -----------------------------------------------------------------

FACTS: dict[str, Any] = {
    "title": {"from": ["title", "jobTitle"]},
    "dept": {
        "sources": [
            {"from": "department", "map": {"sales": "Sales", "it": "IT", "stores": "Retail"}},
            {"from": "departmentNumber"},
        ],
    },
    "family": {
        "from": "title",
        "table": [
            {"match": r"\b(nurse|surgeon|physician)\b", "value": "clinical"},
            {"match": r"\b(engineer|developer|analyst)\b", "value": "engineering"},
            {"match": "sales|account", "value": "sales"},
        ],
        "default": "general",
    },
    "level": {
        "type": "number",
        "sources": [
            {"from": "level"},
            {"from": "title", "table": [{"match": "chief|president", "value": 10}]},
            {"org_chart": {"top": 10, "per_level": 2, "floor": 1, "manager_bonus": 1}},
        ],
    },
    "remote": {
        "type": "boolean",
        "sources": [
            {"from": "remote"},
            {
                "from": "physicalDeliveryOfficeName",
                "table": [{"match": "remote|home", "value": True}],
            },
        ],
    },
    "disabled": {"type": "boolean", "from": "userAccountControl", "flag": 2, "default": False},
    "kind": {"from": "employeeType"},
    # built-ins, constants and the org chart take other paths through the generated code
    "who": {"from": ["nickname", "@id"]},
    "where": {
        "from": "@dn",
        "table": [{"match": "ou=service", "value": "Sales"}],
        "default": "staff",
    },
    "region": {"value": "Sales EMEA"},
    "depth": {"type": "number", "from": "@org_depth"},
}
FACT_TYPES = {name: spec.get("type", "string") for name, spec in FACTS.items()}

WORDS = [
    "Sales",
    "sales",
    "SALES",
    "IT",
    "Retail",
    "Marketing",
    "Finance",
    "Nurse",
    "Vice President",
    "Engineer",
    "engineer",
    "clinical",
    "sales emea",
    "general",
    "contractor",
    "Ops",
    "e",
    "s",
]
PATTERNS = [
    "sales",
    "^sales",
    "sales$",
    "^vice",
    "president",
    r"\bit\b",
    "eng|dev",
    "^$",
    "Sales",
    "[A-Z]",
]
NUMBERS = [0, 1, 2, 5, 6, 7, 8.5, 9, 10]

# Attribute values close to the operands above, so that random tests often sit on a boundary.
TEXT = [*WORDS, "Sales EMEA", "it ops", "Vice President, Sales", "Senior Engineer", ""]
RANDOM_ATTRIBUTES = {
    "title": TEXT,
    "jobtitle": TEXT,
    "department": TEXT,
    "departmentnumber": TEXT,
    "employeetype": ["contractor", "employee", "Sales", "e", ""],
    "level": [*(f"{n:g}" for n in NUMBERS), " 7 ", "4", "11", "L7", ""],
    "remote": BOOLEANS,
    "physicaldeliveryofficename": ["Remote - Lyon", "home office", "Munich HQ", ""],
    "useraccountcontrol": CONTROL,
    "nickname": ["jdoe", "Sales", "e", "", "   "],
}


def string_tests(fact: str) -> st.SearchStrategy[dict[str, Any]]:
    flag = st.fixed_dictionaries({}, optional={"case_sensitive": st.booleans()})
    word = st.sampled_from(WORDS)
    operator = st.one_of(
        st.fixed_dictionaries({"equals": word}),
        st.fixed_dictionaries({"in": st.lists(word, min_size=1, max_size=3)}),
        st.fixed_dictionaries({"not_in": st.lists(word, min_size=1, max_size=3)}),
        st.fixed_dictionaries({"matches": st.sampled_from(PATTERNS)}),
        st.fixed_dictionaries({"starts_with": word}),
        st.fixed_dictionaries({"ends_with": word}),
        st.fixed_dictionaries({"contains": word}),
    )
    return st.builds(lambda op, cs: {"fact": fact, **op, **cs}, operator, flag)


def number_tests(fact: str) -> st.SearchStrategy[dict[str, Any]]:
    number = st.sampled_from(NUMBERS)
    pair = st.lists(number, min_size=2, max_size=2).map(sorted)
    operator = st.one_of(
        st.fixed_dictionaries({"equals": number}),
        st.fixed_dictionaries({"in": st.lists(number, min_size=1, max_size=3)}),
        st.fixed_dictionaries({"not_in": st.lists(number, min_size=1, max_size=3)}),
        *(st.fixed_dictionaries({op: number}) for op in ("gt", "gte", "lt", "lte")),
        st.fixed_dictionaries({"between": pair}),
    )
    return operator.map(lambda op: {"fact": fact, **op})


def boolean_tests(fact: str) -> st.SearchStrategy[dict[str, Any]]:
    operator = st.one_of(
        st.fixed_dictionaries({"is": st.booleans()}),
        st.fixed_dictionaries({"equals": st.booleans()}),
        st.fixed_dictionaries({"not_in": st.lists(st.booleans(), min_size=1, max_size=2)}),
    )
    return operator.map(lambda op: {"fact": fact, **op})


presence_tests = st.builds(
    lambda fact, op, value: {"fact": fact, op: value},
    st.sampled_from(sorted(FACTS)),
    st.sampled_from(["exists", "missing"]),
    st.booleans(),
)

fact_tests = st.one_of(
    *(string_tests(f) for f in ("title", "dept", "family", "kind", "who", "where", "region")),
    number_tests("level"),
    number_tests("depth"),
    boolean_tests("remote"),
    boolean_tests("disabled"),
    presence_tests,
)

condition_trees = st.recursive(
    fact_tests,
    lambda children: st.one_of(
        st.lists(children, min_size=1, max_size=3).map(lambda c: {"all": c}),
        st.lists(children, min_size=1, max_size=3).map(lambda c: {"any": c}),
        children.map(lambda c: {"not": c}),
    ),
    max_leaves=4,
)


@st.composite
def rule_sets(draw: st.DrawFn) -> dict[str, Any]:
    count = draw(st.integers(min_value=2, max_value=4))
    ids = [f"p{i}" for i in range(count)]
    precedences = draw(st.permutations(range(1, count + 1)))
    has_default = draw(st.booleans())
    personas = []
    for i, pid in enumerate(ids):
        rules = draw(st.lists(condition_trees, max_size=2))
        persona: dict[str, Any] = {
            "id": pid,
            "name": pid.upper(),
            "precedence": precedences[i],
            "rules": [{"id": f"{pid}-r{j}", "when": when} for j, when in enumerate(rules)],
            "unless": draw(st.lists(condition_trees, max_size=1)),
        }
        if has_default and i == count - 1:
            persona["default"] = True
        personas.append(persona)
    modes = ["default", "leave", "clear"] if has_default else ["leave", "clear"]
    scope: dict[str, Any] = {
        "exclude": draw(st.lists(condition_trees, max_size=1)),
        "unmatched": draw(st.sampled_from(modes)),
    }
    if draw(st.booleans()):
        scope["include"] = draw(condition_trees)
    scenarios = []
    for index in range(draw(st.integers(min_value=0, max_value=3))):
        scenario: dict[str, Any] = {"id": f"s{index}"}
        if draw(st.booleans()):
            order = draw(st.permutations(ids))
            scenario["order"] = order[: draw(st.integers(min_value=0, max_value=count))]
        default = draw(st.none() | st.sampled_from(ids))
        if default is not None:
            scenario["default"] = default
        unmatched = draw(st.none() | st.sampled_from(["default", "leave", "clear"]))
        if unmatched == "default" and default is None and not has_default:
            unmatched = "leave"
        if unmatched is not None:
            scenario["unmatched"] = unmatched
        scenarios.append(scenario)
    return {"facts": FACTS, "personas": personas, "scope": scope, "scenarios": scenarios}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("equivalence")


def load_random(folder: Path, document: dict[str, Any]) -> RuleSet:
    folder.mkdir(exist_ok=True)
    path = folder / "rules.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    return load_rules([path])


@settings(SETTINGS, max_examples=60)
@given(
    document=rule_sets(),
    people=st.lists(st.tuples(employees(RANDOM_ATTRIBUTES), positions), min_size=3, max_size=6),
)
def test_random_rule_sets(
    workdir: Path, document: dict[str, Any], people: list[tuple[Employee, Position | None]]
) -> None:
    """explain agrees with the engine; lint's implication check is sound.

    One test for both properties: loading a rule set costs more than checking it.
    Soundness: whenever lint says condition b implies condition a, no employee has b
    without a.
    """
    engine = Engine(load_random(workdir, document))
    nodes = list(conditions(engine.rule_set))
    pairs = [(b, a) for b in nodes for a in nodes if b is not a and implies(b, a, FACT_TYPES)]
    for person, position in people:
        assert_agrees(engine, person, position)
        values = {o.name: o.value for o in explain(engine, person, position).facts}
        for b, a in pairs:
            if trace_node(b, values, FACT_TYPES).result:
                assert trace_node(a, values, FACT_TYPES).result


# --- lint's implication check, many conditions at once --------------------------------

narrow_tests = st.one_of(
    string_tests("dept"),
    number_tests("level"),
    boolean_tests("remote"),
    presence_tests.filter(lambda t: t["fact"] in ("dept", "level")),
)
narrow_trees = st.recursive(
    narrow_tests,
    lambda children: st.one_of(
        st.lists(children, min_size=1, max_size=3).map(lambda c: {"all": c}),
        st.lists(children, min_size=1, max_size=2).map(lambda c: {"any": c}),
        children.map(lambda c: {"not": c}),
    ),
    max_leaves=3,
)
fact_values = st.fixed_dictionaries(
    {
        "dept": st.none() | st.sampled_from([*WORDS, "sales emea", "Sales", "it ops", "e s"]),
        "level": st.none() | st.sampled_from([*NUMBERS, 4.0, 9.5, 11.0, -1.0]),
        "remote": st.none() | st.booleans(),
    }
)


@settings(SETTINGS, max_examples=50)
@given(
    whens=st.lists(narrow_trees, min_size=6, max_size=12),
    samples=st.lists(fact_values, min_size=10, max_size=30),
)
def test_lint_implication_is_sound(
    workdir: Path, whens: list[dict[str, Any]], samples: list[dict[str, Any]]
) -> None:
    """If lint says b implies a, no values make b hold and a fail (ASCII values only)."""
    document = {
        "facts": {name: FACTS[name] for name in ("dept", "level", "remote")},
        "personas": [
            {
                "id": "p",
                "name": "P",
                "precedence": 1,
                "rules": [{"id": f"r{i}", "when": when} for i, when in enumerate(whens)],
            }
        ],
        "scope": {"unmatched": "leave"},
    }
    nodes = [rule.condition for rule in load_random(workdir, document).rules]
    pairs = [(b, a) for b in nodes for a in nodes if b is not a and implies(b, a, FACT_TYPES)]
    for values in samples:
        for b, a in pairs:
            if trace_node(b, values, FACT_TYPES).result:
                assert trace_node(a, values, FACT_TYPES).result, (b, a, values)
