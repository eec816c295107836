"""The org chart: how far below the top of the manager chain each employee sits.

Built once over every entry read (in scope or not, since a disabled executive still heads
a chain), from the ``manager`` attribute, which holds the manager's DN (AD, OpenLDAP) or
object id (Entra ID). Broken and cyclic chains are reported, never fatal: an employee
whose chain cannot be followed to a top has no depth, and facts fall back to their next
source.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from persona_sync.dn import normalize_dn
from persona_sync.employee import Employee

__all__ = ["MANAGER_ATTRIBUTE", "OrgChart", "Position", "build_org_chart", "normalize_dn"]

MANAGER_ATTRIBUTE = "manager"


@dataclass(frozen=True, slots=True)
class Position:
    depth: int | None
    direct_reports: int


@dataclass
class OrgChart:
    """Each employee's position, keyed by DN, and the chains that could not be followed.

    ``problems`` holds one line per problem (a manager not found, a cycle), in the order
    the employees were given, naming employees by their id (sAMAccountName, uid, UPN),
    never by DN or object id; ``len(problems)`` is how many there are.
    """

    positions: dict[str, Position] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def position(self, employee: Employee) -> Position | None:
        return self.positions.get(employee.dn)


def build_org_chart(employees: Iterable[Employee]) -> OrgChart:
    """Compute depth and direct reports for every employee; collect broken chains."""
    people = list(employees)
    key_of: dict[str, str] = {}
    name_of: dict[str, str] = {}
    for person in people:
        name_of[person.dn] = person.id
        key_of[normalize_dn(person.dn)] = person.dn
        key_of.setdefault(person.id.casefold(), person.dn)
    manager_of: dict[str, str | None] = {}
    missing: dict[str, str] = {}
    reports: dict[str, int] = {}
    for person in people:
        link = person.get(MANAGER_ATTRIBUTE)
        if not link or link.isspace():
            manager_of[person.dn] = None
            continue
        target = key_of.get(normalize_dn(link)) or key_of.get(link.casefold())
        if target == person.dn:  # one's own manager: the top of a chain, not a report
            manager_of[person.dn] = None
            continue
        if target is None:
            missing[person.dn] = link
            continue
        manager_of[person.dn] = target
        reports[target] = reports.get(target, 0) + 1
    chart = OrgChart()
    depth: dict[str, int | None] = {}
    for person in people:
        _resolve(person.dn, manager_of, reports, missing, depth, chart, name_of)
    for person in people:
        chart.positions[person.dn] = Position(depth.get(person.dn), reports.get(person.dn, 0))
    return chart


def _resolve(
    start: str,
    manager_of: dict[str, str | None],
    reports: dict[str, int],
    missing: dict[str, str],
    depth: dict[str, int | None],
    chart: OrgChart,
    name_of: dict[str, str],
) -> None:
    chain: list[str] = []
    on_chain: set[str] = set()
    current: str = start
    base: int | None
    while True:
        if current in depth:
            base = depth[current]
            break
        if current in on_chain:
            cycle = chain[chain.index(current) :]
            names = [name_of[dn] for dn in [*cycle, current]]
            chart.problems.append("manager cycle: " + " -> ".join(names))
            base = None
            break
        if current in missing:
            chart.problems.append(f"manager of {name_of[current]} not found: {missing[current]}")
            depth[current] = None
            base = None
            break
        chain.append(current)
        on_chain.add(current)
        parent = manager_of.get(current)
        if parent is None:
            # The top of a chain heads someone; a person with neither a manager nor
            # reports is in no chain at all (a directory without manager data), so their
            # depth is unknown rather than "the top".
            base = 0 if reports.get(current, 0) > 0 else None
            depth[current] = base
            chain.pop()
            break
        current = parent
    for dn in reversed(chain):
        base = None if base is None else base + 1
        depth[dn] = base
