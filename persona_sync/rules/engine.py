"""The persona engine: a compiled rule set that decides each employee's persona(s).

Built once from a :class:`RuleSet`; :meth:`Engine.decide` is the hot path (no pydantic,
no dict walking: a facts list, then closures). :mod:`persona_sync.rules.explain` gives the
slow, fully traced version of the same decision.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

from persona_sync.employee import Employee
from persona_sync.rules.codegen import compile_decide, compile_fact_values
from persona_sync.rules.conditions import Check, compile_node, reads_folded
from persona_sync.rules.facts import compile_fact
from persona_sync.rules.model import AllOf, AnyOf, Node, NotOf, RuleSet, Scenario, Test
from persona_sync.rules.orgchart import OrgChart, Position, build_org_chart

Outcome = Literal["matched", "default", "leave", "clear", "out_of_scope"]


@dataclass(frozen=True, slots=True)
class Decision:
    """What one scenario decided for one employee.

    ``persona`` is the persona to write (None: write nothing or clear, per ``outcome``);
    ``rule`` is the rule id that decided, ``"default"`` or None.
    """

    scenario: str
    outcome: Outcome
    persona: str | None
    rule: str | None


class Engine:
    """Compiled rule set. Thread-compatible: holds no per-employee state."""

    def __init__(self, rule_set: RuleSet) -> None:
        self.rule_set = rule_set
        self.fact_names = tuple(rule_set.facts)
        types = {name: fact.type for name, fact in rule_set.facts.items()}
        tests = list(_all_tests(rule_set))
        folded = sorted(
            {t.fact for t in tests if t.fact in types and reads_folded(t, types[t.fact])}
        )
        slot = {name: i for i, name in enumerate(self.fact_names)}
        folded_slot = {name: len(self.fact_names) + i for i, name in enumerate(folded)}
        self._folded = tuple(slot[name] for name in folded)

        def slot_of(test: Test) -> int:
            if test.fact in folded_slot and reads_folded(test, types[test.fact]):
                return folded_slot[test.fact]
            return slot[test.fact]

        self._derive = tuple(compile_fact(rule_set.facts[name]) for name in self.fact_names)
        scope = rule_set.scope
        self._include: Check | None = (
            compile_node(scope.include, slot_of) if scope.include else None
        )
        self._exclude = tuple(compile_node(n, slot_of) for n in scope.exclude)
        # Per scenario: the closure decider (reference) and the prebuilt decisions the
        # generated code returns.
        compiled = [self._compile_scenario(s, slot_of) for s in rule_set.scenarios]
        self._scenarios = tuple(decide for decide, _table in compiled)
        tables = [table for _decide, table in compiled]
        self._out_of_scope = tuple(
            Decision(s.id, "out_of_scope", None, None) for s in rule_set.scenarios
        )
        self._decide = compile_decide(rule_set, tables, self._out_of_scope)
        self._fact_values = compile_fact_values(rule_set)

    def _compile_scenario(self, scenario: Scenario, slot_of: Any) -> tuple[Any, tuple[Any, ...]]:
        entries = []
        generated = []
        for persona_id in scenario.order:
            persona = self.rule_set.personas[persona_id]
            rules = tuple(
                (
                    compile_node(rule.condition, slot_of),
                    Decision(scenario.id, "matched", persona.id, rule.id),
                )
                for rule in persona.rules
            )
            unless = tuple(compile_node(n, slot_of) for n in persona.unless)
            entries.append((rules, _any_of(unless)))
            generated.append(
                (
                    persona,
                    tuple(
                        (rule, decision)
                        for rule, (_check, decision) in zip(persona.rules, rules, strict=True)
                    ),
                )
            )
        if scenario.unmatched == "default" and scenario.default is not None:
            fallback = Decision(scenario.id, "default", scenario.default, "default")
        elif scenario.unmatched == "clear":
            fallback = Decision(scenario.id, "clear", None, None)
        else:
            fallback = Decision(scenario.id, "leave", None, None)
        table_for_codegen = (tuple(generated), fallback)
        table = tuple(entries)

        def decide(f: list[Any]) -> Decision:
            for rules, unless in table:
                for check, decision in rules:
                    if check(f):
                        if unless is None or not unless(f):
                            return decision
                        break
            return fallback

        return decide, table_for_codegen

    @property
    def attributes(self) -> tuple[str, ...]:
        return self.rule_set.attributes

    def facts(self, employee: Employee, position: Position | None = None) -> list[Any]:
        """The facts list the compiled conditions read (values, then folded copies)."""
        values = [derive(employee, position) for derive in self._derive]
        for i in self._folded:
            v = values[i]
            values.append(v.casefold() if v is not None else None)
        return values

    def fact_values(self, employee: Employee, position: Position | None = None) -> dict[str, Any]:
        """Every fact's value by name (generated code; same values as ``facts``)."""
        return dict(zip(self.fact_names, self._fact_values(employee, position), strict=True))

    def in_scope(self, facts: list[Any]) -> bool:
        if self._include is not None and not self._include(facts):
            return False
        return not any(check(facts) for check in self._exclude)

    def decide(self, employee: Employee, position: Position | None = None) -> tuple[Decision, ...]:
        """One decision per scenario, in the rule set's scenario order (generated code)."""
        return self._decide(employee, position)

    def decide_reference(
        self, employee: Employee, position: Position | None = None
    ) -> tuple[Decision, ...]:
        """The same decision through the closures: slower, kept to check the generated code."""
        f = self.facts(employee, position)
        if not self.in_scope(f):
            return self._out_of_scope
        return tuple(decide(f) for decide in self._scenarios)

    def decide_all(
        self, employees: Iterable[Employee]
    ) -> Iterator[tuple[Employee, tuple[Decision, ...]]]:
        """Decide for many employees; builds the org chart first when a fact needs it."""
        if self.rule_set.uses_org_chart:
            people = list(employees)
            chart = build_org_chart(people)
            for person in people:
                yield person, self.decide(person, chart.position(person))
        else:
            for person in employees:
                yield person, self.decide(person)

    def org_chart(self, employees: Iterable[Employee]) -> OrgChart | None:
        return build_org_chart(employees) if self.rule_set.uses_org_chart else None


def _any_of(checks: tuple[Check, ...]) -> Check | None:
    if not checks:
        return None
    if len(checks) == 1:
        return checks[0]
    return lambda f: any(c(f) for c in checks)


def _all_tests(rule_set: RuleSet) -> Iterator[Test]:
    roots: list[Node] = []
    for persona in rule_set.personas.values():
        roots.extend(r.condition for r in persona.rules)
        roots.extend(persona.unless)
    if rule_set.scope.include is not None:
        roots.append(rule_set.scope.include)
    roots.extend(rule_set.scope.exclude)
    for root in roots:
        yield from walk_tests(root)


def walk_tests(node: Node) -> Iterator[Test]:
    if isinstance(node, Test):
        yield node
    elif isinstance(node, NotOf):
        yield from walk_tests(node.child)
    elif isinstance(node, AllOf | AnyOf):
        for child in node.children:
            yield from walk_tests(child)
