"""Where a plan report's population comes from: the snapshot the plan was made from when
it holds what the grouping needs, else a read of the directory."""

from __future__ import annotations

from collections.abc import Sequence

from persona_sync.errors import PersonaSyncError
from persona_sync.feed_join import feed_of, load_feeds
from persona_sync.plan import Plan, org_chart, read_attributes
from persona_sync.report.population import (
    Dimension,
    PopulationRow,
    dimension_attributes,
    population_rows,
)
from persona_sync.session import People, Session, people_in_snapshot


def plan_population(
    session: Session, plan: Plan, dimensions: Sequence[Dimension], notes: list[str]
) -> list[PopulationRow]:
    """Every in-scope employee with persona and groups. ``notes`` gets a line on where
    they were read and on rules or config that changed since the plan."""
    engine, config = session.engine, session.config
    if session.config_identity != plan.provenance.directory:
        raise PersonaSyncError(
            f"the plan is for directory {plan.provenance.directory}, but the config points "
            f"at {session.config_identity}: pass the plan's --config, or --no-directory"
        )
    grouped = [a for a in dimension_attributes(dimensions) if feed_of(a) is None]
    attributes = list(dict.fromkeys([*read_attributes(engine, config), *grouped]))
    feeds = load_feeds(config)
    people = people_in_snapshot(session, attributes)
    if people is not None:
        notes.append(f"Employees grouped as {people.source} holds them (no directory read).")
    else:
        with session.directory() as directory:
            employees = list(directory.read(attributes))
            chart = org_chart(directory, employees) if engine.rule_set.uses_org_chart else None
        people = People(
            employees, None if chart is None else dict(chart.positions), directory.identity
        )
    if plan.provenance.rules_checksum != session.rules_checksum:
        notes.append(
            "The rules changed since this plan was made: the distribution and the "
            "employees per rule follow the current rules, the changes the plan's."
        )
    if plan.provenance.config_checksum != config.checksum:
        notes.append("The config changed since this plan was made.")
    employees = [feeds.join(e) for e in people.employees] if feeds else people.employees
    return population_rows(engine, employees, dimensions, people)
