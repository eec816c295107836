"""Warnings about rule sets that are valid but probably not what the author meant.

- a persona no employee can get (no rules, not in any scenario, or every rule shadowed);
- a rule shadowed by a higher-precedence rule whose condition always holds when its does;
- a fact that is mapped but never tested;
- more than ten personas (service desks cannot route that many).

Shadowing is decided by a sound but incomplete implication check: a warning is only given
when it is certain; some shadowed rules written in roundabout ways go unreported. One
known gap: text compared case-insensitively is sampled case-folded, so a directory value
with a character that folds to ASCII (``ß`` -> ``ss``) could still escape a regex that the
sample matched.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, cast

from persona_sync.errors import Location
from persona_sync.rules.conditions import compile_node, reads_folded
from persona_sync.rules.model import AllOf, AnyOf, Node, NotOf, Persona, Rule, RuleSet, Test

MAX_PERSONAS = 10


@dataclass(frozen=True, order=True)
class LintWarning:
    location: Location
    code: str
    text: str

    def __str__(self) -> str:
        return f"{self.location}: warning: {self.text} [{self.code}]"


def lint(rule_set: RuleSet) -> list[LintWarning]:
    warnings: list[LintWarning] = []
    shadowed = dict(_shadowed_rules(rule_set))
    for rule_id, (rule, by, by_persona) in shadowed.items():
        warnings.append(
            LintWarning(
                rule.location,
                "shadowed-rule",
                f"rule '{rule_id}' can never decide: whenever it holds, rule '{by.id}' of "
                f"persona '{by_persona.id}' (precedence {by_persona.precedence}, {by.location}) "
                "holds too",
            )
        )
    in_any_scenario = {pid for s in rule_set.scenarios for pid in s.order}
    scenario_defaults = {s.default for s in rule_set.scenarios}
    for persona in rule_set.personas.values():
        if persona.default or persona.id in scenario_defaults:
            continue
        reason = None
        if not persona.rules:
            reason = "it has no rules and is not the default"
        elif persona.id not in in_any_scenario:
            reason = "no scenario lists it"
        elif all(r.id in shadowed for r in persona.rules):
            reason = "every one of its rules is shadowed"
        if reason:
            warnings.append(
                LintWarning(
                    persona.location,
                    "unreachable-persona",
                    f"persona '{persona.id}' can never be given: {reason}",
                )
            )
    for name, fact in rule_set.facts.items():
        if name not in rule_set.fact_usage:
            warnings.append(
                LintWarning(
                    fact.location,
                    "unused-fact",
                    f"fact '{name}' is mapped but no rule, exclusion or scope tests it",
                )
            )
    if len(rule_set.personas) > MAX_PERSONAS:
        eleventh = list(rule_set.personas.values())[MAX_PERSONAS]
        warnings.append(
            LintWarning(
                eleventh.location,
                "too-many-personas",
                f"{len(rule_set.personas)} personas: more than {MAX_PERSONAS} are hard for a "
                "service desk to route and for people to remember",
            )
        )
    return sorted(warnings)


def _shadowed_rules(rule_set: RuleSet) -> Iterator[tuple[str, tuple[Rule, Rule, Persona]]]:
    """Rules that lose, in every scenario that lists their persona, to a surer rule."""
    types = {name: fact.type for name, fact in rule_set.facts.items()}
    blockers: dict[str, tuple[Rule, Rule, Persona]] = {}
    free: set[str] = set()  # rules that can decide in at least one scenario
    for scenario in rule_set.scenarios:
        for position, persona_id in enumerate(scenario.order):
            persona = rule_set.personas[persona_id]
            for index, rule in enumerate(persona.rules):
                # Earlier rules of the same persona decide first.
                blocker = _blocker(rule, persona, persona.rules[:index], types)
                if blocker is None:
                    for higher_id in scenario.order[:position]:
                        higher = rule_set.personas[higher_id]
                        if higher.unless:
                            continue  # its exclusions may let this rule through
                        blocker = _blocker(rule, higher, higher.rules, types)
                        if blocker is not None:
                            break
                if blocker is None:
                    free.add(rule.id)
                else:
                    blockers.setdefault(rule.id, (rule, blocker[0], blocker[1]))
    for rule_id, found in blockers.items():
        if rule_id not in free:
            yield rule_id, found


def _blocker(
    rule: Rule, persona: Persona, candidates: tuple[Rule, ...], types: Mapping[str, str]
) -> tuple[Rule, Persona] | None:
    for other in candidates:
        if implies(rule.condition, other.condition, types):
            return other, persona
    return None


def implies(b: Node, a: Node, types: Mapping[str, str]) -> bool:
    """True only when b holding guarantees a holds (sound, not complete)."""
    if b == a:
        return True
    if isinstance(a, AllOf):
        return all(implies(b, child, types) for child in a.children)
    if isinstance(b, AnyOf):
        return all(implies(child, a, types) for child in b.children)
    if isinstance(a, AnyOf) and any(implies(b, child, types) for child in a.children):
        return True
    if isinstance(b, AllOf):
        return any(implies(child, a, types) for child in b.children)
    if isinstance(a, Test) and isinstance(b, Test):
        return _test_implies(b, a, types.get(a.fact, "string"))
    if isinstance(a, NotOf) and isinstance(b, NotOf):
        return implies(a.child, b.child, types)
    return False


def _test_implies(b: Test, a: Test, fact_type: str) -> bool:
    if a.fact != b.fact:
        return False
    if (
        a.operator == "exists"
        and a.operand is True
        or a.operator == "missing"
        and a.operand is False
    ):
        return (
            b.operator not in ("not_in", "missing", "exists")
            or (b.operator == "exists" and b.operand is True)
            or (b.operator == "missing" and b.operand is False)
        )
    samples = _finite_values(b)
    if samples is not None:
        if b.case_sensitive and reads_folded(a, fact_type):
            samples = [s.casefold() if isinstance(s, str) else s for s in samples]
        elif a.case_sensitive and not b.case_sensitive and fact_type == "string":
            return False
        if a.operator == "matches" and fact_type == "string" and not b.case_sensitive:
            written = b.written if isinstance(b.written, list) else [b.written]
            if not all(isinstance(w, str) and w.isascii() for w in written):
                # The sample is case-folded ('Straße' -> 'strasse') but the regex sees the
                # raw value: only for ASCII text do the two agree under IGNORECASE.
                return False
        check = compile_node(a, lambda _t: 0)
        return bool(samples) and all(check([s]) for s in samples)
    interval_b = _interval(b)
    interval_a = _interval(a)
    if interval_b is not None and interval_a is not None:
        (lo_b, lo_b_open), (hi_b, hi_b_open) = interval_b
        (lo_a, lo_a_open), (hi_a, hi_a_open) = interval_a
        low_ok = lo_b > lo_a or (lo_b == lo_a and (lo_b_open or not lo_a_open))
        high_ok = hi_b < hi_a or (hi_b == hi_a and (hi_b_open or not hi_a_open))
        return low_ok and high_ok
    return False


def _finite_values(test: Test) -> list[Any] | None:
    if test.operator == "equals":
        return [test.operand]
    if test.operator == "in":
        return sorted(cast(frozenset[Any], test.operand), key=str)
    if test.operator == "is":
        return [test.operand]
    return None


_INF = float("inf")


def _interval(test: Test) -> tuple[tuple[float, bool], tuple[float, bool]] | None:
    v: Any = test.operand
    if test.operator == "gt":
        return (v, True), (_INF, True)
    if test.operator == "gte":
        return (v, False), (_INF, True)
    if test.operator == "lt":
        return (-_INF, True), (v, True)
    if test.operator == "lte":
        return (-_INF, True), (v, False)
    if test.operator == "between":
        return (v[0], False), (v[1], False)
    return None
