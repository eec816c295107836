"""Report rendering at scale: a synthetic 100,000-change plan, as HTML and Markdown.

    python bench/report_bench.py [--changes 100000] [--population 120000] [-o report.html]

Prints seconds and sizes. The budget (issue 6): under 5 s and under 10 MB of HTML. The
plan looks like a first population of a large directory: realistic DNs with escaped
commas and non-ASCII names, the facts each rule read, and one population row per
in-scope employee for the distribution by site, country and department.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from persona_sync.plan import Plan, PlannedChange, Provenance, load_plan
from persona_sync.render import render_json
from persona_sync.report import build_plan_report, render_html, render_markdown
from persona_sync.report.population import PopulationRow

PERSONAS = (
    "knowledge-worker",
    "engineer",
    "plant-floor",
    "frontline",
    "field-sales",
    "clinician",
    "tech-support",
    "remote-worker",
    "vip",
)
RULES = {
    "knowledge-worker": "default",
    "engineer": "engineer-by-title",
    "plant-floor": "plant-floor-production",
    "frontline": "frontline-store",
    "field-sales": "field-sales-rep",
    "clinician": "clinician-by-title",
    "tech-support": "tech-support-it",
    "remote-worker": "remote-by-site",
    "vip": "vip-executive",
}
SITES = [f"Site {i:03}" for i in range(140)] + ["Munich HQ", "Home Office", "Zürich Office"]
COUNTRIES = (
    "Germany",
    "Austria",
    "France",
    "Poland",
    "United Kingdom",
    "Mexico",
    "Ireland",
    "United States",
    "Switzerland",
)
DEPARTMENTS = [f"Department {i:02}" for i in range(60)] + ["R&D", "Finance & Control"]
TITLES = [f"Title {i:03}" for i in range(400)]
GIVEN = ("Anna", "Jörg", "Zoë", "Łukasz", "María", "John", "Aarav", "Chloé", "Søren", "Mia")
T = TypeVar("T")
FAMILY = ("Müller", "Smith", "Nowak", "García", "O'Brien", "Kowalski", "Dubois", "Rossi")


def synthetic_plan(
    changes: int, population: int, seed: int = 6
) -> tuple[Plan, list[PopulationRow]]:
    rng = random.Random(seed)
    rows: list[PopulationRow] = []
    planned: list[PlannedChange] = []
    for i in range(population):
        persona = PERSONAS[min(int(rng.expovariate(0.45)), len(PERSONAS) - 1)]
        site, country = rng.choice(SITES), rng.choice(COUNTRIES)
        department = rng.choice(DEPARTMENTS)
        account = f"u{i:06}"
        rows.append(
            PopulationRow(
                account,
                {"persona": persona},
                {"persona": RULES[persona]},
                {"site": site, "country": country, "department": department},
            )
        )
        if i >= changes:
            continue
        name = f"{rng.choice(FAMILY)}\\, {rng.choice(GIVEN)} {i}"
        old = None if rng.random() < 0.8 else rng.choice(PERSONAS)
        facts = {
            "role.title": rng.choice(TITLES),
            "role.family": persona.split("-")[0],
            "location.site_type": "office",
            "account.disabled": False,
            "seniority": float(rng.randint(1, 10)),
        }
        planned.append(
            PlannedChange(
                account,
                f"CN={name},OU={site},OU=People,DC=contoso,DC=example",
                "persona",
                "msDS-cloudExtensionAttribute1",
                old,
                persona,
                persona,
                RULES[persona],
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
        "bench", "sha256:rules", "sha256:config", "file:/bench.ldif", "2026-01-01T00:00:00+00:00"
    )
    return Plan(tuple(planned), (), summary, provenance), rows


def _timed(action: Callable[[], T]) -> tuple[T, float, float]:
    """The result, wall seconds and CPU seconds (CPU is steadier on a busy machine)."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = action()
    return result, time.perf_counter() - wall, time.process_time() - cpu


def _line(label: str, wall: float, cpu: float, size: str) -> None:
    print(f"{label + ':':<31} {wall:5.2f} s ({cpu:.2f} s CPU) {size}".rstrip())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--changes", type=int, default=100_000)
    parser.add_argument("--population", type=int, default=120_000)
    parser.add_argument(
        "--load", action="store_true", help="Also time reading the plan back from JSON (load_plan)."
    )
    parser.add_argument("-o", "--output", type=Path, help="Also save the HTML here.")
    args = parser.parse_args()
    plan, rows = synthetic_plan(args.changes, max(args.population, args.changes))
    print(f"plan: {len(plan.changes):,} changes, population {len(rows):,} employees")

    html, wall, cpu = _timed(lambda: render_html(build_plan_report(plan, rows)))
    _line("html, with population", wall, cpu, f"{len(html.encode()) / 1e6:.2f} MB")
    bare, wall, cpu = _timed(lambda: render_html(build_plan_report(plan)))
    _line("html, plan only", wall, cpu, f"{len(bare.encode()) / 1e6:.2f} MB")
    markdown, wall, cpu = _timed(lambda: render_markdown(build_plan_report(plan, rows)))
    _line("markdown", wall, cpu, f"{len(markdown.encode()) / 1e3:.0f} kB")
    start = html.index('id="change-list-data">') + len('id="change-list-data">')
    embedded = len(json.loads(html[start : html.index("</script>", start)])["rows"])
    print(f"{'change rows embedded:':<31} {embedded:,} of {len(plan.changes):,}")
    if args.load:
        text = render_json(plan)
        _, wall, cpu = _timed(lambda: load_plan(text, "bench"))
        _line("load_plan (checksum verified)", wall, cpu, "")
    if args.output is not None:
        args.output.write_text(html, encoding="utf-8")
        print(f"saved {args.output}")


if __name__ == "__main__":
    main()
