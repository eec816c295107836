"""A 100,000-change plan: the HTML stays under 10 MB with every change, and renders fast."""

from __future__ import annotations

import json
import random

import pytest

from persona_sync.plan import Plan, PlannedChange, Provenance
from persona_sync.report import build_plan_report, render_html, render_markdown
from persona_sync.report.population import PopulationRow

LIMIT_BYTES = 10 * 1024 * 1024
PERSONAS = {  # persona -> rule
    "knowledge-worker": "default",
    "engineer": "engineer-by-title",
    "plant-floor": "plant-floor-production",
    "frontline": "frontline-store",
    "clinician": "clinician-by-title",
    "vip": "vip-executive",
}
SITES = [f"Site {i:03}" for i in range(140)] + ["Munich HQ", "Zürich Office"]
FAMILY = ("Müller", "Smith", "Nowak", "García", "O'Brien", "Kowalski")
GIVEN = ("Anna", "Jörg", "Zoë", "Łukasz", "María", "Søren")


def synthetic_plan(changes: int, population: int) -> tuple[Plan, list[PopulationRow]]:
    """A first population of a large directory: ``changes`` of ``population`` employees
    get a persona, with escaped commas and non-ASCII letters in their DNs."""
    rng = random.Random(6)
    names = list(PERSONAS)
    rows: list[PopulationRow] = []
    planned: list[PlannedChange] = []
    for i in range(population):
        persona = names[min(int(rng.expovariate(0.45)), len(names) - 1)]
        site, account = rng.choice(SITES), f"u{i:06}"
        rows.append(
            PopulationRow(
                account,
                {"persona": persona},
                {"persona": PERSONAS[persona]},
                {"site": site, "department": f"Department {i % 60:02}"},
            )
        )
        if i < changes:
            name = f"{rng.choice(FAMILY)}\\, {rng.choice(GIVEN)} {i}"
            facts = {"role.title": f"Title {i % 400:03}", "seniority": float(i % 10 + 1)}
            planned.append(
                PlannedChange(
                    account,
                    f"CN={name},OU={site},OU=People,DC=contoso,DC=example",
                    "persona",
                    "msDS-cloudExtensionAttribute1",
                    None if rng.random() < 0.8 else rng.choice(names),
                    persona,
                    persona,
                    PERSONAS[persona],
                    facts,
                )
            )
    counts: dict[str, int] = {}
    for row in rows:
        counts[row.personas["persona"]] = counts.get(row.personas["persona"], 0) + 1
    summary = {
        "employees": population,
        "in_scope": population,
        "out_of_scope": 0,
        "unchanged": population - len(planned),
        "changes": len(planned),
        "employees_changed": len(planned),
        "foreign_values": 0,
        "org_chart_problems": 0,
        "scenarios": {"persona": {"personas": counts, "transitions": {}}},
    }
    provenance = Provenance(
        "test", "sha256:rules", "sha256:config", "file:/test.ldif", "2026-01-01T00:00:00+00:00"
    )
    return Plan(tuple(planned), (), summary, provenance), rows


def _embedded(html: str) -> int:
    start = html.index('id="change-list-data">') + len('id="change-list-data">')
    return len(json.loads(html[start : html.index("</script>", start)])["rows"])


def test_hundred_thousand_changes_fit_in_ten_megabytes() -> None:
    plan, rows = synthetic_plan(100_000, 100_000)
    html = render_html(build_plan_report(plan, rows))
    assert len(html.encode()) < LIMIT_BYTES
    assert _embedded(html) == 100_000


def test_markdown_stays_short() -> None:
    plan, _ = synthetic_plan(5_000, 5_000)
    text = render_markdown(build_plan_report(plan))
    assert text.count("\n| u0") == 200
    assert "_4,800 more not shown; the plan's CSV has every change._" in text


@pytest.mark.slow
def test_more_than_fits_is_cut_with_a_note() -> None:
    plan, _ = synthetic_plan(200_000, 200_000)
    html = render_html(build_plan_report(plan))
    assert len(html.encode()) < LIMIT_BYTES
    assert 100_000 < _embedded(html) < 200_000
    assert "of 200,000 changes to stay small" in html
