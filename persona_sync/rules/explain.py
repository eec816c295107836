"""Why an employee got a persona: every fact with its origin, every rule with its result.

This is the slow, traced twin of :meth:`Engine.decide`: it runs the engine's compiled fact
steps (:func:`facts.trace_fact`) and the same condition templates
(:func:`conditions.trace_node`) one by one, recording each. Its verdicts must agree with
the engine's generated code (tests check it on random employees and rule sets).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from persona_sync.employee import Employee
from persona_sync.feeds import FeedCell
from persona_sync.rules.conditions import Trace, trace_node
from persona_sync.rules.engine import Decision, Engine
from persona_sync.rules.facts import FactOrigin, trace_fact
from persona_sync.rules.model import RuleSet, Scenario
from persona_sync.rules.orgchart import Position


@dataclass(frozen=True)
class RuleResult:
    rule: str
    trace: Trace


@dataclass(frozen=True)
class PersonaResult:
    persona: str
    precedence: int
    rules: tuple[RuleResult, ...]
    exclusions: tuple[Trace, ...]

    @property
    def matched_rule(self) -> str | None:
        return next((r.rule for r in self.rules if r.trace.result), None)

    @property
    def excluded(self) -> bool:
        return any(t.result for t in self.exclusions)

    @property
    def candidate(self) -> bool:
        return self.matched_rule is not None and not self.excluded


@dataclass(frozen=True)
class ScenarioExplanation:
    scenario: str
    decision: Decision
    personas: tuple[PersonaResult, ...]
    reason: str

    @property
    def candidates(self) -> tuple[str, ...]:
        return tuple(p.persona for p in self.personas if p.candidate)


@dataclass(frozen=True)
class Explanation:
    employee: Employee
    facts: tuple[FactOrigin, ...]
    in_scope: bool
    scope: tuple[tuple[str, Trace], ...]
    scenarios: tuple[ScenarioExplanation, ...]
    #: attribute -> the feed cell it was read from (persona_sync.feed_join)
    cells: Mapping[str, FeedCell] = field(default_factory=dict)


def explain(
    engine: Engine,
    employee: Employee,
    position: Position | None = None,
    cells: Mapping[str, FeedCell] | None = None,
) -> Explanation:
    """``employee`` with any feed columns joined; ``cells`` says where each came from
    (``feed hr, hr-export.csv:17, column grade``)."""
    rule_set = engine.rule_set
    places = {a: f"feed {c.feed}, {c}" for a, c in (cells or {}).items()}
    origins = tuple(trace_fact(f, employee, position, places) for f in engine.compiled_facts)
    values = {o.name: o.value for o in origins}
    types = {name: f.type for name, f in rule_set.facts.items()}
    scope_traces: list[tuple[str, Trace]] = []
    in_scope = True
    if rule_set.scope.include is not None:
        trace = trace_node(rule_set.scope.include, values, types)
        scope_traces.append(("include", trace))
        in_scope = trace.result
    for node in rule_set.scope.exclude:
        trace = trace_node(node, values, types)
        scope_traces.append(("exclude", trace))
        in_scope = in_scope and not trace.result
    decisions = engine.decide(employee, position)
    scenarios = tuple(
        _scenario(rule_set, scenario, decision, values, types, in_scope)
        for scenario, decision in zip(rule_set.scenarios, decisions, strict=True)
    )
    return Explanation(
        employee, origins, in_scope, tuple(scope_traces), scenarios, dict(cells or {})
    )


def _scenario(
    rule_set: RuleSet,
    scenario: Scenario,
    decision: Decision,
    values: dict[str, Any],
    types: Mapping[str, str],
    in_scope: bool,
) -> ScenarioExplanation:
    results = []
    for persona_id in scenario.order:
        persona = rule_set.personas[persona_id]
        rules = tuple(
            RuleResult(r.id, trace_node(r.condition, values, types)) for r in persona.rules
        )
        exclusions = tuple(trace_node(n, values, types) for n in persona.unless)
        results.append(PersonaResult(persona.id, persona.precedence, rules, exclusions))
    personas = tuple(results)
    return ScenarioExplanation(
        scenario.id, decision, personas, _reason(decision, personas, in_scope)
    )


def _reason(decision: Decision, personas: tuple[PersonaResult, ...], in_scope: bool) -> str:
    if not in_scope:
        return "out of scope: the scope excludes this entry, so nothing is written"
    candidates = [p for p in personas if p.candidate]
    excluded = [p.persona for p in personas if p.matched_rule and p.excluded]
    note = f"; excluded by 'unless': {', '.join(excluded)}" if excluded else ""
    if candidates:
        winner = candidates[0]
        if len(candidates) == 1:
            return f"'{winner.persona}' is the only candidate (rule {winner.matched_rule}){note}"
        listed = ", ".join(f"{p.persona} ({p.precedence})" for p in candidates)
        return (
            f"'{winner.persona}' wins by precedence among candidates {listed} "
            f"(rule {winner.matched_rule}){note}"
        )
    if decision.outcome == "default":
        return f"no persona matched: the default persona '{decision.persona}' applies{note}"
    if decision.outcome == "clear":
        return f"no persona matched: the attribute is cleared (unmatched: clear){note}"
    return f"no persona matched: the attribute is left as it is (unmatched: leave){note}"


def render_text(explanation: Explanation) -> str:
    e = explanation.employee
    where = f"  ({e.dn})" if e.dn != e.id else ""
    lines = [f"employee {e.id}{where}", "", "facts:"]
    width = max((len(o.name) for o in explanation.facts), default=0)
    for origin in explanation.facts:
        shown = _value(origin.value)
        raw = (
            f" from {origin.raw!r}" if origin.raw is not None and origin.raw != origin.value else ""
        )
        lines.append(f"  {origin.name:<{width}}  = {shown:<24} <- {origin.origin}{raw}")
    lines.append("")
    lines.append("scope: " + ("in scope" if explanation.in_scope else "OUT OF SCOPE"))
    for kind, trace in explanation.scope:
        lines.extend("  " + line for line in [f"{kind}:", *trace.lines(1)])
    for scenario in explanation.scenarios:
        lines.append("")
        lines.append(f"scenario {scenario.scenario}:")
        for persona in scenario.personas:
            state = (
                "CANDIDATE"
                if persona.candidate
                else "excluded"
                if persona.matched_rule
                else "no match"
            )
            lines.append(f"  persona {persona.persona} (precedence {persona.precedence}): {state}")
            for rule in persona.rules:
                lines.append(f"    rule {rule.rule}:")
                lines.extend("      " + line for line in rule.trace.lines())
            for index, trace in enumerate(persona.exclusions):
                lines.append(f"    unless[{index}]:")
                lines.extend("      " + line for line in trace.lines())
        d = scenario.decision
        result = (
            d.persona
            if d.persona
            else {"clear": "(clear)", "leave": "(leave as is)"}.get(
                d.outcome, "(nothing: out of scope)"
            )
        )
        lines.append(f"  => {result}: {scenario.reason}")
    return "\n".join(lines)


def _cell(cells: Mapping[str, FeedCell], attribute: str | None) -> dict[str, Any] | None:
    cell = cells.get(attribute) if attribute is not None else None
    return None if cell is None else cell.as_dict()


def _value(value: Any) -> str:
    if value is None:
        return "(missing)"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return repr(value) if isinstance(value, str) else str(value)


def as_dict(explanation: Explanation) -> dict[str, Any]:
    e = explanation.employee
    return {
        "employee": {"id": e.id, "dn": e.dn},
        "facts": [
            {
                "fact": o.name,
                "value": o.value,
                "origin": o.origin,
                "raw": o.raw,
                "feed": _cell(explanation.cells, o.attribute),
            }
            for o in explanation.facts
        ],
        "in_scope": explanation.in_scope,
        "scope": [{"kind": k, **t.as_dict()} for k, t in explanation.scope],
        "scenarios": [
            {
                "scenario": s.scenario,
                "outcome": s.decision.outcome,
                "persona": s.decision.persona,
                "rule": s.decision.rule,
                "candidates": list(s.candidates),
                "reason": s.reason,
                "personas": [
                    {
                        "persona": p.persona,
                        "precedence": p.precedence,
                        "candidate": p.candidate,
                        "excluded": p.excluded,
                        "rules": [{"rule": r.rule, **r.trace.as_dict()} for r in p.rules],
                        "unless": [t.as_dict() for t in p.exclusions],
                    }
                    for p in s.personas
                ],
            }
            for s in explanation.scenarios
        ],
    }
