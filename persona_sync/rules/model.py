"""The rule set after loading: plain frozen objects, checked and cross-referenced.

Produced by :func:`persona_sync.rules.loader.load_rules`; consumed by the engine, lint,
explain and the renderers. Plain frozen dataclasses, with one exception: each persona's
``service`` is the validated pydantic ``ServiceHints`` of its spec, passed through as is to
the catalog and the renderers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from persona_sync.errors import Location
from persona_sync.rules.patterns import RulePattern
from persona_sync.rules.spec import ServiceHints

FactType = Literal["string", "number", "boolean"]
Value = str | float | bool
Unmatched = Literal["default", "leave", "clear"]

STRING_OPERATORS = frozenset({"matches", "starts_with", "ends_with", "contains"})
NUMBER_OPERATORS = frozenset({"gt", "gte", "lt", "lte", "between"})


@dataclass(frozen=True, slots=True)
class Test:
    """``fact <operator> operand``; string operands are case-folded unless case_sensitive."""

    fact: str
    operator: str
    operand: object
    case_sensitive: bool
    location: Location
    pattern: RulePattern | None = None
    written: object = None  # the operand as the author wrote it, before case-folding

    def describe(self) -> str:
        operand = self.operand
        if self.operator in ("exists", "missing", "is"):
            return f"{self.fact} {self.operator} {str(operand).lower()}"
        if self.operator == "matches":
            return f"{self.fact} matches /{operand}/"
        if isinstance(operand, frozenset | tuple | list):
            items = operand if not isinstance(operand, frozenset) else sorted(operand, key=str)
            operand = "[" + ", ".join(_show(v) for v in items) + "]"
        else:
            operand = _show(operand)
        return f"{self.fact} {self.operator} {operand}"


def _show(value: object) -> str:
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).lower() if isinstance(value, bool) else str(value)


@dataclass(frozen=True, slots=True)
class AllOf:
    children: tuple[Node, ...]
    location: Location


@dataclass(frozen=True, slots=True)
class AnyOf:
    children: tuple[Node, ...]
    location: Location


@dataclass(frozen=True, slots=True)
class NotOf:
    child: Node
    location: Location


Node = Test | AllOf | AnyOf | NotOf


@dataclass(frozen=True, slots=True)
class Rule:
    id: str
    persona: str
    description: str
    condition: Node
    location: Location


@dataclass(frozen=True, slots=True)
class Persona:
    id: str
    name: str
    description: str
    precedence: int
    default: bool
    service: ServiceHints
    rules: tuple[Rule, ...]
    unless: tuple[Node, ...]
    location: Location


@dataclass(frozen=True, slots=True)
class OrgChartSource:
    top: float
    per_level: float
    floor: float
    manager_bonus: float
    manager_min_reports: int


@dataclass(frozen=True, slots=True)
class Source:
    """One way to get a fact's value; the first source that yields one wins."""

    attributes: tuple[str, ...] = ()
    constant: Value | None = None
    org_chart: OrgChartSource | None = None
    flag: int | None = None
    capture: RulePattern | None = None
    mapping: tuple[tuple[str, Value], ...] | None = None
    table: tuple[tuple[RulePattern, Value], ...] | None = None

    def describe(self, attribute: str | None = None, place: str | None = None) -> str:
        """'attribute title via table'; ``attribute``: the one that gave the value;
        ``place``: where that value was read, said instead of the attribute's name (a
        feed's file, line and column)."""
        if self.org_chart is not None:
            return "org chart"
        if not self.attributes:
            return "constant"
        text = place or "attribute " + (attribute or " or ".join(self.attributes))
        steps = []
        if self.flag is not None:
            steps.append(f"flag {self.flag}")
        if self.capture is not None:
            steps.append(f"capture /{self.capture.pattern}/")
        if self.mapping is not None:
            steps.append("map")
        if self.table is not None:
            steps.append("table")
        return text + (" via " + ", ".join(steps) if steps else "")


@dataclass(frozen=True, slots=True)
class Fact:
    name: str
    type: FactType
    description: str
    sources: tuple[Source, ...]
    default: Value | None
    location: Location

    @property
    def attributes(self) -> tuple[str, ...]:
        """Raw directory attributes this fact reads (lower case), built-ins excluded."""
        return tuple(a for s in self.sources for a in s.attributes if not a.startswith("@"))

    @property
    def uses_org_chart(self) -> bool:
        return any(
            s.org_chart is not None or any(a in ORG_ATTRIBUTES for a in s.attributes)
            for s in self.sources
        )


ORG_ATTRIBUTES = frozenset({"@org_depth", "@direct_reports"})
BUILTIN_ATTRIBUTES = frozenset({"@dn", "@id"}) | ORG_ATTRIBUTES


@dataclass(frozen=True, slots=True)
class Scope:
    include: Node | None
    exclude: tuple[Node, ...]
    unmatched: Unmatched


@dataclass(frozen=True, slots=True)
class Scenario:
    """One output: personas in precedence order (highest first) and what unmatched get."""

    id: str
    description: str
    order: tuple[str, ...]
    default: str | None
    unmatched: Unmatched


@dataclass(frozen=True)
class RuleSet:
    personas: dict[str, Persona]
    facts: dict[str, Fact]
    scope: Scope
    scenarios: tuple[Scenario, ...]
    files: tuple[str, ...]
    checksum: str
    fact_usage: dict[str, tuple[Location, ...]] = field(default_factory=dict)
    #: raw attribute (lower case) -> where a fact's ``from:`` names it
    attribute_usage: dict[str, tuple[Location, ...]] = field(default_factory=dict)

    @property
    def rules(self) -> tuple[Rule, ...]:
        return tuple(r for p in self.personas.values() for r in p.rules)

    def scenario(self, scenario_id: str) -> Scenario:
        for scenario in self.scenarios:
            if scenario.id == scenario_id:
                return scenario
        raise KeyError(scenario_id)

    @property
    def attributes(self) -> tuple[str, ...]:
        """Every raw attribute the facts read, lower case, in a stable order."""
        seen: dict[str, None] = {}
        for fact in self.facts.values():
            for attr in fact.attributes:
                seen.setdefault(attr, None)
        return tuple(seen)

    @property
    def uses_org_chart(self) -> bool:
        return any(f.uses_org_chart for f in self.facts.values())
