"""Who has which persona, grouped by site, country and department: the report's population.

A plan only holds the employees it changes, and each change only the facts its rule
read, so it cannot say how *all* employees are distributed over sites or departments.
The report therefore takes the population as plain rows, one per in-scope employee:
the persona each scenario gives them (as the rules assign it, like the plan summary)
and the value of each grouping dimension. :func:`population_rows` derives those rows
from directory entries with the compiled engine; tests and other callers can build
them by hand.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from persona_sync.employee import Employee
from persona_sync.errors import ConfigError
from persona_sync.plan import EMPTY
from persona_sync.rules.engine import Decision, Engine
from persona_sync.rules.orgchart import Position


class Positions(Protocol):
    """Anything that knows an employee's org position (an OrgChart, the snapshot's)."""

    def position(self, employee: Employee, /) -> Position | None: ...


#: Labels the plan summary uses for in-scope employees without a persona to write.
LEFT = "(unmatched, left as is)"
CLEARED = "(cleared)"
#: Group label for employees whose entry has no value for a dimension.
NO_VALUE = "(none)"


@dataclass(frozen=True, slots=True)
class Dimension:
    """A way to group employees: the first of ``attributes`` (lower case) with a value."""

    id: str
    label: str
    attributes: tuple[str, ...]

    def value(self, employee: Employee) -> str | None:
        for attribute in self.attributes:
            found = employee.attributes.get(attribute)
            if found:
                return found.strip() or None
        return None


#: AD/OpenLDAP names first, then Entra ID names.
DEFAULT_DIMENSIONS: tuple[Dimension, ...] = (
    Dimension("site", "Site", ("physicaldeliveryofficename", "officelocation")),
    Dimension("country", "Country", ("co", "c", "country", "usagelocation")),
    Dimension("department", "Department", ("department", "departmentnumber")),
)


def parse_dimension(text: str) -> Dimension:
    """``NAME=ATTR[,ATTR...]`` from the command line, e.g. ``region=st,state``."""
    name, sep, attributes = text.partition("=")
    names = tuple(a.strip().lower() for a in attributes.split(",") if a.strip())
    if not sep or not name.strip() or not names:
        raise ConfigError(
            f"--group-by {text!r}: expected NAME=ATTRIBUTE[,ATTRIBUTE...], "
            "e.g. site=physicalDeliveryOfficeName,officeLocation"
        )
    key = name.strip()
    return Dimension(key.lower(), key[:1].upper() + key[1:], names)


def dimension_attributes(dimensions: Sequence[Dimension]) -> list[str]:
    """Every attribute the dimensions read, in order, without repeats."""
    return list(dict.fromkeys(a for d in dimensions for a in d.attributes))


@dataclass(frozen=True, slots=True)
class PopulationRow:
    """One in-scope employee: persona and deciding rule per scenario, group per dimension."""

    employee: str
    personas: Mapping[str, str]
    rules: Mapping[str, str]
    groups: Mapping[str, str | None]


def population_rows(
    engine: Engine,
    employees: Iterable[Employee],
    dimensions: Sequence[Dimension],
    chart: Positions | None = None,
) -> list[PopulationRow]:
    """Decide every employee and keep the in-scope ones with their groups.

    Pass the positions the plan used (the snapshot's, or :func:`persona_sync.plan.org_chart`,
    which also knows managers outside the search base) so org-chart facts decide as in the
    plan; without them, the engine builds the chart from ``employees`` when the rules need
    it.
    """
    decided: Iterable[tuple[Employee, tuple[Decision, ...]]]
    if chart is not None:
        decided = ((e, engine.decide(e, chart.position(e))) for e in employees)
    else:
        decided = engine.decide_all(employees)
    rows: list[PopulationRow] = []
    for employee, decisions in decided:
        if decisions and decisions[0].outcome == "out_of_scope":
            continue
        personas: dict[str, str] = {}
        rules: dict[str, str] = {}
        for decision in decisions:
            if decision.outcome == "leave":
                personas[decision.scenario] = LEFT
            else:
                personas[decision.scenario] = decision.persona or CLEARED
            rules[decision.scenario] = decision.rule or "-"
        groups = {d.id: d.value(employee) for d in dimensions}
        rows.append(PopulationRow(employee.id, personas, rules, groups))
    return rows


def attribute_counts(
    employees: Iterable[Employee], targets: Mapping[str, str]
) -> dict[str, Counter[str]]:
    """Scenario -> how many entries hold each value in its target attribute now."""
    counts: dict[str, Counter[str]] = {s: Counter() for s in targets}
    for employee in employees:
        for scenario, attribute in targets.items():
            counts[scenario][employee.attributes.get(attribute.lower()) or EMPTY] += 1
    return counts


@dataclass(frozen=True, slots=True)
class GroupCounts:
    """Employees per persona within one group (one site, one department, ...)."""

    name: str
    counts: Mapping[str, int]
    total: int


@dataclass(frozen=True, slots=True)
class GroupTable:
    """One dimension: the largest groups, the rest merged into ``other``."""

    dimension: Dimension
    personas: tuple[str, ...]
    groups: tuple[GroupCounts, ...]
    other: GroupCounts | None
    group_count: int


@dataclass(frozen=True, slots=True)
class Distribution:
    """Employees per persona for one scenario, overall and per dimension."""

    scenario: str
    counts: tuple[tuple[str, int], ...]  # largest first
    total: int
    tables: tuple[GroupTable, ...]
    source: str

    def share(self, count: int) -> float:
        return 100.0 * count / self.total if self.total else 0.0


def _ordered(counts: Mapping[str, int]) -> tuple[tuple[str, int], ...]:
    return tuple(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def distribution_from_rows(
    rows: Sequence[PopulationRow],
    scenario: str,
    dimensions: Sequence[Dimension],
    max_groups: int = 25,
) -> Distribution:
    """Count personas overall and per group; groups beyond ``max_groups`` go to 'other'."""
    overall: Counter[str] = Counter()
    per_dimension: dict[str, dict[str, Counter[str]]] = {d.id: {} for d in dimensions}
    tallies = [(d.id, per_dimension[d.id]) for d in dimensions]
    for row in rows:
        persona = row.personas.get(scenario)
        if persona is None:
            continue
        overall[persona] += 1
        for key, by_group in tallies:
            name = row.groups.get(key) or NO_VALUE
            counter = by_group.get(name)
            if counter is None:
                counter = by_group[name] = Counter()
            counter[persona] += 1
    counts = _ordered(overall)
    personas = tuple(name for name, _ in counts)
    tables = []
    for dimension in dimensions:
        groups = [
            GroupCounts(name, dict(c), sum(c.values()))
            for name, c in per_dimension[dimension.id].items()
        ]
        groups.sort(key=lambda g: (-g.total, g.name.casefold(), g.name))
        shown, rest = groups[:max_groups], groups[max_groups:]
        other = None
        if rest:
            merged: Counter[str] = Counter()
            for group in rest:
                merged.update(group.counts)
            other = GroupCounts(f"{len(rest)} more", dict(merged), sum(merged.values()))
        tables.append(GroupTable(dimension, personas, tuple(shown), other, len(groups)))
    return Distribution(scenario, counts, sum(overall.values()), tuple(tables), "directory")


def distribution_from_summary(summary: Mapping[str, object], scenario: str) -> Distribution:
    """The plan summary's persona counts: overall only, no groups."""
    scenarios = summary.get("scenarios")
    data = scenarios.get(scenario, {}) if isinstance(scenarios, dict) else {}
    personas = data.get("personas", {}) if isinstance(data, dict) else {}
    counts = _ordered({str(k): int(v) for k, v in personas.items()})
    return Distribution(scenario, counts, sum(v for _, v in counts), (), "plan summary")
