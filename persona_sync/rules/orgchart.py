"""The org chart: how far below the top of the manager chain each employee sits.

Built once over every entry read (in scope or not, since a disabled executive still heads
a chain), from the ``manager`` attribute, which holds the manager's DN (AD, OpenLDAP) or
object id (Entra ID). Broken and cyclic chains are reported, never fatal: an employee
whose chain cannot be followed to a top has no depth, and facts fall back to their next
source.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass, field

from persona_sync.dn import normalize_dn
from persona_sync.employee import Employee

__all__ = [
    "MANAGER_ATTRIBUTE",
    "ChartBuilder",
    "OrgChart",
    "Position",
    "build_org_chart",
    "normalize_dn",
]

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
    """Compute depth and direct reports for every employee; collect broken chains.

    Employees are told apart by DN: one DN given twice is one employee (the last given
    names it; its reports count once per entry naming it)."""
    people = list(employees)
    builder = ChartBuilder()
    node_of: dict[str, int] = {}
    for person in people:
        node = node_of.get(person.dn)
        key, link = normalize_dn(person.dn), person.get(MANAGER_ATTRIBUTE)
        if node is None:
            node_of[person.dn] = builder.add(person.id, key, link)
        else:
            builder.again(node, person.id, key, link)
    depths, reports, problems = builder.build([node_of[p.dn] for p in people])
    chart = OrgChart(problems=problems)
    for person in people:
        node = node_of[person.dn]
        chart.positions[person.dn] = Position(depths[node], reports[node])
    return chart


_TOP = -1  # no manager: the top of a chain (or of none)
_NOT_FOUND = -2  # a manager link that names nobody
_UNSEEN, _ON_CHAIN, _DONE = 0, 1, 2  # a node's state while the depths are worked out


class ChartBuilder:
    """The org chart over numbered entries (nodes), for callers that hold their entries
    as rows rather than as :class:`Employee` values (the snapshot: 1,000,000 Employee
    values cost more memory than the chart itself).

    Add every node with :meth:`add` (its id, its normalized DN, its manager link), an
    entry given again with :meth:`again`, then :meth:`build`. A link is matched as
    :func:`build_org_chart` always matched it: as a normalized DN (the last node with that
    DN), else as an id ignoring case (the first node with that id).
    """

    def __init__(self) -> None:
        self._keys: dict[str, int] = {}  # normalized DN -> node (the last added)
        self._names: list[str] = []  # node -> id
        self._links: list[str | None] = []  # node -> its manager link as first given
        self._relinks: list[tuple[int, str | None]] = []  # links of entries given again
        self._ids: dict[str, int] | None = None  # folded id -> node, made when needed
        self._found: dict[str, int | None] = {}  # link -> node, per distinct link

    def __len__(self) -> int:
        return len(self._names)

    def add(self, id_: str, key: str, link: str | None) -> int:
        """A new node: its id (problems name it so), normalized DN and manager link as
        read (DN or id; None or blank: none); returns its number."""
        node = len(self._names)
        self._names.append(id_)
        self._links.append(link)
        self._keys[key] = node
        if self._ids is not None:
            self._ids.setdefault(id_.casefold(), node)
        if self._found:
            self._found = {}  # a link that named nobody may name this node
        return node

    def again(self, node: int, id_: str, key: str, link: str | None) -> None:
        """The node's entry given again: it takes this id, DN key and link too."""
        ids = self._id_index()  # of the ids so far, in the order given
        self._names[node] = id_
        self._keys[key] = node
        ids.setdefault(id_.casefold(), node)
        self._relinks.append((node, link))
        if self._found:
            self._found = {}

    def node_of(self, link: str) -> int | None:
        """The node a manager link names, or None."""
        found = self._found
        if link in found:
            return found[link]
        key = normalize_dn(link)
        node = self._keys.get(key)
        if node is None:
            node = self._id_index().get(key)
            if node is None:
                folded = link.casefold()
                node = self._keys.get(folded)
                if node is None:
                    node = self._id_index().get(folded)
        found[link] = node
        return node

    def _id_index(self) -> dict[str, int]:
        """Folded id -> the first node with it; made on first use (most links are DNs)."""
        if self._ids is None:
            ids: dict[str, int] = {}
            for node, name in enumerate(self._names):
                ids.setdefault(name.casefold(), node)
            self._ids = ids
        return self._ids

    def unresolved(self) -> list[str]:
        """The distinct manager links (sorted) that name no node."""
        links = set(self._links)  # in C: most of the 100,000 links name a few managers
        links.update(link for _, link in self._relinks)
        links.discard(None)
        links.discard("")
        return sorted(link for link in links if link is not None and self.node_of(link) is None)

    def build(
        self, order: Iterable[int] | None = None
    ) -> tuple[list[int | None], list[int], list[str]]:
        """(depth per node, direct reports per node, problems); the chains are followed
        from each node in ``order`` (default: as added), so problems come in that order."""
        count = len(self._names)
        manager = [_TOP] * count
        missing: dict[int, str] = {}
        reports = [0] * count
        found, node_of = self._found, self.node_of  # node_of fills found
        # Links of different nodes are independent; a node's own come in the order given.
        for node, link in itertools.chain(enumerate(self._links), self._relinks):
            if not link or link.isspace():
                manager[node] = _TOP
                continue
            target = found[link] if link in found else node_of(link)
            if target == node:  # one's own manager: the top of a chain, not a report
                manager[node] = _TOP
                continue
            if target is None:
                missing[node] = link
                continue
            manager[node] = target
            reports[target] += 1
        depth: list[int | None] = [None] * count
        problems: list[str] = []
        names = self._names
        # Each chain is followed from its start up to a node already done, the nodes on
        # it marked so that a cycle is seen; then their depths are set top down. One loop
        # here, not a call per start: most chains end after a step, at a done manager.
        state = bytearray(count)  # _UNSEEN, _ON_CHAIN (the one being followed), _DONE
        chain: list[int] = []
        for start in range(count) if order is None else order:
            if state[start] == _DONE:
                continue
            current = start
            base: int | None
            while True:
                seen = state[current]
                if seen == _DONE:
                    base = depth[current]
                    break
                if seen == _ON_CHAIN:
                    cycle = chain[chain.index(current) :]
                    problems.append(
                        "manager cycle: " + " -> ".join(names[node] for node in [*cycle, current])
                    )
                    base = None
                    break
                if current in missing:
                    problems.append(f"manager of {names[current]} not found: {missing[current]}")
                    state[current] = _DONE
                    base = None
                    break
                parent = manager[current]
                if parent == _TOP:
                    # The top of a chain heads someone; a person with neither a manager
                    # nor reports is in no chain at all (a directory without manager
                    # data), so their depth is unknown rather than "the top".
                    base = 0 if reports[current] > 0 else None
                    depth[current] = base
                    state[current] = _DONE
                    break
                state[current] = _ON_CHAIN
                chain.append(current)
                current = parent
            for node in reversed(chain):
                base = None if base is None else base + 1
                depth[node] = base
                state[node] = _DONE
            chain.clear()
        return depth, reports, problems
