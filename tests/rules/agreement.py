"""The engine's generated code against explain's traced steps, worked out independently.

The generated ``decide`` and ``fact_values`` (codegen) and explain (trace_fact, trace_node)
run the same compiled fact steps and condition templates by two separate routes: straight
-line code with memos and shared attribute reads, and a slow step-by-step walk. Here the
traced fact values, the traced scope verdict and the first traced candidate in precedence
order (or the scenario's fallback) must equal what the generated code decided.
"""

from __future__ import annotations

from collections.abc import Iterator

from persona_sync.employee import Employee
from persona_sync.rules.conditions import compile_node, reads_folded, trace_node
from persona_sync.rules.engine import Decision, Engine
from persona_sync.rules.explain import ScenarioExplanation, explain
from persona_sync.rules.model import Node, RuleSet, Scenario, Test
from persona_sync.rules.orgchart import Position


def conditions(rule_set: RuleSet) -> Iterator[Node]:
    for persona in rule_set.personas.values():
        yield from (rule.condition for rule in persona.rules)
        yield from persona.unless
    if rule_set.scope.include is not None:
        yield rule_set.scope.include
    yield from rule_set.scope.exclude


def expected_decision(
    scenario: Scenario, explained: ScenarioExplanation, in_scope: bool
) -> Decision:
    """The decision explain's traces call for, worked out independently of the engine."""
    if not in_scope:
        return Decision(scenario.id, "out_of_scope", None, None)
    for persona in explained.personas:
        if persona.candidate:
            return Decision(scenario.id, "matched", persona.persona, persona.matched_rule)
    if scenario.unmatched == "default" and scenario.default is not None:
        return Decision(scenario.id, "default", scenario.default, "default")
    if scenario.unmatched == "clear":
        return Decision(scenario.id, "clear", None, None)
    return Decision(scenario.id, "leave", None, None)


def assert_agrees(engine: Engine, person: Employee, position: Position | None) -> None:
    rule_set = engine.rule_set
    names = engine.fact_names
    types = {name: fact.type for name, fact in rule_set.facts.items()}
    facts = engine.facts(person, position)
    explanation = explain(engine, person, position)

    values = {origin.name: origin.value for origin in explanation.facts}
    assert values == dict(zip(names, facts, strict=True))
    assert engine.fact_values(person, position) == values
    assert explanation.in_scope is engine.in_scope(facts)

    decisions = engine.decide(person, position)
    assert len(decisions) == len(rule_set.scenarios) == len(explanation.scenarios)
    for scenario, explained, decision in zip(
        rule_set.scenarios, explanation.scenarios, decisions, strict=True
    ):
        assert explained.scenario == scenario.id
        assert [p.persona for p in explained.personas] == list(scenario.order)
        assert explained.decision == decision
        assert expected_decision(scenario, explained, explanation.in_scope) == decision

    # Compile each condition against a facts row of our own (values, then folded copies):
    # the traced and the compiled evaluation must give the same answer.
    slot = {name: i for i, name in enumerate(names)}
    row = [*facts, *(v.casefold() if isinstance(v, str) else None for v in facts)]

    def slot_of(test: Test) -> int:
        index = slot[test.fact]
        return index + len(names) if reads_folded(test, types[test.fact]) else index

    for node in conditions(rule_set):
        assert trace_node(node, values, types).result is compile_node(node, slot_of)(row)
