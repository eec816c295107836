"""Population rows and distributions: consistent with the plan, grouped, summarised."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from persona_sync.demo.workspace import prepare_workspace
from persona_sync.employee import Employee
from persona_sync.errors import ConfigError
from persona_sync.feed_join import load_feeds
from persona_sync.plan import org_chart, read_attributes
from persona_sync.refresh import compute_plan
from persona_sync.report.population import (
    DEFAULT_DIMENSIONS,
    NO_VALUE,
    Dimension,
    PopulationRow,
    attribute_counts,
    dimension_attributes,
    distribution_from_rows,
    distribution_from_summary,
    parse_dimension,
    population_rows,
)
from persona_sync.rules.engine import Engine
from persona_sync.rules.loader import load_rules
from persona_sync.session import open_session
from tests.conftest import DEFAULT_RULES


def _employee(uid: str, **attributes: str) -> Employee:
    return Employee(uid, f"CN={uid},DC=x", {k.lower(): v for k, v in attributes.items()})


def test_rows_keep_in_scope_employees_with_persona_rule_and_groups() -> None:
    engine = Engine(load_rules([DEFAULT_RULES]))
    people = [
        _employee(
            "nurse",
            title="Registered Nurse",
            physicalDeliveryOfficeName="North Clinic",
            c="DE",
            department="Nursing",
        ),
        _employee("gone", title="Cashier", userAccountControl="514"),
        _employee("eng", jobTitle="Software Engineer", officeLocation="Remote", country="FR"),
    ]
    rows = population_rows(engine, people, DEFAULT_DIMENSIONS)
    assert [(r.employee, dict(r.personas), dict(r.groups)) for r in rows] == [
        (
            "nurse",
            {"persona": "clinician"},
            {"site": "North Clinic", "country": "DE", "department": "Nursing"},
        ),
        ("eng", {"persona": "engineer"}, {"site": "Remote", "country": "FR", "department": None}),
    ]
    assert rows[0].rules == {"persona": "clinician-by-title"}


def test_distribution_matches_the_plan_summary_on_the_demo_company(tmp_path: Path) -> None:
    config, _ = prepare_workspace(tmp_path / "demo")
    session = open_session(config)
    with session.directory() as directory:
        plan = compute_plan(session.config, session.engine, directory).plan
    attributes = [
        *read_attributes(session.engine, session.config),
        *dimension_attributes(DEFAULT_DIMENSIONS),
    ]
    with session.directory() as directory:
        people = list(directory.read(attributes))
        chart = org_chart(directory, people)
    feeds = load_feeds(session.config)  # the demo's HR export, joined as the plan joins it
    joined = [feeds.join(p) for p in people]
    rows = population_rows(session.engine, joined, DEFAULT_DIMENSIONS, chart)
    dist = distribution_from_rows(rows, "persona", DEFAULT_DIMENSIONS, max_groups=1000)
    assert dict(dist.counts) == plan.summary["scenarios"]["persona"]["personas"]
    assert dist.total == plan.in_scope
    for table in dist.tables:  # every group adds up to the same total
        assert sum(g.total for g in table.groups) == plan.in_scope
        assert table.other is None


def _row(name: str, persona: str, site: str | None) -> PopulationRow:
    return PopulationRow(name, {"persona": persona}, {"persona": "r"}, {"site": site})


def test_small_groups_are_summed_into_other() -> None:
    site = Dimension("site", "Site", ("l",))
    rows = (
        [_row(f"a{i}", "vip", "Alpha") for i in range(3)]
        + [_row(f"b{i}", "engineer", "Beta") for i in range(2)]
        + [_row("c", "vip", "Gamma"), _row("d", "engineer", None)]
    )
    dist = distribution_from_rows(rows, "persona", [site], max_groups=2)
    assert dist.counts == (("vip", 4), ("engineer", 3))
    table = dist.tables[0]
    assert [(g.name, dict(g.counts), g.total) for g in table.groups] == [
        ("Alpha", {"vip": 3}, 3),
        ("Beta", {"engineer": 2}, 2),
    ]
    assert table.other is not None
    assert (table.other.name, dict(table.other.counts), table.other.total) == (
        "2 more",
        {"vip": 1, "engineer": 1},
        2,
    )
    assert table.group_count == 4
    assert NO_VALUE == "(none)"
    assert dist.share(4) == pytest.approx(100 * 4 / 7)


def test_distribution_from_summary_has_no_groups() -> None:
    summary = {"scenarios": {"persona": {"personas": {"vip": 2, "engineer": 5}}}}
    dist = distribution_from_summary(summary, "persona")
    assert (dist.counts, dist.total, dist.tables, dist.source) == (
        (("engineer", 5), ("vip", 2)),
        7,
        (),
        "plan summary",
    )


def test_parse_dimension() -> None:
    assert parse_dimension("Region=st, State") == Dimension("region", "Region", ("st", "state"))
    with pytest.raises(ConfigError) as caught:
        parse_dimension("region")
    assert str(caught.value) == (
        "--group-by 'region': expected NAME=ATTRIBUTE[,ATTRIBUTE...], e.g. "
        "site=physicalDeliveryOfficeName,officeLocation"
    )


def test_attribute_counts_count_current_values() -> None:
    people = [
        _employee("a", extensionAttribute10="vip"),
        _employee("b"),
        _employee("c", extensionAttribute10="vip"),
    ]
    assert attribute_counts(people, {"persona": "extensionAttribute10"}) == {
        "persona": Counter({"vip": 2, "(empty)": 1})
    }
