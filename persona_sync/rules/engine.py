"""The persona engine: a compiled rule set that decides each employee's persona(s).

Built once from a :class:`RuleSet`: the facts compiled by :mod:`persona_sync.rules.facts`,
emitted with the conditions as straight-line Python by :mod:`persona_sync.rules.codegen`.
:meth:`Engine.decide` is the hot path; :mod:`persona_sync.rules.explain` runs the same
fact steps and condition templates slowly, tracing every step.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from persona_sync.employee import Employee
from persona_sync.rules.codegen import ScenarioTable, compile_decide, compile_fact_values
from persona_sync.rules.conditions import (
    Check,
    compile_node,
    reads_folded,
    walk_tests,
)
from persona_sync.rules.facts import CompiledFact, compile_fact
from persona_sync.rules.model import RuleSet, Scenario, Test
from persona_sync.rules.orgchart import Position, build_org_chart

__all__ = ["Decide", "Decision", "Engine", "Outcome", "walk_tests"]

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


class Decide(Protocol):
    def __call__(
        self, employee: Employee, position: Position | None = None, /
    ) -> tuple[Decision, ...]: ...


class Engine:
    """Compiled rule set.

    It keeps memos of what it derived from raw attribute values (bounded; derivation is
    pure, so a memo never changes an answer): a decision depends only on the employee and
    position given, never on who came before. Safe to share between threads.
    """

    decide: Decide
    """One decision per scenario, in the rule set's scenario order: ``decide(employee,
    position=None)``. The generated function itself, with no wrapper: the hot path."""

    def __init__(self, rule_set: RuleSet) -> None:
        self.rule_set = rule_set
        self.fact_names = tuple(rule_set.facts)
        self.compiled_facts: tuple[CompiledFact, ...] = tuple(
            compile_fact(fact) for fact in rule_set.facts.values()
        )
        out_of_scope = tuple(Decision(s.id, "out_of_scope", None, None) for s in rule_set.scenarios)
        self.decide = compile_decide(
            rule_set,
            self.compiled_facts,
            [self._table(s) for s in rule_set.scenarios],
            out_of_scope,
        )
        self._fact_values = compile_fact_values(self.compiled_facts)
        self._scope = self._compile_scope()

    def _table(self, scenario: Scenario) -> ScenarioTable:
        """The scenario's prebuilt decisions, persona by persona in precedence order."""
        entries = tuple(
            (
                persona,
                tuple(
                    (rule.condition, Decision(scenario.id, "matched", persona.id, rule.id))
                    for rule in persona.rules
                ),
            )
            for persona in (self.rule_set.personas[p] for p in scenario.order)
        )
        if scenario.unmatched == "default" and scenario.default is not None:
            fallback = Decision(scenario.id, "default", scenario.default, "default")
        elif scenario.unmatched == "clear":
            fallback = Decision(scenario.id, "clear", None, None)
        else:
            fallback = Decision(scenario.id, "leave", None, None)
        return entries, fallback

    def _compile_scope(self) -> tuple[Check | None, tuple[Check, ...]]:
        """Scope checks over a row of fact values followed by their case-folded copies."""
        types = {name: fact.type for name, fact in self.rule_set.facts.items()}
        slot = {name: i for i, name in enumerate(self.fact_names)}

        def slot_of(test: Test) -> int:
            folded = reads_folded(test, types[test.fact])
            return slot[test.fact] + (len(slot) if folded else 0)

        scope = self.rule_set.scope
        include = compile_node(scope.include, slot_of) if scope.include is not None else None
        return include, tuple(compile_node(node, slot_of) for node in scope.exclude)

    @property
    def attributes(self) -> tuple[str, ...]:
        return self.rule_set.attributes

    def facts(self, employee: Employee, position: Position | None = None) -> list[Any]:
        """Every fact's value, in the rule set's order (generated code)."""
        return self._fact_values(employee, position)

    def fact_values(self, employee: Employee, position: Position | None = None) -> dict[str, Any]:
        """Every fact's value by name (generated code; the same values as ``facts``)."""
        return dict(zip(self.fact_names, self._fact_values(employee, position), strict=True))

    def in_scope(self, facts: list[Any]) -> bool:
        """Whether the scope takes an employee with these fact values (from ``facts``)."""
        row = [*facts, *(v.casefold() if isinstance(v, str) else v for v in facts)]
        include, exclude = self._scope
        if include is not None and not include(row):
            return False
        return not any(check(row) for check in exclude)

    def decide_all(
        self, employees: Iterable[Employee]
    ) -> Iterator[tuple[Employee, tuple[Decision, ...]]]:
        """Decide for many employees; builds the org chart first when a fact needs it."""
        decide = self.decide
        if self.rule_set.uses_org_chart:
            people = list(employees)
            chart = build_org_chart(people)
            position = chart.positions.get
            for person in people:
                yield person, decide(person, position(person.dn))
        else:
            for person in employees:
                yield person, decide(person, None)
