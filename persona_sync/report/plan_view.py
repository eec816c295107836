"""What a plan report shows, computed once for the HTML and Markdown renderers.

Counts come from the plan itself (its changes and summary) and, when given, from the
population rows (see :mod:`persona_sync.report.population`), which add the distribution
by site, country and department and how many employees each rule decides overall.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from persona_sync.plan import EMPTY, Plan, PlannedChange
from persona_sync.report.population import (
    CLEARED,
    DEFAULT_DIMENSIONS,
    Dimension,
    Distribution,
    PopulationRow,
    distribution_from_rows,
    distribution_from_summary,
)


@dataclass(frozen=True, slots=True)
class TransitionMatrix:
    """Old value -> new value counts for one scenario (rows old, columns new)."""

    scenario: str
    olds: tuple[str, ...]
    news: tuple[str, ...]
    counts: Mapping[tuple[str, str], int]
    total: int

    @property
    def peak(self) -> int:
        return max(self.counts.values(), default=0)


def transition_matrices(
    pairs: Iterable[tuple[str, str | None, str | None]],
) -> tuple[TransitionMatrix, ...]:
    """Matrices from (scenario, old, new) triples; rows and columns by volume."""
    per: dict[str, Counter[tuple[str, str]]] = {}
    for scenario, old, new in pairs:
        per.setdefault(scenario, Counter())[(old or EMPTY, new or EMPTY)] += 1
    matrices = []
    for scenario in sorted(per):
        counts = per[scenario]
        olds: Counter[str] = Counter()
        news: Counter[str] = Counter()
        for (old, new), n in counts.items():
            olds[old] += n
            news[new] += n
        matrices.append(
            TransitionMatrix(
                scenario,
                tuple(k for k, _ in sorted(olds.items(), key=lambda kv: (-kv[1], kv[0]))),
                tuple(k for k, _ in sorted(news.items(), key=lambda kv: (-kv[1], kv[0]))),
                dict(counts),
                sum(counts.values()),
            )
        )
    return tuple(matrices)


@dataclass(frozen=True, slots=True)
class RuleUsage:
    """How often a rule decides: over the population (if known) and among the changes."""

    scenario: str
    rule: str
    persona: str
    employees: int | None
    changes: int


@dataclass(frozen=True)
class PlanReport:
    plan: Plan
    title: str
    distributions: tuple[Distribution, ...]
    matrices: tuple[TransitionMatrix, ...]
    rule_usage: tuple[RuleUsage, ...]
    dimensions: tuple[Dimension, ...]
    has_population: bool
    notes: tuple[str, ...]

    @property
    def scenarios(self) -> tuple[str, ...]:
        return tuple(d.scenario for d in self.distributions)

    @property
    def personas(self) -> list[str]:
        """Every persona or value named anywhere in the report, for stable colours."""
        names = {name for d in self.distributions for name, _ in d.counts}
        for matrix in self.matrices:
            names.update(matrix.olds)
            names.update(matrix.news)
        return sorted(names)


def build_plan_report(
    plan: Plan,
    population: Sequence[PopulationRow] | None = None,
    dimensions: Sequence[Dimension] = DEFAULT_DIMENSIONS,
    notes: Sequence[str] = (),
    title: str = "persona-sync plan report",
    max_groups: int = 25,
) -> PlanReport:
    """Everything a plan report shows; ``population`` adds groups and rule coverage."""
    scenarios = list(plan.summary.get("scenarios", {})) or sorted(
        {c.scenario for c in plan.changes}
    )
    if population is not None:
        distributions = tuple(
            distribution_from_rows(population, s, dimensions, max_groups) for s in scenarios
        )
    else:
        distributions = tuple(distribution_from_summary(plan.summary, s) for s in scenarios)
    matrices = transition_matrices((c.scenario, c.old, c.new) for c in plan.changes)
    return PlanReport(
        plan,
        title,
        distributions,
        matrices,
        _rule_usage(plan.changes, population),
        tuple(dimensions),
        population is not None,
        tuple(notes),
    )


def _rule_usage(
    changes: Sequence[PlannedChange], population: Sequence[PopulationRow] | None
) -> tuple[RuleUsage, ...]:
    changed: Counter[tuple[str, str, str]] = Counter(
        (c.scenario, c.rule or "-", c.persona or CLEARED) for c in changes
    )
    decided: Counter[tuple[str, str, str]] = Counter()
    if population is not None:
        for row in population:
            for scenario, rule in row.rules.items():
                decided[(scenario, rule, row.personas.get(scenario, EMPTY))] += 1
    keys = set(changed) | set(decided)
    usage = [
        RuleUsage(
            s, r, p, decided[(s, r, p)] if population is not None else None, changed[(s, r, p)]
        )
        for s, r, p in keys
    ]
    usage.sort(key=lambda u: (u.scenario, -(u.employees or 0), -u.changes, u.rule, u.persona))
    return tuple(usage)


def fact_items(
    facts: Mapping[str, Any], memo: dict[tuple[str, type, Any], str] | None = None
) -> tuple[str, ...]:
    """The facts a rule read as ``name=value`` texts: ``role.family=sales``.

    Pass one ``memo`` dict for many calls: fact values repeat a lot across a plan.
    """
    if memo is None:
        return tuple(f"{name}={_value(value)}" for name, value in facts.items())
    items = []
    for name, value in facts.items():
        key = (name, type(value), value)
        text = memo.get(key)
        if text is None:
            text = memo[key] = f"{name}={_value(value)}"
        items.append(text)
    return tuple(items)


def fact_text(facts: Mapping[str, Any]) -> str:
    """The facts a rule read, as one line: ``role.family=sales; customer_facing=true``."""
    return "; ".join(fact_items(facts))


def _value(value: Any) -> str:
    if value is None:
        return "(missing)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
